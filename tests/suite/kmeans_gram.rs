//! Gram-only k-means against independent references: the embedding route (eigendecomposition
//! of G, then k-means on Y), a hand-computed case, and thread-count determinism; and the same
//! check through the engine on a 20 × r16 × 2-layer synthetic set (a 100 × r16 7B-width
//! version is `#[ignore]`d: see the README's Benchmarks section for its command).

use linfa::ParamGuard;
use lora_lego::align::ModuleSet;
use lora_lego::bench::synth::{synthesize, SynthSpec};
use lora_lego::engine::Engine;
use lora_lego::gram::{embed, gram_of};
use lora_lego::io::{load_all, LoadOptions};
use lora_lego::kmeans::GramKMeans;
use lora_lego::kmeans_gram::{fit_gram, partition_inertia};
use lora_lego::settings::MergeSettings;
use ndarray::{array, Array2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// `n` points in `d` dimensions around `centres` planted centres, some negated.
fn planted(n: usize, d: usize, centres: usize, flip: bool, seed: u64) -> Array2<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let c = Array2::from_shape_fn((centres, d), |_| rng.gen::<f64>() * 2.0 - 1.0);
    Array2::from_shape_fn((n, d), |(i, j)| {
        let sign = if flip && i % 3 == 0 { -1.0 } else { 1.0 };
        sign * c[[i % centres, j]] + 0.15 * (rng.gen::<f64>() - 0.5)
    })
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn gram_route_finds_the_embedding_routes_partition() {
    for (seed, sign_aware) in [(1, false), (2, true), (3, false), (4, true)] {
        let x = planted(120, 40, 9, sign_aware, seed);
        let g = gram_of(x.view());
        for k in [1, 5, 9, 14] {
            let params = GramKMeans::params(k)
                .seed(seed)
                .sign_aware(sign_aware)
                .check()
                .unwrap();
            let y = embed(g.view()).unwrap().y;
            let reference = params.fit_embedding(y.view()).unwrap();
            let ours = fit_gram(g.view(), &params).unwrap();
            assert_eq!(ours.labels, reference.labels, "seed {seed} k {k}");
            assert_eq!(ours.signs, reference.signs, "seed {seed} k {k}");
            assert!(
                rel(ours.inertia, reference.inertia) < 1e-9,
                "seed {seed} k {k}: {} vs {}",
                ours.inertia,
                reference.inertia
            );
        }
    }
}

#[test]
fn hand_computed_line() {
    // Points 0, 1, 10, 11 on a line: clusters {0, 1} and {10, 11}, inertia 4 · 0.25 = 1.
    let x = array![[0.0], [1.0], [10.0], [11.0]];
    let g = gram_of(x.view());
    let params = GramKMeans::params(2).check().unwrap();
    let p = fit_gram(g.view(), &params).unwrap();
    assert_eq!(p.labels[0], p.labels[1]);
    assert_eq!(p.labels[2], p.labels[3]);
    assert_ne!(p.labels[0], p.labels[2]);
    assert!((p.inertia - 1.0).abs() < 1e-12, "{}", p.inertia);
    let m = p.membership_matrix();
    let centres = m.dot(&x);
    let mut c: Vec<f64> = centres.iter().copied().collect();
    c.sort_by(f64::total_cmp);
    assert_eq!(c, vec![0.5, 10.5]);
    // Sign-aware: −x and x are one unit, so {1, −1} and {10, −10} are two tight clusters.
    let x = array![[1.0], [-1.0], [10.0], [-10.0]];
    let g = gram_of(x.view());
    let params = GramKMeans::params(2).sign_aware(true).check().unwrap();
    let p = fit_gram(g.view(), &params).unwrap();
    assert_eq!(p.labels[0], p.labels[1]);
    assert_eq!(p.labels[2], p.labels[3]);
    assert!(p.inertia.abs() < 1e-12, "{}", p.inertia);
}

#[test]
fn every_unit_its_own_cluster_has_zero_inertia() {
    let x = planted(30, 12, 4, false, 7);
    let g = gram_of(x.view());
    let params = GramKMeans::params(30).check().unwrap();
    let p = fit_gram(g.view(), &params).unwrap();
    assert_eq!(p.inertia, 0.0);
    assert_eq!(partition_inertia(g.view(), &p.labels, &p.signs, 30), 0.0);
    assert!(p.cluster_sizes().iter().all(|&s| s == 1));
}

#[test]
fn deterministic_across_thread_counts() {
    let x = planted(200, 30, 12, true, 11);
    let g = gram_of(x.view());
    let params = GramKMeans::params(12).sign_aware(true).check().unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| fit_gram(g.view(), &params).unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn rejects_bad_input() {
    let params = GramKMeans::params(3).check().unwrap();
    assert!(fit_gram(Array2::<f64>::zeros((2, 2)).view(), &params).is_err());
    assert!(fit_gram(Array2::<f64>::zeros((3, 4)).view(), &params).is_err());
    let mut g = Array2::<f64>::eye(4);
    g[[1, 2]] = f64::NAN;
    assert!(fit_gram(g.view(), &params).is_err());
}

/// Every module of a synthetic set: the engine's Gram-route partition equals k-means on the
/// embedding of the same Gram matrix.
fn engine_matches_embedding_route(spec: &SynthSpec, check_modules: usize) {
    let dir = tempfile::tempdir().unwrap();
    let paths = synthesize(spec, dir.path(), 42).unwrap();
    let set = ModuleSet::new(load_all(&paths, &LoadOptions::default()).unwrap()).unwrap();
    let engine = Engine::new(set);
    let settings = MergeSettings {
        k: 16,
        ..MergeSettings::default()
    };
    let n_modules = engine.set.modules.len().min(check_modules);
    let (mut ours_total, mut reference_total) = (0.0, 0.0);
    for i in 0..n_modules {
        let prep = engine.prepared(i, &settings).unwrap().unwrap();
        let y = engine.embedding(i, &prep).unwrap();
        let params = GramKMeans::params(16).check().unwrap();
        let reference = params.fit_embedding(y.view()).unwrap();
        // On the metric the embedding route sees (Y Yᵀ: G with its rounding-level negative
        // eigenvalues dropped) the Gram route must find the very same partition.
        let same_metric = fit_gram(y.dot(&y.t()).view(), &params).unwrap();
        assert_eq!(same_metric.labels, reference.labels, "module {i}");
        assert_eq!(same_metric.signs, reference.signs, "module {i}");
        assert!(
            rel(same_metric.inertia, reference.inertia) < 1e-9,
            "module {i}: {} vs {}",
            same_metric.inertia,
            reference.inertia
        );
        // On the engine's own G (f32-rounded, slightly indefinite) near-ties among the
        // weakly structured units may break the other way: the same in distribution.
        let ours = engine.cluster_only(i, &settings).unwrap().unwrap();
        ours_total += ours.inertia;
        reference_total += reference.inertia;
    }
    assert!(
        ours_total <= reference_total * 1.005,
        "Gram route inertia {ours_total} against the embedding route's {reference_total}"
    );
    let out = engine.merge_all(&settings).unwrap();
    assert_eq!(out.modules.len(), engine.set.modules.len());
    for m in &out.modules {
        assert!(m.a.iter().chain(m.b.iter()).all(|v| v.is_finite()));
        assert_eq!(m.a.nrows(), 16);
    }
}

#[test]
fn twenty_adapters_two_layers_match_the_embedding_route() {
    let spec = SynthSpec {
        adapters: 20,
        rank: 16,
        layers: 2,
        hidden: 256,
        intermediate: 688,
        ..SynthSpec::llama7b()
    };
    engine_matches_embedding_route(&spec, usize::MAX);
}

/// The hub-scale set: 100 × r16 at Llama-2-7B width (n = 1 600 units per module), 8 GB on
/// disk for 32 layers. `LORA_LEGO_SCALE_LAYERS` picks fewer layers (default 32).
/// Run: `cargo test --release --test kmeans_gram -- --ignored`.
#[test]
#[ignore]
fn hundred_adapters_at_7b_width() {
    let layers = std::env::var("LORA_LEGO_SCALE_LAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let spec = SynthSpec {
        adapters: 100,
        layers,
        ..SynthSpec::llama7b()
    };
    // The embedding route's n × n eigensolve is the slow reference: check two modules.
    engine_matches_embedding_route(&spec, 2);
}
