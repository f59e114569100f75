//! Writing adapters: PEFT directories exactly as `save_pretrained` lays them out, and kohya
//! files. Every write goes to a temporary path beside the target and is renamed into place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value};

use crate::adapter::{Adapter, AdapterFormat, ExtraTensor, LoraKind, ModuleKey};
use crate::error::{LegoError, Result};
use crate::io::diffusers::ADAPTER_METADATA_KEY;
use crate::io::naming::{component_of, kohya_stem, KohyaPrefix};
use crate::io::peft::{CONFIG_NAME, PEFT_PREFIX, WEIGHTS_NAME};
use crate::tensor::{write_safetensors, TensorRef};

// The names of what an export holds live here, beside the writer that must recognise them in
// a previous export; `recipe` and `card` re-export them.

/// The recipe's name beside an exported PEFT adapter (and its safetensors metadata key).
pub const RECIPE_FILE: &str = "lora_lego_recipe.toml";
/// The first line of every recipe lora-lego writes (how `--force` recognises one of ours).
pub const RECIPE_HEADER: &str = "# lora-lego merge recipe";
/// The safetensors metadata key holding the recipe.
pub const RECIPE_METADATA_KEY: &str = "lora_lego_recipe";

/// The model card's file name (inside a PEFT directory; `NAME.README.md` beside a single file).
/// Here, not in `card`, because the writer must recognise it in a previous export.
pub const CARD_FILE: &str = "README.md";

/// The tag that marks a model card as ours (what `--force` may replace).
pub const CARD_TAG: &str = "- lora-lego\n";

/// How one module is named in each output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleNames {
    /// The PEFT module path, when known (kohya's flattened names cannot be inverted).
    pub peft: Option<String>,
    /// The kohya stem (`lora_te_model_layers_0_self_attn_q_proj`).
    pub kohya: String,
}

impl ModuleNames {
    /// Names for a module read from a PEFT adapter or a diffusers file; the kohya prefix is
    /// `kohya_prefix` when given, else chosen from the path (UNet blocks → `lora_unet_`, …).
    pub fn from_peft(path: &ModuleKey, kohya_prefix: Option<KohyaPrefix>) -> Self {
        ModuleNames {
            peft: Some(path.as_str().to_string()),
            kohya: kohya_stem(path.as_str(), kohya_prefix, false),
        }
    }

    /// Names for a module read from a kohya file.
    pub fn from_kohya(stem: &ModuleKey) -> Self {
        ModuleNames {
            peft: None,
            kohya: stem.as_str().to_string(),
        }
    }
}

/// One module to write: stored-shape factors with the rank and alpha they are meant with.
#[derive(Debug, Clone)]
pub struct OutModule {
    /// Its names.
    pub names: ModuleNames,
    /// Layer kind (decides key names and shapes).
    pub kind: LoraKind,
    /// A, in its stored shape.
    pub a: TensorRef,
    /// B, in its stored shape.
    pub b: TensorRef,
    /// Rank.
    pub rank: usize,
    /// Alpha (PEFT's; the kohya writer converts).
    pub alpha: f64,
}

/// A whole adapter to write.
#[derive(Debug, Clone, Default)]
pub struct AdapterOut {
    /// LoRA modules.
    pub modules: Vec<OutModule>,
    /// Non-LoRA tensors kept in the output.
    pub extras: Vec<ExtraTensor>,
    /// Whether `scale = alpha / √r` (only round trips keep this true).
    pub use_rslora: bool,
    /// The config to start from (the first PEFT source's), if any.
    pub config_template: Option<Map<String, Value>>,
    /// `target_modules` to write.
    pub target_modules: Option<Value>,
    /// `modules_to_save` to write.
    pub modules_to_save: Option<Vec<String>>,
    /// Extra safetensors header metadata.
    pub metadata: BTreeMap<String, String>,
    /// Extra files to place in the output directory (name, contents), e.g. the recipe.
    pub side_files: Vec<(String, String)>,
}

