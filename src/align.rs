//! Aligning adapters: which adapters contribute to each module, and whether they agree on it.

use std::collections::BTreeMap;

use crate::adapter::{Adapter, AdapterFormat, LoraKind, LoraModule, ModuleKey};
use crate::error::{LegoError, Result};
use crate::io::keys::split_kohya_stem;
use crate::io::naming::{component_of, Component};
use crate::io::write::ModuleNames;

/// One module across all adapters.
#[derive(Debug, Clone)]
pub struct AlignedModule {
    /// The module's display key (the PEFT path when any source is PEFT).
    pub key: ModuleKey,
    /// How it is named on output.
    pub names: ModuleNames,
    /// Layer kind, shared by every source.
    pub kind: LoraKind,
    /// Input width (flattened).
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// `(adapter index, module index within that adapter)` for each contributing adapter, in
    /// adapter order.
    pub sources: Vec<(usize, usize)>,
}

/// Adapters plus their module alignment.
#[derive(Debug, Clone)]
pub struct ModuleSet {
    /// The adapters, in the order given.
    pub adapters: Vec<Adapter>,
    /// Every module any adapter adapts, in natural order.
    pub modules: Vec<AlignedModule>,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

impl ModuleSet {
    /// Aligns `adapters` by module. Modules missing from some adapters are fine (those adapters
    /// contribute zero there); conflicting shapes are an error.
    pub fn new(adapters: Vec<Adapter>) -> Result<Self> {
        if adapters.is_empty() {
            return Err(LegoError::Invalid("no adapters given".into()));
        }
        let ids = alignment_ids(&adapters);
        let mut by_id: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for (ai, adapter) in adapters.iter().enumerate() {
            for (mi, _) in adapter.modules.iter().enumerate() {
                by_id.entry(ids[ai][mi].clone()).or_default().push((ai, mi));
            }
        }
        let mut modules = Vec::with_capacity(by_id.len());
        for sources in by_id.into_values() {
            modules.push(aligned(&adapters, sources)?);
        }
        modules.sort_by(|a, b| a.key.cmp(&b.key));
        if adapters.len() > 1 && modules.iter().all(|m| m.sources.len() == 1) {
            let names: Vec<&str> = adapters.iter().map(|a| a.name.as_str()).collect();
            return Err(LegoError::Invalid(format!(
                "adapters {} have no module in common (e.g. `{}` is only in `{}`): they do not adapt the same model, or name its modules differently",
                names.join(", "),
                modules[0].key,
                adapters[modules[0].sources[0].0].name
            )));
        }
        let warnings = base_model_warnings(&adapters);
        Ok(ModuleSet {
            adapters,
            modules,
            warnings,
        })
    }

    /// The LoRA module of source `(adapter, index)`.
    pub fn source(&self, (ai, mi): (usize, usize)) -> &LoraModule {
        &self.adapters[ai].modules[mi]
    }

    /// Finds a module by key.
    pub fn find(&self, key: &ModuleKey) -> Option<&AlignedModule> {
        self.modules.iter().find(|m| &m.key == key)
    }
}

/// The identity used to match modules across adapters: PEFT paths flattened to kohya's
/// underscore form, kohya stems without their prefix. Where one kohya file holds the same
/// flattened name under two prefixes (SDXL's two text encoders) the prefix is kept, since the
/// name alone is then ambiguous.
fn alignment_ids(adapters: &[Adapter]) -> Vec<Vec<String>> {
    adapters
        .iter()
        .map(|a| {
            let flat: Vec<(String, String)> = a
                .modules
                .iter()
                .map(|m| match a.format {
                    AdapterFormat::Peft => (String::new(), m.key.flat()),
                    AdapterFormat::Kohya => {
                        let (p, rest) = split_kohya_stem(m.key.as_str());
                        (p.to_string(), rest.to_string())
                    }
                    // Keyed like kohya (component as prefix) so both line up module by module.
                    AdapterFormat::Diffusers => {
                        let (c, inner) = component_of(m.key.as_str());
                        let prefix = c.kohya_prefix(two_text_encoders(a));
                        (prefix.as_str().to_string(), inner.replace('.', "_"))
                    }
                })
                .collect();
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, rest) in &flat {
                *seen.entry(rest.as_str()).or_default() += 1;
            }
            flat.iter()
                .map(|(p, rest)| {
                    if seen[rest.as_str()] > 1 {
                        format!("{p}{rest}")
                    } else {
                        rest.clone()
                    }
                })
                .collect()
        })
        .collect()
}

fn aligned(adapters: &[Adapter], sources: Vec<(usize, usize)>) -> Result<AlignedModule> {
    let module = |(ai, mi): (usize, usize)| &adapters[ai].modules[mi];
    let first = module(sources[0]);
    let peft = sources
        .iter()
        .find(|(ai, _)| adapters[*ai].format.has_dotted_paths())
        .copied();
    let kohya = sources
        .iter()
        .find(|(ai, _)| adapters[*ai].format == AdapterFormat::Kohya)
        .copied();
    let names = match (peft, kohya) {
        (Some(p), Some(k)) => ModuleNames {
            peft: Some(module(p).key.as_str().to_string()),
            kohya: module(k).key.as_str().to_string(),
        },
        (Some(p), None) => ModuleNames::from_peft(&module(p).key, None),
        (None, _) => ModuleNames::from_kohya(&first.key),
    };
    let key = match &names.peft {
        Some(p) => ModuleKey::new(p.clone()),
        None => first.key.clone(),
    };
    for &s in &sources[1..] {
        let m = module(s);
        if m.d_in != first.d_in || m.d_out != first.d_out || m.kind != first.kind {
            return Err(LegoError::Module {
                module: key.to_string(),
                reason: format!(
                    "adapter `{}` has lora_A {:?} / lora_B {:?} but adapter `{}` has lora_A {:?} / lora_B {:?}: the adapters were not trained on the same base model",
                    adapters[sources[0].0].name,
                    first.a.shape(),
                    first.b.shape(),
                    adapters[s.0].name,
                    m.a.shape(),
                    m.b.shape()
                ),
            });
        }
    }
    Ok(AlignedModule {
        key,
        names,
        kind: first.kind.clone(),
        d_in: first.d_in,
        d_out: first.d_out,
        sources,
    })
}

fn base_model_warnings(adapters: &[Adapter]) -> Vec<String> {
    let named: Vec<(&str, &str)> = adapters
        .iter()
        .filter_map(|a| a.base_model.as_deref().map(|b| (a.name.as_str(), b)))
        .collect();
    let Some((first_name, first_base)) = named.first() else {
        return Vec::new();
    };
    named
        .iter()
        .filter(|(_, b)| b != first_base)
        .map(|(n, b)| {
            format!(
                "adapter `{n}` was trained on base model `{b}` but `{first_name}` on `{first_base}`: merging adapters of different base models is rarely meaningful"
            )
        })
        .collect()
}

/// Whether `a` adapts both of SDXL's text encoders (kohya then says `lora_te1_`, not `lora_te_`).
pub fn two_text_encoders(a: &Adapter) -> bool {
    a.modules
        .iter()
        .any(|m| component_of(m.key.as_str()).0 == Component::TextEncoder2)
}
