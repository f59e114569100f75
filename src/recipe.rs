//! Recipes: a merge written down — the adapters (with a hash of each) and the settings — as a
//! versioned TOML file that `lora-lego merge --recipe FILE` replays bit for bit.

use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::settings::*;

use crate::adapter::Adapter;
use crate::error::{LegoError, Result};

/// The recipe format this build reads and writes.
pub const RECIPE_VERSION: u32 = 1;
pub use crate::io::write::{RECIPE_FILE, RECIPE_HEADER, RECIPE_METADATA_KEY};

/// One input adapter as a recipe names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeAdapter {
    /// Where it is: relative to the recipe's directory (lora-lego writes it so, with `..` when
    /// the adapter lies outside, so a published recipe carries no home directory); an absolute
    /// path is taken as it is.
    pub path: String,
    /// BLAKE3 of its files (config then weights), to detect a changed input; what this
    /// version writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// sha256 of the same bytes, as recipes of earlier versions recorded it (still checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl RecipeAdapter {
    /// The recorded hash as `algorithm:hex`, for messages and sweep keys.
    pub fn hash_label(&self) -> String {
        match (&self.blake3, &self.sha256) {
            (Some(h), _) => format!("blake3:{h}"),
            (None, Some(h)) => format!("sha256:{h}"),
            (None, None) => "unhashed".into(),
        }
    }
}

/// A whole merge plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Format version (1).
    pub version: u32,
    /// The inputs, in order.
    pub adapters: Vec<RecipeAdapter>,
    /// The settings.
    pub merge: MergeSettings,
    /// How the merge scored, when an evaluator was run on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<crate::eval::EvalRecord>,
    /// The sweep this merge came from, or one to run (`lora-lego sweep --recipe FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<crate::sweep_spec::SweepSpec>,
    /// Where the merge is written when replayed without an output named (relative to the
    /// recipe's directory, like the adapters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl Recipe {
    /// Describes a merge of `adapters` with `settings`, hashing each input.
    pub fn describe(adapters: &[Adapter], settings: &MergeSettings) -> Result<Self> {
        // Inputs hash in parallel; each file's hash is itself multi-threaded.
        let adapters = adapters
            .par_iter()
            .map(|a| {
                let path = std::fs::canonicalize(&a.path).map_err(|e| LegoError::io(&a.path, e))?;
                Ok(RecipeAdapter {
                    path: path.display().to_string(),
                    blake3: Some(adapter_blake3(a)?),
                    sha256: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Recipe {
            version: RECIPE_VERSION,
            adapters,
            merge: settings.clone(),
            eval: None,
            sweep: None,
            output: None,
        })
    }

    /// This recipe as stored in `folder`: every absolute path made relative to it.
    pub fn portable(&self, folder: &Path) -> Recipe {
        let folder = absolute(folder);
        let rel = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                relative_path(&folder, &absolute(p)).display().to_string()
            } else {
                p.display().to_string()
            }
        };
        let mut r = self.clone();
        for a in &mut r.adapters {
            a.path = rel(&a.path);
        }
        r.output = r.output.as_deref().map(rel);
        r
    }

    /// The recorded output, resolved against `recipe_dir`.
    pub fn output_path(&self, recipe_dir: &Path) -> Option<PathBuf> {
        self.output.as_ref().map(|o| recipe_dir.join(o))
    }

    /// The TOML text.
    pub fn to_toml(&self) -> Result<String> {
        // A failure is a value TOML cannot hold; an empty recipe in its place would replay as
        // something else.
        let body = toml::to_string(self).map_err(|e| {
            LegoError::Invalid(format!("the recipe cannot be written as TOML: {e}"))
        })?;
        Ok(format!(
            "{RECIPE_HEADER}: replay with `lora-lego merge --recipe FILE`\n{body}"
        ))
    }

    /// Parses recipe text; errors name the file, the line and the field.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut recipe: Recipe = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().trim().to_string();
            let message = match line.and_then(|l| field_at(text, l)) {
                Some(field) if !message.contains(&format!("`{field}`")) => {
                    format!("`{field}`: {message}")
                }
                _ => message,
            };
            recipe_error(path, line, message)
        })?;
        if recipe.merge.method == MergeMethod::LegoTsv {
            // A preset's fields left out take the preset's values, not the general defaults.
            let given = given_merge_fields(text);
            let given: Vec<&str> = given.iter().map(String::as_str).collect();
            recipe.merge.apply_preset_fields(&given);
        }
        if recipe.version != RECIPE_VERSION {
            return Err(recipe_error(
                path,
                field_line(text, "version"),
                format!(
                    "`version`: unsupported recipe version {} (this lora-lego reads version {RECIPE_VERSION})",
                    recipe.version
                ),
            ));
        }
        if let Some(i) = recipe
            .adapters
            .iter()
            .position(|a| a.blake3.is_none() && a.sha256.is_none())
        {
            return Err(recipe_error(
                path,
                None,
                format!(
                    "`adapters`: adapter {} has no `blake3` (or `sha256`) hash",
                    i + 1
                ),
            ));
        }
        if recipe.adapters.is_empty() {
            return Err(recipe_error(
                path,
                None,
                "`adapters`: the recipe names no adapter".into(),
            ));
        }
        if let Err(e) = recipe.merge.validate(recipe.adapters.len()) {
            return Err(recipe_error(
                path,
                field_line(text, e.field),
                format!("`{}`: {}", e.field, e.message),
            ));
        }
        Ok(recipe)
    }

    /// Reads a recipe file.
    pub fn read(path: &Path) -> Result<Self> {
        let mut text = String::new();
        crate::tensor::open_regular(path)?
            .read_to_string(&mut text)
            .map_err(|e| LegoError::io(path, e))?;
        Self::parse(path, &text)
    }

    /// The adapter paths, relative ones resolved against `recipe_dir`.
    pub fn adapter_paths(&self, recipe_dir: &Path) -> Vec<PathBuf> {
        self.adapters
            .iter()
            .map(|a| {
                let p = PathBuf::from(&a.path);
                if p.is_absolute() {
                    p
                } else {
                    recipe_dir.join(p)
                }
            })
            .collect()
    }

    /// Checks the inputs as they are now (`current`, from [`Recipe::describe`] of `adapters`,
    /// which hashed them with BLAKE3) against the hashes this recipe recorded; a recipe from an
    /// earlier version recorded sha256, so that is recomputed for it.
    pub fn check_inputs(&self, current: &Recipe, adapters: &[Adapter]) -> Result<()> {
        for (i, (want, got)) in self.adapters.iter().zip(&current.adapters).enumerate() {
            let (now, recorded, algorithm) = match (&want.blake3, &want.sha256) {
                (Some(w), _) => (got.blake3.clone().unwrap_or_default(), w, "blake3"),
                (None, Some(w)) => match adapters.get(i) {
                    Some(a) => (adapter_hash(a)?, w, "sha256"),
                    None => continue,
                },
                (None, None) => continue,
            };
            if &now != recorded {
                return Err(LegoError::Invalid(format!(
                    "{}: this adapter changed since the recipe was written ({algorithm} {now}, recipe says {recorded}); pass --allow-changed-inputs to merge it anyway",
                    got.path
                )));
            }
        }
        Ok(())
    }
}

