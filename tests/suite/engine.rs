//! The LEGO engine against exact identities and direct dense computations.

use crate::common::*;
use lora_lego::align::ModuleSet;
use lora_lego::engine::Engine;
use lora_lego::io::{load_adapter, LoadOptions};
use lora_lego::merge::MergedModule;
use lora_lego::recipe::{FeatureSpace, MergeSettings, OutputReweight, ParamReweight};
use ndarray::Array2;

fn engine(paths: &[std::path::PathBuf]) -> Engine {
    let opts = LoadOptions::default();
    let adapters = paths
        .iter()
        .map(|p| load_adapter(p, &opts).unwrap())
        .collect();
    Engine::new(ModuleSet::new(adapters).unwrap())
}

fn demo() -> Vec<std::path::PathBuf> {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    ["sentiment", "topic", "question"]
        .iter()
        .map(|n| d.join(n))
        .collect()
}

fn no_reweight(k: usize, weights: Vec<f64>) -> MergeSettings {
    MergeSettings {
        k,
        weights,
        param_reweight: ParamReweight::Off,
        output_reweight: OutputReweight::Off,
        ..MergeSettings::default()
    }
}

fn merged_delta(m: &MergedModule) -> Array2<f64> {
    m.b.mapv(f64::from).dot(&m.a.mapv(f64::from))
}

/// `Σ_j w_j s_j B_j A_j` for module `i`, densely, straight from the adapters.
fn weighted_sum(e: &Engine, i: usize, weights: &[f64]) -> Array2<f64> {
    let module = &e.set.modules[i];
    let mut sum = Array2::zeros((module.d_out, module.d_in));
    for &s in &module.sources {
        sum = sum + dense_delta(e.set.source(s)) * weights[s.0];
    }
    sum
}

#[test]
fn k_equal_to_n_without_reweighting_reproduces_the_weighted_sum_on_every_fixture_module() {
    let sets: Vec<(Vec<std::path::PathBuf>, Vec<f64>)> = vec![
        (tiny_adapters(), vec![1.0, 0.5, -2.0]),
        (demo(), vec![0.7, 1.3, 1.0]),
        (
            vec![fixture("real/distilbert-base-uncased/toxic")],
            vec![1.5],
        ),
    ];
    for (paths, weights) in sets {
        let e = engine(&paths);
        let out = e.merge_all(&no_reweight(10_000, weights.clone())).unwrap();
        assert_eq!(out.modules.len(), e.set.modules.len());
        for m in &out.modules {
            let want = weighted_sum(&e, m.module, &weights);
            let n: usize = e.set.modules[m.module]
                .sources
                .iter()
                .map(|s| e.set.source(*s).rank)
                .sum();
            assert_eq!(m.rank(), n);
            let rel = rel_diff(&merged_delta(m), &want);
            assert!(rel < 1e-5, "{}: rel {rel:e}", e.set.modules[m.module].key);
            assert!(
                m.metrics.error_vs_sum < 1e-5,
                "metric says {}",
                m.metrics.error_vs_sum
            );
            assert!((m.metrics.norm_ratio - 1.0).abs() < 1e-5);
        }
        assert!(
            out.notices.iter().any(|n| n.contains("is more than its")),
            "k clamp is announced"
        );
    }
}

#[test]
fn one_adapter_with_k_equal_to_its_rank_reproduces_its_units() {
    let e = engine(&[fixture("peft-tiny/adapters/sort")]);
    let out = e.merge_all(&no_reweight(8, vec![])).unwrap();
    for m in &out.modules {
        let src = e.set.source(e.set.modules[m.module].sources[0]);
        let want = dense_delta(src);
        assert!(rel_diff(&merged_delta(m), &want) < 1e-5);
        // Up to unit order, each merged unit is one original unit with √s folded into both halves.
        let a = src.a_matrix();
        let root = (src.scale as f32).sqrt();
        for row in m.a.rows() {
            let found = a.rows().into_iter().any(|r| {
                r.iter()
                    .zip(row.iter())
                    .all(|(x, y)| (x * root - y).abs() <= 1e-6 * (1.0 + y.abs()))
            });
            assert!(found, "merged unit is not an original unit");
        }
    }
}

