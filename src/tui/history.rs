//! Recent adapter sets and their last settings, kept as JSON in the user's data directory.
//! A missing file is an empty history; a corrupt one is ignored with a note, never an error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::recipe::MergeSettings;

/// How many adapter sets are remembered.
const KEEP: usize = 20;

/// The history file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    /// Most recently used first; each set appears once, keyed by its canonical paths.
    pub sets: Vec<Entry>,
}

/// One adapter set and the settings it was last used with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The canonical paths of the adapters, in the order they were opened.
    pub adapters: Vec<PathBuf>,
    /// The settings, kept as raw JSON so one unreadable entry does not spoil the others.
    pub settings: serde_json::Value,
    /// Seconds since the Unix epoch of the last use.
    pub last_used: u64,
}

/// The key of an adapter set: its canonical paths (as given when a path cannot be resolved).
pub fn key(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect()
}

/// `$LORA_LEGO_DATA_DIR/history.json` when set (tests, scripts), else the platform's data
/// directory for lora-lego.
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LORA_LEGO_DATA_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("history.json"));
    }
    directories::ProjectDirs::from("", "", "lora-lego").map(|d| d.data_dir().join("history.json"))
}

impl History {
    /// Reads `path`; the note says why the file was ignored, if it was.
    pub fn load(path: &Path) -> (History, Option<String>) {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (History::default(), None),
            Err(e) => (
                History::default(),
                Some(format!("history {} not read: {e}", path.display())),
            ),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(h) => (h, None),
                Err(e) => (
                    History::default(),
                    Some(format!(
                        "history {} is corrupt and was ignored ({e})",
                        path.display()
                    )),
                ),
            },
        }
    }

    /// The last settings of the set `key`, checked against its adapter count. `Err` carries a
    /// note when the entry exists but cannot be used.
    pub fn lookup(&self, key: &[PathBuf]) -> Option<Result<MergeSettings, String>> {
        let entry = self.sets.iter().find(|e| e.adapters == key)?;
        Some(
            serde_json::from_value::<MergeSettings>(entry.settings.clone())
                .map_err(|e| format!("saved settings for this set ignored: {e}"))
                .and_then(|s| {
                    s.validate(key.len())
                        .map(|_| s)
                        .map_err(|e| format!("saved settings for this set ignored: {e}"))
                }),
        )
    }

    /// Records `settings` as the latest for `key`, moving the set to the front.
    pub fn remember(&mut self, key: &[PathBuf], settings: &MergeSettings) {
        self.sets.retain(|e| e.adapters != key);
        let last_used = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.sets.insert(
            0,
            Entry {
                adapters: key.to_vec(),
                settings: serde_json::to_value(settings).unwrap_or(serde_json::Value::Null),
                last_used,
            },
        );
        self.sets.truncate(KEEP);
    }

    /// Writes the history to `path` (through a temporary sibling, so a crash cannot leave
    /// half a file).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}
