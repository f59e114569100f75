//! The engine's identities on random small adapters (proptest): k = n reproduces the weighted
//! sum, the merge does not depend on the order of adapters, reweighting factors are ≥ 1, and
//! the metrics match a dense computation.

use crate::common::*;
use lora_lego::align::ModuleSet;
use lora_lego::engine::Engine;
use lora_lego::io::{load_adapter, LoadOptions};
use lora_lego::recipe::{FeatureSpace, MergeSettings, OutputReweight, ParamReweight};
use ndarray::Array2;
use proptest::prelude::*;

/// One random adapter: (rank, alpha, seed) over the shared module shapes.
fn adapter_strategy() -> impl Strategy<Value = (usize, u32, u32)> {
    (1usize..=4, 1u32..=16, any::<u32>())
}

fn build(tmp: &std::path::Path, specs: &[(usize, u32, u32)]) -> Vec<lora_lego::adapter::Adapter> {
    specs
        .iter()
        .enumerate()
        .map(|(i, (r, alpha, seed))| {
            let dir = tmp.join(format!("a{i}"));
            let mut t = lora_pair("m.layers.0.q_proj", *r, 12, 10, *seed);
            t.extend(lora_pair(
                "m.layers.0.up_proj",
                *r,
                12,
                20,
                seed.wrapping_add(7),
            ));
            write_peft_dir(
                &dir,
                &peft_config(serde_json::json!({"r": r, "lora_alpha": alpha})),
                &t,
            );
            load_adapter(&dir, &LoadOptions::default()).unwrap()
        })
        .collect()
}

fn delta(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f64> {
    b.mapv(f64::from).dot(&a.mapv(f64::from))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn k_n_reproduces_the_sum_and_adapter_order_does_not_matter(
        specs in prop::collection::vec(adapter_strategy(), 2..=4),
        weights in prop::collection::vec(-2.0f64..2.0, 4),
        rotate in 0usize..4,
        k in 1usize..=6,
        space in prop::sample::select(vec![FeatureSpace::Plain, FeatureSpace::SignAware, FeatureSpace::Balanced]),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let weights: Vec<f64> = weights[..specs.len()].to_vec();
        let engine = Engine::new(ModuleSet::new(build(tmp.path(), &specs)).unwrap());
        let exact = MergeSettings {
            k: 10_000,
            weights: weights.clone(),
            space,
            param_reweight: ParamReweight::Off,
            output_reweight: OutputReweight::Off,
            ..MergeSettings::default()
        };
        for m in &engine.merge_all(&exact).unwrap().modules {
            let mut sum = Array2::zeros((engine.set.modules[m.module].d_out, engine.set.modules[m.module].d_in));
            for &s in &engine.set.modules[m.module].sources {
                sum = sum + dense_delta(engine.set.source(s)) * weights[s.0];
            }
            let rel = rel_diff(&delta(&m.a, &m.b), &sum);
            prop_assert!(rel < 1e-5, "k = n: rel {rel:e}");
        }

        // Same adapters in another order (weights moved with them): identical factors.
        let settings = MergeSettings { k, weights: weights.clone(), space, ..MergeSettings::default() };
        let out1 = engine.merge_all(&settings).unwrap();
        let mut rotated = specs.clone();
        let r = rotate % specs.len();
        rotated.rotate_left(r);
        let mut w2 = weights.clone();
        w2.rotate_left(r);
        let tmp2 = tempfile::tempdir().unwrap();
        let engine2 = Engine::new(ModuleSet::new(build(tmp2.path(), &rotated)).unwrap());
        let out2 = engine2.merge_all(&MergeSettings { weights: w2, ..settings.clone() }).unwrap();
        for (x, y) in out1.modules.iter().zip(&out2.modules) {
            prop_assert_eq!(&x.a, &y.a);
            prop_assert_eq!(&x.b, &y.b);
            let cx = x.clusters.as_ref().unwrap();
            prop_assert_eq!(cx.inertia, y.clusters.as_ref().unwrap().inertia);
            prop_assert!(cx.param_factors.iter().all(|f| *f >= 1.0 - 1e-9), "{:?}", cx.param_factors);
            // The reported error matches the dense one.
            let module = &engine.set.modules[x.module];
            let mut sum = Array2::zeros((module.d_out, module.d_in));
            for &s in &module.sources {
                sum = sum + dense_delta(engine.set.source(s)) * weights[s.0];
            }
            let err = rel_diff(&delta(&x.a, &x.b), &sum);
            prop_assert!((x.metrics.error_vs_sum - err).abs() < 1e-5 * (1.0 + err), "{} vs {err}", x.metrics.error_vs_sum);
        }
    }
}