#[test]
fn a_one_shot_engine_keeps_no_caches_and_merges_the_same() {
    let s = MergeSettings {
        k: 6,
        ..MergeSettings::default()
    };
    let kept = engine(&tiny_adapters());
    let out1 = kept.merge_all(&s).unwrap();
    assert_eq!(kept.cached_modules(), kept.set.modules.len());
    let once = engine(&tiny_adapters()).one_shot();
    let out2 = once.merge_all(&s).unwrap();
    assert_eq!(once.cached_modules(), 0);
    assert_eq!(out1.modules.len(), out2.modules.len());
    for (m1, m2) in out1.modules.iter().zip(&out2.modules) {
        assert_eq!((&m1.a, &m1.b), (&m2.a, &m2.b));
        assert_eq!(m1.metrics, m2.metrics);
    }
}

#[test]
fn permuting_adapters_changes_neither_inertia_nor_the_merged_delta() {
    let mut paths = tiny_adapters();
    let s = MergeSettings {
        k: 6,
        ..MergeSettings::default()
    };
    let out1 = engine(&paths).merge_all(&s).unwrap();
    paths.rotate_left(1);
    let out2 = engine(&paths).merge_all(&s).unwrap();
    for (m1, m2) in out1.modules.iter().zip(&out2.modules) {
        let c1 = m1.clusters.as_ref().unwrap();
        let c2 = m2.clusters.as_ref().unwrap();
        assert_eq!(c1.inertia, c2.inertia);
        assert_eq!(merged_delta(m1), merged_delta(m2));
        assert_eq!(m1.a, m2.a, "even the factors are bit-identical");
    }
}

#[test]
fn metrics_equal_direct_dense_computations() {
    let e = engine(&tiny_adapters());
    let weights = vec![1.0, 0.8, 0.6];
    for space in [
        FeatureSpace::Plain,
        FeatureSpace::SignAware,
        FeatureSpace::Balanced,
    ] {
        for pr in [ParamReweight::Linf, ParamReweight::L2] {
            let s = MergeSettings {
                k: 5,
                weights: weights.clone(),
                space,
                param_reweight: pr,
                ..MergeSettings::default()
            };
            let out = e.merge_all(&s).unwrap();
            for m in &out.modules {
                let module = &e.set.modules[m.module];
                let merged = merged_delta(m);
                let sum = weighted_sum(&e, m.module, &weights);
                let err = rel_diff(&merged, &sum);
                assert!(
                    (m.metrics.error_vs_sum - err).abs() < 1e-5 * (1.0 + err),
                    "{space:?} {pr:?} error {} vs {err}",
                    m.metrics.error_vs_sum
                );
                let ratio = frob(&merged) / frob(&sum);
                assert!((m.metrics.norm_ratio - ratio).abs() < 1e-5 * ratio);
                for (si, &s) in module.sources.iter().enumerate() {
                    let d = dense_delta(e.set.source(s)) * weights[s.0];
                    let cos = (&merged * &d).sum() / (frob(&merged) * frob(&d));
                    assert!(
                        (m.metrics.retention[si] - cos).abs() < 1e-5,
                        "retention {} vs {cos}",
                        m.metrics.retention[si]
                    );
                }
                let c = m.clusters.as_ref().unwrap();
                assert!(
                    c.param_factors.iter().all(|f| *f >= 1.0 - 1e-9),
                    "{pr:?}: {:?}",
                    c.param_factors
                );
                assert_eq!(c.cluster_sizes.iter().sum::<usize>(), c.n_units);
                let mix_total: Vec<usize> = c.source_mix.iter().map(|r| r.iter().sum()).collect();
                assert_eq!(mix_total, c.cluster_sizes);
            }
        }
    }
}

fn frob(x: &Array2<f64>) -> f64 {
    x.mapv(|v| v * v).sum().sqrt()
}

#[test]
fn output_reweighting_scales_b_by_root_rref_over_k() {
    let e = engine(&tiny_adapters());
    let base = MergeSettings {
        k: 5,
        output_reweight: OutputReweight::Off,
        ..MergeSettings::default()
    };
    let off = e.merge_all(&base).unwrap();
    let on = e
        .merge_all(&MergeSettings {
            output_reweight: OutputReweight::Value(20.0),
            output_scale: 0.5,
            ..base.clone()
        })
        .unwrap();
    let want = (20.0f64 / 5.0).sqrt() * 0.5;
    for (x, y) in off.modules.iter().zip(&on.modules) {
        assert_eq!(x.a, y.a);
        let ratio =
            &y.b.mapv(f64::from) / &x.b.mapv(f64::from).mapv(|v| if v == 0.0 { 1.0 } else { v });
        assert!(ratio.iter().all(|r| (r - want).abs() < 1e-5 || r.is_nan()));
        assert_eq!(y.clusters.as_ref().unwrap().output_factor, want);
    }
    // mean r_ref over reverse (4), sort (8), increment (8).
    let mean = e
        .merge_all(&MergeSettings {
            output_reweight: OutputReweight::Mean,
            ..base
        })
        .unwrap();
    assert!(
        (mean.modules[0].clusters.as_ref().unwrap().output_factor - (20.0f64 / 3.0 / 5.0).sqrt())
            .abs()
            < 1e-12
    );
}

