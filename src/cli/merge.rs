//! `lora-lego merge`: flags and/or a recipe → settings → engine → export.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context};
use clap::Args;
use lora_lego::adapter::Adapter;
use lora_lego::compare::adapter_retention;
use lora_lego::engine::{Engine, MergeOutput};
use lora_lego::eval::EvalRecord;
use lora_lego::export::{adapter_out, recipe_folder, record_score};
use lora_lego::io::write::{atomic_file, check_target, side_file_path, write_text, Replaceable};
use lora_lego::io::LoadOptions;
use lora_lego::metrics::mean;
use lora_lego::output_guard::{resolve, Inputs};
use lora_lego::recipe::absolute;
use lora_lego::recipe::RECIPE_FILE;
use lora_lego::recipe::{MergeSettings, Recipe};
use lora_lego::session;
use serde::Serialize;

use super::eval::EvalArgs;
use super::inputs::{adapter_paths, Folders};
use super::progress::Progress;
use super::settings::SettingsArgs;

/// `merge` arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Adapters (PEFT directories or .safetensors files); with --recipe, these replace its list.
    pub adapters: Vec<PathBuf>,
    /// Output: a directory for PEFT, a .safetensors file for kohya.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Replay a recipe (flags given as well override its fields).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Write the recipe of this merge to FILE.
    #[arg(long, value_name = "FILE")]
    pub save_recipe: Option<PathBuf>,
    /// Merge even if an input's hash differs from the recipe's.
    #[arg(long)]
    pub allow_changed_inputs: bool,
    /// Replace an existing output (and recipe file).
    #[arg(long)]
    pub force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
    /// Merge and show what would be written (per-module ranks, bytes, the recipe) without
    /// writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The merge settings.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Score the export with an evaluator.
    #[command(flatten)]
    pub eval: EvalArgs,
}

/// The summary printed after a merge.
#[derive(Debug, Serialize)]
struct Summary {
    output: Option<String>,
    method: String,
    modules: Vec<ModuleLine>,
    mean_error_vs_sum: f64,
    mean_retention: Vec<(String, f64)>,
    notices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval: Option<EvalRecord>,
}

#[derive(Debug, Serialize)]
struct ModuleLine {
    module: String,
    rank: usize,
    error_vs_sum: f64,
    norm_ratio: f64,
    silhouette: Option<f64>,
}

/// What a merge command describes: the adapters, the settings, the output (named, or the
/// replayed recipe's) and the recipe whose hashes are to be checked (if any).
struct Plan {
    paths: Vec<PathBuf>,
    settings: MergeSettings,
    out: Option<PathBuf>,
    check: Option<Recipe>,
    notes: Vec<String>,
}

fn plan(args: &MergeArgs) -> anyhow::Result<Plan> {
    let Some(recipe_path) = &args.recipe else {
        if args.adapters.is_empty() {
            crate::usage!("no adapters given (name them, or replay a recipe with --recipe FILE)");
        }
        let (paths, notes) = adapter_paths(&args.adapters, Folders::Refuse)?;
        return Ok(Plan {
            paths,
            settings: args.settings.apply(MergeSettings::default())?,
            out: args.out.clone(),
            check: None,
            notes,
        });
    };
    let recipe = Recipe::read(recipe_path)?;
    let dir = recipe_path.parent().unwrap_or(Path::new("."));
    let (paths, notes) = if args.adapters.is_empty() {
        (recipe.adapter_paths(dir), Vec::new())
    } else {
        adapter_paths(&args.adapters, Folders::Refuse)?
    };
    let settings = args.settings.apply(recipe.merge.clone())?;
    let out = args.out.clone().or_else(|| recipe.output_path(dir));
    // The recorded hashes only speak for the recorded inputs.
    let check = (args.adapters.is_empty() && !args.allow_changed_inputs).then_some(recipe);
    Ok(Plan {
        paths,
        settings,
        out,
        check,
        notes,
    })
}

