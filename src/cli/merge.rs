//! `lora-lego merge`: flags → settings → engine → export.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lora_lego::adapter::AdapterFormat;
use lora_lego::align::ModuleSet;
use lora_lego::engine::{Engine, MergeOutput};
use lora_lego::io::tensor::DType;
use lora_lego::io::write::check_target;
use lora_lego::io::{load_all, LoadOptions};
use lora_lego::merge::baselines::MajoritySign;
use lora_lego::metrics::mean;
use lora_lego::recipe::{
    FeatureSpace, KOverride, MergeMethod, MergeSettings, OutputReweight, ParamReweight,
};
use serde::Serialize;

/// `merge` arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Adapters (PEFT directories or .safetensors files).
    #[arg(required = true)]
    pub adapters: Vec<PathBuf>,
    /// Output: a directory for PEFT, a .safetensors file for kohya.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Clusters (merged rank) per module.
    #[arg(short = 'k', long, default_value_t = 8)]
    pub k: usize,
    /// lego, or a PEFT combination type (linear, cat, svd, ties, ties_svd, dare_linear, …).
    #[arg(long, default_value = "lego")]
    pub method: MergeMethod,
    /// One weight per adapter, comma-separated (default: all 1).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub weights: Vec<f64>,
    /// Parameter reweighting norm: linf, l2 or off.
    #[arg(long, default_value = "linf")]
    pub param_reweight: ParamReweight,
    /// Output reweighting reference rank: mean, max, off or a number.
    #[arg(long, default_value = "mean")]
    pub output_reweight: OutputReweight,
    /// A free multiplier on B' on top of output reweighting.
    #[arg(long, default_value_t = 1.0)]
    pub output_scale: f64,
    /// Feature space for clustering: plain, sign-aware or balanced.
    #[arg(long, default_value = "plain")]
    pub space: FeatureSpace,
    /// k-means (and DARE) seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// k-means restarts.
    #[arg(long, default_value_t = 10)]
    pub n_init: usize,
    /// k-means iteration cap.
    #[arg(long, default_value_t = 300)]
    pub max_iter: usize,
    /// k-means relative tolerance.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// Per-module k: PATTERN=K (glob, or re:REGEX); repeatable, the last match wins.
    #[arg(long = "k-for", value_name = "PATTERN=K")]
    pub k_for: Vec<KOverride>,
    /// SVD rank for the SVD baselines (default: the largest source rank).
    #[arg(long)]
    pub svd_rank: Option<usize>,
    /// Fraction kept by TIES / DARE / magnitude pruning.
    #[arg(long, default_value_t = 0.5)]
    pub density: f64,
    /// TIES sign election: total or frequency.
    #[arg(long, default_value = "total")]
    pub majority_sign: MajoritySign,
    /// Quantile clamp of the SVD factors.
    #[arg(long)]
    pub svd_clamp: Option<f64>,
    /// Output format: peft or kohya.
    #[arg(long, default_value = "peft")]
    pub format: AdapterFormat,
    /// Output dtype: source, f32, f16 or bf16.
    #[arg(long, default_value = "source")]
    pub dtype: String,
    /// Copy the non-LoRA tensors (classifier heads) of this adapter; repeatable.
    #[arg(long = "keep-heads", value_name = "NAME")]
    pub keep_heads: Vec<String>,
    /// Replace an existing output.
    #[arg(long)]
    pub force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(long)]
    pub quiet: bool,
}

impl MergeArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> anyhow::Result<MergeSettings> {
        let dtype = match self.dtype.as_str() {
            "source" => None,
            d => Some(d.parse::<DType>().map_err(anyhow::Error::msg)?),
        };
        Ok(MergeSettings {
            method: self.method,
            weights: self.weights.clone(),
            k: self.k,
            k_overrides: self.k_for.clone(),
            space: self.space,
            param_reweight: self.param_reweight,
            output_reweight: self.output_reweight,
            output_scale: self.output_scale,
            seed: self.seed,
            n_init: self.n_init,
            max_iter: self.max_iter,
            tol: self.tol,
            svd_rank: self.svd_rank,
            density: self.density,
            majority_sign: self.majority_sign,
            svd_clamp: self.svd_clamp,
            format: self.format,
            dtype,
            keep_heads: self.keep_heads.clone(),
        })
    }
}

/// The summary printed after a merge.
#[derive(Debug, Serialize)]
struct Summary {
    output: String,
    method: String,
    modules: Vec<ModuleLine>,
    mean_error_vs_sum: f64,
    mean_retention: Vec<(String, f64)>,
    notices: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ModuleLine {
    module: String,
    rank: usize,
    error_vs_sum: f64,
    norm_ratio: f64,
    silhouette: Option<f64>,
}

/// Runs a merge from flags.
pub fn run(args: &MergeArgs, load: &LoadOptions) -> anyhow::Result<()> {
    let settings = args.settings()?;
    settings
        .validate(args.adapters.len())
        .map_err(anyhow::Error::msg)?;
    check_target(&args.out, args.force)?;
    let engine = Engine::new(ModuleSet::new(load_all(&args.adapters, load)?)?);
    let output = engine.merge_all(&settings)?;
    let mut notices = engine.set.warnings.clone();
    notices.extend(
        engine
            .set
            .adapters
            .iter()
            .flat_map(|a| a.warnings.iter().cloned()),
    );
    notices.extend(output.notices.iter().cloned());
    notices.extend(
        lora_lego::export::export(&engine, &output, &settings, &args.out, args.force)
            .with_context(|| format!("writing {}", args.out.display()))?,
    );
    let summary = summarise(&engine, &output, &settings, args, notices);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !args.quiet {
        for n in &summary.notices {
            eprintln!("note: {n}");
        }
        println!(
            "merged {} modules with {} into {} ({:?})",
            summary.modules.len(),
            summary.method,
            summary.output,
            settings.format
        );
        println!("mean error vs exact sum: {:.4}", summary.mean_error_vs_sum);
        for (name, r) in &summary.mean_retention {
            println!("mean retention of {name}: {r:.4}");
        }
    }
    Ok(())
}

fn summarise(
    engine: &Engine,
    output: &MergeOutput,
    settings: &MergeSettings,
    args: &MergeArgs,
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
    let mean_retention = set
        .adapters
        .iter()
        .enumerate()
        .map(|(ai, a)| {
            let values = output.modules.iter().filter_map(|m| {
                let srcs = &set.modules[m.module].sources;
                srcs.iter()
                    .position(|s| s.0 == ai)
                    .map(|si| m.metrics.retention[si])
            });
            (a.name.clone(), mean(values))
        })
        .collect();
    Summary {
        output: args.out.display().to_string(),
        method: settings.method.to_string(),
        modules,
        mean_error_vs_sum: mean(output.modules.iter().map(|m| m.metrics.error_vs_sum)),
        mean_retention,
        notices,
    }
}