#[test]
fn zero_weight_sources_are_left_out_of_the_pool() {
    let e = engine(&tiny_adapters());
    let out = e
        .merge_all(&no_reweight(10_000, vec![0.0, 1.0, 0.0]))
        .unwrap();
    for m in &out.modules {
        assert_eq!(m.rank(), 8, "only sort's 8 units remain");
        assert_eq!(m.metrics.retention[0], 0.0);
    }
    let none = e.merge_all(&no_reweight(4, vec![0.0, 0.0, 0.0])).unwrap();
    assert!(none.modules.is_empty());
    assert!(none.notices[0].contains("every contributing adapter has weight 0"));
}

#[test]
fn per_module_k_overrides_apply_in_order() {
    let e = engine(&tiny_adapters());
    let s = MergeSettings {
        k: 4,
        k_overrides: vec![
            "*.mlp.*=6".parse().unwrap(),
            "model.layers.1.mlp.up_proj=2".parse().unwrap(),
        ],
        ..MergeSettings::default()
    };
    let out = e.merge_all(&s).unwrap();
    for m in &out.modules {
        let key = e.set.modules[m.module].key.as_str();
        let want = if key == "model.layers.1.mlp.up_proj" {
            2
        } else if key.contains(".mlp.") {
            6
        } else {
            4
        };
        assert_eq!(m.rank(), want, "{key}");
    }
}

#[test]
fn baseline_metrics_equal_direct_dense_computations() {
    let paths = vec![
        fixture("peft-tiny/adapters/sort"),
        fixture("peft-tiny/adapters/increment"),
    ];
    let e = engine(&paths);
    let weights = vec![0.9, 1.1];
    for method in ["svd", "ties", "linear", "dare_ties_svd"] {
        let s = MergeSettings {
            method: method.parse().unwrap(),
            weights: weights.clone(),
            svd_rank: Some(6),
            ..MergeSettings::default()
        };
        for m in &e.merge_all(&s).unwrap().modules {
            let merged = merged_delta(m);
            let sum = weighted_sum(&e, m.module, &weights);
            let err = rel_diff(&merged, &sum);
            assert!(
                (m.metrics.error_vs_sum - err).abs() < 1e-5 * (1.0 + err),
                "{method}: {} vs {err}",
                m.metrics.error_vs_sum
            );
            for (si, &src) in e.set.modules[m.module].sources.iter().enumerate() {
                let d = dense_delta(e.set.source(src)) * weights[src.0];
                let cos = (&merged * &d).sum() / (frob(&merged) * frob(&d));
                assert!(
                    (m.metrics.retention[si] - cos).abs() < 1e-5,
                    "{method}: {} vs {cos}",
                    m.metrics.retention[si]
                );
            }
        }
    }
}

#[test]
fn interference_matrix_equals_dense_cosines() {
    let e = engine(&tiny_adapters());
    let s = MergeSettings::default();
    let view = e.module_view(0, &s).unwrap().unwrap();
    let module = &e.set.modules[0];
    for (i, &si) in module.sources.iter().enumerate() {
        for (j, &sj) in module.sources.iter().enumerate() {
            let (x, y) = (dense_delta(e.set.source(si)), dense_delta(e.set.source(sj)));
            let cos = (&x * &y).sum() / (frob(&x) * frob(&y));
            assert!(
                (view.interference[[i, j]] - cos).abs() < 1e-6,
                "{i},{j}: {} vs {cos}",
                view.interference[[i, j]]
            );
        }
    }
    assert_eq!(view.projection.units.nrows(), view.labels.len());
    assert_eq!(view.projection.points.nrows(), view.merged.rank());
}

