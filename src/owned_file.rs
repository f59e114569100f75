//! Rewriting files lora-lego itself owns and rewrites as it goes (a sweep's `results.jsonl`
//! and `best.toml`, a scored export's recipe and model card): through a temporary sibling and
//! a rename, so a reader or a killed run never sees half a file. Outputs the user names go
//! through `io::write`'s checks instead; these paths are ours by construction.

use std::path::{Path, PathBuf};

use crate::error::{LegoError, Result};
use crate::io::write::write_text;

/// Replaces `path` with `text` atomically.
pub fn replace_text(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| LegoError::Invalid(format!("{}: not a file name", path.display())))?
        .to_string_lossy();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(".{name}.lora-lego-tmp-{}", std::process::id()));
    let result = write_text(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| LegoError::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
