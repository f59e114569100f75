//! `lora-lego compare`: every method on the same adapters, one table.

use std::path::PathBuf;

use lora_lego::eval::EvalRecord;
use lora_lego::sweep::score_once;

use clap::Args;
use lora_lego::compare::compare_with;
use lora_lego::io::LoadOptions;
use lora_lego::recipe::{MergeMethod, MergeSettings};
use lora_lego::session;

use super::eval::EvalArgs;
use super::inputs::{adapter_paths, Folders};
use super::progress::Progress;
use super::settings::ParamArgs;

/// `compare` arguments.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Adapters (PEFT directories or .safetensors files).
    #[arg(required = true)]
    pub adapters: Vec<PathBuf>,
    /// Only these methods (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',', hide_possible_values = true)]
    pub methods: Vec<MergeMethod>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The merge parameters, each read by the methods it belongs to (k by lego).
    #[command(flatten)]
    pub params: ParamArgs,
    /// Score each method's merge with an evaluator (a score column).
    #[command(flatten)]
    pub eval: EvalArgs,
}

/// Runs every method and prints the table.
pub fn run(args: &CompareArgs, load: &LoadOptions) -> anyhow::Result<()> {
    let settings = args.params.apply(MergeSettings::default());
    let (paths, notes) = adapter_paths(&args.adapters, Folders::Refuse)?;
    if let Err(e) = settings.validate(paths.len()) {
        crate::usage!("{e}");
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    let methods = if args.methods.is_empty() {
        MergeMethod::all()
    } else {
        args.methods.clone()
    };
    let progress = Progress::new(false);
    progress.log(&format!("loading {} adapter(s)", paths.len()));
    let engine = session::open(&paths, load)?;
    engine.prepare();
    let evaluator = args.eval.evaluator(None)?;
    let bar = progress.bar(methods.len() as u64, "comparing methods");
    let rows = compare_with(&engine, &settings, &methods, &|m| {
        bar.set_message(format!("comparing methods: {m} done"));
        bar.inc(1);
        progress.log(&format!("{m} done"));
    });
    bar.finish_and_clear();
    let scores: Vec<Option<Result<EvalRecord, String>>> = match &evaluator {
        None => rows.iter().map(|_| None).collect(),
        Some((ev, split)) => rows
            .iter()
            .map(|r| {
                r.unavailable.is_none().then(|| {
                    let s = MergeSettings {
                        method: r.method,
                        ..settings.clone()
                    };
                    score_once(&engine, &s, ev, split.as_deref())
                })
            })
            .collect(),
    };
    if args.json {
        let mut out = Vec::new();
        for (row, score) in rows.iter().zip(&scores) {
            let mut v = serde_json::to_value(row)?;
            if let (Some(obj), Some(score)) = (v.as_object_mut(), score) {
                let (key, val) = match score {
                    Ok(e) => ("eval", serde_json::to_value(e)?),
                    Err(e) => ("eval_error", serde_json::Value::from(e.clone())),
                };
                obj.insert(key.into(), val);
            }
            out.push(v);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let score_head = if evaluator.is_some() { "   score" } else { "" };
    println!(
        "{:<20} {:>6} {:>9} {:>10} {:>9} {:>9} {:>10} {:>9}{score_head}",
        "method", "rank", "dist/sum", "norm ratio", "mean cos", "min cos", "size", "time"
    );
    for (r, score) in rows.iter().zip(&scores) {
        let score = match score {
            None => String::new(),
            Some(Ok(e)) => format!(" {:>7.4}", e.mean),
            Some(Err(e)) => format!("  score failed: {e}"),
        };
        match &r.unavailable {
            Some(why) => println!("{:<20} n/a: {why}", r.method.to_string()),
            None => println!(
                "{:<20} {:>6} {:>9.4} {:>10.4} {:>9.4} {:>9.4} {:>10} {:>7.1}ms{score}",
                r.method.to_string(),
                r.max_rank,
                r.error_vs_sum,
                r.norm_ratio,
                r.mean_retention,
                r.min_retention,
                human_bytes(r.bytes),
                r.millis
            ),
        }
    }
    if evaluator.is_none() {
        println!("dist/sum, norm ratio and cos are data-free geometry, not quality: score with --eval CMD");
    }
    Ok(())
}

fn human_bytes(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}