/// Runs a merge.
pub fn run(args: &MergeArgs, load: &LoadOptions) -> anyhow::Result<()> {
    // A signal still ends the merge at once, but never between a kohya file and its recipe.
    lora_lego::signals::on_fatal_signals(|| {}).context("installing the signal handlers")?;
    let Plan {
        paths,
        settings,
        out,
        check: recipe,
        notes,
    } = plan(args)?;
    if let Err(e) = settings.validate(paths.len()) {
        crate::usage!("{e}");
    }
    if out.is_none() && args.save_recipe.is_none() && !args.dry_run {
        if args.recipe.is_some() {
            crate::usage!("nothing to write: the recipe names no output; give -o OUT for the merged adapter (or --dry-run to see it)");
        }
        crate::usage!("nothing to write: give -o OUT for the merged adapter (and/or --save-recipe FILE, or --dry-run)");
    }
    // A recipe's [eval] command is a record, never run: a recipe from elsewhere must not
    // be able to start programs.
    let evaluator = args.eval.evaluator(None)?;
    if evaluator.is_some() && (out.is_none() || args.dry_run) {
        crate::usage!("--eval scores the export: give -o OUT (and no --dry-run)");
    }
    let progress = Progress::new(args.quiet || args.json);
    progress.log(&format!("loading {} adapter(s)", paths.len()));
    // One merge: no module's caches are needed after it is written.
    let engine = session::open(&paths, load)?.one_shot();
    let adapters = &engine.set.adapters;
    let (save_recipe, out) = match args.dry_run {
        true => (None, None),
        false => (args.save_recipe.clone(), out),
    };
    // An input at the output is refused first: that is the message that matters there.
    check_outputs(
        args,
        out.as_deref(),
        save_recipe.as_deref(),
        &settings,
        adapters,
    )?;
    if let Some(out) = &out {
        check_target(out, args.force, Replaceable::Adapter)?;
    }
    if let Some(r) = &save_recipe {
        check_target(r, args.force, Replaceable::Recipe)?;
    }
    // Hashing reads every input file, once. A recipe's check, a saved recipe, a dry run and a
    // score need the hashes first; a plain merge leaves them to the export, which hashes while
    // it merges (its files are written last).
    let hash_first =
        recipe.is_some() || save_recipe.is_some() || out.is_none() || evaluator.is_some();
    let described = match hash_first {
        true => Some(Recipe::describe(adapters, &settings)?),
        false => None,
    };
    // Every use below is on a path that hashed first.
    let hashed = || described.as_ref().context("the inputs were not hashed");
    if let Some(recipe) = &recipe {
        recipe.check_inputs(hashed()?, adapters)?;
    }
    let mut notices = notes;
    notices.extend(flag_notices(args, &settings, &engine));
    if let Some(r) = &save_recipe {
        // The saved recipe remembers the output, so `merge --recipe FILE` alone replays it.
        let saved = Recipe {
            output: out.as_ref().map(|o| absolute(o).display().to_string()),
            ..hashed()?.clone()
        };
        let folder = r.parent().unwrap_or(Path::new("."));
        let text = saved.portable(folder).to_toml()?;
        atomic_file(r, args.force, Replaceable::Recipe, |tmp| {
            write_text(tmp, &text)
        })?;
    }
    if out.is_none() && !args.dry_run {
        for n in &notices {
            if !args.quiet && !args.json {
                eprintln!("note: {n}");
            }
        }
        return Ok(());
    }
    let bar = progress.bar(engine.set.modules.len() as u64, "merging modules");
    let Some(out_path) = &out else {
        let output = engine.merge_all_with(&settings, &|| bar.inc(1))?;
        bar.finish_and_clear();
        notices.extend(session::load_notices(&engine));
        notices.extend(output.notices.iter().cloned());
        return dry_run(args, &engine, &output, &settings, hashed()?, notices);
    };
    let target = session::ExportTarget {
        path: out_path.clone(),
        force: args.force,
        extra_inputs: args.recipe.iter().cloned().collect(),
        spill: session::SpillPolicy::Auto,
    };
    let never = AtomicBool::new(false);
    let written = session::export(
        &engine,
        &settings,
        &target,
        described.as_ref(),
        &|| bar.inc(1),
        &never,
    )
    .with_context(|| format!("writing {}", out_path.display()))?;
    bar.finish_and_clear();
    notices.extend(written.notices);
    let output = written.output;
    let mut summary = summarise(&engine, &output, &settings, Some(out_path), notices);
    if let Some((evaluator, split)) = &evaluator {
        progress.log(&format!(
            "scoring {} with `{}`",
            out_path.display(),
            evaluator.command
        ));
        let record = evaluator.run(out_path, split.as_deref()).with_context(|| {
            format!(
                "the merged adapter was written to {}, but scoring it failed",
                out_path.display()
            )
        })?;
        // The weights and their metadata recipe stay as written; the side recipe and the
        // model card gain the score.
        let scored = Recipe {
            eval: Some(record.clone()),
            ..hashed()?.portable(&recipe_folder(out_path, settings.format))
        };
        record_score(&engine, out_path, settings.format, &scored, &record)?;
        summary.eval = Some(record);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.quiet {
        for n in &summary.notices {
            eprintln!("note: {n}");
        }
        println!(
            "merged {} modules with {} into {} ({})",
            summary.modules.len(),
            summary.method,
            out_path.display(),
            settings.format
        );
        println!(
            "mean distance to the exact sum (not a quality score): {:.4}",
            summary.mean_error_vs_sum
        );
        for (name, r) in &summary.mean_retention {
            println!("mean cosine to {name} (direction only): {r:.4}");
        }
        if let Some(e) = &summary.eval {
            println!("score: {}", e.summary());
        }
    }
    Ok(())
}

/// Refuses, whatever `--force` says, an output or saved recipe that is, lies inside or
/// contains a file the merge reads (the recipe replayed included), and a saved recipe that the
/// output would replace.
fn check_outputs(
    args: &MergeArgs,
    out: Option<&Path>,
    save_recipe: Option<&Path>,
    settings: &MergeSettings,
    adapters: &[Adapter],
) -> anyhow::Result<()> {
    let mut inputs = Inputs::of_adapters(adapters);
    if let Some(r) = &args.recipe {
        inputs.add(r);
    }
    let mut written = Vec::new();
    if let Some(out) = out {
        written.push(out.to_path_buf());
        if settings.format.is_single_file() {
            written.push(side_file_path(out, settings.format, RECIPE_FILE));
        }
    }
    for path in written.iter().map(PathBuf::as_path).chain(save_recipe) {
        inputs.check(path)?;
    }
    if let Some(saved) = save_recipe {
        let saved_at = resolve(saved);
        if let Some(clash) = written.iter().find(|w| saved_at.starts_with(resolve(w))) {
            bail!(
                "--save-recipe {}: the output {} would replace it; save the recipe elsewhere",
                saved.display(),
                clash.display()
            );
        }
    }
    Ok(())
}

/// Notes on the flags: those the method does not read, and `--k-for` patterns that match no
/// module.
fn flag_notices(args: &MergeArgs, settings: &MergeSettings, engine: &Engine) -> Vec<String> {
    let mut notes = Vec::new();
    let ignored = args.settings.params.ignored_by(settings.method);
    if !ignored.is_empty() {
        notes.push(format!(
            "method {} does not read {}: ignored",
            settings.method,
            ignored.join(", ")
        ));
    }
    if settings.method.is_lego() {
        for o in &settings.k_overrides {
            let Ok(re) = o.matcher() else { continue };
            if !engine
                .set
                .modules
                .iter()
                .any(|m| re.is_match(m.key.as_str()))
            {
                let example = engine.set.modules.first().map(|m| m.key.to_string());
                notes.push(format!(
                    "--k-for `{}={}` matches no module (module names look like `{}`)",
                    o.pattern,
                    o.k,
                    example.unwrap_or_default()
                ));
            }
        }
    }
    notes
}

/// `--dry-run`: what the export would hold, and its recipe, with nothing written.
fn dry_run(
    args: &MergeArgs,
    engine: &Engine,
    output: &MergeOutput,
    settings: &MergeSettings,
    described: &Recipe,
    notices: Vec<String>,
) -> anyhow::Result<()> {
    let (planned, mut notices) = {
        let (planned, more) = adapter_out(engine, output, settings)?;
        let mut all = notices;
        all.extend(more);
        (planned, all)
    };
    let bytes = planned.tensor_bytes();
    let folder = match &args.out {
        Some(o) => recipe_folder(o, settings.format),
        None => std::env::current_dir().unwrap_or_default(),
    };
    let recipe = described.portable(&folder).to_toml()?;
    if args.json {
        let modules: Vec<serde_json::Value> = output
            .modules
            .iter()
            .map(|m| {
                serde_json::json!({
                    "module": engine.set.modules[m.module].key.to_string(),
                    "rank": m.rank(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "dry_run": true,
            "format": settings.format.to_string(),
            "modules": modules,
            "tensor_bytes": bytes,
            "notices": notices,
            "recipe": recipe,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if args.quiet {
        return Ok(());
    }
    notices.dedup();
    for n in &notices {
        eprintln!("note: {n}");
    }
    println!("dry run: nothing written");
    for m in &output.modules {
        println!("{:>5}  {}", m.rank(), engine.set.modules[m.module].key);
    }
    println!(
        "{} modules, {} tensor bytes as {} ({})",
        output.modules.len(),
        bytes,
        settings.format,
        settings
            .dtype
            .map(|d| d.to_string())
            .unwrap_or_else(|| "the sources' dtype".into())
    );
    println!("\nrecipe:\n{recipe}");
    Ok(())
}

fn summarise(
    engine: &Engine,
    output: &MergeOutput,
    settings: &MergeSettings,
    out: Option<&Path>,
    notices: Vec<String>,
) -> Summary {
    let set = &engine.set;
    let modules = output
        .modules
        .iter()
        .map(|m| ModuleLine {
            module: set.modules[m.module].key.to_string(),
            rank: m.rank(),
            error_vs_sum: m.metrics.error_vs_sum,
            norm_ratio: m.metrics.norm_ratio,
            silhouette: m.clusters.as_ref().map(|c| c.silhouette),
        })
        .collect();
    let retention = adapter_retention(engine, output);
    Summary {
        output: out.map(|p| p.display().to_string()),
        method: settings.method.to_string(),
        modules,
        mean_error_vs_sum: mean(output.modules.iter().map(|m| m.metrics.error_vs_sum)),
        mean_retention: set
            .adapters
            .iter()
            .map(|a| a.name.clone())
            .zip(retention)
            .collect(),
        notices,
        eval: None,
    }
}
