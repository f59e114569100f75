//! The scale-aware figures: ‖ΔW'‖ against each ‖ΔW_j‖ and the projection coefficient
//! ⟨ΔW', ΔW_j⟩ / ‖ΔW_j‖², from Gram matrices, checked against dense matrices, and the case
//! the old figures missed: the sum at weight 1 and at weight 0.5.

use crate::common::*;
use lora_lego::align::ModuleSet;
use lora_lego::engine::Engine;
use lora_lego::io::{load_adapter, LoadOptions};
use lora_lego::merge::baselines::BaselineMethod;
use lora_lego::merge::MergedModule;
use lora_lego::recipe::{MergeMethod, MergeSettings};
use ndarray::Array2;

fn engine() -> Engine {
    let adapters = tiny_adapters()
        .iter()
        .map(|p| load_adapter(p, &LoadOptions::default()).unwrap())
        .collect();
    Engine::new(ModuleSet::new(adapters).unwrap())
}

fn merged_delta(m: &MergedModule) -> Array2<f64> {
    m.b.mapv(f64::from).dot(&m.a.mapv(f64::from))
}

fn frob(x: &Array2<f64>) -> f64 {
    x.mapv(|v| v * v).sum().sqrt()
}

fn module_weights(e: &Engine, m: &MergedModule, s: &MergeSettings) -> Vec<f64> {
    e.set.modules[m.module]
        .sources
        .iter()
        .map(|src| s.weight(src.0))
        .collect()
}

#[test]
fn projection_and_norm_per_source_equal_dense_computations() {
    let e = engine();
    for method in [
        MergeMethod::Lego,
        MergeMethod::Baseline(BaselineMethod::Cat),
        MergeMethod::Baseline(BaselineMethod::Svd),
    ] {
        let s = MergeSettings {
            method,
            k: 5,
            weights: vec![1.0, 0.8, -0.6],
            ..MergeSettings::default()
        };
        let out = e.merge_all(&s).unwrap();
        for m in &out.modules {
            let merged = merged_delta(m);
            let w = module_weights(&e, m, &s);
            let proj = m.metrics.projection(&w);
            let norms = m.metrics.norm_vs_source(&w);
            for (si, &src) in e.set.modules[m.module].sources.iter().enumerate() {
                let d = dense_delta(e.set.source(src));
                let want = (&merged * &d).sum() / (frob(&d) * frob(&d));
                let ratio = frob(&merged) / frob(&d);
                assert!(
                    (proj[si] - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{method} projection {} vs {want}",
                    proj[si]
                );
                assert!((norms[si] - ratio).abs() < 1e-4 * ratio, "{method}");
            }
        }
    }
}

#[test]
fn the_sum_at_half_weight_halves_the_scale_figures_that_cosines_and_distance_miss() {
    let e = engine();
    let cat = MergeMethod::Baseline(BaselineMethod::Cat);
    let full = MergeSettings {
        method: cat,
        ..MergeSettings::default()
    };
    let half = MergeSettings {
        weights: vec![0.5; 3],
        ..full.clone()
    };
    let a = e.merge_all(&full).unwrap();
    let b = e.merge_all(&half).unwrap();
    for (x, y) in a.modules.iter().zip(&b.modules) {
        // The old figures cannot tell the two apart...
        assert!(x.metrics.error_vs_sum < 1e-4 && y.metrics.error_vs_sum < 1e-4);
        for (rx, ry) in x.metrics.retention.iter().zip(&y.metrics.retention) {
            assert!((rx - ry).abs() < 1e-6);
        }
        // ...the scale-aware ones halve.
        let px = x.metrics.projection(&module_weights(&e, x, &full));
        let py = y.metrics.projection(&module_weights(&e, y, &half));
        let nx = x.metrics.norm_vs_source(&module_weights(&e, x, &full));
        let ny = y.metrics.norm_vs_source(&module_weights(&e, y, &half));
        for j in 0..px.len() {
            assert!((py[j] - 0.5 * px[j]).abs() < 1e-4 * px[j].abs().max(1e-3));
            assert!((ny[j] - 0.5 * nx[j]).abs() < 1e-4 * nx[j]);
        }
    }
}
