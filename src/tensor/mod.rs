//! Tensors as they sit in a safetensors file: dtype, shape and bytes, read through a memory map.
//! Below both the adapter model and the readers: an adapter holds these, `io` makes them.

pub mod mapguard;
pub mod spill;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use memmap2::Mmap;
use ndarray::Array2;
use safetensors::SafeTensors;

use crate::error::{LegoError, Result};

/// The element types we read and write.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    fn from_safetensors(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F32 => Some(DType::F32),
            safetensors::Dtype::F16 => Some(DType::F16),
            safetensors::Dtype::BF16 => Some(DType::BF16),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        })
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            _ => Err(format!("unknown dtype `{s}` (expected f32, f16 or bf16)")),
        }
    }
}

/// The bytes behind tensors: a mapped file or an owned buffer.
#[derive(Debug)]
enum Store {
    /// The guard comes first: fields drop in order, so it is unregistered before the unmap.
    Mapped {
        guard: mapguard::Mapping,
        map: Mmap,
        path: PathBuf,
    },
    Owned(Vec<u8>),
    /// Written to an export's file while the merge ran (see [`spill`]).
    Spilled(Arc<spill::Spill>),
}

impl Store {
    fn bytes(&self) -> &[u8] {
        match self {
            Store::Mapped { map, .. } => map,
            Store::Owned(v) => v,
            Store::Spilled(s) => s.bytes(),
        }
    }
}

/// Bytes released beyond a tensor's own range (Linux maps up to 64 KiB around a fault).
const FAULT_AROUND_MARGIN: usize = 128 * 1024;

/// What a scan of a tensor's values found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueStats {
    /// NaN or infinite values.
    pub nonfinite: usize,
    /// Every value is exactly zero.
    pub all_zero: bool,
}

/// One tensor: dtype, shape and a byte range in a shared store (zero-copy for mapped files).
#[derive(Debug, Clone)]
pub struct TensorRef {
    store: Arc<Store>,
    range: Range<usize>,
    dtype: DType,
    shape: Vec<usize>,
}

impl TensorRef {
    /// Encodes `values` (row-major) into a new owned tensor of `dtype` (rounding to nearest).
    pub fn from_f32(values: &[f32], shape: Vec<usize>, dtype: DType) -> Self {
        debug_assert_eq!(values.len(), shape.iter().product::<usize>());
        // Into a buffer sized once, in chunks of a size known at compile time: growing a Vec
        // byte by byte (or copying runtime-sized chunks) cost more than the rounding.
        let mut bytes = vec![0u8; values.len() * dtype.size()];
        match dtype {
            DType::F32 => put(&mut bytes, values, |v| v.to_le_bytes()),
            DType::F16 => put(&mut bytes, values, |v| f16::from_f32(v).to_le_bytes()),
            DType::BF16 => {
                crate::simd::wide(|| put(&mut bytes, values, |v| bf16_round(v).to_le_bytes()))
            }
        }
        let len = bytes.len();
        TensorRef {
            store: Arc::new(Store::Owned(bytes)),
            range: 0..len,
            dtype,
            shape,
        }
    }

    /// Encodes a 2-D array, reshaped to `shape` (same element count), into `dtype`.
    pub fn from_array(array: &Array2<f32>, shape: Vec<usize>, dtype: DType) -> Self {
        match array.as_slice() {
            // Row-major already: encode in place, no copy.
            Some(values) => Self::from_f32(values, shape, dtype),
            None => {
                let values: Vec<f32> = array.iter().copied().collect();
                Self::from_f32(&values, shape, dtype)
            }
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape as stored.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.store.bytes()[self.range.clone()]
    }

    /// All values widened to f32, row-major.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.numel()];
        self.write_f32(&mut out);
        out
    }

    /// Widens the values (row-major) into `out`, which holds exactly `numel()` values.
    pub fn write_f32(&self, out: &mut [f32]) {
        self.write_f32_range(0, out);
    }

