//! The command line: argument definitions and dispatch. Subcommands build a plan and call the
//! library; no merge logic lives here.

pub mod bench;
pub mod compare;
pub mod eval;
pub mod hints;
pub mod inputs;
pub mod inspect;
pub mod merge;
pub mod progress;
pub mod settings;
pub mod sweep;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Merge LoRA adapters the LoRA-LEGO way.
#[derive(Debug, Parser)]
#[command(
    name = "lora-lego",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Adapters to open in the explorer (PEFT directories or .safetensors files); none opens the demo.
    pub adapters: Vec<PathBuf>,
    /// The explorer's sweep view (`w`) shows this sweep's results (a `lora-lego sweep --out` folder).
    #[arg(long, value_name = "RESULTS_DIR")]
    pub sweep: Option<PathBuf>,
    /// The explorer's evaluator (`E` scores the current settings).
    #[command(flatten)]
    pub eval: eval::EvalArgs,
    /// Accept adapters holding NaN or Inf values.
    #[arg(long, global = true)]
    pub allow_nonfinite: bool,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what each adapter holds: modules, shapes, ranks, scalings, ‖ΔW‖, non-LoRA tensors.
    Inspect(inspect::InspectArgs),
    /// Merge adapters into one and write it (a PEFT directory, a kohya or a diffusers file).
    Merge(Box<merge::MergeArgs>),
    /// Every method side by side on the same adapters: rank, distance to the sum, cosines, size, time (with --eval, a score).
    Compare(Box<compare::CompareArgs>),
    /// Search merge settings with your evaluator: a grid or seeded random draw, results in
    /// RESULTS_DIR/results.jsonl (resumable), the best as RESULTS_DIR/best.toml.
    Sweep(Box<sweep::SweepArgs>),
    /// Synthesise eight rank-16 Llama-2-7B adapters and measure load, Gram, k-means, merge, memory.
    Bench(bench::BenchArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// A command line that cannot run as given (exit status 2, like clap's own usage errors).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Fails with a usage error (exit status 2).
#[macro_export]
macro_rules! usage {
    ($($t:tt)*) => {
        return Err(anyhow::Error::new($crate::cli::Usage(format!($($t)*))))
    };
}

/// The exit status for an error: 2 for a usage error, 1 for anything else.
pub fn exit_status(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<Usage>().is_some() {
        2
    } else {
        1
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let load = lora_lego::io::LoadOptions {
        allow_nonfinite: cli.allow_nonfinite,
    };
    match cli.command {
        Some(Command::Inspect(args)) => inspect::run(&args, &load),
        Some(Command::Merge(args)) => merge::run(&args, &load),
        Some(Command::Compare(args)) => compare::run(&args, &load),
        Some(Command::Sweep(args)) => sweep::run(&args, &load),
        Some(Command::Bench(args)) => bench::run_bench(&args),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "lora-lego",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        None => {
            let adapters = if cli.adapters.is_empty() {
                demo_adapters()?
            } else {
                cli.adapters
            };
            let extras = lora_lego::tui::Extras {
                sweep: cli.sweep,
                evaluator: cli.eval.evaluator(None)?,
            };
            lora_lego::tui::run_with(adapters, &load, extras)
        }
    }
}

/// The demo set shipped in `assets/demo`, found beside the executable's crate or the cwd.
pub fn demo_adapters() -> anyhow::Result<Vec<PathBuf>> {
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo"),
        PathBuf::from("assets/demo"),
    ];
    let dir = candidates.iter().find(|d| d.is_dir()).ok_or_else(|| {
        anyhow::anyhow!("the demo adapters (assets/demo) are not here; pass adapter paths instead")
    })?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("adapter_config.json").is_file())
        .collect();
    paths.sort();
    Ok(paths)
}
