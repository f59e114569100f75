//! Where an output may go: never onto, into or around a file the merge reads. Paths are
//! compared canonically (symbolic links, `..`, relative paths resolved) and by device and
//! inode (hard links, bind mounts), whatever `--force` says.

use std::path::{Component, Path, PathBuf};

use crate::adapter::Adapter;
use crate::error::{LegoError, Result};

/// One path a merge reads, as given and resolved.
#[derive(Debug, Clone)]
struct Input {
    given: PathBuf,
    canonical: PathBuf,
    id: Option<FileId>,
}

/// Device and inode: the identity of a file whatever path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| FileId(m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Every path a merge reads: the adapters as given, the files inside them, the recipe.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    items: Vec<Input>,
}

impl Inputs {
    /// The paths `adapters` were read from: each adapter's path and every file read for it.
    pub fn of_adapters(adapters: &[Adapter]) -> Self {
        let mut inputs = Inputs::default();
        for a in adapters {
            inputs.add(&a.path);
            for f in crate::io::input_files(a) {
                inputs.add(&f);
            }
        }
        inputs
    }

    /// Adds a path that is read (a recipe file, say).
    pub fn add(&mut self, path: &Path) {
        self.items.push(Input {
            given: path.to_path_buf(),
            canonical: resolve(path),
            id: file_id(path),
        });
    }

    /// Refuses `output` if it is, lies inside, or contains one of the inputs.
    pub fn check(&self, output: &Path) -> Result<()> {
        let out = resolve(output);
        // A symbolic link at the output is replaced by the rename, but check where it points too.
        let through_link = std::fs::canonicalize(output).ok();
        let out_id = file_id(output);
        let out_ancestors: Vec<FileId> = existing_ancestors(&out).filter_map(file_id).collect();
        // Sameness first: "is the input X" says more than "is inside the input X's directory".
        for input in &self.items {
            let same_id = out_id.is_some() && out_id == input.id;
            let same_path = std::iter::once(&out)
                .chain(through_link.as_ref())
                .any(|o| *o == input.canonical);
            if same_id || same_path {
                return Err(LegoError::OutputOverlapsInput {
                    output: output.to_path_buf(),
                    input: input.given.clone(),
                    relation: "is",
                });
            }
        }
        for input in &self.items {
            let refuse = |relation| {
                Err(LegoError::OutputOverlapsInput {
                    output: output.to_path_buf(),
                    input: input.given.clone(),
                    relation,
                })
            };
            for o in std::iter::once(&out).chain(through_link.as_ref()) {
                if o.starts_with(&input.canonical) {
                    return refuse("is inside");
                }
                if input.canonical.starts_with(o) {
                    return refuse("contains");
                }
            }
            // The same directories reached by other names (bind mounts, hard-linked paths).
            if let Some(id) = input.id {
                if out_ancestors.contains(&id) {
                    return refuse("is inside");
                }
            }
            if let Some(id) = out_id {
                if existing_ancestors(&input.canonical)
                    .filter_map(file_id)
                    .any(|a| a == id)
                {
                    return refuse("contains");
                }
            }
        }
        Ok(())
    }
}

/// The proper ancestors of `path` that exist.
fn existing_ancestors(path: &Path) -> impl Iterator<Item = &Path> {
    path.ancestors().skip(1).filter(|p| p.exists())
}

/// `path` made absolute and canonical where it exists: the deepest existing ancestor is
/// canonicalised and the rest appended, `.` dropped and `..` applied.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    let canonical = loop {
        if let Ok(c) = std::fs::canonicalize(base) {
            break c;
        }
        // The last component, `..` included (below a directory that does not exist it cannot
        // be a symbolic link's, so applying it lexically is exact).
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last.as_os_str().to_os_string());
                base = parent;
            }
            _ => break base.to_path_buf(),
        }
    };
    let mut out = canonical;
    for part in rest.iter().rev() {
        match Path::new(part).components().next() {
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::CurDir) => {}
            _ => out.push(part),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_applies_dot_dot_below_a_missing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let p = tmp.path().join("missing/../x");
        assert_eq!(resolve(&p), base.join("x"));
        assert_eq!(resolve(&tmp.path().join("./a/b")), base.join("a/b"));
    }

    #[test]
    fn overlap_is_found_by_path_and_by_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("adapter");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("w.safetensors"), b"x").unwrap();
        let mut inputs = Inputs::default();
        inputs.add(&dir.join("w.safetensors"));
        inputs.add(&dir);
        let msg = |p: &Path| inputs.check(p).unwrap_err().to_string();
        assert!(
            msg(&dir).contains("this output is the input"),
            "{}",
            msg(&dir)
        );
        assert!(msg(&dir.join("sub")).contains("is inside"));
        assert!(msg(tmp.path()).contains("contains"));
        let link = tmp.path().join("hard.safetensors");
        std::fs::hard_link(dir.join("w.safetensors"), &link).unwrap();
        assert!(msg(&link).contains("this output is the input"));
        #[cfg(unix)]
        {
            let sym = tmp.path().join("sym");
            std::os::unix::fs::symlink(&dir, &sym).unwrap();
            assert!(msg(&sym.join("new")).contains("is inside"));
        }
        assert!(inputs.check(&tmp.path().join("elsewhere")).is_ok());
    }
}
