//! Properties of the baseline merges that do not need PEFT goldens.

use crate::peft_reference::{delta, jacobi_svd, rel_frobenius};
use lora_lego::merge::baselines::{
    merge_module, prune_magnitude, BaselineError, BaselineMethod, BaselineParams, MajoritySign,
    SourceFactors,
};
use lora_lego::merge::lowrank_svd::lowrank_svd;
use ndarray::{array, concatenate, s, Array2, Axis};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn random(rows: usize, cols: usize, rng: &mut Xoshiro256PlusPlus) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || rng.gen_range(-1.0f32..1.0))
}

/// `(a, b, scale, weight)` for `count` sources of rank `r` on a `d_out × d_in` module.
fn random_sources(
    d_out: usize,
    d_in: usize,
    ranks: &[usize],
    seed: u64,
) -> Vec<(Array2<f32>, Array2<f32>, f32, f32)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    ranks
        .iter()
        .map(|&r| {
            let scale = rng.gen_range(0.5f32..3.0);
            let weight = rng.gen_range(-1.5f32..1.5);
            (
                random(r, d_in, &mut rng),
                random(d_out, r, &mut rng),
                scale,
                weight,
            )
        })
        .collect()
}

fn views(raw: &[(Array2<f32>, Array2<f32>, f32, f32)]) -> Vec<SourceFactors<'_>> {
    raw.iter()
        .map(|(a, b, scale, weight)| SourceFactors {
            a: a.view(),
            b: b.view(),
            scale: *scale,
            weight: *weight,
        })
        .collect()
}

fn check_lowrank_against_dense(b_cat: &Array2<f32>, a_cat: &Array2<f32>, k: usize) {
    let dense = b_cat.mapv(f64::from).dot(&a_cat.mapv(f64::from));
    let (sigma, reference) = jacobi_svd(&dense, k);
    let ours = lowrank_svd(b_cat.view(), a_cat.view(), k).expect("lowrank svd");
    let top = sigma[0];
    for (i, &s_ref) in sigma.iter().take(a_cat.nrows()).enumerate() {
        let s_ours = ours.singular_values.get(i).copied().unwrap_or(0.0);
        assert!(
            (s_ours - s_ref).abs() <= 1e-5 * s_ref.max(1e-3 * top),
            "σ_{i}: {s_ours} vs {s_ref}"
        );
    }
    assert_eq!(ours.u_s.dim(), (b_cat.nrows(), k));
    assert_eq!(ours.vt.dim(), (k, a_cat.ncols()));
    let ours_delta = delta(&ours.vt, &ours.u_s, 1.0);
    assert!(
        rel_frobenius(&ours_delta, &reference.mapv(|v| v as f32)) <= 1e-5,
        "truncated delta"
    );
}

#[test]
fn lowrank_svd_equals_dense_svd() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for &(d_out, d_in, n, k) in &[
        (40, 30, 12, 5),
        (64, 128, 20, 8),
        (128, 64, 20, 8),
        (50, 50, 6, 10),
    ] {
        let b = random(d_out, n, &mut rng);
        let a = random(n, d_in, &mut rng);
        check_lowrank_against_dense(&b, &a, k);
    }
}

#[test]
fn lowrank_svd_handles_rank_deficient_factors() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    let b1 = random(60, 6, &mut rng);
    let a1 = random(6, 70, &mut rng);
    // The same adapter twice plus an untrained one (B = 0): rank 6 out of n = 18.
    let b = concatenate(
        Axis(1),
        &[b1.view(), b1.view(), Array2::zeros((60, 6)).view()],
    )
    .expect("cat");
    let a = concatenate(
        Axis(0),
        &[a1.view(), a1.view(), random(6, 70, &mut rng).view()],
    )
    .expect("cat");
    check_lowrank_against_dense(&b, &a, 4);
    let padded = lowrank_svd(b.view(), a.view(), 10).expect("svd");
    assert!(
        padded.u_s.slice(s![.., 6..]).iter().all(|&v| v == 0.0),
        "beyond rank 6 is zero"
    );
    let zero = lowrank_svd(Array2::zeros((5, 3)).view(), a1.slice(s![..3, ..]), 2).expect("zero");
    assert!(zero.u_s.iter().chain(zero.vt.iter()).all(|&v| v == 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn lowrank_svd_matches_dense_on_random_modules(
        d_out in 8usize..48, d_in in 8usize..48, n in 1usize..16, k in 1usize..12, seed in any::<u64>()
    ) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let b = random(d_out, n, &mut rng);
        let a = random(n, d_in, &mut rng);
        let (sigma, _) = jacobi_svd(&b.mapv(f64::from).dot(&a.mapv(f64::from)), 1);
        // The truncated delta is only defined when σ_k is separated from σ_{k+1}.
        let k_eff = k.min(sigma.len());
        prop_assume!(k_eff >= sigma.len() || sigma[k_eff - 1] - sigma[k_eff] > 1e-2 * sigma[0]);
        check_lowrank_against_dense(&b, &a, k);
    }
}