    /// Widens the `out.len()` values (row-major) from element `start` into `out`; the range
    /// must lie within the tensor.
    pub fn write_f32_range(&self, start: usize, out: &mut [f32]) {
        let size = self.dtype.size();
        let b = &self.bytes()[start * size..(start + out.len()) * size];
        match self.dtype {
            DType::F32 => {
                for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            DType::F16 => widen_f16(b, out),
            DType::BF16 => widen_bf16(b, out),
        }
    }

    /// Lets the kernel drop this tensor's pages from our resident set (they are re-read from the
    /// page cache if touched again): after a module's factors are converted, its mapped bytes
    /// need not count against memory. A no-op for owned tensors.
    ///
    /// The range is widened by `FAULT_AROUND_MARGIN` on both sides: a page fault maps the
    /// cached pages around it too, so neighbouring tensors' pages would otherwise stay resident.
    pub fn release_pages(&self) {
        if let Store::Mapped { map, .. } = self.store.as_ref() {
            let start = self.range.start.saturating_sub(FAULT_AROUND_MARGIN);
            let end = (self.range.end + FAULT_AROUND_MARGIN).min(map.len());
            // SAFETY: the mapping is private and read-only, so dropped pages come back with the
            // same file contents on the next access; nothing borrowed observes a change.
            unsafe {
                // Best effort: where the advice is refused, pages simply stay resident.
                let _ = map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                );
            }
        }
    }

    /// [`TensorRef::release_pages`] for the whole file this tensor is mapped from.
    fn release_store_pages(&self) {
        if let Store::Mapped { map, .. } = self.store.as_ref() {
            // SAFETY: as in `release_pages`.
            unsafe {
                let _ = map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed);
            }
        }
    }

    /// An error naming the file if it shrank while mapped and a read ran past its new end
    /// (that read saw zeros instead of the data).
    pub fn check_intact(&self) -> Result<()> {
        match self.store.as_ref() {
            Store::Mapped { guard, map, path } if guard.faulted() => Err(LegoError::InputChanged {
                path: path.clone(),
                was: map.len() as u64,
                now: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            }),
            _ => Ok(()),
        }
    }

    /// The values as a `rows × cols` matrix (the caller has checked that the counts agree).
    pub fn to_matrix(&self, rows: usize, cols: usize) -> Array2<f32> {
        let v = self.to_f32_vec();
        Array2::from_shape_vec((rows, cols), v).unwrap_or_else(|_| Array2::zeros((rows, cols)))
    }

    /// How many values are NaN or infinite, and whether all are exactly zero (one pass).
    pub fn value_stats(&self) -> ValueStats {
        // On the bit patterns, with nothing widened or allocated: a value is NaN or infinite
        // exactly when its exponent bits are all set, and equals 0.0 exactly when every bit
        // but the sign is clear.
        let b = self.bytes();
        let (nonfinite, magnitude) = match self.dtype {
            DType::F32 => bit_stats(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                0x7F80_0000,
                0x7FFF_FFFF,
            ),
            DType::F16 => half_stats(b, 0x7C00),
            DType::BF16 => half_stats(b, 0x7F80),
        };
        ValueStats {
            nonfinite,
            all_zero: magnitude == 0,
        }
    }
}

/// `half::bf16::from_f32(v)`'s bits (round to nearest even, NaN kept quiet) without its
/// branches, so a loop of it vectorises.
#[inline(always)]
fn bf16_round(v: f32) -> u16 {
    let x = v.to_bits();
    let nan = ((x >> 16) | 0x0040) as u16;
    // Adding 0x7FFF plus the kept part's lowest bit carries into it exactly when the dropped
    // half is above one half, or equal to it with the kept part odd.
    let rounded = ((x + 0x7FFF + ((x >> 16) & 1)) >> 16) as u16;
    if x & 0x7FFF_FFFF > 0x7F80_0000 {
        nan
    } else {
        rounded
    }
}

/// Writes `encode(v)` of every value into consecutive `N`-byte chunks of `out`.
#[inline(always)]
fn put<const N: usize>(out: &mut [u8], values: &[f32], encode: impl Fn(f32) -> [u8; N]) {
    let (chunks, _) = out.as_chunks_mut::<N>();
    for (o, &v) in chunks.iter_mut().zip(values) {
        *o = encode(v);
    }
}

/// [`bit_stats`] of little-endian 16-bit words, over a `u16` slice when the bytes are aligned
/// (they are in files we map: safetensors pads its header to 8 bytes).
fn half_stats(bytes: &[u8], exponent: u16) -> (usize, u32) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: every bit pattern is a valid u16, and align_to only hands out the aligned
        // middle part.
        let (pre, mid, post) = unsafe { bytes.align_to::<u16>() };
        if pre.is_empty() && post.is_empty() {
            return crate::simd::wide(|| {
                // 16-bit counters per chunk keep the loop as wide as the words.
                let (mut count, mut any) = (0usize, 0u16);
                for chunk in mid.chunks(1 << 15) {
                    let mut c = 0u16;
                    for &w in chunk {
                        c += u16::from(w & exponent == exponent);
                        any |= w & 0x7FFF;
                    }
                    count += usize::from(c);
                }
                (count, u32::from(any))
            });
        }
    }
    bit_stats(halves(bytes), u32::from(exponent), 0x7FFF)
}

