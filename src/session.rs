//! The use cases the command line and the explorer share: open adapters, check where an
//! export goes, merge with progress and cancellation, and export with the recipe, the
//! warnings and a summary. Front ends build a [`MergeSettings`] (or a recipe) and call only
//! this layer, so what one front end writes the other writes byte for byte.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::align::ModuleSet;
use crate::engine::MergeOutput;
use crate::error::Result;
use crate::export::{encoding, export_encoded, header_room, out_module, recipe_folder};
use crate::io::load_all;
use crate::io::write::OutModule;
use crate::io::write::{check_target, side_file_path, temporary_sibling, Replaceable};
pub use crate::io::LoadOptions;
use crate::output_guard::Inputs;
use crate::recipe::{Recipe, RECIPE_FILE};
use crate::settings::MergeSettings;

// What the front ends see of the library besides `recipe`: the view types they draw and the
// use cases they call. The explorer imports nothing else, so this list is its whole contract.
pub use crate::adapter::{Adapter, AdapterFormat};
pub use crate::compare::{compare, compare_module, MethodRow};
pub use crate::engine::{Engine, ModuleView};
pub use crate::error::LegoError;
pub use crate::eval::{EvalRecord, Evaluator};
pub use crate::kmeans::KPoint;
pub use crate::merge::MergedModule;
pub use crate::signals::on_fatal_signals;
pub use crate::sweep::{knob_text, read_results, score_once, ResultRecord, RESULTS_FILE};
use crate::tensor::spill::Spill;
pub use crate::tensor::DType;
use crate::tensor::TensorRef;

/// Loads and aligns `paths` into an engine ready to merge.
pub fn open(paths: &[PathBuf], load: &LoadOptions) -> Result<Engine> {
    Ok(Engine::new(ModuleSet::new(load_all(paths, load)?)?))
}

/// What loading and aligning noticed: modules left out, tensors skipped, per adapter.
pub fn load_notices(engine: &Engine) -> Vec<String> {
    let set = &engine.set;
    set.warnings
        .iter()
        .chain(set.adapters.iter().flat_map(|a| a.warnings.iter()))
        .cloned()
        .collect()
}

/// Where and how an export is written.
#[derive(Debug, Clone)]
pub struct ExportTarget {
    /// The output: a directory (PEFT) or a file (kohya).
    pub path: PathBuf,
    /// Replace an existing previous export there.
    pub force: bool,
    /// Files read besides the adapters (a replayed recipe): the output never replaces them.
    pub extra_inputs: Vec<PathBuf>,
    /// When the weights are written.
    pub spill: SpillPolicy,
}

impl ExportTarget {
    /// Every path the export writes: the output, and the recipe beside a single-file format.
    pub fn written(&self, format: AdapterFormat) -> Vec<PathBuf> {
        let mut written = vec![self.path.clone()];
        if format.is_single_file() {
            written.push(side_file_path(&self.path, format, RECIPE_FILE));
        }
        written
    }

    /// Refuses, before any merge work, settings that cannot be merged, an output that is or
    /// holds an input, and an existing output unless `force` (and even then anything
    /// lora-lego did not write).
    pub fn check(&self, engine: &Engine, settings: &MergeSettings) -> Result<()> {
        settings.validate(engine.set.adapters.len())?;
        let mut inputs = Inputs::of_adapters(&engine.set.adapters);
        for p in &self.extra_inputs {
            inputs.add(p);
        }
        for p in self.written(settings.format) {
            inputs.check(&p)?;
        }
        check_target(&self.path, self.force, Replaceable::Adapter)
    }
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    /// The merge that was written: its metrics and ranks (the factors are released once
    /// encoded, see [`MergedModule::release_factors`]).
    pub output: MergeOutput,
    /// Notices from loading, merging and writing (modules left out, k clamped, heads dropped).
    pub notices: Vec<String>,
    /// Per written module: its name and merged rank.
    pub ranks: Vec<(String, usize)>,
    /// Bytes on disk.
    pub bytes: u64,
    /// The recipe file written beside the export.
    pub recipe: PathBuf,
}

