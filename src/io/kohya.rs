//! Reading kohya / sd-scripts LoRA files (`lora_down` = A, `lora_up` = B, `alpha`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::adapter::{Adapter, AdapterFormat, ExtraTensor, LoraModule, ModuleKey};
use crate::error::{LegoError, Result};
use crate::io::factors::factor_shapes;
use crate::io::keys::{classify_kohya, split_kohya_stem, KohyaKey};
use crate::io::peft::adapter_name;
use crate::io::LoadOptions;
use crate::tensor::{TensorFile, TensorRef};

#[derive(Default)]
struct Parts<'a> {
    down: Option<(&'a str, &'a TensorRef)>,
    up: Option<(&'a str, &'a TensorRef)>,
    alpha: Option<(&'a str, &'a TensorRef)>,
}

/// Reads a kohya file. Module keys are kohya's stems (`lora_te_model_layers_0_…`); alignment
/// maps them onto PEFT paths when a PEFT adapter names the same module.
pub fn read_file(user_path: &Path, file: TensorFile, opts: &LoadOptions) -> Result<Adapter> {
    let path = file.path.clone();
    let mut parts: BTreeMap<&str, Parts> = BTreeMap::new();
    let mut extras = Vec::new();
    for (name, t) in &file.tensors {
        let kind =
            classify_kohya(name).map_err(|reason| LegoError::unsupported(&path, name, reason))?;
        match kind {
            KohyaKey::Down(s) => parts.entry(s).or_default().down = Some((name, t)),
            KohyaKey::Up(s) => parts.entry(s).or_default().up = Some((name, t)),
            KohyaKey::Alpha(s) => parts.entry(s).or_default().alpha = Some((name, t)),
            KohyaKey::Extra => extras.push(ExtraTensor {
                name: name.clone(),
                tensor: t.clone(),
            }),
        }
    }
    let mut warnings = Vec::new();
    let mut modules = Vec::new();
    let mut defaulted_alpha = 0usize;
    for (stem, p) in &parts {
        let (a_name, a) = match p.down {
            Some(d) => d,
            None => {
                let have = p.up.or(p.alpha).map(|x| x.0).unwrap_or(stem);
                return Err(LegoError::unpaired(&path, have, "lora_down.weight"));
            }
        };
        let (b_name, b) =
            p.up.ok_or_else(|| LegoError::unpaired(&path, a_name, "lora_up.weight"))?;
        let (kind, rank, d_in, d_out) = factor_shapes(&path, a_name, a, b_name, b, false)?;
        let alpha = match p.alpha {
            Some((alpha_name, t)) => {
                let v = t.to_f32_vec();
                match v.as_slice() {
                    [x] if x.is_finite() => f64::from(*x),
                    _ => {
                        return Err(LegoError::Shape {
                            path: path.clone(),
                            tensor: alpha_name.to_string(),
                            reason: format!(
                                "alpha must be one finite number, got shape {:?}",
                                t.shape()
                            ),
                        })
                    }
                }
            }
            None => {
                defaulted_alpha += 1;
                rank as f64
            }
        };
        let module = LoraModule {
            key: ModuleKey::new(*stem),
            kind,
            a: a.clone(),
            b: b.clone(),
            rank,
            d_in,
            d_out,
            alpha,
            scale: alpha / rank as f64,
        };
        opts.check_values(&path, a_name, &module.a, b_name, &module.b, &mut warnings)?;
        modules.push(module);
    }
    if defaulted_alpha > 0 {
        warnings.push(format!(
            "{}: {defaulted_alpha} module(s) have no `.alpha`; using kohya's default alpha = rank (scale 1)",
            path.display()
        ));
    }
    if modules.is_empty() {
        return Err(LegoError::Config {
            path: path.clone(),
            reason: "no LoRA tensors (`*.lora_down.weight` / `*.lora_up.weight`) in this file"
                .into(),
        });
    }
    file.release_pages();
    modules.sort_by(|x, y| x.key.cmp(&y.key));
    let kohya_prefix = modules
        .first()
        .map(|m| split_kohya_stem(m.key.as_str()).0.to_string());
    Ok(Adapter {
        name: adapter_name(user_path),
        path: user_path.into(),
        weights_file: path,
        format: AdapterFormat::Kohya,
        config: None,
        base_model: file.metadata.get("ss_sd_model_name").cloned(),
        target_modules: None,
        kohya_prefix,
        modules,
        extras,
        metadata: file.metadata,
        warnings,
    })
}