/// Little-endian 16-bit words, widened to `u32` for [`bit_stats`].
fn halves(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
}

/// How many words have every `exponent` bit set, and the OR of their `magnitude` bits.
fn bit_stats(words: impl Iterator<Item = u32>, exponent: u32, magnitude: u32) -> (usize, u32) {
    words.fold((0, 0), |(count, any), w| {
        (
            count + usize::from(w & exponent == exponent),
            any | (w & magnitude),
        )
    })
}

/// Widens little-endian f16 values, with `half`'s vectorised conversion when the bytes are
/// aligned (they are in files we map: safetensors pads its header to 8 bytes).
fn widen_f16(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_endian = "little")]
    {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        // SAFETY: every bit pattern is a valid u16, and align_to only hands out the aligned
        // middle part.
        let (pre, mid, post) = unsafe { bytes.align_to::<u16>() };
        if pre.is_empty() && post.is_empty() {
            let halves: &[f16] = mid.reinterpret_cast();
            halves.convert_to_f32_slice(out);
            return;
        }
    }
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

/// Widens little-endian bf16 values: a bf16 is the top half of an f32, so this is a shift,
/// vectorised wide when the bytes are aligned.
fn widen_bf16(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: every bit pattern is a valid u16, and align_to only hands out the aligned
        // middle part.
        let (pre, mid, post) = unsafe { bytes.align_to::<u16>() };
        if pre.is_empty() && post.is_empty() {
            crate::simd::wide(|| {
                for (o, &h) in out.iter_mut().zip(mid) {
                    *o = f32::from_bits(u32::from(h) << 16);
                }
            });
            return;
        }
    }
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

/// The parsed contents of one safetensors file.
#[derive(Debug, Clone)]
pub struct TensorFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Tensors by name, sorted.
    pub tensors: BTreeMap<String, TensorRef>,
    /// The `__metadata__` string map of the header.
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Lets the kernel drop every mapped page of the file from our resident set, in one call:
    /// a reader that has scanned all its tensors releases them together (one call per tensor
    /// cost a TLB shootdown each, ~3 600 on the 8-adapter 7B set).
    pub fn release_pages(&self) {
        if let Some(t) = self.tensors.values().next() {
            t.release_store_pages();
        }
    }

    /// Maps `path` and validates its header and every tensor's offsets and dtype.
    pub fn open(path: &Path) -> Result<Self> {
        let file = open_regular(path)?;
        let len = file.metadata().map_err(|e| LegoError::io(path, e))?.len();
        if len < 8 {
            // Checked before mapping: an empty file cannot be mapped at all.
            return Err(too_short(path, len as usize));
        }
        // SAFETY: the map is read-only; a file truncated underneath us while mapped reads
        // zeros past its end instead of raising SIGBUS (see `mapguard`), and `check_intact`
        // reports it.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| LegoError::io(path, e))?;
        let guard = mapguard::Mapping::register(map.as_ptr(), map.len());
        let store = Store::Mapped {
            guard,
            map,
            path: path.into(),
        };
        let parsed = Self::from_store(path, store)?;
        // A file that shrank between the size check and the mapping.
        if let Some(t) = parsed.tensors.values().next() {
            t.check_intact()?;
        }
        Ok(parsed)
    }

    /// Parses an in-memory safetensors image (used by tests and by the fuzz target).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::from_store(path, Store::Owned(bytes))
    }

    fn from_store(path: &Path, store: Store) -> Result<Self> {
        let store = Arc::new(store);
        let bytes = store.bytes();
        check_header_length(path, bytes)?;
        let parsed = SafeTensors::deserialize(bytes).map_err(|e| LegoError::Safetensors {
            path: path.into(),
            reason: match e {
                // Valid JSON of the wrong shape: say which field.
                safetensors::SafeTensorError::InvalidHeaderDeserialization(_) => {
                    header_problem(bytes).unwrap_or_else(|| describe_safetensors_error(&e))
                }
                _ => describe_safetensors_error(&e),
            },
        })?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| LegoError::Safetensors {
                path: path.into(),
                reason: describe_safetensors_error(&e),
            })?;
        let metadata = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let base = bytes.as_ptr() as usize;
        let mut tensors = BTreeMap::new();
        for (name, view) in parsed.tensors() {
            let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| {
                LegoError::UnsupportedDtype {
                    path: path.into(),
                    tensor: name.clone(),
                    dtype: format!("{:?}", view.dtype()),
                }
            })?;
            let start = view.data().as_ptr() as usize - base;
            let range = start..start + view.data().len();
            tensors.insert(
                name,
                TensorRef {
                    store: Arc::clone(&store),
                    range,
                    dtype,
                    shape: view.shape().to_vec(),
                },
            );
        }
        Ok(TensorFile {
            path: path.into(),
            tensors,
            metadata,
        })
    }
}