/// `p` made absolute with symbolic links resolved as far as it exists (an output that is not
/// written yet resolves through its parent).
pub fn absolute(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            absolute(parent).join(name)
        }
        _ => std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// The path that leads from the directory `from` to `to` (both absolute): `..` for every
/// component of `from` past their common part, then the rest of `to`.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn recipe_error(path: &Path, line: Option<usize>, message: String) -> LegoError {
    LegoError::Config {
        path: path.into(),
        reason: match line {
            Some(l) => format!("line {l}: {message}"),
            None => message,
        },
    }
}

/// The dotted name (`merge.k`) of the key set on `line` (1-based), if that line sets one.
fn field_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim_start();
    let (key, _) = here.split_once('=').filter(|_| !here.starts_with('['))?;
    let key = key.trim().trim_matches('"');
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// The line (1-based) where `field = …` is set, if it is.
fn field_line(text: &str, field: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// sha256 over every file read for an adapter (see [`crate::io::input_files`]): its PEFT
/// config, wherever it was found, then the weights. What recipes of earlier versions recorded.
pub fn adapter_hash(a: &Adapter) -> Result<String> {
    let mut h = Sha256::new();
    for file in crate::io::input_files(a) {
        h.update(file_label(a, &file));
        hash_file(&mut h, &file)?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// BLAKE3 over the same labelled bytes as [`adapter_hash`], multi-threaded over each file:
/// sha256 ran at ~1 GB/s on one core, a large share of a whole merge.
pub fn adapter_blake3(a: &Adapter) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for file in crate::io::input_files(a) {
        h.update(file_label(a, &file));
        h.update_mmap_rayon(&file)
            .map_err(|e| LegoError::io(&file, e))?;
    }
    Ok(h.finalize().to_hex().to_string())
}

fn file_label(a: &Adapter, file: &Path) -> &'static [u8] {
    if file == a.weights_file {
        b"weights\0".as_slice()
    } else {
        b"config\0".as_slice()
    }
}

fn hash_file(h: &mut Sha256, path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| LegoError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| LegoError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// The keys written in a recipe's `[merge]` table.
fn given_merge_fields(text: &str) -> Vec<String> {
    text.parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("merge").and_then(|m| m.as_table()).cloned())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_out_with_dot_dot() {
        let r = |a: &str, b: &str| relative_path(Path::new(a), Path::new(b));
        assert_eq!(r("/h/u/out", "/h/u/out/x"), PathBuf::from("x"));
        assert_eq!(r("/h/u/out", "/h/u/ad/sort"), PathBuf::from("../ad/sort"));
        assert_eq!(r("/h/u", "/h/u"), PathBuf::from("."));
        assert_eq!(r("/a/b/c", "/x"), PathBuf::from("../../../x"));
    }
}
