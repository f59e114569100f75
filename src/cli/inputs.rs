//! What the adapter arguments name: a shell glob over a folder also passes its README, and a
//! folder may hold several adapters rather than be one.

use std::path::{Path, PathBuf};

use lora_lego::io::adapters_inside;

/// What to do with a folder that holds adapters instead of being one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folders {
    /// Read every adapter inside (`inspect`).
    Expand,
    /// Refuse, listing them (`merge`, `compare`: weights and order must be the user's).
    Refuse,
}

/// The adapters `paths` name, with notes on what was skipped or expanded. Files that cannot be
/// adapters (`README.md`, `*.json` …) are skipped when other arguments remain.
pub fn adapter_paths(
    paths: &[PathBuf],
    folders: Folders,
) -> anyhow::Result<(Vec<PathBuf>, Vec<String>)> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for p in paths {
        if paths.len() > 1 && p.is_file() && !is_safetensors(p) {
            notes.push(format!(
                "skipping {}: not an adapter (a PEFT directory or a .safetensors file)",
                p.display()
            ));
            continue;
        }
        let inside = adapters_inside(p);
        if inside.is_empty() {
            out.push(p.clone());
            continue;
        }
        let listed: Vec<String> = inside.iter().map(|a| a.display().to_string()).collect();
        match folders {
            Folders::Expand => {
                notes.push(format!(
                    "{} holds {} adapters: reading {}",
                    p.display(),
                    inside.len(),
                    listed.join(", ")
                ));
                out.extend(inside);
            }
            Folders::Refuse => crate::usage!(
                "{} is a folder of {} adapters, not one adapter: name the ones to use, e.g. {}",
                p.display(),
                inside.len(),
                listed.join(" ")
            ),
        }
    }
    if out.is_empty() {
        crate::usage!("no adapter among the arguments ({})", notes.join("; "));
    }
    Ok((out, notes))
}

fn is_safetensors(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("safetensors")
}