/// Opens `path` for reading if it is a regular file. A FIFO would block the open (and the
/// read) forever, so the open does not wait and anything that is not a file is refused by name.
pub fn open_regular(path: &Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| LegoError::io(path, e))?;
    let meta = file.metadata().map_err(|e| LegoError::io(path, e))?;
    if !meta.is_file() {
        return Err(LegoError::Config {
            path: path.into(),
            reason: format!("is {}, not a regular file", file_kind(&meta)),
        });
    }
    Ok(file)
}

/// What a non-regular file is, for messages.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Rejects a header length that points past the end of the file before the parser sees it,
/// so the message says what is wrong in terms a user can act on (a truncated download).
fn check_header_length(path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 {
        return Err(too_short(path, bytes.len()));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(n);
    let available = bytes.len() as u64 - 8;
    if header_len > available {
        return Err(LegoError::Safetensors {
            path: path.into(),
            reason: format!(
                "header length {header_len} is larger than the {available} bytes after it (truncated or not a safetensors file)"
            ),
        });
    }
    Ok(())
}

fn too_short(path: &Path, len: usize) -> LegoError {
    LegoError::Safetensors {
        path: path.into(),
        reason: format!("file is {len} bytes long, shorter than the 8-byte header length"),
    }
}

/// What is structurally wrong with a header that is valid JSON but not a safetensors header:
/// the field (`__metadata__`, `dtype`, `shape`, `data_offsets`) and the tensor it belongs to.
/// `None` when the header is not JSON at all, or the problem is elsewhere.
fn header_problem(bytes: &[u8]) -> Option<String> {
    use serde_json::Value;
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: Value = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let short = |v: &Value| {
        let t = v.to_string();
        match t.char_indices().nth(40) {
            Some((i, _)) => format!("{}…", &t[..i]),
            None => t,
        }
    };
    let Value::Object(entries) = &header else {
        return Some(format!(
            "the header must be a JSON object, got {}",
            short(&header)
        ));
    };
    let unsigned = |v: &Value| v.as_u64().is_some();
    for (name, entry) in entries {
        if name == "__metadata__" {
            let ok = match entry {
                Value::Object(m) => m.values().all(Value::is_string),
                Value::Null => true,
                _ => false,
            };
            if !ok {
                return Some(format!(
                    "`__metadata__` must map names to strings, got {}",
                    short(entry)
                ));
            }
            continue;
        }
        let Value::Object(info) = entry else {
            return Some(format!(
                "tensor `{name}`: expected an object with `dtype`, `shape` and `data_offsets`, got {}",
                short(entry)
            ));
        };
        let problem = match (
            info.get("dtype"),
            info.get("shape"),
            info.get("data_offsets"),
        ) {
            (None, _, _) => "`dtype` is missing".to_string(),
            (Some(d), _, _) if serde_json::from_value::<safetensors::Dtype>(d.clone()).is_err() => {
                format!(
                    "`dtype` must be a safetensors dtype name such as \"F32\", got {}",
                    short(d)
                )
            }
            (_, None, _) => "`shape` is missing".to_string(),
            (_, Some(sh), _) if !sh.as_array().is_some_and(|a| a.iter().all(unsigned)) => format!(
                "`shape` must be a list of non-negative integers, got {}",
                short(sh)
            ),
            (_, _, None) => "`data_offsets` is missing".to_string(),
            (_, _, Some(o))
                if !o
                    .as_array()
                    .is_some_and(|a| a.len() == 2 && a.iter().all(unsigned)) =>
            {
                format!(
                    "`data_offsets` must be two non-negative integers [begin, end], got {}",
                    short(o)
                )
            }
            _ => continue,
        };
        return Some(format!("tensor `{name}`: {problem}"));
    }
    None
}

fn describe_safetensors_error(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader(_) => "header is not valid UTF-8".into(),
        E::InvalidHeaderDeserialization(err) => format!("header is not valid JSON ({err})"),
        E::HeaderTooLarge => "header is larger than 100 MB".into(),
        E::HeaderTooSmall => "file is shorter than its 8-byte header length".into(),
        E::InvalidHeaderLength => "header length is larger than the file (truncated?)".into(),
        E::InvalidOffset(name) => format!(
            "tensor `{name}` has data offsets that are out of range or overlap another tensor (truncated or corrupt file)"
        ),
        E::MetadataIncompleteBuffer => {
            "the tensors' data does not cover the file exactly (truncated or corrupt file)".into()
        }
        E::TensorInvalidInfo => "a tensor's shape and dtype do not match its byte range".into(),
        E::ValidationOverflow => "a tensor's shape overflows".into(),
        other => format!("{other:?}"),
    }
}