impl AdapterOut {
    /// The adapter as it was read, for a lossless round trip.
    pub fn from_adapter(adapter: &Adapter) -> Self {
        let modules = adapter
            .modules
            .iter()
            .map(|m| OutModule {
                names: match adapter.format {
                    AdapterFormat::Peft | AdapterFormat::Diffusers => {
                        ModuleNames::from_peft(&m.key, None)
                    }
                    AdapterFormat::Kohya => ModuleNames::from_kohya(&m.key),
                },
                kind: m.kind.clone(),
                a: m.a.clone(),
                b: m.b.clone(),
                rank: m.rank,
                // kohya has no rsLoRA, so its alpha already is scale · r.
                alpha: m.alpha,
            })
            .collect();
        let cfg = adapter.config.as_ref();
        AdapterOut {
            modules,
            extras: adapter.extras.clone(),
            use_rslora: cfg
                .and_then(|c| c.get("use_rslora"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            config_template: adapter.config.clone(),
            target_modules: adapter.target_modules.clone(),
            modules_to_save: cfg
                .and_then(|c| c.get("modules_to_save"))
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
            metadata: BTreeMap::new(),
            side_files: Vec::new(),
        }
    }

    /// Bytes of every tensor to write (factors and kept heads), the file's size less its header.
    pub fn tensor_bytes(&self) -> usize {
        let factors: usize = self
            .modules
            .iter()
            .map(|m| m.a.bytes().len() + m.b.bytes().len())
            .sum();
        factors
            + self
                .extras
                .iter()
                .map(|e| e.tensor.bytes().len())
                .sum::<usize>()
    }

    /// The scale each module's alpha implies.
    fn scale(&self, m: &OutModule) -> f64 {
        if self.use_rslora {
            m.alpha / (m.rank as f64).sqrt()
        } else {
            m.alpha / m.rank as f64
        }
    }
}

/// Writes `out` in `format` to `target` (a directory for PEFT, a file for kohya).
pub fn write_adapter(
    out: &AdapterOut,
    format: AdapterFormat,
    target: &Path,
    force: bool,
) -> Result<()> {
    match format {
        AdapterFormat::Peft => write_peft(out, target, force),
        AdapterFormat::Kohya => write_kohya(out, target, force),
        AdapterFormat::Diffusers => write_diffusers(out, target, force),
    }
}

/// Writes a PEFT adapter directory.
pub fn write_peft(out: &AdapterOut, dir: &Path, force: bool) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for m in &out.modules {
        let path = m.names.peft.as_deref().ok_or_else(|| {
            LegoError::Invalid(format!(
                "module `{}` came only from kohya files, whose flattened names cannot be turned back into PEFT module paths; write with --format kohya",
                m.names.kohya
            ))
        })?;
        insert_peft_factors(&mut tensors, &format!("{PEFT_PREFIX}{path}"), m);
    }
    insert_extras(&mut tensors, &out.extras)?;
    let mut metadata = out.metadata.clone();
    metadata.insert("format".into(), "pt".into());
    let config = peft_config(out)?;
    let config_text = to_python_json(&config);
    atomic_dir(dir, force, |tmp| {
        write_safetensors(&tmp.join(WEIGHTS_NAME), &tensors, &metadata)?;
        write_text(&tmp.join(CONFIG_NAME), &config_text)?;
        for (name, text) in &out.side_files {
            write_text(&tmp.join(name), text)?;
        }
        Ok(())
    })
}

/// Inserts `m`'s factors under PEFT's names: `<stem>.lora_A.weight` (`lora_embedding_A` for
/// an embedding) and B.
fn insert_peft_factors(tensors: &mut BTreeMap<String, TensorRef>, stem: &str, m: &OutModule) {
    let (a_key, b_key) = match m.kind {
        LoraKind::Embedding => ("lora_embedding_A", "lora_embedding_B"),
        _ => ("lora_A.weight", "lora_B.weight"),
    };
    tensors.insert(format!("{stem}.{a_key}"), m.a.clone());
    tensors.insert(format!("{stem}.{b_key}"), m.b.clone());
}

fn insert_extras(tensors: &mut BTreeMap<String, TensorRef>, extras: &[ExtraTensor]) -> Result<()> {
    for e in extras {
        if tensors.insert(e.name.clone(), e.tensor.clone()).is_some() {
            return Err(LegoError::Invalid(format!(
                "non-LoRA tensor `{}` collides with a LoRA tensor name",
                e.name
            )));
        }
    }
    Ok(())
}

/// The most common value (ties → the first in sorted order).
fn mode<T: Ord + Clone>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts.into_iter().find(|(_, c)| *c == best).map(|(v, _)| v)
}

