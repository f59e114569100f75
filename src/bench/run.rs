//! The measurements of `lora-lego bench`, run on adapters already on disk.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use crate::align::ModuleSet;
use crate::engine::Engine;
use crate::error::Result;
use crate::export::export;
use crate::io::{load_all, LoadOptions};
use crate::merge::lowrank_svd::lowrank_svd;
use crate::msu::RawUnits;
use crate::settings::{MergeSettings, ParamReweight};

/// Every figure the benchmark reports.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BenchReport {
    /// Adapters, modules and input bytes.
    pub adapters: usize,
    /// Modules merged.
    pub modules: usize,
    /// Bytes of the input files.
    pub input_bytes: u64,
    /// Worker threads.
    pub threads: usize,
    /// Reading and aligning the adapters.
    pub load_ms: f64,
    /// Building every module's Gram matrices.
    pub gram_ms: f64,
    /// Achieved GFLOP/s of the Gram build (2·n²·(d_in + d_out) per module).
    pub gram_gflops: f64,
    /// Measured f32 GEMM rate with every core busy.
    pub gemm_peak_gflops: f64,
    /// k-means (k = 16) over all modules, Gram matrices cached.
    pub kmeans_all_ms: f64,
    /// Full LEGO merge (k = 16, L∞ reweighting) and PEFT export.
    pub merge_export_ms: f64,
    /// Re-merging one module after k changes: p50 and p95.
    pub recluster_one_ms: [f64; 2],
    /// Re-merging every module after k changes: p50 and p95.
    pub recluster_all_ms: [f64; 2],
    /// The SVD baseline's truncated SVD on one hidden × hidden module (median).
    pub svd_module_ms: f64,
    /// Peak resident memory of this process.
    pub peak_rss_bytes: u64,
    /// Per method: one module at a time, every module (or as many as fit the time budget).
    #[serde(default)]
    pub per_module: Vec<MethodModules>,
}

/// Per-module merge times of one method.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MethodModules {
    /// The method's name as `--method` takes it.
    pub method: String,
    /// Modules timed (all, unless the budget ran out).
    pub modules_timed: usize,
    /// p50 and p95 of one module's merge.
    pub module_ms: [f64; 2],
}

/// Seconds of per-module timing per method before the rest is left out (dense methods on
/// 7B shapes take seconds a module).
const PER_METHOD_BUDGET_S: f64 = 20.0;

/// Times each module's merge with `method`, one module at a time.
fn per_module(engine: &Engine, method: &str) -> Result<MethodModules> {
    let settings = MergeSettings {
        k: 16,
        method: method
            .parse()
            .map_err(|e: String| crate::LegoError::Invalid(e))?,
        ..MergeSettings::default()
    };
    let start = Instant::now();
    let mut times = Vec::new();
    for i in 0..engine.set.modules.len() {
        let t = Instant::now();
        engine.merge_module(i, &settings)?;
        times.push(ms(t));
        if start.elapsed().as_secs_f64() > PER_METHOD_BUDGET_S {
            break;
        }
    }
    Ok(MethodModules {
        method: method.to_string(),
        modules_timed: times.len(),
        module_ms: percentiles(&mut times),
    })
}