/// The header of a safetensors file (8-byte length + padded JSON) and the tensors in file
/// order, laid out exactly as the reference
/// implementation does (tensors by descending dtype alignment, then name; header padded with
/// spaces to 8 bytes) but with the metadata keys sorted: the reference serialises its metadata
/// from a hash map, whose order changes from run to run, and exports must be reproducible.
fn safetensors_header<'a>(
    tensors: &'a BTreeMap<String, TensorRef>,
    metadata: &BTreeMap<String, String>,
) -> (Vec<u8>, Vec<&'a TensorRef>) {
    let order = file_order(tensors.iter().collect());
    let mut head = header_bytes(&order, metadata);
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + head.len());
    out.extend((head.len() as u64).to_le_bytes());
    out.extend(head);
    (out, order.into_iter().map(|(_, t)| t).collect())
}

/// The reference implementation's order of tensors in a file: by descending dtype alignment,
/// then by name.
fn file_order<'a>(
    mut tensors: Vec<(&'a String, &'a TensorRef)>,
) -> Vec<(&'a String, &'a TensorRef)> {
    let alignment = |d: DType| match d {
        DType::F32 => 2,
        DType::BF16 => 1,
        DType::F16 => 0,
    };
    tensors.sort_by(|(ln, lt), (rn, rt)| {
        alignment(rt.dtype)
            .cmp(&alignment(lt.dtype))
            .then_with(|| ln.cmp(rn))
    });
    tensors
}

/// The header's JSON, unpadded, for `order` laid out back to back in that order.
fn header_bytes(order: &[(&String, &TensorRef)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0usize;
    for (name, t) in order {
        let len = t.range.len();
        header.insert(
            (*name).clone(),
            serde_json::json!({
                "dtype": t.dtype.to_string(),
                "shape": t.shape,
                "data_offsets": [offset, offset + len],
            }),
        );
        offset += len;
    }
    serde_json::Value::Object(header).to_string().into_bytes()
}

/// Writes `tensors` with header `metadata` to `path` and fsyncs it, streaming the tensors
/// rather than building the whole image in memory.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, TensorRef>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    use std::io::Write;
    let spill = tensors.values().find_map(|t| match t.store.as_ref() {
        Store::Spilled(s) => Some(s),
        _ => None,
    });
    if let Some(spill) = spill {
        if spill.finish_as(path, tensors, metadata)? {
            return Ok(());
        }
    }
    let io = |e| LegoError::io(path, e);
    let (head, order) = safetensors_header(tensors, metadata);
    let f = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    w.write_all(&head).map_err(io)?;
    let mut writeback = EarlyWriteback::new(head.len() as u64);
    for t in order {
        w.write_all(t.bytes()).map_err(io)?;
        if let Some(range) = writeback.wrote(t.bytes().len()) {
            w.flush().map_err(io)?;
            start_writeback(w.get_ref(), range);
        }
    }
    let f = w.into_inner().map_err(|e| io(e.into_error()))?;
    f.sync_all().map_err(io)
}

/// Starts writing a large file back to disk while it is still being written, so the final
/// `fsync` waits for the last stretch only (for a 0.64 GB export it waited 0.19 s on all of it;
/// now 4 ms).
#[derive(Debug)]
struct EarlyWriteback {
    /// Bytes handed to the file so far.
    written: u64,
    /// Bytes whose writeback has been started.
    started: u64,
}

impl EarlyWriteback {
    /// How much is written between two starts.
    const STRETCH: u64 = 32 << 20;

    /// Counting from offset `start`.
    fn new(start: u64) -> Self {
        EarlyWriteback {
            written: start,
            started: 0,
        }
    }

    /// Notes `len` more bytes; once a stretch has built up, the range `(offset, len)` whose
    /// writeback is due (the caller flushes its buffer and calls [`start_writeback`]).
    fn wrote(&mut self, len: usize) -> Option<(u64, u64)> {
        self.written += len as u64;
        if self.written - self.started < Self::STRETCH {
            return None;
        }
        let range = (self.started, self.written - self.started);
        self.started = self.written;
        Some(range)
    }
}

/// Asks the kernel to start writing `(offset, len)` of `file` back to disk.
fn start_writeback(file: &std::fs::File, (offset, len): (u64, u64)) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the call; it only asks the kernel to start writing
        // the range back and touches no memory of ours.
        // Best effort: where it is refused, the final fsync writes everything.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}