#[test]
fn cat_with_unit_weights_is_the_exact_sum() {
    let mut raw = random_sources(48, 40, &[4, 8, 6], 3);
    raw.iter_mut().for_each(|s| s.3 = 1.0);
    let merged = merge_module(
        BaselineMethod::Cat,
        &views(&raw),
        &BaselineParams::default(),
    )
    .expect("cat");
    assert_eq!(merged.rank(), 18);
    let mut sum = Array2::<f32>::zeros((48, 40));
    for (a, b, scale, _) in &raw {
        sum = sum + delta(a, b, f64::from(*scale));
    }
    assert!(rel_frobenius(&delta(&merged.a, &merged.b, 1.0), &sum) <= 1e-6);
}

#[test]
fn svd_at_full_rank_is_the_weighted_sum() {
    let raw = random_sources(30, 20, &[4, 8], 4);
    let params = BaselineParams {
        svd_rank: Some(12),
        ..BaselineParams::default()
    };
    let merged = merge_module(BaselineMethod::Svd, &views(&raw), &params).expect("svd");
    let cat = merge_module(BaselineMethod::Cat, &views(&raw), &params).expect("cat");
    assert!(rel_frobenius(&merged.delta(), &cat.delta()) <= 1e-5);
}

fn dare_params(density: f64, seed: u64) -> BaselineParams {
    BaselineParams {
        density,
        seed,
        ..BaselineParams::default()
    }
}

#[test]
fn dare_is_reproducible_per_seed() {
    let raw = random_sources(32, 24, &[6, 6, 6], 5);
    for method in [
        BaselineMethod::DareLinear,
        BaselineMethod::DareTies,
        BaselineMethod::DareLinearSvd,
        BaselineMethod::DareTiesSvd,
    ] {
        let run = |seed| merge_module(method, &views(&raw), &dare_params(0.4, seed)).expect("dare");
        assert_eq!(run(7), run(7), "{method}: same seed");
        assert_ne!(run(7), run(8), "{method}: different seed");
    }
}

#[test]
fn dare_at_density_one_equals_the_unpruned_method() {
    let raw = random_sources(32, 24, &[6, 6], 6);
    let pairs = [
        (BaselineMethod::DareLinear, BaselineMethod::Linear),
        (BaselineMethod::DareTies, BaselineMethod::Ties),
        (BaselineMethod::DareLinearSvd, BaselineMethod::Svd),
        (BaselineMethod::DareTiesSvd, BaselineMethod::TiesSvd),
    ];
    for (dare, plain) in pairs {
        let params = dare_params(1.0, 9);
        let ours = merge_module(dare, &views(&raw), &params).expect("dare");
        let reference = merge_module(plain, &views(&raw), &params).expect("plain");
        assert!(
            rel_frobenius(&ours.delta(), &reference.delta()) <= 1e-5,
            "{dare} vs {plain}"
        );
    }
}

#[test]
fn dare_keeps_about_density_and_rescales_by_its_inverse() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(13);
    // Nonzero entries, so a zero in the output can only come from the mask.
    let a = random(100, 1000, &mut rng).mapv(|v| if v == 0.0 { 0.5 } else { v });
    let b = Array2::<f32>::ones((4, 100));
    let source = [SourceFactors {
        a: a.view(),
        b: b.view(),
        scale: 1.0,
        weight: 1.0,
    }];
    let density = 0.3;
    let merged = merge_module(
        BaselineMethod::DareLinear,
        &source,
        &dare_params(density, 1),
    )
    .expect("dare");
    let kept = merged.a.iter().filter(|&&v| v != 0.0).count();
    let fraction = kept as f64 / a.len() as f64;
    assert!(
        (fraction - density).abs() < 0.01,
        "kept fraction {fraction}"
    );
    for (&out, &inp) in merged.a.iter().zip(a.iter()) {
        assert!(
            out == 0.0 || out == inp / density as f32,
            "kept entry {out} from {inp}"
        );
    }
}