/// Checks `target`, merges every module (calling `done` after each, stopping when `cancel`
/// is set) and writes the merge with its recipe, whose paths are relative to the export.
/// `described` is the recipe when the caller already described the inputs (hashing reads
/// every input file: do it once).
pub fn export(
    engine: &Engine,
    settings: &MergeSettings,
    target: &ExportTarget,
    described: Option<&Recipe>,
    done: &(dyn Fn() + Sync),
    cancel: &AtomicBool,
) -> Result<Exported> {
    target.check(engine, settings)?;
    let folder = recipe_folder(&target.path, settings.format);
    // Each module is encoded as soon as it is merged and its f32 factors dropped: the
    // resident merge is the output's bytes, not four (f32) of them per value as well.
    let enc = encoding(engine, settings);
    let slots: Vec<Mutex<Option<OutModule>>> = (0..engine.set.modules.len())
        .map(|_| Mutex::new(None))
        .collect();
    let spill = spill_for(engine, target, settings.format)?;
    // A spilled module's tensors now live in the file: its encoded bytes go.
    let spilled = |written: Vec<(usize, Vec<TensorRef>)>| {
        for (i, tensors) in written {
            if let (Some(out), [a, b]) = (
                slots[i].lock().unwrap_or_else(|e| e.into_inner()).as_mut(),
                &tensors[..],
            ) {
                out.a = a.clone();
                out.b = b.clone();
            }
        }
    };
    let each = |i: usize, m: Option<&mut MergedModule>| -> Result<()> {
        let out = match m {
            Some(m) => {
                let out = out_module(engine, m, settings, &enc)?;
                m.release_factors();
                Some(out)
            }
            None => None,
        };
        let tensors = out.as_ref().map(|o| vec![o.a.clone(), o.b.clone()]);
        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = out;
        if let Some(spill) = &spill {
            spilled(spill.submit(i, tensors)?);
        }
        Ok(())
    };
    let merge = || engine.merge_all_each(settings, done, cancel, &each);
    // Inputs not hashed yet are hashed while the modules merge: both only read the inputs,
    // and the hashes are needed only once the files are written.
    let (recipe, output) = match described {
        Some(r) => (Ok(r.portable(&folder)), merge()),
        None => rayon::join(
            || Recipe::describe(&engine.set.adapters, settings).map(|r| r.portable(&folder)),
            merge,
        ),
    };
    // A cancelled or failed merge is what matters most, then the inputs' hashes.
    let output = output?;
    if let Some(spill) = &spill {
        spilled(spill.seal()?);
    }
    let recipe = recipe?.to_toml()?;
    let encoded = slots
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let mut notices = load_notices(engine);
    notices.extend(output.notices.iter().cloned());
    notices.extend(export_encoded(
        engine,
        &output,
        Some(encoded),
        settings,
        &target.path,
        target.force,
        &recipe,
    )?);
    let ranks = output
        .modules
        .iter()
        .map(|m| (engine.set.modules[m.module].key.to_string(), m.rank()))
        .collect();
    Ok(Exported {
        ranks,
        bytes: disk_size(&target.path),
        recipe: side_file_path(&target.path, settings.format, RECIPE_FILE),
        notices,
        output,
    })
}

/// Inputs from this size on are exported through a [`Spill`] under [`SpillPolicy::Auto`].
const SPILL_FROM_BYTES: usize = 32 << 20;

/// Whether an export writes its weights while it merges (through a [`Spill`]) or after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpillPolicy {
    /// While merging when the inputs' factors reach 32 MiB; after, in the reference layout,
    /// below that (where the write is short anyway).
    #[default]
    Auto,
    /// Always while merging.
    Always,
    /// Always after merging.
    Never,
}

/// The file an export of `engine` to `target` is written into while it merges, if any. It sits
/// beside the target, named like the export's other temporary files (so a later export sweeps
/// it up after a crash), and is renamed to the weights file at the end.
fn spill_for(
    engine: &Engine,
    target: &ExportTarget,
    format: AdapterFormat,
) -> Result<Option<Arc<Spill>>> {
    let input: usize = (engine.set.adapters.iter())
        .flat_map(|a| &a.modules)
        .map(|m| m.a.bytes().len() + m.b.bytes().len())
        .sum();
    let wanted = match target.spill {
        SpillPolicy::Auto => input >= SPILL_FROM_BYTES,
        SpillPolicy::Always => true,
        SpillPolicy::Never => false,
    };
    if !wanted {
        return Ok(None);
    }
    let path = temporary_sibling(&target.path)?;
    Ok(Some(Spill::create(&path, header_room(engine, format))?))
}

/// Bytes under `path` (a file, or the files of a directory).
fn disk_size(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| disk_size(&e.path()))
                    .sum()
            })
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}
