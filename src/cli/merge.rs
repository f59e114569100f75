//! `lora-lego merge`: flags and/or a recipe → settings → engine → export.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use lora_lego::adapter::{Adapter, AdapterFormat};
use lora_lego::align::ModuleSet;
use lora_lego::card::{model_card, write_card};
use lora_lego::compare::adapter_retention;
use lora_lego::engine::{Engine, MergeOutput};
use lora_lego::eval::EvalRecord;
use lora_lego::io::write::{atomic_file, check_target, side_file_path, write_text, Replaceable};
use lora_lego::io::{load_all, LoadOptions};
use lora_lego::metrics::mean;
use lora_lego::output_guard::{resolve, Inputs};
use lora_lego::recipe::RECIPE_FILE;
use lora_lego::recipe::{MergeSettings, Recipe};
use lora_lego::LegoError;
use serde::Serialize;

use super::eval::EvalArgs;
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

/// The adapters and settings a merge command describes, and the recipe it replays (if any).
fn plan(args: &MergeArgs) -> anyhow::Result<(Vec<PathBuf>, MergeSettings, Option<Recipe>)> {
    let Some(recipe_path) = &args.recipe else {
        if args.adapters.is_empty() {
            bail!("no adapters given (name them, or replay a recipe with --recipe FILE)");
        }
        return Ok((
            args.adapters.clone(),
            args.settings.apply(MergeSettings::default())?,
            None,
        ));
    };
    let recipe = Recipe::read(recipe_path)?;
    let dir = recipe_path.parent().unwrap_or(Path::new("."));
    let paths = if args.adapters.is_empty() {
        recipe.adapter_paths(dir)
    } else {
        args.adapters.clone()
    };
    let settings = args.settings.apply(recipe.merge.clone())?;
    // The recorded hashes only speak for the recorded inputs.
    let check = (args.adapters.is_empty() && !args.allow_changed_inputs).then_some(recipe);
    Ok((paths, settings, check))
}

/// Runs a merge.
pub fn run(args: &MergeArgs, load: &LoadOptions) -> anyhow::Result<()> {
    // A signal still ends the merge at once, but never between a kohya file and its recipe.
    lora_lego::signals::on_fatal_signals(|| {}).context("installing the signal handlers")?;
    let (paths, settings, recipe) = plan(args)?;
    settings.validate(paths.len()).map_err(anyhow::Error::msg)?;
    if args.out.is_none() && args.save_recipe.is_none() {
        bail!("nothing to write: give -o OUT for the merged adapter (and/or --save-recipe FILE)");
    }
    // A recipe's [eval] command is a record, never run: a recipe from elsewhere must not
    // be able to start programs.
    let evaluator = args.eval.evaluator(None)?;
    if evaluator.is_some() && args.out.is_none() {
        bail!("--eval scores the export: give -o OUT");
    }
    let progress = Progress::new(args.quiet || args.json);
    progress.log(&format!("loading {} adapter(s)", paths.len()));
    let adapters = load_all(&paths, load)?;
    // An input at the output is refused first: that is the message that matters there.
    check_outputs(args, &settings, &adapters)?;
    if let Some(out) = &args.out {
        check_target(out, args.force, Replaceable::Adapter).map_err(force_hint)?;
    }
    if let Some(r) = &args.save_recipe {
        check_target(r, args.force, Replaceable::Recipe).map_err(force_hint)?;
    }
    // Hashing reads every input file: once, for the check and for every recipe written.
    let described = Recipe::describe(&adapters, &settings)?;
    if let Some(recipe) = &recipe {
        recipe.check_inputs(&described, &adapters)?;
    }
    let recipe_text = described.to_toml();
    let engine = Engine::new(ModuleSet::new(adapters)?);
    if let Some(r) = &args.save_recipe {
        atomic_file(r, args.force, Replaceable::Recipe, |tmp| {
            write_text(tmp, &recipe_text)
        })
        .map_err(force_hint)?;
    }
    let Some(out_path) = &args.out else {
        return Ok(());
    };
    let bar = progress.bar(engine.set.modules.len() as u64, "merging modules");
    let output = engine.merge_all_with(&settings, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let mut notices = engine.set.warnings.clone();
    notices.extend(
        engine
            .set
            .adapters
            .iter()
            .flat_map(|a| a.warnings.iter().cloned()),
    );
    notices.extend(output.notices.iter().cloned());
    progress.log(&format!("writing {}", out_path.display()));
    notices.extend(
        lora_lego::export::export_with_recipe(
            &engine,
            &output,
            &settings,
            out_path,
            args.force,
            &recipe_text,
        )
        .map_err(force_hint)
        .with_context(|| format!("writing {}", out_path.display()))?,
    );
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
            ..described.clone()
        };
        let side = side_file_path(out_path, settings.format, RECIPE_FILE);
        lora_lego::owned_file::replace_text(&side, &scored.to_toml())?;
        write_card(out_path, settings.format, &model_card(&scored, &record))?;
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

/// The library says an output exists; on the command line, the way out is `--force`.
fn force_hint(e: LegoError) -> anyhow::Error {
    match e {
        LegoError::OutputExists { .. } => anyhow::anyhow!("{e}; pass --force to replace it"),
        other => other.into(),
    }
}

/// Refuses, whatever `--force` says, an output or saved recipe that is, lies inside or
/// contains a file the merge reads (the recipe replayed included), and a saved recipe that the
/// output would replace.
fn check_outputs(
    args: &MergeArgs,
    settings: &MergeSettings,
    adapters: &[Adapter],
) -> anyhow::Result<()> {
    let mut inputs = Inputs::of_adapters(adapters);
    if let Some(r) = &args.recipe {
        inputs.add(r);
    }
    let mut written = Vec::new();
    if let Some(out) = &args.out {
        written.push(out.clone());
        if settings.format == AdapterFormat::Kohya {
            written.push(side_file_path(out, settings.format, RECIPE_FILE));
        }
    }
    for path in written.iter().chain(&args.save_recipe) {
        inputs.check(path)?;
    }
    if let Some(saved) = &args.save_recipe {
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