#[test]
fn unequal_ranks_are_refused_with_peft_rule() {
    let raw = random_sources(16, 16, &[4, 8], 7);
    for method in [
        BaselineMethod::Linear,
        BaselineMethod::Ties,
        BaselineMethod::MagnitudePrune,
        BaselineMethod::DareLinear,
        BaselineMethod::DareTies,
    ] {
        let err =
            merge_module(method, &views(&raw), &dare_params(0.5, 0)).expect_err("unequal ranks");
        assert_eq!(
            err.to_string(),
            format!("all adapters must have the same rank for {method}; got ranks 4, 8; use cat, svd or lego")
        );
    }
    for method in [
        BaselineMethod::Cat,
        BaselineMethod::Svd,
        BaselineMethod::TiesSvd,
    ] {
        assert!(
            merge_module(method, &views(&raw), &dare_params(0.5, 0)).is_ok(),
            "{method}"
        );
    }
}

#[test]
fn invalid_parameters_are_refused() {
    let raw = random_sources(16, 16, &[4, 4], 8);
    for density in [0.0, -0.1, 1.5, f64::NAN] {
        let err = merge_module(BaselineMethod::Ties, &views(&raw), &dare_params(density, 0))
            .expect_err("density");
        assert!(
            matches!(err, BaselineError::Density { .. }),
            "{density}: {err}"
        );
        assert!(err
            .to_string()
            .starts_with("density must be in (0, 1] for ties; got"));
    }
    // Methods without density ignore it, like PEFT.
    assert!(merge_module(BaselineMethod::Linear, &views(&raw), &dare_params(0.0, 0)).is_ok());
    let zero_rank = BaselineParams {
        svd_rank: Some(0),
        ..BaselineParams::default()
    };
    assert!(matches!(
        merge_module(BaselineMethod::Svd, &views(&raw), &zero_rank),
        Err(BaselineError::ZeroSvdRank { .. })
    ));
    let bad_clamp = BaselineParams {
        svd_clamp: Some(1.2),
        ..BaselineParams::default()
    };
    assert!(matches!(
        merge_module(BaselineMethod::Svd, &views(&raw), &bad_clamp),
        Err(BaselineError::Clamp(_))
    ));
    assert!(matches!(
        merge_module(BaselineMethod::Cat, &[], &BaselineParams::default()),
        Err(BaselineError::NoSources { .. })
    ));
    let other = random_sources(16, 12, &[4], 9);
    let mixed = [views(&raw)[0], views(&other)[0]];
    let err =
        merge_module(BaselineMethod::Cat, &mixed, &BaselineParams::default()).expect_err("shape");
    assert!(matches!(err, BaselineError::Shape(_)), "{err}");
}

#[test]
fn magnitude_prune_keeps_floor_density_numel_with_index_tie_break() {
    let x = array![[1.0f32, -2.0, 2.0], [0.5, -2.0, 3.0]];
    // floor(0.5 · 6) = 3: 3.0, then the first two of the three |2.0| in row-major order.
    let pruned = prune_magnitude(x.view(), 0.5);
    assert_eq!(pruned, array![[0.0f32, -2.0, 2.0], [0.0, 0.0, 3.0]]);
    // floor(0.34 · 6) = 2.
    assert_eq!(
        prune_magnitude(x.view(), 0.34)
            .iter()
            .filter(|&&v| v != 0.0)
            .count(),
        2
    );
    assert_eq!(
        prune_magnitude(x.t(), 0.5),
        array![[0.0f32, 0.0], [-2.0, -2.0], [0.0, 3.0]]
    );
}