/// A JSON number that is an integer when the value is integral, as Python writes it.
fn json_number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// The `adapter_config.json` for `out`: the template with what the tensors decide overwritten.
fn peft_config(out: &AdapterOut) -> Result<Map<String, Value>> {
    let mut cfg = out.config_template.clone().unwrap_or_else(minimal_config);
    let r = mode(out.modules.iter().map(|m| m.rank)).unwrap_or(0);
    // f64 is not Ord: compare alphas by their bits, which is exact for identical values.
    let alpha = mode(out.modules.iter().map(|m| m.alpha.to_bits()))
        .map(f64::from_bits)
        .unwrap_or(r as f64);
    let mut rank_pattern = Map::new();
    let mut alpha_pattern = Map::new();
    for m in &out.modules {
        let path = m.names.peft.clone().ok_or_else(|| LegoError::Module {
            module: m.names.kohya.clone(),
            reason: "no PEFT module path is known for it (kohya names cannot be inverted), so it cannot be named in a PEFT config".into(),
        })?;
        if m.rank != r {
            rank_pattern.insert(path.clone(), Value::from(m.rank));
        }
        if m.alpha != alpha {
            alpha_pattern.insert(path, json_number(m.alpha));
        }
    }
    cfg.insert("peft_type".into(), "LORA".into());
    cfg.insert("r".into(), Value::from(r));
    cfg.insert("lora_alpha".into(), json_number(alpha));
    cfg.insert("rank_pattern".into(), Value::Object(rank_pattern));
    cfg.insert("alpha_pattern".into(), Value::Object(alpha_pattern));
    cfg.insert("use_rslora".into(), Value::Bool(out.use_rslora));
    cfg.insert("use_dora".into(), Value::Bool(false));
    cfg.insert("init_lora_weights".into(), Value::Bool(true));
    cfg.insert("inference_mode".into(), Value::Bool(true));
    if let Some(t) = &out.target_modules {
        cfg.insert("target_modules".into(), t.clone());
    }
    cfg.insert(
        "modules_to_save".into(),
        match &out.modules_to_save {
            Some(list) if !list.is_empty() => Value::from(list.clone()),
            _ => Value::Null,
        },
    );
    Ok(cfg)
}

fn minimal_config() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("base_model_name_or_path".into(), Value::Null);
    m.insert("bias".into(), "none".into());
    m.insert("fan_in_fan_out".into(), Value::Bool(false));
    m.insert("lora_dropout".into(), Value::from(0.0));
    m.insert("task_type".into(), Value::Null);
    m
}

/// JSON as Python's `json.dumps(..., indent=2, sort_keys=True)` writes it (PEFT's format).
pub fn to_python_json(map: &Map<String, Value>) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Serialising a `Value` fails only on non-string map keys, which a `Value` cannot hold;
    // an empty config in its place would be a silent lie.
    let mut s = serde_json::to_string_pretty(&sorted(&Value::Object(map.clone())))
        .expect("a JSON value always serialises");
    s.push('\n');
    s
}

/// Writes a kohya `.safetensors` file.
pub fn write_kohya(out: &AdapterOut, file: &Path, force: bool) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for m in &out.modules {
        let stem = &m.names.kohya;
        // kohya's scale is alpha / r with no rsLoRA variant: carry the exact scale over.
        let kohya_alpha = out.scale(m) * m.rank as f64;
        tensors.insert(format!("{stem}.lora_down.weight"), m.a.clone());
        tensors.insert(format!("{stem}.lora_up.weight"), m.b.clone());
        // sd-scripts saves `.alpha` in the save dtype, like the factors.
        tensors.insert(
            format!("{stem}.alpha"),
            TensorRef::from_f32(&[kohya_alpha as f32], vec![], m.a.dtype()),
        );
    }
    insert_extras(&mut tensors, &out.extras)?;
    let mut metadata = out.metadata.clone();
    metadata.insert("ss_network_module".into(), "networks.lora".into());
    let is_conv = |m: &&OutModule| matches!(m.kind, LoraKind::Conv { .. });
    let linear: Vec<&OutModule> = out.modules.iter().filter(|m| !is_conv(m)).collect();
    let conv: Vec<&OutModule> = out.modules.iter().filter(is_conv).collect();
    let dim_alpha = |ms: &[&OutModule]| {
        let r = mode(ms.iter().map(|m| m.rank))?;
        let alpha = ms
            .iter()
            .find(|m| m.rank == r)
            .map(|m| out.scale(m) * r as f64)
            .unwrap_or(r as f64);
        Some((r, alpha))
    };
    if let Some((r, alpha)) = dim_alpha(&linear).or_else(|| dim_alpha(&conv)) {
        metadata.insert("ss_network_dim".into(), r.to_string());
        metadata.insert("ss_network_alpha".into(), format!("{alpha:?}"));
    }
    if let Some((r, alpha)) = dim_alpha(&conv) {
        // LoCon: sd-scripts records the conv rank and alpha as strings in ss_network_args.
        let mut args: Map<String, Value> = metadata
            .get("ss_network_args")
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        args.insert("conv_dim".into(), Value::from(r.to_string()));
        args.insert("conv_alpha".into(), Value::from(format!("{alpha:?}")));
        metadata.insert("ss_network_args".into(), python_json_line(&args));
    }
    write_single_file(out, file, force, &tensors, &metadata)
}

