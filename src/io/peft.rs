//! Reading PEFT adapters (directory or bare safetensors beside its config).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::{Map, Value};

use crate::adapter::{Adapter, AdapterFormat, ExtraTensor, LoraModule, ModuleKey};
use crate::error::{LegoError, Result};
use crate::io::factors::factor_shapes;
use crate::io::keys::{classify_peft, PeftKey};
use crate::io::LoadOptions;
use crate::tensor::{TensorFile, TensorRef};

/// PEFT's key prefix in saved adapters (`PeftModel.base_model.model`).
pub const PEFT_PREFIX: &str = "base_model.model.";
/// PEFT's config file name.
pub const CONFIG_NAME: &str = "adapter_config.json";
/// PEFT's weights file name.
pub const WEIGHTS_NAME: &str = "adapter_model.safetensors";

/// The fields of `adapter_config.json` that decide how tensors are read.
#[derive(Debug, Clone)]
pub struct PeftConfig {
    /// The whole JSON object.
    pub raw: Map<String, Value>,
    /// `r`, if present.
    pub r: Option<usize>,
    /// `lora_alpha`, if present.
    pub lora_alpha: Option<f64>,
    /// `use_rslora`.
    pub use_rslora: bool,
    /// `rank_pattern`, in file order.
    pub rank_pattern: Vec<(String, usize)>,
    /// `alpha_pattern`, in file order.
    pub alpha_pattern: Vec<(String, f64)>,
}

impl PeftConfig {
    /// Parses and checks a config file.
    pub fn read(path: &Path) -> Result<Self> {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut crate::tensor::open_regular(path)?, &mut text)
            .map_err(|e| LegoError::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| LegoError::Config {
            path: path.into(),
            reason: format!("invalid JSON: {e}"),
        })?;
        Self::from_value(path, value)
    }

    /// Checks an already-parsed config.
    pub fn from_value(path: &Path, value: Value) -> Result<Self> {
        let err = |reason: String| LegoError::Config {
            path: path.into(),
            reason,
        };
        let Value::Object(raw) = value else {
            return Err(err("expected a JSON object".into()));
        };
        match raw.get("peft_type") {
            Some(Value::String(t)) if t == "LORA" => {}
            Some(Value::String(t)) => {
                return Err(err(format!(
                    "peft_type is \"{t}\"; only LoRA adapters (\"LORA\") can be merged"
                )))
            }
            Some(other) => return Err(err(format!("peft_type must be a string, got {other}"))),
            None => return Err(err("peft_type is missing; expected \"LORA\"".into())),
        }
        if raw.get("use_dora") == Some(&Value::Bool(true)) {
            return Err(err(
                "use_dora is true: DoRA adapters are not supported (their magnitude vector cannot be merged unit by unit)".into(),
            ));
        }
        let r = match raw.get("r") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                positive_int(v)
                    .ok_or_else(|| err(format!("r must be a positive integer, got {v}")))?,
            ),
        };
        let lora_alpha = match raw.get("lora_alpha") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                finite_number(v)
                    .ok_or_else(|| err(format!("lora_alpha must be a number, got {v}")))?,
            ),
        };
        let use_rslora = match raw.get("use_rslora") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(err(format!("use_rslora must be true or false, got {v}"))),
        };
        let rank_pattern = pattern(&raw, "rank_pattern", positive_int).map_err(err)?;
        let alpha_pattern = pattern(&raw, "alpha_pattern", finite_number).map_err(err)?;
        Ok(PeftConfig {
            raw,
            r,
            lora_alpha,
            use_rslora,
            rank_pattern,
            alpha_pattern,
        })
    }
}

fn positive_int(v: &Value) -> Option<usize> {
    v.as_u64().filter(|n| *n > 0).map(|n| n as usize)
}

fn finite_number(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn pattern<T>(
    raw: &Map<String, Value>,
    field: &str,
    parse: fn(&Value) -> Option<T>,
) -> std::result::Result<Vec<(String, T)>, String> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                parse(v)
                    .map(|x| (k.clone(), x))
                    .ok_or_else(|| format!("{field}[\"{k}\"] has an invalid value {v}"))
            })
            .collect(),
        Some(v) => Err(format!("{field} must be an object, got {v}")),
    }
}

/// PEFT's pattern rule (`get_pattern_key`): the first key `k` in file order such that the module
/// path matches `(.*\.)?(k)$`, `k` being a regular expression.
pub fn match_pattern<'a, T>(patterns: &'a [(String, T)], module: &str) -> Option<&'a (String, T)> {
    patterns.iter().find(|(k, _)| {
        match Regex::new(&format!(r"^(.*\.)?({k})$")) {
            Ok(re) => re.is_match(module),
            // A key Rust's regex cannot compile still matches literally, as a suffix.
            Err(_) => module == k || module.ends_with(&format!(".{k}")),
        }
    })
}