#[test]
fn ties_sign_election_total_and_frequency_differ() {
    // Three rank-1 sources on a 1×1 module: A entries 5, -1, -1 (B = 1, scale 1, weight 1).
    let a = [array![[5.0f32]], array![[-1.0f32]], array![[-1.0f32]]];
    let b = array![[1.0f32]];
    let sources: Vec<SourceFactors> = a
        .iter()
        .map(|a| SourceFactors {
            a: a.view(),
            b: b.view(),
            scale: 1.0,
            weight: 1.0,
        })
        .collect();
    let run = |majority_sign| {
        let params = BaselineParams {
            density: 1.0,
            majority_sign,
            ..BaselineParams::default()
        };
        merge_module(BaselineMethod::Ties, &sources, &params).expect("ties")
    };
    // total: 5 - 1 - 1 > 0 → keep 5 → A' = 5; B' = mean of three ones = 1.
    assert_eq!(run(MajoritySign::Total).a, array![[5.0f32]]);
    // frequency: +1 - 1 - 1 < 0 → keep the two -1 → A' = -1.
    assert_eq!(run(MajoritySign::Frequency).a, array![[-1.0f32]]);
}

#[test]
fn negative_weights_put_the_sign_on_a_only() {
    let raw = random_sources(10, 12, &[3], 10);
    let mut raw = raw;
    raw[0].3 = -0.5;
    let merged = merge_module(
        BaselineMethod::Linear,
        &views(&raw),
        &BaselineParams::default(),
    )
    .expect("linear");
    let (a, b, scale, weight) = &raw[0];
    assert!(rel_frobenius(&merged.delta(), &delta(a, b, f64::from(scale * weight))) <= 1e-6);
    let root = (0.5 * scale).sqrt();
    assert!(
        rel_frobenius(&merged.b, &b.mapv(|v| v * root)) <= 1e-6,
        "B gets +√|c|"
    );
}

#[test]
fn names_round_trip_and_classify() {
    for method in BaselineMethod::ALL {
        assert_eq!(method.to_string().parse::<BaselineMethod>(), Ok(method));
        assert_eq!(
            method.needs_dense_delta(),
            method.is_svd() && method != BaselineMethod::Svd
        );
    }
    assert!("lego".parse::<BaselineMethod>().is_err());
    assert_eq!(
        "frequency".parse::<MajoritySign>(),
        Ok(MajoritySign::Frequency)
    );
    assert_eq!(
        BaselineMethod::Ties.for_adapter_count(1),
        BaselineMethod::Linear
    );
    assert_eq!(
        BaselineMethod::Ties.for_adapter_count(2),
        BaselineMethod::Ties
    );
}

#[test]
fn pad_to_rank_keeps_the_delta() {
    let raw = random_sources(10, 12, &[3, 2], 14);
    let merged = merge_module(
        BaselineMethod::Cat,
        &views(&raw),
        &BaselineParams::default(),
    )
    .expect("cat");
    let padded = merged.clone().pad_to_rank(9);
    assert_eq!(padded.rank(), 9);
    assert_eq!(padded.delta(), merged.delta());
}

/// `cargo test --release -- --ignored --nocapture lowrank_svd_timing`
#[test]
#[ignore]
fn lowrank_svd_timing() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(99);
    let b = random(4096, 128, &mut rng);
    let a = random(128, 4096, &mut rng);
    let _ = lowrank_svd(b.view(), a.view(), 16).expect("warm-up");
    let runs = 5;
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = std::time::Instant::now();
        let out = lowrank_svd(b.view(), a.view(), 16).expect("svd");
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.u_s.dim(), (4096, 16));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "lowrank_svd 4096x4096 n=128 k=16: median {:.1} ms, min {:.1} ms",
        times[runs / 2],
        times[0]
    );
}

/// `cargo test --release -- --ignored --nocapture dense_svd_timing`
#[test]
#[ignore]
fn dense_svd_timing() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(98);
    for &size in &[256usize, 384, 512] {
        let d = random(size, size, &mut rng);
        let start = std::time::Instant::now();
        let _ = lora_lego::merge::lowrank_svd::dense_svd_truncate(d.view(), 16, None).expect("svd");
        println!(
            "dense_svd_truncate {size}x{size} k=16: {:.0} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let b = random(4096, 128, &mut rng);
    let a = random(128, 4096, &mut rng);
    let d = b.dot(&a);
    let start = std::time::Instant::now();
    let _ = lora_lego::merge::lowrank_svd::dense_svd_truncate(d.view(), 16, None).expect("svd");
    println!(
        "dense_svd_truncate 4096x4096 (rank 128) k=16: {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
}