/// JSON on one line as Python's `json.dumps` writes it (`{"a": "1", "b": "2"}`).
fn python_json_line(map: &Map<String, Value>) -> String {
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), v))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// Writes a diffusers LoRA file: `<component>.<path>.lora_A.weight` keys and each component's
/// LoRA config in `lora_adapter_metadata`, as diffusers' `save_lora_weights` does.
pub fn write_diffusers(out: &AdapterOut, file: &Path, force: bool) -> Result<()> {
    let mut tensors = BTreeMap::new();
    let mut parts: BTreeMap<&'static str, Vec<OutModule>> = BTreeMap::new();
    for m in &out.modules {
        let path = m.names.peft.as_deref().ok_or_else(|| {
            LegoError::Invalid(format!(
                "module `{}` came only from kohya files, whose flattened names cannot be turned back into module paths; write it in kohya format",
                m.names.kohya
            ))
        })?;
        let (component, inner) = component_of(path);
        insert_peft_factors(&mut tensors, &format!("{}.{inner}", component.name()), m);
        let mut local = m.clone();
        local.names.peft = Some(inner.to_string());
        parts.entry(component.name()).or_default().push(local);
    }
    insert_extras(&mut tensors, &out.extras)?;
    let mut packed = Map::new();
    for (component, modules) in parts {
        let targets: Vec<String> = modules
            .iter()
            .filter_map(|m| m.names.peft.clone())
            .collect();
        let part = AdapterOut {
            modules,
            use_rslora: out.use_rslora,
            target_modules: Some(Value::from(targets)),
            ..AdapterOut::default()
        };
        for (k, v) in peft_config(&part)? {
            packed.insert(format!("{component}.{k}"), v);
        }
    }
    let mut metadata = out.metadata.clone();
    metadata.insert("format".into(), "pt".into());
    metadata.insert(ADAPTER_METADATA_KEY.into(), to_python_json(&packed));
    write_single_file(out, file, force, &tensors, &metadata)
}

/// Writes one `.safetensors` file and its side files (named `<stem>.<name>` beside it), all
/// renamed into place together.
fn write_single_file(
    out: &AdapterOut,
    file: &Path,
    force: bool,
    tensors: &BTreeMap<String, TensorRef>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let sides: Vec<(PathBuf, &str)> = out
        .side_files
        .iter()
        .map(|(name, text)| {
            (
                side_file_path(file, AdapterFormat::Kohya, name),
                text.as_str(),
            )
        })
        .collect();
    check_target(file, force, Replaceable::Adapter)?;
    for (side, _) in &sides {
        let what = match side.to_string_lossy().ends_with(CARD_FILE) {
            true => Replaceable::Card,
            false => Replaceable::Recipe,
        };
        check_target(side, force, what)?;
    }
    check_parent(file)?;
    sweep_stale(file);
    let mut tmps = vec![sibling(file, "lora-lego-tmp")?];
    for (side, _) in &sides {
        sweep_stale(side);
        tmps.push(sibling(side, "lora-lego-tmp")?);
    }
    let result = (|| {
        write_safetensors(&tmps[0], tensors, metadata)?;
        for ((_, text), tmp) in sides.iter().zip(&tmps[1..]) {
            write_text(tmp, text)?;
        }
        let targets: Vec<&Path> = std::iter::once(file)
            .chain(sides.iter().map(|(p, _)| p.as_path()))
            .collect();
        commit_together(&tmps, &targets, force)
    })();
    if result.is_err() {
        for t in &tmps {
            let _ = std::fs::remove_file(t);
        }
    }
    result
}

