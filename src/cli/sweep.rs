//! `lora-lego sweep`: a grid or seeded random search over merge settings, every candidate
//! scored by the user's evaluator, results in RESULTS_DIR, the best written as a recipe.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lora_lego::io::write::{check_target, Replaceable};
use lora_lego::io::LoadOptions;
use lora_lego::output_guard::Inputs;
use lora_lego::owned_file::replace_text;
use lora_lego::recipe::{MergeMethod, MergeSettings, Recipe};
use lora_lego::session;
use lora_lego::sweep::{
    best, candidates, knob_text, parse_set, read_results, ResultRecord, SweepContext, SweepEvent,
    SweepRun, SweepSpec, BEST_FILE, RESULTS_FILE, SCALE_FIELD,
};

use super::eval::EvalArgs;

/// `sweep` arguments.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Adapters (PEFT directories or .safetensors files); with --recipe, these replace its list.
    pub adapters: Vec<PathBuf>,
    /// Start from a recipe: its adapters, its settings as the base, its [sweep] table as the plan
    /// (flags given as well extend or override it).
    #[arg(long, value_name = "FILE")]
    pub recipe: Option<PathBuf>,
    /// The evaluator.
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Methods to try, comma-separated, or `all` [default: lego].
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Values of k to try, comma-separated.
    #[arg(short = 'k', value_delimiter = ',')]
    pub k: Vec<usize>,
    /// Global scales to try, comma-separated (the `scale` field: λ / α of every method).
    #[arg(long, value_delimiter = ',')]
    pub scale: Vec<f64>,
    /// Values of any settings field by its recipe name, e.g. density=0.3,0.5 or
    /// space=plain,balanced; repeatable. A single value sets the field for every candidate.
    #[arg(long = "set", value_name = "NAME=V1,V2,...", value_parser = parse_set)]
    pub set: Vec<(String, Vec<toml::Value>)>,
    /// Score N candidates drawn at random from the grid (seeded by --seed).
    #[arg(long, value_name = "N")]
    pub random: Option<usize>,
    /// The seed of the random draw [default: 0] (the merge's own seed is `--set seed=…`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Scorers run at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// The results folder: results.jsonl (resumed on a rerun) and best.toml.
    #[arg(
        long = "out",
        value_name = "RESULTS_DIR",
        default_value = "lora-lego-sweep"
    )]
    pub results: PathBuf,
    /// Export the best candidate here (a PEFT directory or a kohya file).
    #[arg(short = 'o', value_name = "OUT")]
    pub export: Option<PathBuf>,
    /// Replace an existing -o OUT.
    #[arg(long)]
    pub force: bool,
    /// Sweep even if an input's hash differs from the recipe's (with --recipe).
    #[arg(long)]
    pub allow_changed_inputs: bool,
    /// Print nothing but errors and the final table.
    #[arg(long)]
    pub quiet: bool,
}

/// The adapters, the base settings and the plan the arguments describe.
/// The recipe is returned when its recorded hashes are to be checked.
type Plan = (Vec<PathBuf>, MergeSettings, SweepSpec, Option<Recipe>);

fn plan(args: &SweepArgs) -> anyhow::Result<Plan> {
    let (mut paths, base, mut spec, mut recipe) = match &args.recipe {
        Some(file) => {
            let recipe = Recipe::read(file)?;
            let dir = file.parent().unwrap_or(Path::new("."));
            (
                recipe.adapter_paths(dir),
                recipe.merge.clone(),
                recipe.sweep.clone().unwrap_or_default(),
                Some(recipe),
            )
        }
        None => (
            Vec::new(),
            MergeSettings::default(),
            SweepSpec::default(),
            None,
        ),
    };
    if !args.adapters.is_empty() {
        // The recorded hashes only speak for the recorded inputs.
        paths = args.adapters.clone();
        recipe = None;
    }
    if args.allow_changed_inputs {
        recipe = None;
    }
    if paths.is_empty() {
        bail!("no adapters given (name them, or start from a recipe with --recipe FILE)");
    }
    if !args.methods.is_empty() {
        spec.methods = if args.methods.iter().any(|m| m == "all") {
            MergeMethod::all().iter().map(|m| m.to_string()).collect()
        } else {
            args.methods.clone()
        };
    }
    if !args.k.is_empty() {
        let values = args.k.iter().map(|&k| toml::Value::Integer(k as i64));
        spec.grid.insert("k".into(), values.collect());
    }
    if !args.scale.is_empty() {
        let values = args.scale.iter().map(|&s| toml::Value::Float(s));
        spec.grid.insert(SCALE_FIELD.into(), values.collect());
    }
    for (name, values) in &args.set {
        spec.grid.insert(name.clone(), values.clone());
    }
    if args.random.is_some() {
        spec.random = args.random;
    }
    if let Some(s) = args.seed {
        spec.seed = s;
    }
    Ok((paths, base, spec, recipe))
}

