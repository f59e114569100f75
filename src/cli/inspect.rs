//! `lora-lego inspect`.

use std::path::PathBuf;

use clap::Args;
use lora_lego::inspect::{render_text, report};
use lora_lego::io::{load_adapter, LoadOptions};

use super::inputs::{adapter_paths, Folders};

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Adapters (PEFT directories or .safetensors files).
    #[arg(required = true)]
    pub adapters: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Loads each adapter and prints its report.
pub fn run(args: &InspectArgs, load: &LoadOptions) -> anyhow::Result<()> {
    let (paths, notes) = adapter_paths(&args.adapters, Folders::Expand)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    let mut reports = Vec::new();
    for path in &paths {
        reports.push(report(&load_adapter(path, load)?));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", render_text(&reports));
    }
    Ok(())
}