/// Renames each of `tmps` onto its target under the commit lock (a signal cannot come in
/// between). The first target is the primary (the weights): without `force` it is claimed first
/// and every file this call placed is removed again if a later one already exists; with
/// `force`, old side files are moved aside before the weights are replaced, so a hard kill in
/// between leaves weights without a side file, never weights beside another export's recipe.
fn commit_together(tmps: &[PathBuf], targets: &[&Path], force: bool) -> Result<()> {
    let _commit = commit_lock();
    if !force {
        for (i, (tmp, target)) in tmps.iter().zip(targets).enumerate() {
            if let Err(e) = place_new(tmp, target) {
                for placed in &targets[..i] {
                    let _ = std::fs::remove_file(placed);
                }
                return Err(e);
            }
        }
        return sync_dir(&parent_dir(targets[0]));
    }
    let mut aside = Vec::new();
    for side in &targets[1..] {
        if std::fs::symlink_metadata(side).is_ok() {
            let a = sibling(side, "lora-lego-tmp")?;
            std::fs::rename(side, &a).map_err(|e| LegoError::io(*side, e))?;
            aside.push((a, *side));
        }
    }
    if let Err(e) = replace(&tmps[0], targets[0], true) {
        for (a, side) in &aside {
            let _ = std::fs::rename(a, side);
        }
        return Err(e);
    }
    for (tmp, side) in tmps[1..].iter().zip(&targets[1..]) {
        std::fs::rename(tmp, side).map_err(|e| LegoError::io(*side, e))?;
    }
    for (a, _) in &aside {
        let _ = std::fs::remove_file(a);
    }
    sync_dir(&parent_dir(targets[0]))
}

/// Where a side file `name` (e.g. the recipe) of an output goes: inside a PEFT directory, or
/// beside a kohya file `x.safetensors` as `x.<name>`.
pub fn side_file_path(target: &Path, format: AdapterFormat, name: &str) -> PathBuf {
    match format {
        AdapterFormat::Peft => target.join(name),
        AdapterFormat::Kohya | AdapterFormat::Diffusers => {
            let stem = target
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            target.with_file_name(format!("{stem}.{name}"))
        }
    }
}

/// Writes a text file and fsyncs it.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| LegoError::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| LegoError::io(path, e))?;
    f.sync_all().map_err(|e| LegoError::io(path, e))
}

/// What `--force` may replace at an output path: only what lora-lego could have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaceable {
    /// An adapter: a single safetensors file, or a directory holding a previous lora-lego export.
    Adapter,
    /// A recipe file lora-lego wrote.
    Recipe,
    /// A model card lora-lego wrote.
    Card,
}

/// Refuses an existing target unless `force`, and even with `force` anything lora-lego did not
/// write (an unrelated directory, a file that is not an adapter, a symbolic link).
pub fn check_target(target: &Path, force: bool, what: Replaceable) -> Result<()> {
    let meta = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LegoError::io(target, e)),
        Ok(m) => m,
    };
    if !force {
        return Err(LegoError::OutputExists {
            path: target.into(),
        });
    }
    match not_ours(target, &meta, what) {
        None => Ok(()),
        Some(found) => Err(LegoError::NotReplaceable {
            path: target.into(),
            found,
        }),
    }
}

/// Why `target` is not something lora-lego may replace; `None` when it may.
fn not_ours(target: &Path, meta: &std::fs::Metadata, what: Replaceable) -> Option<String> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Some("it is a symbolic link".into());
    }
    match what {
        Replaceable::Recipe if kind.is_file() => {
            let text = std::fs::read_to_string(target).unwrap_or_default();
            let ours = text.starts_with(RECIPE_HEADER) || looks_like_recipe(&text);
            (!ours).then(|| "it is not a lora-lego recipe".into())
        }
        Replaceable::Card if kind.is_file() => {
            let text = std::fs::read_to_string(target).unwrap_or_default();
            (!text.contains(CARD_TAG)).then(|| "it is not a lora-lego model card".into())
        }
        Replaceable::Adapter if kind.is_file() => safetensors_header(target)
            .is_none()
            .then(|| "it is a file but not a safetensors adapter".into()),
        Replaceable::Adapter if kind.is_dir() => not_our_export(target),
        _ => Some("it is neither a regular file nor a directory".into()),
    }
}

