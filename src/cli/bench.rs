//! `lora-lego bench`: synthesise a realistic adapter set, measure in a child process (so peak
//! memory is the merge's, not the synthesis'), print the table.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use lora_lego::bench::run::{run, BenchReport};
use lora_lego::bench::synth::{synthesize, SynthSpec};

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A version that runs in about a minute (8 layers, hidden 2048).
    #[arg(long)]
    pub small: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Synthesise into DIR and keep the adapters there (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Measure adapters already on disk instead of synthesising (used by the child process).
    #[arg(long, hide = true, num_args = 1.., value_name = "ADAPTER")]
    pub measure: Vec<PathBuf>,
    /// Where the measuring child exports (hidden).
    #[arg(long, hide = true)]
    pub out_dir: Option<PathBuf>,
}

/// Runs the benchmark.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    if !args.measure.is_empty() {
        let out = args.out_dir.clone().context("--measure needs --out-dir")?;
        let report = run(&args.measure, &out)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let spec = if args.small {
        SynthSpec::small()
    } else {
        SynthSpec::llama7b()
    };
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let target = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    eprintln!(
        "synthesising {} adapters, r = {}, {} layers × 7 modules ({}→{}), {} ({:.2} GB) in {}",
        spec.adapters,
        spec.rank,
        spec.layers,
        spec.hidden,
        spec.intermediate,
        spec.dtype,
        spec.bytes() as f64 / 1e9,
        target.display()
    );
    let t = Instant::now();
    let paths = synthesize(&spec, &target, 42)?;
    eprintln!(
        "synthesised in {:.1} s; measuring",
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("bench")
        .arg("--out-dir")
        .arg(tmp.path())
        .arg("--measure")
        .args(&paths)
        .output()?;
    if !out.status.success() {
        bail!(
            "the measuring process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: BenchReport =
        serde_json::from_slice(&out.stdout).context("reading the measurements")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The report as a table with the targets beside the figures.
fn table(r: &BenchReport) -> String {
    let gb = r.input_bytes as f64 / 1e9;
    let rss = r.peak_rss_bytes as f64 / 1e9;
    let pct = 100.0 * r.gram_gflops / r.gemm_peak_gflops;
    let rows = [
        (
            "input",
            format!(
                "{} adapters, {} modules, {gb:.2} GB, {} threads",
                r.adapters, r.modules, r.threads
            ),
            String::new(),
        ),
        ("load", format!("{:.0} ms", r.load_ms), String::new()),
        (
            "Gram build",
            format!(
                "{:.0} ms, {:.1} GFLOP/s ({pct:.0}% of {:.1} GFLOP/s GEMM peak)",
                r.gram_ms, r.gram_gflops, r.gemm_peak_gflops
            ),
            "≥ 50% of peak".into(),
        ),
        (
            "k-means, all modules, k = 16",
            format!("{:.0} ms", r.kmeans_all_ms),
            String::new(),
        ),
        (
            "full LEGO merge + export",
            format!("{:.0} ms", r.merge_export_ms),
            "≤ 10 s".into(),
        ),
        (
            "recluster one module p50/p95",
            format!(
                "{:.1} / {:.1} ms",
                r.recluster_one_ms[0], r.recluster_one_ms[1]
            ),
            "≤ 50 ms".into(),
        ),
        (
            "recluster all modules p50/p95",
            format!(
                "{:.0} / {:.0} ms",
                r.recluster_all_ms[0], r.recluster_all_ms[1]
            ),
            "≤ 2 s".into(),
        ),
        (
            "SVD baseline, one square module",
            format!("{:.1} ms", r.svd_module_ms),
            "≤ 50 ms".into(),
        ),
        (
            "peak RSS",
            format!("{rss:.2} GB ({:.2}× input)", rss / gb),
            "≤ 1.5× input".into(),
        ),
    ];
    let mut s = String::new();
    for (what, figure, target) in rows {
        s.push_str(&format!("{what:<34} {figure:<62} {target}\n"));
    }
    s
}
