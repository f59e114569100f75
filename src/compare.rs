//! Every method side by side on the same adapters, with the same metrics.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::engine::{Engine, MergeOutput};
use crate::error::Result;
use crate::merge::MergedModule;
use crate::metrics::mean;
use crate::settings::{MergeMethod, MergeSettings};

/// One method's figures over all modules.
#[derive(Debug, Clone, Serialize)]
pub struct MethodRow {
    /// The method.
    #[serde(serialize_with = "crate::settings::as_string::serialize")]
    pub method: MergeMethod,
    /// Why the method could not run here (e.g. unequal ranks), if it could not.
    pub unavailable: Option<String>,
    /// Largest merged rank over modules.
    pub max_rank: usize,
    /// Mean merged rank over modules.
    pub mean_rank: f64,
    /// Mean ‖ΔW' − ΔW_sum‖ / ‖ΔW_sum‖.
    pub error_vs_sum: f64,
    /// Mean ‖ΔW'‖ / ‖ΔW_sum‖.
    pub norm_ratio: f64,
    /// Mean retention over modules and sources.
    pub mean_retention: f64,
    /// Lowest per-adapter mean retention (the adapter the merge serves worst).
    pub min_retention: f64,
    /// Bytes of merged factors at 4 bytes per value.
    pub bytes: usize,
    /// Wall time of the merge.
    pub millis: f64,
}

/// Runs `methods` with otherwise identical `settings`.
pub fn compare(
    engine: &Engine,
    settings: &MergeSettings,
    methods: &[MergeMethod],
) -> Vec<MethodRow> {
    compare_with(engine, settings, methods, &|_| {})
}

/// [`compare`], calling `done` after each method (progress for a run of ~30 s).
pub fn compare_with(
    engine: &Engine,
    settings: &MergeSettings,
    methods: &[MergeMethod],
    done: &dyn Fn(MergeMethod),
) -> Vec<MethodRow> {
    methods
        .iter()
        .map(|&method| {
            let s = settings.with_method(method);
            let t = Instant::now();
            let result = engine.merge_all(&s);
            let millis = t.elapsed().as_secs_f64() * 1e3;
            done(method);
            match result {
                Ok(out) => row(engine, method, &out, millis),
                Err(e) => MethodRow {
                    method,
                    unavailable: Some(e.to_string()),
                    max_rank: 0,
                    mean_rank: f64::NAN,
                    error_vs_sum: f64::NAN,
                    norm_ratio: f64::NAN,
                    mean_retention: f64::NAN,
                    min_retention: f64::NAN,
                    bytes: 0,
                    millis,
                },
            }
        })
        .collect()
}

/// Every method in `methods` on module `module` alone (in parallel), with otherwise
/// identical `settings`: `None` where no source of the module has a non-zero weight.
pub fn compare_module(
    engine: &Engine,
    settings: &MergeSettings,
    methods: &[MergeMethod],
    module: usize,
) -> Vec<(MergeMethod, Result<Option<MergedModule>>)> {
    methods
        .par_iter()
        .map(|&method| {
            let s = settings.with_method(method);
            (method, engine.merge_module(module, &s))
        })
        .collect()
}

/// Mean retention of each adapter over the modules it contributes to.
pub fn adapter_retention(engine: &Engine, out: &MergeOutput) -> Vec<f64> {
    (0..engine.set.adapters.len())
        .map(|ai| {
            mean(out.modules.iter().filter_map(|m| {
                engine.set.modules[m.module]
                    .sources
                    .iter()
                    .position(|s| s.0 == ai)
                    .map(|si| m.metrics.retention[si])
            }))
        })
        .collect()
}

fn row(engine: &Engine, method: MergeMethod, out: &MergeOutput, millis: f64) -> MethodRow {
    let per_adapter = adapter_retention(engine, out);
    MethodRow {
        method,
        unavailable: None,
        max_rank: out.modules.iter().map(|m| m.rank()).max().unwrap_or(0),
        mean_rank: mean(out.modules.iter().map(|m| m.rank() as f64)),
        error_vs_sum: mean(out.modules.iter().map(|m| m.metrics.error_vs_sum)),
        norm_ratio: mean(out.modules.iter().map(|m| m.metrics.norm_ratio)),
        mean_retention: mean(per_adapter.iter().copied()),
        min_retention: per_adapter.iter().copied().fold(f64::INFINITY, f64::min),
        bytes: out
            .modules
            .iter()
            .map(|m| (m.a.len() + m.b.len()) * 4)
            .sum(),
        millis,
    }
}