#[test]
fn narrow_modules_with_many_units_embed_from_the_features_and_still_merge_exactly() {
    // 12 adapters × rank 4 = 48 units on a 6 → 5 layer: D = 11 < n, so the embedding comes from
    // XᵀX instead of the n × n Gram matrix.
    let tmp = tempfile::tempdir().unwrap();
    let paths: Vec<std::path::PathBuf> = (0..12)
        .map(|i| {
            let dir = tmp.path().join(format!("a{i}"));
            write_peft_dir(
                &dir,
                &peft_config(serde_json::json!({"r": 4, "lora_alpha": 4})),
                &lora_pair("m.q_proj", 4, 6, 5, 100 + i),
            );
            dir
        })
        .collect();
    let e = engine(&paths);
    let s = MergeSettings::default();
    let prep = e.prepared(0, &s).unwrap().unwrap();
    let g = e.geometry(0, &prep.scaling).g();
    let y = e.embedding(0, &prep).unwrap();
    assert!(y.ncols() <= 11, "embedding has {} columns", y.ncols());
    let yyt = y.dot(&y.t());
    assert!(
        rel_diff(&yyt, &g) < 1e-6,
        "Y Yᵀ differs from G by {:e}",
        rel_diff(&yyt, &g)
    );
    let weights = vec![1.0; 12];
    let out = e.merge_all(&no_reweight(48, weights.clone())).unwrap();
    assert!(
        rel_diff(
            &merged_delta(&out.modules[0]),
            &weighted_sum(&e, 0, &weights)
        ) < 1e-5
    );
    let five = e
        .merge_all(&MergeSettings {
            k: 5,
            ..MergeSettings::default()
        })
        .unwrap();
    assert_eq!(five.modules[0].rank(), 5);
}

/// Every figure of `m` against ΔW' formed densely from its exported factors and each source's
/// `w_j ΔW_j` formed from the adapter files.
fn assert_metrics_are_dense(e: &Engine, m: &MergedModule, weights: &[f64], label: &str) {
    let merged = merged_delta(m);
    let sum = weighted_sum(e, m.module, weights);
    let err = rel_diff(&merged, &sum);
    assert!(
        (m.metrics.error_vs_sum - err).abs() < 1e-5 * (1.0 + err),
        "{label}: error {} vs {err}",
        m.metrics.error_vs_sum
    );
    let ratio = frob(&merged) / frob(&sum);
    assert!(
        (m.metrics.norm_ratio - ratio).abs() < 1e-5 * ratio,
        "{label}: norm ratio {} vs {ratio}",
        m.metrics.norm_ratio
    );
    assert!((m.metrics.norm - frob(&merged)).abs() < 1e-5 * frob(&merged));
    for (si, &src) in e.set.modules[m.module].sources.iter().enumerate() {
        let d = dense_delta(e.set.source(src)) * weights[src.0];
        let dot = (&merged * &d).sum();
        let cos = if weights[src.0] == 0.0 {
            0.0
        } else {
            dot / (frob(&merged) * frob(&d))
        };
        assert!(
            (m.metrics.retention[si] - cos).abs() < 1e-5,
            "{label}: retention {} vs {cos}",
            m.metrics.retention[si]
        );
        assert!(
            (m.metrics.source_dot[si] - dot).abs() < 1e-5 * (1.0 + dot.abs()),
            "{label}: ⟨ΔW', w ΔW⟩ {} vs {dot}",
            m.metrics.source_dot[si]
        );
        assert!((m.metrics.source_norm[si] - frob(&d)).abs() < 1e-5 * (1.0 + frob(&d)));
    }
}

#[test]
fn cat_metrics_from_the_gram_equal_direct_dense_computations() {
    // cat's metrics come from the cached Gram matrices alone (no factor is read for them).
    let e = engine(&tiny_adapters());
    let weights = vec![1.0, 0.8, -0.6];
    for scale in [None, Some(0.7)] {
        let s = MergeSettings {
            method: "cat".parse().unwrap(),
            weights: weights.clone(),
            scale,
            ..MergeSettings::default()
        };
        for m in &e.merge_all(&s).unwrap().modules {
            assert_metrics_are_dense(&e, m, &weights, &format!("cat {scale:?}"));
        }
    }
}

#[test]
fn core_space_metrics_equal_direct_dense_computations() {
    // The core-space methods' figures are products of core matrices (no d-wide product);
    // KnOTS' full-space TIES step leaves the core space and takes the factor route.
    let e = engine(&tiny_adapters());
    for weights in [vec![1.0, 0.8, -0.6], vec![0.7, 0.0, 1.3]] {
        for method in [
            "task_arithmetic",
            "tsv",
            "iso_c",
            "iso_cts",
            "cart",
            "core_ties",
            "knots_ties",
            "lego-tsv",
        ] {
            let s = MergeSettings {
                method: method.parse().unwrap(),
                weights: weights.clone(),
                k: 5,
                ..MergeSettings::default()
            };
            for m in &e.merge_all(&s).unwrap().modules {
                assert_metrics_are_dense(&e, m, &weights, &format!("{method} {weights:?}"));
            }
        }
    }
}