/// Runs the sweep.
pub fn run(args: &SweepArgs, load: &LoadOptions) -> anyhow::Result<()> {
    let (paths, base, mut spec, check) = plan(args)?;
    // A recipe's `eval` is a record, never run by itself: a recipe from elsewhere must not be
    // able to start programs.
    let Some((evaluator, split)) = args.eval.evaluator(None)? else {
        match &spec.eval {
            Some(cmd) => bail!(
                "a sweep needs an evaluator: the recipe's [sweep] names `{cmd}`; pass it with --eval to run it"
            ),
            None => bail!("a sweep needs an evaluator: --eval 'CMD {{dir}} [--split {{split}}]'"),
        }
    };
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    spec.eval = Some(evaluator.command.clone());
    spec.split = split.clone();
    if let Some(out) = &args.export {
        // `main` adds the `--force` hint to an existing output.
        check_target(out, args.force, Replaceable::Adapter)?;
    }
    let quiet = args.quiet;
    let log = |line: String| {
        if !quiet {
            eprintln!("lora-lego: {line}");
        }
    };
    log(format!("loading {} adapter(s)", paths.len()));
    let engine = session::open(&paths, load)?;
    let adapters = &engine.set.adapters;
    // Neither the results nor the export may be, lie inside or contain an input.
    let mut inputs = Inputs::of_adapters(adapters);
    if let Some(r) = &args.recipe {
        inputs.add(r);
    }
    inputs.check(&args.results)?;
    if let Some(out) = &args.export {
        inputs.check(out)?;
    }
    let described = Recipe::describe(adapters, &base)?;
    if let Some(recipe) = &check {
        recipe.check_inputs(&described, adapters)?;
    }
    let ctx = SweepContext {
        adapter_hashes: described.adapters.iter().map(|a| a.hash_label()).collect(),
        eval: evaluator.command.clone(),
        split: split.clone(),
    };
    let cands = candidates(&spec, &base, &ctx, paths.len())?;
    engine.prepare();

    let results_path = args.results.join(RESULTS_FILE);
    let (previous, _) = read_results(&results_path)?;
    let done: BTreeSet<&str> = previous
        .iter()
        .filter(|r| r.eval.is_some())
        .map(|r| r.id.as_str())
        .collect();
    let todo = cands
        .iter()
        .filter(|c| !done.contains(c.id.as_str()))
        .count();
    log(format!(
        "{} candidate(s), {} already scored in {}, {todo} to score with {} job(s)",
        cands.len(),
        cands.len() - todo,
        results_path.display(),
        args.jobs
    ));
    let bar = progress_bar(todo as u64, quiet);
    let started = Instant::now();
    let finished = Mutex::new(0usize);
    let tty = std::io::stderr().is_terminal();
    let on_event = |ev: SweepEvent| {
        let SweepEvent::Finished(r) = ev else { return };
        let line = row(r);
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
        bar.inc(1);
        let mut n = finished.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        if !tty && !quiet {
            let per = started.elapsed().as_secs_f64() / *n as f64;
            eprintln!(
                "lora-lego: {}/{todo} scored; about {:.0} s left",
                *n,
                per * (todo - *n) as f64
            );
        }
    };
    // Candidates carry the recipe as the export of the best will, paths relative to its folder,
    // so that export is byte for byte the adapter that scored.
    let export_folder = match &args.export {
        Some(out) => lora_lego::export::recipe_folder(out, base.format),
        None => args.results.clone(),
    };
    let portable = described.portable(&export_folder);
    let runner = SweepRun {
        engine: &engine,
        described: &portable,
        evaluator: &evaluator,
        split: split.as_deref(),
        jobs: args.jobs,
        dir: &args.results,
    };
    let (records, notes) = runner.run(&cands, &on_event)?;
    bar.finish_and_clear();
    for n in notes {
        eprintln!("note: {n}");
    }
    print!("{}", table(&records));
    let Some(top) = best(&records) else {
        bail!(
            "no candidate was scored; the errors are in {}",
            results_path.display()
        );
    };
    let (Some(eval), settings) = (top.eval.clone(), top.settings.clone()) else {
        unreachable!("best() only returns scored records")
    };
    let recipe = Recipe {
        merge: settings.clone(),
        eval: Some(eval.clone()),
        sweep: Some(spec),
        ..described.clone()
    };
    let best_path = args.results.join(BEST_FILE);
    let text = recipe.portable(&args.results).to_toml()?;
    // best.toml belongs to the results folder and follows its results.jsonl on every rerun.
    replace_text(&best_path, &text)?;
    println!(
        "best: {} {} {} mean {:.4}; recipe in {}",
        top.id,
        top.method,
        knob_text(&top.knobs),
        eval.mean,
        best_path.display()
    );
    if let Some(out) = &args.export {
        let output = engine.merge_all(&settings)?;
        // The recipe as the candidate was written for scoring, so the export is byte for byte
        // the adapter that scored; the side recipe then gains the [eval] and [sweep] tables.
        let scored = Recipe {
            merge: settings.clone(),
            ..portable.clone()
        };
        lora_lego::export::export_with_recipe(
            &engine,
            &output,
            &settings,
            out,
            args.force,
            &scored.to_toml()?,
        )
        .with_context(|| format!("writing {}", out.display()))?;
        let recipe = recipe.portable(&lora_lego::export::recipe_folder(out, settings.format));
        lora_lego::export::record_score(&engine, out, settings.format, &recipe, &eval)?;
        println!("exported the best candidate to {}", out.display());
    }
    Ok(())
}

fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("scoring [{bar:30}] {pos}/{len} {elapsed} ETA {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// One finished candidate as a line.
fn row(r: &ResultRecord) -> String {
    let figure = match (&r.eval, &r.error) {
        (Some(e), _) => {
            let tasks: Vec<String> = e.tasks().map(|(k, v)| format!("{k} {v:.3}")).collect();
            format!("mean {:.4}  {}", e.mean, tasks.join("  "))
        }
        (None, Some(err)) => format!("error: {}", err.lines().next().unwrap_or("")),
        (None, None) => "not scored".into(),
    };
    let same = r
        .same_as
        .as_deref()
        .map(|s| format!(" (same merge as {s})"))
        .unwrap_or_default();
    format!(
        "{}  {:<16} {:<28} {figure}{same}",
        r.id,
        r.method,
        knob_text(&r.knobs)
    )
}

/// Every candidate, best first, one column per task.
fn table(records: &[ResultRecord]) -> String {
    let tasks: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.eval.as_ref())
        .flat_map(|e| e.tasks().map(|(k, _)| k.as_str()))
        .collect();
    let mut sorted: Vec<&ResultRecord> = records.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &ResultRecord| r.mean().unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a))
    });
    let mut s = format!(
        "{:<4} {:<12} {:<16} {:<28} {:>8}",
        "#", "id", "method", "knobs", "mean"
    );
    for t in &tasks {
        s.push_str(&format!(" {:>10}", tail(t, 10)));
    }
    s.push('\n');
    for (i, r) in sorted.iter().enumerate() {
        s.push_str(&format!(
            "{:<4} {:<12} {:<16} {:<28} ",
            i + 1,
            r.id,
            r.method,
            knob_text(&r.knobs)
        ));
        match &r.eval {
            Some(e) => {
                s.push_str(&format!("{:>8.4}", e.mean));
                for t in &tasks {
                    match e.scores.get(*t) {
                        Some(v) => s.push_str(&format!(" {v:>10.4}")),
                        None => s.push_str(&format!(" {:>10}", "-")),
                    }
                }
            }
            None => s.push_str(&format!(
                "{:>8}  {}",
                "-",
                r.error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("")
            )),
        }
        s.push('\n');
    }
    s
}

fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}
