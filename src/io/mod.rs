//! Reading and writing adapter files.

pub mod diffusers;
pub mod factors;
pub mod keys;
pub mod kohya;
pub mod naming;
pub mod peft;
pub mod write;

use std::path::Path;

use crate::adapter::Adapter;
use crate::error::{LegoError, Result};
use crate::tensor::{self, TensorFile, TensorRef};

/// Choices that change what a reader accepts.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Accept NaN/Inf values (with a warning) instead of refusing the adapter.
    pub allow_nonfinite: bool,
}

impl LoadOptions {
    /// Refuses non-finite values (unless allowed) and warns about an all-zero B. The pages it
    /// reads stay mapped until the reader releases the whole file.
    fn check_values(
        &self,
        path: &Path,
        a_name: &str,
        a: &TensorRef,
        b_name: &str,
        b: &TensorRef,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let mut b_zero = false;
        for (name, t) in [(a_name, a), (b_name, b)] {
            let stats = t.value_stats();
            t.check_intact()?;
            b_zero = stats.all_zero;
            let count = stats.nonfinite;
            if count > 0 {
                if !self.allow_nonfinite {
                    return Err(LegoError::NonFinite {
                        path: path.into(),
                        tensor: name.into(),
                        count,
                    });
                }
                warnings.push(format!(
                    "tensor `{name}` holds {count} non-finite value(s); proceeding because non-finite values are allowed"
                ));
            }
        }
        if b_zero {
            warnings.push(format!(
                "tensor `{b_name}` is all zeros: this module is untrained and contributes nothing"
            ));
        }
        Ok(())
    }
}

/// Loads one adapter: a PEFT directory, a PEFT `.safetensors` with its config beside it, or a
/// kohya `.safetensors`.
pub fn load_adapter(path: &Path, opts: &LoadOptions) -> Result<Adapter> {
    let meta = std::fs::metadata(path).map_err(|e| LegoError::io(path, e))?;
    if meta.is_dir() {
        return peft::read_dir(path, opts);
    }
    if !meta.is_file() {
        return Err(LegoError::Config {
            path: path.into(),
            reason: format!(
                "is {}: expected a PEFT directory or a .safetensors file",
                tensor::file_kind(&meta)
            ),
        });
    }
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(LegoError::Config {
            path: path.into(),
            reason: "not an adapter: expected a PEFT directory or a .safetensors file".into(),
        });
    }
    let file = TensorFile::open(path)?;
    let names = file.tensors.keys().map(String::as_str);
    if let Some(key) = diffusers::cloneofsimo_key(names.clone()) {
        return Err(LegoError::unsupported(
            path,
            key,
            "a cloneofsimo `lora_diffusion` file (`unet:N:up` / `unet:N:down` keys) is not supported: its keys number the modules instead of naming them; convert it to diffusers or kohya format first",
        ));
    }
    if keys::looks_like_kohya(names.clone()) {
        kohya::read_file(path, file, opts)
    } else if diffusers::looks_like_diffusers(names) {
        diffusers::read_file(path, file, opts)
    } else {
        peft::read_file(path, file, opts)
    }
}

/// The adapters a folder holds when it is not one itself (an adapter is a subfolder with PEFT
/// files, or a `.safetensors` file), sorted; empty for anything else.
pub fn adapters_inside(dir: &Path) -> Vec<std::path::PathBuf> {
    if !dir.is_dir() || dir.join(peft::WEIGHTS_NAME).exists() {
        return Vec::new();
    }
    sub_adapters(dir)
}

/// The subfolders of `dir` holding a PEFT adapter and its `.safetensors` files, sorted.
fn sub_adapters(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<std::path::PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            if p.is_dir() {
                p.join(peft::WEIGHTS_NAME).is_file()
            } else {
                p.extension().and_then(|e| e.to_str()) == Some("safetensors")
            }
        })
        .collect();
    found.sort();
    found
}

/// Every file read for `adapter`, in hashing order: its PEFT config (a directory's, or the one
/// found beside a bare `.safetensors`), then its weights.
pub fn input_files(adapter: &Adapter) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if adapter.format == crate::adapter::AdapterFormat::Peft {
        files.extend(peft::config_beside(&adapter.weights_file));
    }
    files.push(adapter.weights_file.clone());
    files
}

/// An error naming the first input file that shrank while mapped (reads past its new end saw
/// zeros): checked after a merge, before anything is written.
pub fn check_intact(adapters: &[Adapter]) -> Result<()> {
    for a in adapters {
        let tensors = a.modules.iter().flat_map(|m| [&m.a, &m.b]);
        for t in tensors.chain(a.extras.iter().map(|e| &e.tensor)).take(1) {
            t.check_intact()?;
        }
    }
    Ok(())
}

/// Loads several adapters; an error is the first failing path's, in the order given.
pub fn load_all(paths: &[impl AsRef<Path> + Sync], opts: &LoadOptions) -> Result<Vec<Adapter>> {
    use rayon::prelude::*;
    // In parallel: checking every value is most of a load. The first failing path in the
    // order given is the one reported, as if they were read one by one.
    let loaded: Vec<Result<Adapter>> = paths
        .par_iter()
        .map(|p| load_adapter(p.as_ref(), opts))
        .collect();
    loaded.into_iter().collect()
}

/// Runs untrusted bytes through every parser a loaded file meets: two bytes of config length,
/// a PEFT config (JSON), then a safetensors image read as kohya and as PEFT. It returns
/// nothing: its contract is only that it never panics. The fuzz target and the regression
/// tests of the inputs the fuzzer found call it.
#[doc(hidden)]
pub fn probe_untrusted(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let (len, rest) = data.split_at(2);
    let cut = (u16::from_le_bytes([len[0], len[1]]) as usize).min(rest.len());
    let (config_bytes, file_bytes) = rest.split_at(cut);
    let path = Path::new("untrusted.safetensors");
    let opts = LoadOptions {
        allow_nonfinite: len[0] & 1 == 1,
    };
    let Ok(file) = TensorFile::from_bytes(path, file_bytes.to_vec()) else {
        return;
    };
    let _ = kohya::read_file(path, file.clone(), &opts);
    let config = serde_json::from_slice::<serde_json::Value>(config_bytes)
        .ok()
        .and_then(|v| peft::PeftConfig::from_value(path, v).ok())
        .or_else(|| {
            peft::PeftConfig::from_value(path, serde_json::json!({"peft_type": "LORA"})).ok()
        });
    if let Some(config) = config {
        if let Ok(adapter) = peft::read_with_config(path, file, &config, path, &opts) {
            for m in &adapter.modules {
                let _ = m.delta_norm();
            }
        }
    }
}
