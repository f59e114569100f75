//! diffusers' LoRA files (`pytorch_lora_weights.safetensors`, what diffusers' training scripts
//! write): PEFT-style factors under a pipeline component (`unet.…lora_A.weight`,
//! `text_encoder.…`), each component's LoRA config in the `lora_adapter_metadata` header entry.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::adapter::{Adapter, AdapterFormat, ModuleKey};
use crate::error::{LegoError, Result};
use crate::io::keys::{classify_peft, PeftKey};
use crate::io::naming::{split_component, Component};
use crate::io::peft::{adapter_name, read_tensors, AlphaRule, PeftConfig, PEFT_PREFIX};
use crate::io::LoadOptions;
use crate::tensor::TensorFile;

/// The header entry diffusers keeps each component's LoRA config in (`unet.r`, `unet.lora_alpha`, …).
pub const ADAPTER_METADATA_KEY: &str = "lora_adapter_metadata";

/// True when the keys are diffusers': LoRA factors under a pipeline component, none under PEFT's
/// `base_model.model.`.
pub fn looks_like_diffusers<'a>(mut keys: impl Iterator<Item = &'a str> + Clone) -> bool {
    let lora = |k: &str| matches!(classify_peft(k), Ok(PeftKey::A { .. } | PeftKey::B { .. }));
    !keys.clone().any(|k| k.starts_with(PEFT_PREFIX))
        && keys.any(|k| lora(k) && split_component(k).is_some())
}

/// The first key of a cloneofsimo `lora_diffusion` file (`unet:0:up`, `text_encoder:3:down`):
/// its keys number the modules instead of naming them.
pub fn cloneofsimo_key<'a>(mut keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    keys.find(|k| {
        let mut parts = k.split(':');
        matches!(
            (parts.next(), parts.next(), parts.next(), parts.next()),
            (Some(name), Some(n), Some("up" | "down"), None)
                if !name.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        )
    })
}

/// Reads a diffusers LoRA file. Module keys keep their component (`unet.down_blocks.0…`).
pub fn read_file(user_path: &Path, file: TensorFile, opts: &LoadOptions) -> Result<Adapter> {
    let path = file.path.clone();
    let configs = component_configs(&file)?;
    let mut parts: BTreeMap<Component, TensorFile> = BTreeMap::new();
    for (name, t) in &file.tensors {
        let (component, inner) = split_component(name).ok_or_else(|| {
            LegoError::unsupported(
                &path,
                name,
                "not under a diffusers pipeline component (expected a key starting `unet.`, `text_encoder.`, `text_encoder_2.` or `transformer.`)",
            )
        })?;
        parts
            .entry(component)
            .or_insert_with(|| TensorFile {
                path: path.clone(),
                tensors: BTreeMap::new(),
                metadata: BTreeMap::new(),
            })
            .tensors
            .insert(format!("{PEFT_PREFIX}{inner}"), t.clone());
    }
    let mut modules = Vec::new();
    let mut extras = Vec::new();
    let mut warnings = Vec::new();
    let mut defaulted = Vec::new();
    for (component, part) in parts {
        let (config, rule) = match configs.get(component.name()) {
            Some(c) => (c.clone(), AlphaRule::Config),
            None => {
                defaulted.push(component.name());
                let bare = serde_json::json!({ "peft_type": "LORA" });
                (PeftConfig::from_value(&path, bare)?, AlphaRule::Rank)
            }
        };
        let read = read_tensors(user_path, part, &config, &path, opts, rule)
            .map_err(|e| renamed(e, component))?;
        let prefix = |k: &str| format!("{}.{k}", component.name());
        for mut m in read.modules {
            m.key = ModuleKey::new(prefix(m.key.as_str()));
            modules.push(m);
        }
        for mut e in read.extras {
            let inner = e.name.strip_prefix(PEFT_PREFIX).unwrap_or(&e.name);
            e.name = prefix(inner);
            extras.push(e);
        }
        warnings.extend(read.warnings);
    }
    if !defaulted.is_empty() {
        warnings.push(format!(
            "{}: no `{ADAPTER_METADATA_KEY}` for {}; taking alpha = rank (scale 1), as diffusers does for a file without alphas",
            path.display(),
            defaulted.join(", ")
        ));
    }
    modules.sort_by(|x, y| x.key.cmp(&y.key));
    Ok(Adapter {
        name: adapter_name(user_path),
        path: user_path.into(),
        weights_file: path,
        format: AdapterFormat::Diffusers,
        config: None,
        base_model: None,
        target_modules: None,
        kohya_prefix: None,
        modules,
        extras,
        metadata: file.metadata,
        warnings,
    })
}

