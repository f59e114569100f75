//! `lora-lego compare`: every method on the same adapters, one table.

use std::path::PathBuf;

use clap::Args;
use lora_lego::align::ModuleSet;
use lora_lego::compare::compare;
use lora_lego::engine::Engine;
use lora_lego::io::{load_all, LoadOptions};
use lora_lego::recipe::{MergeMethod, MergeSettings};

use super::settings::SettingsArgs;

/// `compare` arguments.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Adapters (PEFT directories or .safetensors files).
    #[arg(required = true)]
    pub adapters: Vec<PathBuf>,
    /// Only these methods (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<MergeMethod>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The shared merge settings (k applies to lego).
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// Runs every method and prints the table.
pub fn run(args: &CompareArgs, load: &LoadOptions) -> anyhow::Result<()> {
    let settings = args.settings.apply(MergeSettings::default())?;
    settings
        .validate(args.adapters.len())
        .map_err(anyhow::Error::msg)?;
    let engine = Engine::new(ModuleSet::new(load_all(&args.adapters, load)?)?);
    engine.prepare();
    let methods = if args.methods.is_empty() {
        MergeMethod::all()
    } else {
        args.methods.clone()
    };
    let rows = compare(&engine, &settings, &methods);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<20} {:>6} {:>9} {:>10} {:>9} {:>9} {:>10} {:>9}",
        "method", "rank", "err/sum", "norm ratio", "mean ret", "min ret", "size", "time"
    );
    for r in rows {
        match &r.unavailable {
            Some(why) => println!("{:<20} n/a: {why}", r.method.to_string()),
            None => println!(
                "{:<20} {:>6} {:>9.4} {:>10.4} {:>9.4} {:>9.4} {:>10} {:>7.1}ms",
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
    Ok(())
}

fn human_bytes(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}
