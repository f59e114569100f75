//! Turning a merge into an adapter on disk: dtype, names, shapes, non-LoRA tensors, config.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::adapter::AdapterFormat;
use crate::align::two_text_encoders;
use crate::engine::{Engine, MergeOutput};
use crate::error::{LegoError, Result};
use crate::io::factors::stored_shapes;
use crate::io::naming::{kohya_stem, reprefix, KohyaPrefix};
use crate::io::write::{side_file_path, write_adapter, AdapterOut, ModuleNames, OutModule};
use crate::merge::MergedModule;
use crate::output_guard::Inputs;
use crate::recipe::{Recipe, RECIPE_FILE, RECIPE_METADATA_KEY};
use crate::settings::MergeSettings;
use crate::tensor::{DType, TensorRef};

/// How merged factors are encoded for export: the output dtype and how modules are named.
#[derive(Debug, Clone)]
pub struct Encoding {
    dtype: DType,
    two_te: bool,
    notice: Option<String>,
}

/// The encoding an export of `engine`'s merge under `settings` uses.
pub fn encoding(engine: &Engine, settings: &MergeSettings) -> Encoding {
    let mut notice = None;
    let dtype = match settings.dtype {
        Some(d) => d,
        None => source_dtype(engine).unwrap_or_else(|| {
            notice = Some("the sources' dtypes differ; writing F32 (choose with --dtype)".into());
            DType::F32
        }),
    };
    Encoding {
        dtype,
        two_te: engine.set.adapters.iter().any(two_text_encoders),
        notice,
    }
}

/// One merged module encoded for export (its factors in the output dtype, its names).
pub fn out_module(
    engine: &Engine,
    m: &MergedModule,
    settings: &MergeSettings,
    enc: &Encoding,
) -> Result<OutModule> {
    let aligned = &engine.set.modules[m.module];
    let k = m.rank();
    let (a_shape, b_shape) = stored_shapes(&aligned.kind, k, aligned.d_in, aligned.d_out);
    let names = output_names(engine, aligned, settings.kohya_prefix, enc.two_te);
    let name = match settings.format {
        AdapterFormat::Kohya => None,
        _ => names.peft.clone(),
    }
    .unwrap_or_else(|| names.kohya.clone());
    let name = name.as_str();
    Ok(OutModule {
        names,
        kind: aligned.kind.clone(),
        a: encode_finite(&m.a, a_shape, enc.dtype, name, "A")?,
        b: encode_finite(&m.b, b_shape, enc.dtype, name, "B")?,
        rank: k,
        // Scale 1: the sources' scales are folded into the factors.
        alpha: k as f64,
    })
}

/// A bound on the header of the weights file an export of `engine`'s merge writes in
/// `format`: every tensor's entry with its numbers at their widest, every metadata text the
/// export may carry (escaped), and slack. Only a bound: a spilled export whose header outgrows
/// it is written the ordinary way.
pub fn header_room(engine: &Engine, format: AdapterFormat) -> usize {
    // `"…":{"dtype":"BF16","shape":[…],"data_offsets":[…]},` with four 20-digit numbers, and
    // the longest prefix and suffix a format adds to a module's name.
    const ENTRY: usize = 140 + 48;
    let set = &engine.set;
    let tensors = match format {
        AdapterFormat::Kohya => 3,
        _ => 2,
    };
    let modules: usize = (set.modules.iter())
        .map(|m| {
            let peft = m.names.peft.as_ref().map_or(0, String::len);
            // Diffusers lists every module path once more in its metadata.
            tensors * (m.names.kohya.len().max(peft) + ENTRY) + peft + 8
        })
        .sum();
    let sources: usize = (set.adapters.iter())
        .map(|a| {
            let meta: usize = a
                .metadata
                .iter()
                .map(|(k, v)| k.len() + 2 * v.len() + 8)
                .sum();
            let extras: usize = a.extras.iter().map(|e| e.name.len() + ENTRY).sum();
            // The recipe names each source by path and hash, and is escaped once more.
            meta + extras + 2 * (a.path.as_os_str().len() + 160)
        })
        .sum();
    modules + sources + (16 << 10)
}

/// The adapter to write for `output`, plus notices about what was decided.
pub fn adapter_out(
    engine: &Engine,
    output: &MergeOutput,
    settings: &MergeSettings,
) -> Result<(AdapterOut, Vec<String>)> {
    adapter_out_from(engine, output, settings, None)
}