/// Finds the config for a bare PEFT `.safetensors` file: `adapter_config.json` beside it, or
/// `<stem>.json` / `<stem>_config.json`.
pub fn config_beside(weights: &Path) -> Option<PathBuf> {
    let dir = weights.parent().unwrap_or(Path::new("."));
    let stem = weights.file_stem()?.to_string_lossy().to_string();
    [
        dir.join(CONFIG_NAME),
        dir.join(format!("{stem}.json")),
        dir.join(format!("{stem}_config.json")),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Reads a PEFT adapter from a directory.
pub fn read_dir(dir: &Path, opts: &LoadOptions) -> Result<Adapter> {
    let weights = dir.join(WEIGHTS_NAME);
    let config = dir.join(CONFIG_NAME);
    // `exists`, not `is_file`: a FIFO or directory of that name is refused by name when opened.
    if !weights.exists() {
        let inside = super::adapters_inside(dir);
        let reason = if !inside.is_empty() {
            let names: Vec<String> = inside.iter().map(|p| p.display().to_string()).collect();
            format!(
                "not an adapter but a folder of {} adapters: {}; name the ones to use",
                inside.len(),
                names.join(", ")
            )
        } else if dir.join("adapter_model.bin").is_file() {
            "holds adapter_model.bin (a pickle); only safetensors adapters are read — convert it with PEFT's save_pretrained(safe_serialization=True)".to_string()
        } else {
            format!("no {WEIGHTS_NAME} in this directory: not a PEFT adapter directory")
        };
        return Err(LegoError::Config {
            path: dir.into(),
            reason,
        });
    }
    if !config.exists() {
        return Err(LegoError::Config {
            path: dir.into(),
            reason: format!("has {WEIGHTS_NAME} but no {CONFIG_NAME}"),
        });
    }
    let file = TensorFile::open(&weights)?;
    let mut adapter = read_with_config(dir, file, &PeftConfig::read(&config)?, &config, opts)?;
    let more: Vec<String> = super::sub_adapters(dir)
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    if !more.is_empty() {
        adapter.warnings.push(format!(
            "{}: also holds adapters in subfolders ({}), PEFT's layout for several adapters; only the one at the top is read, name the others to use them",
            dir.display(),
            more.join(", ")
        ));
    }
    Ok(adapter)
}

/// Reads a bare PEFT `.safetensors` whose config sits beside it.
pub fn read_file(weights: &Path, file: TensorFile, opts: &LoadOptions) -> Result<Adapter> {
    let config = config_beside(weights).ok_or_else(|| LegoError::Config {
        path: weights.into(),
        reason: format!(
            "PEFT-style tensors but no config: put {CONFIG_NAME} (or <name>.json) beside the file"
        ),
    })?;
    read_with_config(weights, file, &PeftConfig::read(&config)?, &config, opts)
}

/// The two factors of one module as found in the file, either possibly missing.
struct Pair<'a> {
    a: Option<(&'a str, &'a TensorRef)>,
    b: Option<(&'a str, &'a TensorRef)>,
    embedding: bool,
}

impl Pair<'_> {
    fn new(embedding: bool) -> Self {
        Pair {
            a: None,
            b: None,
            embedding,
        }
    }
}

/// Builds an adapter from parsed tensors and a parsed config (`config_path` names it in
/// messages). The readers above and the loader's fuzz target come through here.
pub fn read_with_config(
    user_path: &Path,
    file: TensorFile,
    config: &PeftConfig,
    config_path: &Path,
    opts: &LoadOptions,
) -> Result<Adapter> {
    read_tensors(
        user_path,
        file,
        config,
        config_path,
        opts,
        AlphaRule::Config,
    )
}

/// Where a module's alpha comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlphaRule {
    /// The config (`lora_alpha`, `alpha_pattern`), PEFT's default 8 when it has none.
    Config,
    /// α = r for every module (scale 1): a diffusers file without adapter metadata.
    Rank,
}

