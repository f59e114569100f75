//! A safetensors file written while the merge still runs. Merged modules are appended as they
//! come (in module order, whatever order the workers finish in), after room left for the
//! header; once everything is merged, the header is written into that room and the file is
//! renamed to where the export puts its weights. The disk writes so overlap the merge instead
//! of following it: for a 0.64 GB export that hid 0.3–0.4 s of writing and write-back.
//!
//! The header is padded with spaces to fill its room (the format allows whitespace after the
//! JSON), and the data is laid out in module order rather than by name; any reader finds every
//! tensor through the offsets as usual. When the header does not fit, or the tensors to write are
//! not exactly those spilled, the export writes an ordinary file from the spilled bytes instead.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use memmap2::Mmap;

use super::{header_bytes, EarlyWriteback, Store, TensorRef};
use crate::error::{LegoError, Result};

/// An output file being filled, module by module, in module order.
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    /// Bytes left at the start for the length prefix and the header.
    reserve: usize,
    state: Mutex<State>,
    /// The whole file, mapped once sealed: what spilled tensors' bytes are read from.
    map: OnceLock<Mmap>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Where the next bytes go.
    end: usize,
    /// The next module to write.
    next: usize,
    /// Modules that finished before an earlier one: their tensors, or `None` for a module
    /// that has no output.
    waiting: BTreeMap<usize, Option<Vec<TensorRef>>>,
    writeback: EarlyWriteback,
    /// Renamed into place: nothing to remove on drop.
    placed: bool,
}