/// [`adapter_out`] with the modules already encoded by [`out_module`] (indexed by module;
/// the merge's factors may have been released meanwhile).
fn adapter_out_from(
    engine: &Engine,
    output: &MergeOutput,
    settings: &MergeSettings,
    encoded: Option<Vec<Option<OutModule>>>,
) -> Result<(AdapterOut, Vec<String>)> {
    let set = &engine.set;
    let enc = encoding(engine, settings);
    let mut notices: Vec<String> = enc.notice.iter().cloned().collect();
    if output.modules.iter().all(|m| m.rank() == 0) {
        return Err(LegoError::Invalid(
            "the merge leaves no module to write (every adapter has weight 0, or no module has a rank above 0); nothing was written".into(),
        ));
    }
    let modules = match encoded {
        Some(mut encoded) => output
            .modules
            .iter()
            .map(|m| match encoded.get_mut(m.module).and_then(Option::take) {
                Some(out) => Ok(out),
                None => out_module(engine, m, settings, &enc),
            })
            .collect::<Result<_>>()?,
        None => output
            .modules
            .iter()
            .map(|m| out_module(engine, m, settings, &enc))
            .collect::<Result<_>>()?,
    };
    let (extras, modules_to_save) = kept_heads(engine, settings, &mut notices)?;
    let mut config_template = set
        .adapters
        .iter()
        .find(|a| a.format == AdapterFormat::Peft)
        .and_then(|a| a.config.clone());
    if let Some(cfg) = &mut config_template {
        settle_task_type(engine, settings, cfg, extras.is_empty(), &mut notices);
    }
    let metadata = match settings.format {
        AdapterFormat::Kohya => carried_kohya_metadata(&set.adapters, &mut notices),
        _ => Default::default(),
    };
    let out = AdapterOut {
        modules,
        extras,
        use_rslora: false,
        config_template,
        target_modules: Some(union_target_modules(engine)),
        modules_to_save,
        metadata,
        side_files: Vec::new(),
    };
    Ok((out, notices))
}

/// PEFT task types whose model class adds a head to `modules_to_save` on load, and then
/// expects that head's weights in the file.
const HEAD_TASK_TYPES: &[&str] = &["SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS"];

/// The output's `task_type`: the kept heads' adapter's, or `null` when no head is written and
/// the type would make PEFT look for one (`PeftModel.from_pretrained` then fails).
fn settle_task_type(
    engine: &Engine,
    settings: &MergeSettings,
    cfg: &mut serde_json::Map<String, Value>,
    no_heads: bool,
    notices: &mut Vec<String>,
) {
    let kept = engine
        .set
        .adapters
        .iter()
        .find(|a| settings.keep_heads.contains(&a.name))
        .and_then(|a| a.config.as_ref());
    if let (Some(kept), false) = (kept, no_heads) {
        let task = kept.get("task_type").cloned().unwrap_or(Value::Null);
        cfg.insert("task_type".into(), task);
        return;
    }
    let task = cfg.get("task_type").and_then(Value::as_str).unwrap_or("");
    if HEAD_TASK_TYPES.contains(&task) {
        notices.push(format!(
            "task_type `{task}` written as null: no classifier head is in the output, and PEFT would look for one on load; keep a source's heads to export a {task} adapter"
        ));
        cfg.insert("task_type".into(), Value::Null);
    }
}

/// Header entries of kohya files that describe the base model and the network, not one file's
/// weights: carried into a kohya output when every source that has kohya metadata agrees.
const KOHYA_CARRIED: &[&str] = &[
    "ss_network_args",
    "ss_v2",
    "ss_base_model_version",
    "ss_sd_model_name",
];

/// The kohya metadata of the sources that agree; the file hashes (`sshs_*`,
/// `modelspec.hash_sha256`) describe a source's own weights and would be false on a merge.
fn carried_kohya_metadata(
    adapters: &[crate::adapter::Adapter],
    notices: &mut Vec<String>,
) -> std::collections::BTreeMap<String, String> {
    let with_meta: Vec<&crate::adapter::Adapter> = adapters
        .iter()
        .filter(|a| {
            a.metadata
                .keys()
                .any(|k| k.starts_with("ss_") || k.starts_with("modelspec."))
        })
        .collect();
    let mut keys: BTreeSet<&String> = BTreeSet::new();
    for a in &with_meta {
        keys.extend(a.metadata.keys().filter(|k| {
            KOHYA_CARRIED.contains(&k.as_str())
                || (k.starts_with("modelspec.") && k.as_str() != "modelspec.hash_sha256")
        }));
    }
    let mut carried = std::collections::BTreeMap::new();
    let mut differ = Vec::new();
    for key in keys {
        let values: BTreeSet<Option<&String>> =
            with_meta.iter().map(|a| a.metadata.get(key)).collect();
        match values.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(v)] => {
                carried.insert(key.clone(), (*v).clone());
            }
            _ => differ.push(key.as_str()),
        }
    }
    if !differ.is_empty() {
        notices.push(format!(
            "kohya metadata left out because the sources differ on it: {}",
            differ.join(", ")
        ));
    }
    carried
}