/// [`read_with_config`] with the alpha rule chosen by the caller (the diffusers reader).
pub fn read_tensors(
    user_path: &Path,
    file: TensorFile,
    config: &PeftConfig,
    config_path: &Path,
    opts: &LoadOptions,
    alpha_rule: AlphaRule,
) -> Result<Adapter> {
    let path = file.path.clone();
    let mut warnings = Vec::new();
    let mut halves: BTreeMap<&str, Pair> = BTreeMap::new();
    let mut extras = Vec::new();
    for (name, t) in &file.tensors {
        let kind =
            classify_peft(name).map_err(|reason| LegoError::unsupported(&path, name, reason))?;
        match kind {
            PeftKey::A { stem, embedding } => {
                let e = halves.entry(stem).or_insert(Pair::new(embedding));
                e.a = Some((name, t));
            }
            PeftKey::B { stem, embedding } => {
                let e = halves.entry(stem).or_insert(Pair::new(embedding));
                e.b = Some((name, t));
            }
            PeftKey::Extra => extras.push(ExtraTensor {
                name: name.clone(),
                tensor: t.clone(),
            }),
        }
    }
    if config.r.is_none() && alpha_rule == AlphaRule::Config {
        warnings.push(format!(
            "{}: `r` is missing; using each module's rank from its lora_A shape",
            config_path.display()
        ));
    }
    let alpha_default = config.lora_alpha.unwrap_or_else(|| {
        if alpha_rule == AlphaRule::Rank {
            // Replaced by each module's rank below.
            return 0.0;
        }
        warnings.push(format!(
            "{}: `lora_alpha` is missing; assuming PEFT's default of 8",
            config_path.display()
        ));
        8.0
    });
    let mut modules = Vec::new();
    for (stem, Pair { a, b, embedding }) in halves {
        let (a_name, a) =
            a.ok_or_else(|| LegoError::unpaired(&path, b.map(|x| x.0).unwrap_or(stem), "lora_A"))?;
        let (b_name, b) = b.ok_or_else(|| LegoError::unpaired(&path, a_name, "lora_B"))?;
        let (kind, rank, d_in, d_out) = factor_shapes(&path, a_name, a, b_name, b, embedding)?;
        let module_path = stem.strip_prefix(PEFT_PREFIX).unwrap_or(stem);
        let r_cfg = match match_pattern(&config.rank_pattern, module_path) {
            Some((k, r)) => Some((*r, format!("rank_pattern[\"{k}\"]"))),
            None => config.r.map(|r| (r, "r".to_string())),
        };
        let r_eff = match r_cfg {
            Some((r, source)) if r != rank => {
                return Err(LegoError::Config {
                    path: config_path.into(),
                    reason: format!(
                        "{source} = {r} for module `{module_path}`, but its lora_A `{a_name}` has {rank} rows"
                    ),
                })
            }
            _ => rank,
        };
        let alpha = match alpha_rule {
            AlphaRule::Rank => rank as f64,
            AlphaRule::Config => match_pattern(&config.alpha_pattern, module_path)
                .map(|(_, a)| *a)
                .unwrap_or(alpha_default),
        };
        let scale = if config.use_rslora {
            alpha / (r_eff as f64).sqrt()
        } else {
            alpha / r_eff as f64
        };
        let module = LoraModule {
            key: ModuleKey::new(module_path),
            kind,
            a: a.clone(),
            b: b.clone(),
            rank,
            d_in,
            d_out,
            alpha,
            scale,
        };
        opts.check_values(&path, a_name, &module.a, b_name, &module.b, &mut warnings)?;
        modules.push(module);
    }
    if modules.is_empty() {
        return Err(LegoError::Config {
            path: path.clone(),
            reason: "no LoRA tensors (`*.lora_A.weight` / `*.lora_B.weight`) in this file".into(),
        });
    }
    file.release_pages();
    modules.sort_by(|x, y| x.key.cmp(&y.key));
    let base_model = config
        .raw
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .map(str::to_string);
    let target_modules = config.raw.get("target_modules").cloned();
    Ok(Adapter {
        name: adapter_name(user_path),
        path: user_path.into(),
        weights_file: path,
        format: AdapterFormat::Peft,
        config: Some(config.raw.clone()),
        base_model,
        target_modules,
        kohya_prefix: None,
        modules,
        extras,
        metadata: file.metadata,
        warnings,
    })
}

/// A short display name: the directory name, or the file stem.
pub fn adapter_name(path: &Path) -> String {
    let p = if path.is_file() {
        path.file_stem()
    } else {
        path.file_name()
    };
    p.map(|s| s.to_string_lossy().to_string())
        .filter(|s| !s.is_empty() && s != ".")
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_suffix_after_a_dot_and_whole_paths() {
        let p = vec![
            ("q_proj".to_string(), 4usize),
            ("layers.1.mlp.up_proj".to_string(), 2),
        ];
        assert_eq!(
            match_pattern(&p, "model.layers.0.self_attn.q_proj").map(|x| x.1),
            Some(4)
        );
        assert_eq!(
            match_pattern(&p, "model.layers.1.mlp.up_proj").map(|x| x.1),
            Some(2)
        );
        assert_eq!(
            match_pattern(&p, "model.layers.11.mlp.up_proj").map(|x| x.1),
            None
        );
        // `xq_proj` does not end in `.q_proj`.
        assert_eq!(match_pattern(&p, "model.xq_proj").map(|x| x.1), None);
        assert_eq!(match_pattern(&p, "q_proj").map(|x| x.1), Some(4));
    }
}
