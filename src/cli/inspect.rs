//! `lora-lego inspect`.

use lora_lego::inspect::{render_text, report};
use lora_lego::io::{load_adapter, LoadOptions};

use super::InspectArgs;

/// Loads each adapter and prints its report.
pub fn run(args: &InspectArgs, load: &LoadOptions) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.adapters {
        reports.push(report(&load_adapter(path, load)?));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", render_text(&reports));
    }
    Ok(())
}