/// How a merged module is named in the output: a kohya source's stem when there is one (its
/// prefix replaced by `prefix` when given), else a stem chosen from the module path.
fn output_names(
    engine: &Engine,
    aligned: &crate::align::AlignedModule,
    prefix: Option<KohyaPrefix>,
    two_te: bool,
) -> ModuleNames {
    let from_kohya = aligned
        .sources
        .iter()
        .any(|(ai, _)| engine.set.adapters[*ai].format == AdapterFormat::Kohya);
    let kohya = match (&aligned.names.peft, from_kohya) {
        (Some(path), false) => kohya_stem(path, prefix, two_te),
        _ => match prefix {
            Some(p) => reprefix(&aligned.names.kohya, p),
            None => aligned.names.kohya.clone(),
        },
    };
    ModuleNames {
        peft: aligned.names.peft.clone(),
        kohya,
    }
}

/// Writes the merged adapter to `target` in the settings' format, with its recipe beside it
/// (`lora_lego_recipe.toml`) and in the safetensors metadata.
pub fn export(
    engine: &Engine,
    output: &MergeOutput,
    settings: &MergeSettings,
    target: &Path,
    force: bool,
) -> Result<Vec<String>> {
    let recipe = Recipe::describe(&engine.set.adapters, settings)?
        .portable(&recipe_folder(target, settings.format))
        .to_toml()?;
    export_with_recipe(engine, output, settings, target, force, &recipe)
}

/// The folder a recipe written with an export lives in (paths in it are relative to it): the
/// PEFT directory itself, or the folder holding a single-file output.
pub fn recipe_folder(target: &Path, format: AdapterFormat) -> std::path::PathBuf {
    if format.is_single_file() {
        match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        }
    } else {
        target.to_path_buf()
    }
}

/// [`export`] with the recipe text already made (describing hashes every input file, which
/// a caller that also saves the recipe elsewhere need not do twice).
pub fn export_with_recipe(
    engine: &Engine,
    output: &MergeOutput,
    settings: &MergeSettings,
    target: &Path,
    force: bool,
    recipe: &str,
) -> Result<Vec<String>> {
    export_encoded(engine, output, None, settings, target, force, recipe)
}

/// [`export_with_recipe`] with the modules already encoded by [`out_module`] as they were
/// merged (indexed by module), so the f32 factors need not be held until the write.
pub fn export_encoded(
    engine: &Engine,
    output: &MergeOutput,
    encoded: Option<Vec<Option<OutModule>>>,
    settings: &MergeSettings,
    target: &Path,
    force: bool,
    recipe: &str,
) -> Result<Vec<String>> {
    let inputs = Inputs::of_adapters(&engine.set.adapters);
    inputs.check(target)?;
    if settings.format.is_single_file() {
        inputs.check(&side_file_path(target, settings.format, RECIPE_FILE))?;
    }
    // The merge read every input: one that shrank meanwhile gave zeros, not its data.
    crate::io::check_intact(&engine.set.adapters)?;
    let (mut out, notices) = adapter_out_from(engine, output, settings, encoded)?;
    let parsed = Recipe::parse(Path::new(RECIPE_FILE), recipe)?;
    let card = crate::card::model_card(&parsed, base_model(engine), parsed.eval.as_ref())?;
    let recipe = recipe.to_string();
    out.metadata
        .insert(RECIPE_METADATA_KEY.into(), recipe.clone());
    out.side_files.push((RECIPE_FILE.into(), recipe));
    out.side_files.push((crate::card::CARD_FILE.into(), card));
    write_adapter(&out, settings.format, target, force)?;
    Ok(notices)
}