/// `e` with the tensor names the PEFT reader saw (`base_model.model.…`) put back as they are
/// in the file (`unet.…`).
fn renamed(e: LegoError, component: Component) -> LegoError {
    let real = |name: &str| name.replace(PEFT_PREFIX, &format!("{}.", component.name()));
    match e {
        LegoError::Unsupported {
            path,
            tensor,
            reason,
        } => LegoError::Unsupported {
            path,
            tensor: real(&tensor),
            reason: real(&reason),
        },
        LegoError::Shape {
            path,
            tensor,
            reason,
        } => LegoError::Shape {
            path,
            tensor: real(&tensor),
            reason: real(&reason),
        },
        LegoError::NonFinite {
            path,
            tensor,
            count,
        } => LegoError::NonFinite {
            path,
            tensor: real(&tensor),
            count,
        },
        LegoError::Config { path, reason } => LegoError::Config {
            path,
            reason: real(&reason),
        },
        other => other,
    }
}

/// Each component's LoRA config from `lora_adapter_metadata` (`{"unet.r": 4, …}`), by component.
fn component_configs(file: &TensorFile) -> Result<BTreeMap<String, PeftConfig>> {
    let Some(text) = file.metadata.get(ADAPTER_METADATA_KEY) else {
        return Ok(BTreeMap::new());
    };
    let err = |reason: String| LegoError::Config {
        path: file.path.clone(),
        reason: format!("`__metadata__.{ADAPTER_METADATA_KEY}`: {reason}"),
    };
    let packed: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(err("expected a JSON object".into())),
        Err(e) => return Err(err(format!("invalid JSON: {e}"))),
    };
    let mut split: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (key, value) in packed {
        // Component names hold no dot, so the first dot ends the prefix.
        let Some((component, field)) = key.split_once('.') else {
            return Err(err(format!(
                "key `{key}` has no component prefix (expected e.g. `unet.r`)"
            )));
        };
        split
            .entry(component.to_string())
            .or_default()
            .insert(field.to_string(), value);
    }
    split
        .into_iter()
        .map(|(component, mut fields)| {
            fields.insert("peft_type".into(), "LORA".into());
            let config =
                PeftConfig::from_value(&file.path, Value::Object(fields)).map_err(|e| match e {
                    LegoError::Config { reason, .. } => {
                        err(format!("component `{component}`: {reason}"))
                    }
                    other => other,
                })?;
            Ok((component, config))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_their_keys() {
        let diffusers = ["unet.down_blocks.0.attn.to_q.lora_A.weight"];
        assert!(looks_like_diffusers(diffusers.iter().copied()));
        let peft = ["base_model.model.unet.x.lora_A.weight"];
        assert!(!looks_like_diffusers(peft.iter().copied()));
        let gpt2 = ["transformer.h.0.attn.c_attn.lora_A.weight"];
        assert!(!looks_like_diffusers(gpt2.iter().copied()));
        let clone = ["unet:0:down", "unet:0:up"];
        assert_eq!(cloneofsimo_key(clone.iter().copied()), Some("unet:0:down"));
        assert_eq!(cloneofsimo_key(diffusers.iter().copied()), None);
    }
}