impl Spill {
    /// Creates the file at `path` (which must not exist), leaving `reserve` bytes for the header.
    pub fn create(path: &Path, reserve: usize) -> Result<Arc<Self>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| LegoError::io(path, e))?;
        let reserve = reserve.max(16).next_multiple_of(8);
        Ok(Arc::new(Spill {
            path: path.into(),
            reserve,
            state: Mutex::new(State {
                file,
                end: reserve,
                next: 0,
                waiting: BTreeMap::new(),
                writeback: EarlyWriteback::new(reserve as u64),
                placed: false,
            }),
            map: OnceLock::new(),
        }))
    }

    /// Hands over module `index`'s tensors (`None`: the module has no output). Writes every
    /// module that is now next in order, and returns them with their tensors replaced by
    /// spilled ones, whose own bytes are dropped.
    pub fn submit(
        self: &Arc<Self>,
        index: usize,
        tensors: Option<Vec<TensorRef>>,
    ) -> Result<Vec<(usize, Vec<TensorRef>)>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting.insert(index, tensors);
        let mut written = Vec::new();
        loop {
            let next = state.next;
            let Some(item) = state.waiting.remove(&next) else {
                break;
            };
            state.next += 1;
            self.write_module(&mut state, next, item, &mut written)?;
        }
        Ok(written)
    }

    /// Writes module `index`'s tensors, if it has any, and notes their spilled versions.
    fn write_module(
        self: &Arc<Self>,
        state: &mut State,
        index: usize,
        item: Option<Vec<TensorRef>>,
        written: &mut Vec<(usize, Vec<TensorRef>)>,
    ) -> Result<()> {
        if let Some(tensors) = item {
            let spilled = tensors
                .iter()
                .map(|t| self.append(state, t))
                .collect::<Result<Vec<_>>>()?;
            written.push((index, spilled));
        }
        Ok(())
    }

    /// Writes `t`'s bytes at the end of the file and returns the spilled tensor.
    fn append(self: &Arc<Self>, state: &mut State, t: &TensorRef) -> Result<TensorRef> {
        use std::os::unix::fs::FileExt;
        let bytes = t.bytes();
        let io = |e| LegoError::io(&self.path, e);
        state
            .file
            .write_all_at(bytes, state.end as u64)
            .map_err(io)?;
        let start = state.end;
        state.end += bytes.len();
        if let Some(range) = state.writeback.wrote(bytes.len()) {
            super::start_writeback(&state.file, range);
        }
        Ok(TensorRef {
            store: Arc::new(Store::Spilled(Arc::clone(self))),
            range: start..state.end,
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
    }

    /// Ends the writing: modules still waiting (after a gap no one filled) go in, in order,
    /// and the file is mapped so spilled tensors can be read.
    pub fn seal(self: &Arc<Self>) -> Result<Vec<(usize, Vec<TensorRef>)>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut written = Vec::new();
        while let Some((index, item)) = state.waiting.pop_first() {
            self.write_module(&mut state, index, item, &mut written)?;
        }
        // Nothing written (no module had an output): an empty file cannot be mapped, and no
        // spilled tensor needs it.
        if state.end == self.reserve {
            return Ok(written);
        }
        // SAFETY: the file is ours, freshly created under a name no one else uses; nothing
        // writes below `end` any more, and the header written later lies outside every tensor.
        let map = unsafe { Mmap::map(&state.file) }.map_err(|e| LegoError::io(&self.path, e))?;
        let _ = self.map.set(map);
        Ok(written)
    }

    /// The sealed file's bytes (empty before [`Spill::seal`]).
    pub(super) fn bytes(&self) -> &[u8] {
        self.map.get().map_or(&[], |m| &m[..])
    }

    /// Writes `tensors` and `metadata` as the safetensors file `path` by completing this spill
    /// and renaming it there, when the spilled tensors are exactly the data written so far and
    /// the header fits its room. `false`: nothing was done; write the file the ordinary way.
    pub(super) fn finish_as(
        &self,
        path: &Path,
        tensors: &BTreeMap<String, TensorRef>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ours = |t: &TensorRef| matches!(t.store.as_ref(), Store::Spilled(s) if std::ptr::eq(s.as_ref(), self));
        let mut spilled: Vec<(&String, &TensorRef)> =
            tensors.iter().filter(|(_, t)| ours(t)).collect();
        spilled.sort_by_key(|(_, t)| t.range.start);
        let mut at = self.reserve;
        for (_, t) in &spilled {
            if t.range.start != at {
                return Ok(false);
            }
            at = t.range.end;
        }
        if state.placed || at != state.end {
            return Ok(false);
        }
        let rest: Vec<(&String, &TensorRef)> = tensors.iter().filter(|(_, t)| !ours(t)).collect();
        let order: Vec<(&String, &TensorRef)> =
            spilled.into_iter().chain(super::file_order(rest)).collect();
        let mut json = header_bytes(&order, metadata);
        if json.len() + 8 > self.reserve {
            return Ok(false);
        }
        json.resize(self.reserve - 8, b' ');
        let io = |e| LegoError::io(&self.path, e);
        let file = &state.file;
        let mut end = state.end as u64;
        for (_, t) in order.iter().filter(|(_, t)| !ours(t)) {
            file.write_all_at(t.bytes(), end).map_err(io)?;
            end += t.bytes().len() as u64;
        }
        let mut head = (json.len() as u64).to_le_bytes().to_vec();
        head.extend(json);
        file.write_all_at(&head, 0).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.path, path).map_err(|e| LegoError::io(path, e))?;
        state.placed = true;
        Ok(true)
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let placed = self
            .state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .placed;
        if !placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{write_safetensors, DType, TensorFile};

    fn tensor(values: &[f32]) -> TensorRef {
        TensorRef::from_f32(values, vec![values.len()], DType::F32)
    }

    /// Module i: one tensor of i + 1 values equal to i.
    fn module(i: usize) -> Vec<TensorRef> {
        vec![tensor(&vec![i as f32; i + 1])]
    }

    #[test]
    fn modules_are_written_in_order_whatever_order_they_come_in() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::create(&dir.path().join("s"), 64).unwrap();
        assert!(spill.submit(2, Some(module(2))).unwrap().is_empty());
        assert!(spill.submit(1, None).unwrap().is_empty());
        let first = spill.submit(0, Some(module(0))).unwrap();
        let order: Vec<usize> = first.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [0, 2], "0 frees 1 (no output) and 2");
        // 4 comes after a gap no one fills: sealing writes it anyway.
        assert!(spill.submit(4, Some(module(4))).unwrap().is_empty());
        let late = spill.seal().unwrap();
        assert_eq!(late.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [4]);
        let all: Vec<&TensorRef> = first.iter().chain(&late).flat_map(|(_, t)| t).collect();
        let starts: Vec<usize> = all.iter().map(|t| t.range.start).collect();
        assert_eq!(starts, [64, 64 + 4, 64 + 4 + 12]);
        for ((i, _), t) in first.iter().chain(&late).zip(&all) {
            assert_eq!(t.to_f32_vec(), vec![*i as f32; i + 1]);
        }
    }

    #[test]
    fn a_spill_with_nothing_in_it_seals() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::create(&dir.path().join("s"), 64).unwrap();
        assert!(spill.submit(0, None).unwrap().is_empty());
        assert!(spill.seal().unwrap().is_empty());
        assert!(spill.bytes().is_empty());
        drop(spill);
        assert!(!dir.path().join("s").exists());
    }

    /// Spills modules 0..3 and writes them (and `extra`) as one file through `reserve` bytes.
    fn written(reserve: usize, extra: bool) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::create(&dir.path().join("s"), reserve).unwrap();
        let mut tensors = BTreeMap::new();
        for i in [1, 0, 2] {
            for (j, t) in spill.submit(i, Some(module(i))).unwrap() {
                tensors.insert(format!("m{j}"), t[0].clone());
            }
        }
        spill.seal().unwrap();
        if extra {
            tensors.insert("head".to_string(), tensor(&[7.0, 8.0]));
        }
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let path = dir.path().join("out.safetensors");
        write_safetensors(&path, &tensors, &meta).unwrap();
        drop(tensors);
        drop(spill);
        (dir, path)
    }

    fn check(path: &Path, extra: bool) {
        let f = TensorFile::open(path).unwrap();
        for i in 0..3 {
            assert_eq!(
                f.tensors[&format!("m{i}")].to_f32_vec(),
                vec![i as f32; i + 1]
            );
        }
        assert_eq!(f.tensors.contains_key("head"), extra);
        if extra {
            assert_eq!(f.tensors["head"].to_f32_vec(), [7.0, 8.0]);
        }
        assert_eq!(f.metadata["format"], "pt");
    }

    #[test]
    fn a_spill_becomes_the_file_when_its_header_fits() {
        for extra in [false, true] {
            let (dir, path) = written(4096, extra);
            check(&path, extra);
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), 4096 - 8);
            // The spill was renamed, not copied: it is gone from beside the file.
            assert!(!dir.path().join("s").exists());
        }
    }

    #[test]
    fn a_header_too_big_for_its_room_is_written_the_ordinary_way() {
        for extra in [false, true] {
            let (dir, path) = written(16, extra);
            check(&path, extra);
            let bytes = std::fs::read(&path).unwrap();
            assert!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) > 16);
            assert!(
                !dir.path().join("s").exists(),
                "the unused spill is removed"
            );
        }
    }
}