/// Whether `text` has a recipe's shape (a `[merge]` table and an adapter list) though its
/// header was edited away; whether it would replay is not the question here.
fn looks_like_recipe(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .is_ok_and(|t| t.get("merge").is_some_and(|m| m.is_table()) && t.contains_key("adapters"))
}

/// Why the directory `dir` is not a previous export of ours: it holds files we never write, or
/// no recipe (beside the weights or in their metadata) marks it as ours. Empty is fine.
fn not_our_export(dir: &Path) -> Option<String> {
    // The model card is written beside a scored export (`--eval`).
    let ours = [WEIGHTS_NAME, CONFIG_NAME, RECIPE_FILE, CARD_FILE];
    let entries: Vec<String> = match std::fs::read_dir(dir) {
        Ok(list) => list
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect(),
        Err(e) => return Some(format!("its entries cannot be listed ({e})")),
    };
    if entries.is_empty() {
        return None;
    }
    let foreign: Vec<&String> = entries
        .iter()
        .filter(|n| !ours.contains(&n.as_str()))
        .collect();
    if !foreign.is_empty() {
        let shown: Vec<&str> = foreign.iter().take(3).map(|s| s.as_str()).collect();
        let more = if foreign.len() > 3 { ", …" } else { "" };
        return Some(format!(
            "it is a directory holding {} entr{} lora-lego does not write ({}{more})",
            foreign.len(),
            if foreign.len() == 1 { "y" } else { "ies" },
            shown.join(", ")
        ));
    }
    let recipe_beside = dir.join(RECIPE_FILE).is_file();
    let recipe_inside = safetensors_header(&dir.join(WEIGHTS_NAME))
        .and_then(|h| h.get("__metadata__")?.get(RECIPE_METADATA_KEY).cloned())
        .is_some();
    (!recipe_beside && !recipe_inside).then(|| {
        "it is a directory without a lora-lego recipe (an adapter this tool did not write)".into()
    })
}

/// The JSON header of a safetensors file, if `path` is one (read without mapping the file).
fn safetensors_header(path: &Path) -> Option<Value> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).ok()?;
    let header_len = u64::from_le_bytes(n);
    if header_len > len.saturating_sub(8) || header_len > 100 << 20 {
        return None;
    }
    let mut head = vec![0u8; header_len as usize];
    f.read_exact(&mut head).ok()?;
    serde_json::from_slice::<Value>(&head)
        .ok()
        .filter(Value::is_object)
}

static COMMITS: Mutex<()> = Mutex::new(());

/// Held while outputs are renamed into place. The signal handler takes it before the process
/// exits, so a signal never falls between a kohya file and its recipe.
pub fn commit_lock() -> MutexGuard<'static, ()> {
    COMMITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check_parent(target: &Path) -> Result<()> {
    let parent = parent_dir(target);
    if parent.is_dir() {
        Ok(())
    } else {
        Err(LegoError::Invalid(format!(
            "{}: the parent directory {} does not exist",
            target.display(),
            parent.display()
        )))
    }
}

/// A fresh path beside `target` named as this module's temporary files are, so that
/// the sweep of stale temporary files removes it once its process is gone.
pub fn temporary_sibling(target: &Path) -> Result<PathBuf> {
    check_parent(target)?;
    sibling(target, "lora-lego-tmp")
}

/// A sibling path of `target` that no one else uses: `.<name>.<tag>-<pid>-<nanos>`.
fn sibling(target: &Path, tag: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| {
            LegoError::Invalid(format!(
                "{}: not a file or directory name",
                target.display()
            ))
        })?
        .to_string_lossy();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let parent = parent_dir(target);
    Ok(parent.join(format!(".{name}.{tag}-{}-{nanos}", std::process::id())))
}

fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Builds a directory at a temporary sibling of `target`, then swaps it into place, so the
/// target is at every instant absent, the old version, or complete. Without `force` the final
/// rename refuses to replace anything, so of two racing exports exactly one wins.
pub fn atomic_dir(
    target: &Path,
    force: bool,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    check_target(target, force, Replaceable::Adapter)?;
    check_parent(target)?;
    sweep_stale(target);
    let tmp = sibling(target, "lora-lego-tmp")?;
    std::fs::create_dir(&tmp).map_err(|e| LegoError::io(&tmp, e))?;
    let result = fill(&tmp).and_then(|()| sync_dir(&tmp)).and_then(|()| {
        let _commit = commit_lock();
        replace(&tmp, target, force)?;
        // Directory fsync makes the rename durable.
        sync_dir(&parent_dir(target))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Writes a file at a temporary sibling of `target`, then renames it into place (exclusively
/// without `force`); `what` says what `force` may replace.
pub fn atomic_file(
    target: &Path,
    force: bool,
    what: Replaceable,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    check_target(target, force, what)?;
    check_parent(target)?;
    sweep_stale(target);
    let tmp = sibling(target, "lora-lego-tmp")?;
    let result = fill(&tmp).and_then(|()| {
        let _commit = commit_lock();
        replace(&tmp, target, force)?;
        // Directory fsync makes the rename durable.
        sync_dir(&parent_dir(target))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Moves `tmp` onto `target` (the caller fsyncs the parent). Without `force`, only if nothing is there (one step, no window
/// between check and rename). With it, so that at every instant `target` is either the old
/// version or the new one: a file replaces a file with one rename; a directory is swapped in
/// with `renameat2(RENAME_EXCHANGE)` and the old one (now at `tmp`) removed afterwards.
fn replace(tmp: &Path, target: &Path, force: bool) -> Result<()> {
    if !force {
        return place_new(tmp, target);
    }
    let existing = std::fs::symlink_metadata(target).ok();
    let plain_rename = match &existing {
        None => true,
        Some(meta) => !meta.is_dir() && !tmp.is_dir(),
    };
    if plain_rename {
        std::fs::rename(tmp, target).map_err(|e| LegoError::io(target, e))?;
    } else {
        exchange(tmp, target).map_err(|e| LegoError::io(target, e))?;
        let removed = if tmp.is_dir() {
            std::fs::remove_dir_all(tmp)
        } else {
            std::fs::remove_file(tmp)
        };
        removed.map_err(|e| LegoError::io(tmp, e))?;
    }
    Ok(())
}

/// Renames `tmp` to `target` only if `target` does not exist, in one step.
fn place_new(tmp: &Path, target: &Path) -> Result<()> {
    match rename_noreplace(tmp, target) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == std::io::ErrorKind::AlreadyExists
                || e.kind() == std::io::ErrorKind::DirectoryNotEmpty =>
        {
            Err(LegoError::OutputExists {
                path: target.into(),
            })
        }
        Err(e) => Err(LegoError::io(target, e)),
    }
}

/// `renameat2(RENAME_NOREPLACE)`; where the filesystem lacks it, a hard link (which also
/// refuses an existing name) for files, and a rename that refuses non-empty targets for
/// directories.
#[cfg(target_os = "linux")]
fn rename_noreplace(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    match renameat_with(CWD, a, CWD, b, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => rename_noreplace_fallback(a, b),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_noreplace(a: &Path, b: &Path) -> std::io::Result<()> {
    rename_noreplace_fallback(a, b)
}

fn rename_noreplace_fallback(a: &Path, b: &Path) -> std::io::Result<()> {
    if a.is_dir() {
        if std::fs::symlink_metadata(b).is_ok() {
            return Err(std::io::ErrorKind::AlreadyExists.into());
        }
        std::fs::rename(a, b)
    } else {
        std::fs::hard_link(a, b)?;
        std::fs::remove_file(a)
    }
}

/// Atomically swaps two paths.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(Into::into)
}

/// Swaps two paths where the OS has no atomic exchange: the old one is moved aside first, so
/// a crash in between leaves the target absent (never partial), with the old version beside it.
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let aside = b.with_extension("lora-lego-aside");
    std::fs::rename(b, &aside)?;
    if let Err(e) = std::fs::rename(a, b) {
        let _ = std::fs::rename(&aside, b);
        return Err(e);
    }
    std::fs::rename(&aside, a)
}

/// Removes temporary siblings of `target` left by lora-lego processes that no longer run
/// (killed mid-export): they hold either a half-written output or a replaced old one.
fn sweep_stale(target: &Path) {
    let (Some(name), Ok(entries)) = (
        target.file_name().map(|n| n.to_string_lossy().to_string()),
        std::fs::read_dir(parent_dir(target)),
    ) else {
        return;
    };
    let prefix = format!(".{name}.lora-lego-tmp-");
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && Path::new("/proc/self").exists() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directory fsync makes the rename durable; some filesystems refuse it, which is harmless.
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
    Ok(())
}