/// Runs every measurement on the adapters at `paths`, exporting into `out_dir`, with
/// per-module times for each of `methods`.
pub fn run(
    paths: &[PathBuf],
    out_dir: &std::path::Path,
    methods: &[String],
) -> Result<BenchReport> {
    let input_bytes = paths.iter().map(|p| dir_bytes(p)).sum();
    let t = Instant::now();
    let set = ModuleSet::new(load_all(paths, &LoadOptions::default())?)?;
    let engine = Engine::new(set);
    let load_ms = ms(t);

    let t = Instant::now();
    engine.prepare();
    let gram_ms = ms(t);
    let flops: f64 = engine
        .set
        .modules
        .iter()
        .map(|m| {
            let n: usize = m.sources.iter().map(|s| engine.set.source(*s).rank).sum();
            2.0 * (n * n) as f64 * (m.d_in + m.d_out) as f64
        })
        .sum();

    let base = MergeSettings {
        k: 16,
        ..MergeSettings::default()
    };
    let l2 = MergeSettings {
        param_reweight: ParamReweight::L2,
        ..base.clone()
    };
    // k-means alone: L2 reweighting needs nothing beyond the Gram matrices, but the merge
    // still forms the factors, so time the clustering through the curve-free view of one k.
    let t = Instant::now();
    let n_modules = engine.set.modules.len();
    (0..n_modules)
        .into_par_iter()
        .map(|i| engine.cluster_only(i, &l2).map(|_| ()))
        .collect::<Result<Vec<()>>>()?;
    let kmeans_all_ms = ms(t);

    let t = Instant::now();
    let output = engine.merge_all(&base)?;
    export(&engine, &output, &base, &out_dir.join("merged"), true)?;
    let merge_export_ms = ms(t);

    let ks = [12, 20, 8, 24, 16, 10, 14, 18, 6, 22];
    let mut one = Vec::new();
    for (j, k) in ks.iter().cycle().take(40).enumerate() {
        let s = MergeSettings {
            k: *k,
            ..base.clone()
        };
        let i = (j * 37) % n_modules;
        let t = Instant::now();
        engine.merge_module(i, &s)?;
        one.push(ms(t));
    }
    let mut all = Vec::new();
    for k in &ks[..5] {
        let s = MergeSettings {
            k: *k,
            ..base.clone()
        };
        let t = Instant::now();
        engine.merge_all(&s)?;
        all.push(ms(t));
    }
    let svd_module_ms = svd_time(&engine)?;
    let peak_rss_bytes = peak_rss();
    let per_module = methods
        .iter()
        .map(|m| per_module(&engine, m))
        .collect::<Result<Vec<_>>>()?;
    Ok(BenchReport {
        adapters: paths.len(),
        modules: n_modules,
        input_bytes,
        threads: rayon::current_num_threads(),
        load_ms,
        gram_ms,
        gram_gflops: flops / gram_ms / 1e6,
        gemm_peak_gflops: gemm_peak(),
        kmeans_all_ms,
        merge_export_ms,
        recluster_one_ms: percentiles(&mut one),
        recluster_all_ms: percentiles(&mut all),
        svd_module_ms,
        peak_rss_bytes,
        per_module,
    })
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn percentiles(v: &mut [f64]) -> [f64; 2] {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    [at(0.5), at(0.95)]
}

/// Median time of the low-rank truncated SVD (rank = the largest source rank) on the first
/// square module, as the `svd` baseline runs it.
fn svd_time(engine: &Engine) -> Result<f64> {
    let Some(i) = engine.set.modules.iter().position(|m| m.d_in == m.d_out) else {
        return Ok(f64::NAN);
    };
    let raw = RawUnits::load(&engine.set, &engine.set.modules[i]);
    let b_cat = raw.b.t().to_owned();
    let rank = engine.set.source(engine.set.modules[i].sources[0]).rank;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        lowrank_svd(b_cat.view(), raw.a.view(), rank)
            .map_err(|e| crate::LegoError::Invalid(format!("svd: {e}")))?;
        times.push(ms(t));
    }
    Ok(percentiles(&mut times)[0])
}

/// f32 GEMM GFLOP/s with one 1024² product per worker running at once.
pub fn gemm_peak() -> f64 {
    let n = 1024;
    let threads = rayon::current_num_threads();
    let a = Array2::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1);
    let reps = 4;
    let _warm = a.dot(&a);
    let t = Instant::now();
    (0..threads).into_par_iter().for_each(|_| {
        for _ in 0..reps {
            std::hint::black_box(a.dot(&a));
        }
    });
    let secs = t.elapsed().as_secs_f64();
    (2.0 * (n * n * n) as f64 * (reps * threads) as f64) / secs / 1e9
}

/// Peak resident set size (VmHWM) of this process, 0 where /proc is not available.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    if p.is_file() {
        return p.metadata().map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