/// Encodes a factor in the output dtype and refuses it if any value is NaN or Inf there (an
/// F16 maximum is 65 504: a large merge can overflow it).
fn encode_finite(
    values: &ndarray::Array2<f32>,
    shape: Vec<usize>,
    dtype: DType,
    module: &str,
    factor: &str,
) -> Result<TensorRef> {
    let t = TensorRef::from_array(values, shape, dtype);
    let count = t.value_stats().nonfinite;
    if count > 0 {
        return Err(LegoError::NonFiniteOutput {
            tensor: format!("{module} (lora_{factor})"),
            dtype: dtype.to_string(),
            count,
            max_abs: values.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))),
        });
    }
    Ok(t)
}

/// The dtype every source factor shares, if any.
fn source_dtype(engine: &Engine) -> Option<DType> {
    let mut dtypes = engine.set.adapters.iter().map(|a| a.dtype());
    let first = dtypes.next()??;
    dtypes.all(|d| d == Some(first)).then_some(first)
}

/// The non-LoRA tensors of the adapters named in `keep_heads`; the rest are dropped, out loud.
fn kept_heads(
    engine: &Engine,
    settings: &MergeSettings,
    notices: &mut Vec<String>,
) -> Result<(Vec<crate::adapter::ExtraTensor>, Option<Vec<String>>)> {
    let adapters = &engine.set.adapters;
    for name in &settings.keep_heads {
        if !adapters.iter().any(|a| &a.name == name) {
            let names: Vec<&str> = adapters.iter().map(|a| a.name.as_str()).collect();
            return Err(LegoError::Invalid(format!(
                "keep_heads: no adapter is named `{name}` (adapters: {})",
                names.join(", ")
            )));
        }
    }
    let mut extras = Vec::new();
    let mut seen = BTreeSet::new();
    let mut to_save: Option<Vec<String>> = None;
    for a in adapters {
        if a.extras.is_empty() {
            continue;
        }
        if settings.keep_heads.contains(&a.name) {
            for e in &a.extras {
                if !seen.insert(e.name.clone()) {
                    return Err(LegoError::Invalid(format!(
                        "non-LoRA tensor `{}` is in more than one kept adapter; keep the heads of one adapter only",
                        e.name
                    )));
                }
                extras.push(e.clone());
            }
            if let Some(list) = a
                .config
                .as_ref()
                .and_then(|c| c.get("modules_to_save"))
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
            {
                to_save.get_or_insert_with(Vec::new).extend(list);
            }
        } else {
            let names: Vec<&str> = a.extras.iter().map(|e| e.name.as_str()).collect();
            notices.push(format!(
                "adapter `{}`: {} non-LoRA tensor(s) not merged and left out ({}); pass --keep-heads {} to copy them",
                a.name,
                names.len(),
                names.join(", "),
                a.name
            ));
        }
    }
    if let Some(list) = &mut to_save {
        list.sort();
        list.dedup();
    }
    Ok((extras, to_save))
}

/// The union of the sources' `target_modules` lists (sorted); when any source has a regex or
/// none, the exact module paths, which PEFT matches as well.
fn union_target_modules(engine: &Engine) -> Value {
    let mut names = BTreeSet::new();
    for a in &engine.set.adapters {
        match &a.target_modules {
            Some(Value::Array(list)) => {
                names.extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)))
            }
            _ => {
                let paths = engine
                    .set
                    .modules
                    .iter()
                    .filter_map(|m| m.names.peft.clone());
                return Value::from(paths.collect::<Vec<_>>());
            }
        }
    }
    Value::from(names.into_iter().collect::<Vec<_>>())
}

/// The sources' base model (the first one that names it), for the model card.
pub fn base_model(engine: &Engine) -> Option<&str> {
    engine
        .set
        .adapters
        .iter()
        .find_map(|a| a.base_model.as_deref())
}

/// After an export at `target` was scored: its side recipe becomes `scored` (with the
/// `[eval]` table) and its model card gains the score. The weights and the recipe in their
/// metadata stay as written, so the adapter is byte for byte the one that scored.
pub fn record_score(
    engine: &Engine,
    target: &Path,
    format: AdapterFormat,
    scored: &Recipe,
    record: &crate::eval::EvalRecord,
) -> Result<()> {
    crate::owned_file::replace_text(
        &side_file_path(target, format, RECIPE_FILE),
        &scored.to_toml()?,
    )?;
    crate::card::write_card(
        target,
        format,
        &crate::card::model_card(scored, base_model(engine), Some(record))?,
    )
}
