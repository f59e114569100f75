//! Integration tests for gram / kmeans / pca2d against naive references and linfa oracles.

use linfa::traits::{Fit, Predict};
use linfa::{DatasetBase, ParamGuard};
use lora_lego::gram::{embed, gram_of, GramError};
use lora_lego::kmeans::{
    k_curve, lloyd_from, silhouette, silhouette_samples, suggest_k, GramKMeans, KMeansError, KPoint,
};
use lora_lego::pca2d::pca2d;
use ndarray::{array, s, Array1, Array2, ArrayView1, Axis};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::HashMap;

fn uniform(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0..1.0))
}

/// `per` points around each centre with uniform noise of half-width `noise`.
fn blobs(centres: &Array2<f64>, per: usize, noise: f64, seed: u64) -> Array2<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (k, d) = centres.dim();
    Array2::from_shape_fn((k * per, d), |(i, j)| {
        centres[[i / per, j]] + noise * rng.gen_range(-1.0..1.0)
    })
}

fn embed_x(x: &Array2<f64>) -> Array2<f64> {
    embed(gram_of(x.view()).view()).expect("finite Gram").y
}

fn sq_dist(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}

/// True if two labelings are the same partition (a bijection maps one onto the other).
fn same_partition(a: &[usize], b: &[usize]) -> bool {
    let mut fwd = HashMap::new();
    let mut back = HashMap::new();
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| *fwd.entry(*x).or_insert(*y) == *y && *back.entry(*y).or_insert(*x) == *x)
}

// ---------------------------------------------------------------- gram

#[test]
fn embedding_reproduces_gram_and_distances() {
    let x = uniform(30, 200, 1);
    let g = gram_of(x.view());
    let e = embed(g.view()).expect("finite");
    assert_eq!(e.y.ncols(), 30, "random 30×200 data has full rank 30");
    let recon = e.y.dot(&e.y.t());
    let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (r, v) in recon.iter().zip(g.iter()) {
        assert!((r - v).abs() <= 1e-9 * gmax, "YYᵀ entry {r} vs G {v}");
    }
    for i in 0..30 {
        for j in 0..i {
            let dx = sq_dist(x.row(i), x.row(j));
            let dy = sq_dist(e.y.row(i), e.y.row(j));
            assert!(rel_close(dx, dy, 1e-9), "pair ({i},{j}): {dx} vs {dy}");
        }
    }
    assert!(
        e.y.is_standard_layout(),
        "row-major output keeps k-means fast"
    );
    let descending = e.eigenvalues.windows(2).into_iter().all(|w| w[0] >= w[1]);
    assert!(descending && e.eigenvalues.iter().all(|&v| v > 0.0));
}

#[test]
fn rank_deficient_gram_keeps_rank_dimensions() {
    let x = uniform(40, 5, 2).dot(&uniform(5, 50, 3));
    let e = embed(gram_of(x.view()).view()).expect("finite");
    assert_eq!(e.y.dim(), (40, 5));
    let recon = e.y.dot(&e.y.t());
    let g = gram_of(x.view());
    let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(recon
        .iter()
        .zip(g.iter())
        .all(|(a, b)| (a - b).abs() <= 1e-10 * gmax));
}

#[test]
fn embedding_edge_cases() {
    let e0 = embed(Array2::<f64>::zeros((0, 0)).view()).expect("n = 0");
    assert_eq!(e0.y.dim(), (0, 0));
    let e1 = embed(array![[9.0]].view()).expect("n = 1");
    assert_eq!(e1.y, array![[3.0]]);
    let ez = embed(Array2::<f64>::zeros((4, 4)).view()).expect("G = 0");
    assert_eq!(ez.y.dim(), (4, 0), "G = 0 gives an n×0 embedding");
    // k-means still works on the 0-dimensional embedding: all distances are 0.
    let model = GramKMeans::params(2)
        .fit_embedding(ez.y.view())
        .expect("m = 0");
    assert_eq!(model.inertia, 0.0);
    assert_eq!(model.cluster_sizes().iter().filter(|&&c| c > 0).count(), 2);
    let bad = array![[1.0, f64::NAN], [f64::NAN, 1.0]];
    assert!(matches!(embed(bad.view()), Err(GramError::NonFinite)));
    let inf = array![[f64::INFINITY]];
    assert!(matches!(embed(inf.view()), Err(GramError::NonFinite)));
}

#[test]
fn embedding_handles_extreme_scales() {
    for scale in [1e-150, 1e150] {
        let x = uniform(12, 4, 4) * scale;
        let g = gram_of(x.view());
        let e = embed(g.view()).expect("finite");
        assert_eq!(e.y.ncols(), 4);
        let d_x = sq_dist(x.row(0), x.row(1));
        let d_y = sq_dist(e.y.row(0), e.y.row(1));
        assert!(rel_close(d_x, d_y, 1e-9), "scale {scale}: {d_x} vs {d_y}");
    }
}

// ---------------------------------------------------------------- k-means vs references

/// Naive raw-space Lloyd: nearest centroid (lowest index on ties; sign-aware optional),
/// mean update, until labels and signs repeat. Returns (labels, signs, inertia).
fn naive_lloyd(x: &Array2<f64>, init: &[usize], sign_aware: bool) -> (Vec<usize>, Vec<f64>, f64) {
    let (n, d) = x.dim();
    let mut c: Vec<Vec<f64>> = init.iter().map(|&i| x.row(i).to_vec()).collect();
    let mut labels = vec![usize::MAX; n];
    let mut signs = vec![0.0; n];
    for _ in 0..1000 {
        let mut new_labels = vec![0; n];
        let mut new_signs = vec![1.0; n];
        for i in 0..n {
            let mut best = f64::INFINITY;
            for (j, cj) in c.iter().enumerate() {
                for s in if sign_aware {
                    vec![1.0, -1.0]
                } else {
                    vec![1.0]
                } {
                    let dist: f64 = (0..d).map(|t| (s * x[[i, t]] - cj[t]).powi(2)).sum();
                    if dist < best {
                        best = dist;
                        new_labels[i] = j;
                        new_signs[i] = s;
                    }
                }
            }
        }
        if new_labels == labels && new_signs == signs {
            break;
        }
        labels = new_labels;
        signs = new_signs;
        for (j, cj) in c.iter_mut().enumerate() {
            let members: Vec<usize> = (0..n).filter(|&i| labels[i] == j).collect();
            assert!(
                !members.is_empty(),
                "reference case must not empty a cluster"
            );
            for (t, v) in cj.iter_mut().enumerate() {
                *v = members.iter().map(|&i| signs[i] * x[[i, t]]).sum::<f64>()
                    / members.len() as f64;
            }
        }
    }
    let inertia = (0..n)
        .map(|i| {
            (0..d)
                .map(|t| (signs[i] * x[[i, t]] - c[labels[i]][t]).powi(2))
                .sum::<f64>()
        })
        .sum();
    (labels, signs, inertia)
}

#[test]
fn gram_space_lloyd_matches_raw_space_lloyd() {
    let x = uniform(80, 30, 5);
    let y = embed_x(&x);
    let init = [3, 17, 29, 41, 50, 66];
    for sign_aware in [false, true] {
        let (labels, signs, inertia) = naive_lloyd(&x, &init, sign_aware);
        let start = y.select(Axis(0), &init);
        let model = lloyd_from(y.view(), start.view(), 1000, 1e-15, sign_aware).expect("ok");
        assert!(model.n_iter > 2, "case should need several iterations");
        assert_eq!(model.labels, labels, "sign_aware = {sign_aware}");
        assert_eq!(model.signs, signs, "sign_aware = {sign_aware}");
        assert!(
            rel_close(model.inertia, inertia, 1e-9),
            "{} vs {inertia}",
            model.inertia
        );
    }
}

#[test]
fn agrees_with_linfa_kmeans_on_separated_blobs() {
    let centres = uniform(4, 10, 6) * 10.0;
    let x = blobs(&centres, 15, 0.5, 7);
    let linfa_model =
        linfa_clustering::KMeans::params_with_rng(4, Xoshiro256PlusPlus::seed_from_u64(0))
            .n_runs(10)
            .tolerance(1e-12)
            .fit(&DatasetBase::from(x.clone()))
            .expect("linfa fits");
    let linfa_labels: Array1<usize> = linfa_model.predict(&x);
    let linfa_inertia = linfa_model.inertia() * x.nrows() as f64; // linfa reports the mean
    let ours = GramKMeans::params(4)
        .fit(&DatasetBase::from(embed_x(&x)))
        .expect("fits");
    assert!(same_partition(
        &ours.labels,
        linfa_labels.as_slice().expect("contiguous")
    ));
    assert!(
        rel_close(ours.inertia, linfa_inertia, 1e-6),
        "{} vs {linfa_inertia}",
        ours.inertia
    );
}

#[test]
fn row_permutation_gives_same_partition_and_inertia() {
    let centres = uniform(5, 8, 8) * 5.0;
    let x = blobs(&centres, 12, 0.8, 9);
    let n = x.nrows();
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(10);
    for i in (1..n).rev() {
        perm.swap(i, rng.gen_range(0..=i));
    }
    let xp = x.select(Axis(0), &perm);
    let a = GramKMeans::params(5)
        .fit_embedding(embed_x(&x).view())
        .expect("ok");
    let b = GramKMeans::params(5)
        .fit_embedding(embed_x(&xp).view())
        .expect("ok");
    assert!(
        rel_close(a.inertia, b.inertia, 1e-9),
        "{} vs {}",
        a.inertia,
        b.inertia
    );
    let a_permuted: Vec<usize> = perm.iter().map(|&i| a.labels[i]).collect();
    assert!(same_partition(&a_permuted, &b.labels));
}

#[test]
fn same_seed_is_bit_identical_across_thread_counts() {
    let y = embed_x(&uniform(150, 40, 11));
    let g = gram_of(y.view());
    let params = GramKMeans::params(9).seed(7).sign_aware(true);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            let model = params.fit_embedding(y.view()).expect("fits");
            let checked = params.clone().check().expect("valid");
            let curve = k_curve(y.view(), g.view(), 6, &checked).expect("curve");
            (model, curve)
        })
    };
    let (m1, c1) = run(1);
    let (m2, c2) = run(2);
    assert_eq!(m1.inertia.to_bits(), m2.inertia.to_bits());
    assert_eq!(m1.labels, m2.labels);
    assert_eq!(m1.signs, m2.signs);
    let bits = |a: &Array2<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&m1.centroids), bits(&m2.centroids));
    let curve_bits = |c: &[KPoint]| {
        c.iter()
            .map(|p| (p.k, p.inertia.to_bits(), p.silhouette.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(curve_bits(&c1), curve_bits(&c2));
    let other_seed = GramKMeans::params(9).seed(8).sign_aware(true);
    let m3 = other_seed.fit_embedding(y.view()).expect("fits");
    assert_ne!(
        m1.labels, m3.labels,
        "a different seed should explore differently"
    );
}

#[test]
fn result_is_scale_invariant() {
    // The tolerance is relative: scaling the data must scale the inertia and nothing else
    // (an absolute tolerance would stop the tiny-scale run after two iterations).
    let x = uniform(120, 10, 27);
    let y = embed_x(&x);
    let params = GramKMeans::params(7).n_init(3).tol(1e-4);
    let base = params.fit_embedding(y.view()).expect("ok");
    assert!(base.n_iter > 3, "case should need several iterations");
    for scale in [1e-6, 1e6] {
        let scaled = params.fit_embedding((&y * scale).view()).expect("ok");
        assert_eq!(scaled.labels, base.labels, "scale {scale}");
        assert_eq!(scaled.n_iter, base.n_iter, "scale {scale}");
        assert!(rel_close(
            scaled.inertia,
            base.inertia * scale * scale,
            1e-9
        ));
    }
}

#[test]
fn empty_cluster_is_reseeded_from_farthest_point() {
    // Two tight groups on a line; both initial centroids sit on group A, so every point ties
    // to centroid 0 and cluster 1 starts empty. Reseeding moves the farthest point (10.1) into
    // it, after which Lloyd separates the groups: only reachable through the reseed path.
    let y = array![[-0.1], [0.0], [0.1], [9.9], [10.0], [10.1]];
    let init = array![[0.0], [0.0]];
    let model = lloyd_from(y.view(), init.view(), 100, 1e-12, false).expect("ok");
    assert_eq!(model.labels, vec![0, 0, 0, 1, 1, 1]);
    assert!(
        rel_close(model.inertia, 0.04, 1e-12),
        "inertia {}",
        model.inertia
    );
    // A centroid far from all data empties too and is reseeded the same way.
    let far = array![[5.0], [1000.0]];
    let model = lloyd_from(y.view(), far.view(), 100, 1e-12, false).expect("ok");
    assert!(same_partition(&model.labels, &[0, 0, 0, 1, 1, 1]));
}

#[test]
fn k_equals_n_gives_zero_inertia() {
    let y = embed_x(&uniform(25, 6, 12));
    let model = GramKMeans::params(25).fit_embedding(y.view()).expect("ok");
    assert_eq!(model.inertia, 0.0);
    assert!(model.cluster_sizes().iter().all(|&c| c == 1));
}

#[test]
fn sign_aware_merges_negated_units() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(13);
    let v1 = Array1::from_shape_fn(20, |_| rng.gen_range(-1.0..1.0));
    let v2 = Array1::from_shape_fn(20, |_| rng.gen_range(-1.0..1.0));
    let bases = [&v1, &v1, &v2, &v2];
    let sgn = [1.0, -1.0, 1.0, -1.0];
    let x = Array2::from_shape_fn((20, 20), |(i, j)| {
        sgn[i / 5] * bases[i / 5][j] + 0.02 * rng.gen_range(-1.0..1.0)
    });
    let y = embed_x(&x);
    let aware = GramKMeans::params(2)
        .sign_aware(true)
        .fit_embedding(y.view())
        .expect("ok");
    let expected = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    assert!(
        same_partition(&aware.labels, &expected),
        "{:?}",
        aware.labels
    );
    assert_ne!(
        aware.signs[0], aware.signs[5],
        "+v1 and −v1 join with opposite signs"
    );
    let plain = GramKMeans::params(2).fit_embedding(y.view()).expect("ok");
    assert_ne!(
        plain.labels[0], plain.labels[5],
        "plain k-means separates v1 from −v1"
    );
    assert!(plain.signs.iter().all(|&s| s == 1.0));
    // Sign-aware centroids are the signed means: M·Y reproduces them.
    let recon = aware.membership_matrix().dot(&y);
    assert!(recon
        .iter()
        .zip(aware.centroids.iter())
        .all(|(a, b)| (a - b).abs() < 1e-12));
}

#[test]
fn predict_matches_fit_labels() {
    let x = blobs(&(uniform(3, 5, 14) * 8.0), 10, 0.3, 15);
    let y = embed_x(&x);
    let model = GramKMeans::params(3).fit_embedding(y.view()).expect("ok");
    let predicted: Array1<usize> = model.predict(&y);
    assert_eq!(predicted.to_vec(), model.labels);
    let (labels, _) = model.try_predict(y.view()).expect("ok");
    assert_eq!(labels, model.labels);
    assert!(model.try_predict(y.slice(s![.., ..1]).view()).is_err());
}

#[test]
fn invalid_inputs_are_errors_not_panics() {
    let y = uniform(5, 3, 16);
    let e = |p: lora_lego::kmeans::GramKMeansParams| p.fit_embedding(y.view()).err();
    assert!(matches!(
        e(GramKMeans::params(0)),
        Some(KMeansError::ZeroClusters)
    ));
    assert!(matches!(
        e(GramKMeans::params(2).n_init(0)),
        Some(KMeansError::ZeroRestarts)
    ));
    assert!(matches!(
        e(GramKMeans::params(2).tol(0.0)),
        Some(KMeansError::InvalidTolerance(_))
    ));
    assert!(matches!(
        e(GramKMeans::params(2).tol(f64::NAN)),
        Some(KMeansError::InvalidTolerance(_))
    ));
    assert!(matches!(
        e(GramKMeans::params(6)),
        Some(KMeansError::TooManyClusters { k: 6, n: 5 })
    ));
    let mut bad = y.clone();
    bad[[2, 1]] = f64::NAN;
    let r = GramKMeans::params(2).fit_embedding(bad.view());
    assert!(matches!(r, Err(KMeansError::NonFinite)));
    let huge = Array2::from_elem((4, 2), 1e200);
    let r = GramKMeans::params(2).fit_embedding(huge.view());
    assert!(
        matches!(r, Err(KMeansError::NonFinite)),
        "overflow must be reported"
    );
    let g = gram_of(y.view());
    assert!(silhouette(g.view(), &[0, 1], &[1.0, 1.0]).is_err());
    let mut gbad = g.clone();
    gbad[[0, 0]] = f64::INFINITY;
    assert!(silhouette(gbad.view(), &[0, 0, 1, 1, 1], &[1.0; 5]).is_err());
}

// ---------------------------------------------------------------- silhouette and k choice

#[test]
fn silhouette_of_four_points_on_a_line() {
    // x = 0, 1, 4, 5 with clusters {0,1}, {4,5}; a = 1 for everyone.
    // x=0: b = (4+5)/2 = 4.5, s = 3.5/4.5 = 7/9;   x=1: b = (3+4)/2 = 3.5, s = 2.5/3.5 = 5/7;
    // x=4: b = (4+3)/2 = 3.5, s = 5/7;             x=5: b = (5+4)/2 = 4.5, s = 7/9.
    // Mean = (7/9 + 5/7)/2 = 47/63.
    let x = array![[0.0], [1.0], [4.0], [5.0]];
    let g = gram_of(x.view());
    let value = silhouette(g.view(), &[0, 0, 1, 1], &[1.0; 4]).expect("ok");
    assert!((value - 47.0 / 63.0).abs() < 1e-12, "{value}");
    // Arbitrary label values are fine; signs flip the representation of a unit: with
    // s_3 = −1 unit 3 sits at −5, which changes the score.
    let relabelled = silhouette(g.view(), &[7, 7, 3, 3], &[1.0; 4]).expect("ok");
    assert!((relabelled - value).abs() < 1e-15);
    let flipped = silhouette(g.view(), &[0, 0, 1, 1], &[1.0, 1.0, 1.0, -1.0]).expect("ok");
    assert!((flipped - value).abs() > 0.1);
    // Conventions: k = 1 and k = n give 0; singletons score 0.
    assert_eq!(silhouette(g.view(), &[0; 4], &[1.0; 4]).expect("ok"), 0.0);
    assert_eq!(
        silhouette(g.view(), &[0, 1, 2, 3], &[1.0; 4]).expect("ok"),
        0.0
    );
    let with_singleton = silhouette_samples(g.view(), &[0, 0, 0, 1], &[1.0; 4]).expect("ok");
    assert_eq!(with_singleton[3], 0.0);
}

/// Silhouette from explicit vectors `s_i·x_i` with plain loops.
fn naive_silhouette(x: &Array2<f64>, labels: &[usize], signs: &[f64]) -> f64 {
    let n = x.nrows();
    let pts: Vec<Array1<f64>> = (0..n).map(|i| &x.row(i) * signs[i]).collect();
    let d = |i: usize, j: usize| sq_dist(pts[i].view(), pts[j].view()).sqrt();
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut total = 0.0;
    for i in 0..n {
        let mean_to = |c: usize| {
            let members: Vec<usize> = (0..n).filter(|&j| labels[j] == c && j != i).collect();
            (
                members.iter().map(|&j| d(i, j)).sum::<f64>() / members.len() as f64,
                members.len(),
            )
        };
        let (a, own_others) = mean_to(labels[i]);
        if own_others == 0 {
            continue;
        }
        let b = (0..k)
            .filter(|&c| c != labels[i])
            .map(|c| mean_to(c).0)
            .fold(f64::INFINITY, f64::min);
        total += (b - a) / a.max(b);
    }
    total / n as f64
}

#[test]
fn silhouette_matches_naive_computation() {
    let x = uniform(40, 6, 17);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(18);
    let labels: Vec<usize> = (0..40)
        .map(|i| if i < 3 { i } else { rng.gen_range(0..4) })
        .collect();
    let signs: Vec<f64> = (0..40)
        .map(|_| if rng.gen_bool(0.5) { 1.0 } else { -1.0 })
        .collect();
    let g = gram_of(x.view());
    let ours = silhouette(g.view(), &labels, &signs).expect("ok");
    let naive = naive_silhouette(&x, &labels, &signs);
    assert!((ours - naive).abs() < 1e-12, "{ours} vs {naive}");
}

#[test]
fn k_curve_and_suggestion_find_planted_clusters() {
    let x = blobs(&(uniform(4, 12, 19) * 6.0), 10, 0.4, 20);
    let y = embed_x(&x);
    let g = gram_of(x.view());
    let params = GramKMeans::params(1).check().expect("valid");
    let curve = k_curve(y.view(), g.view(), 10, &params).expect("ok");
    assert_eq!(
        curve.iter().map(|p| p.k).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(curve[0].silhouette, 0.0);
    assert!(curve
        .windows(2)
        .all(|w| w[1].inertia <= w[0].inertia * (1.0 + 1e-9)));
    assert_eq!(suggest_k(&curve), 4);
    let small = k_curve(y.slice(s![..2, ..]), g.slice(s![..2, ..2]), 10, &params).expect("ok");
    assert_eq!(small.len(), 2);
}

#[test]
fn suggest_k_fallbacks() {
    let pt = |k, inertia, silhouette| KPoint {
        k,
        inertia,
        silhouette,
    };
    assert_eq!(suggest_k(&[]), 0);
    // Tie in silhouette → the smaller k.
    let tie = [
        pt(1, 10.0, 0.0),
        pt(2, 5.0, 0.5),
        pt(3, 2.0, 0.5),
        pt(4, 0.0, 0.0),
    ];
    assert_eq!(suggest_k(&tie), 2);
    // No positive silhouette → elbow: the sharp bend at k = 3.
    let elbow = [
        pt(1, 100.0, 0.0),
        pt(2, 50.0, -0.1),
        pt(3, 5.0, -0.1),
        pt(4, 4.0, -0.2),
        pt(5, 3.0, 0.0),
    ];
    assert_eq!(suggest_k(&elbow), 3);
    // n = 2: keep both unless merging is lossless; identical units → 1.
    assert_eq!(suggest_k(&[pt(1, 2.0, 0.0), pt(2, 0.0, 0.0)]), 2);
    assert_eq!(suggest_k(&[pt(1, 0.0, 0.0), pt(2, 0.0, 0.0)]), 1);
    // A straight inertia line has no elbow → keep the largest k.
    let line = [pt(1, 3.0, 0.0), pt(2, 2.0, 0.0), pt(3, 1.0, 0.0)];
    assert_eq!(suggest_k(&line), 3);
}

// ---------------------------------------------------------------- pca2d

#[test]
fn pca2d_matches_linfa_pca() {
    let x = uniform(50, 6, 21).dot(&Array2::from_diag(&array![5.0, 3.0, 1.0, 0.5, 0.3, 0.1]));
    let scores = pca2d(gram_of(x.view()).view()).expect("ok");
    let pca = linfa_reduction::Pca::params(2)
        .fit(&DatasetBase::from(x.clone()))
        .expect("fits");
    let expected: Array2<f64> = pca.predict(&x);
    for c in 0..2 {
        let (ours, theirs) = (scores.column(c), expected.column(c));
        let sign = if ours.dot(&theirs) < 0.0 { -1.0 } else { 1.0 };
        let err = ours
            .iter()
            .zip(theirs.iter())
            .fold(0.0f64, |m, (a, b)| m.max((a - sign * b).abs()));
        assert!(err < 1e-8, "component {c}: max error {err}");
    }
}

#[test]
fn pca2d_degenerate_inputs() {
    let u = uniform(10, 1, 22);
    let x = u.dot(&uniform(1, 7, 23)); // rank 1, and not centred
    let scores = pca2d(gram_of(x.view()).view()).expect("ok");
    assert!(scores.iter().all(|v| v.is_finite()));
    assert!(
        scores.column(1).iter().all(|&v| v == 0.0),
        "rank-1 data has no 2nd component"
    );
    assert!(scores.column(0).iter().any(|&v| v != 0.0));
    // Orientation: the largest-magnitude entry of each non-zero column is positive.
    let col0 = scores.column(0);
    let dominant = col0
        .iter()
        .fold(0.0f64, |m, &v| if v.abs() > m.abs() { v } else { m });
    assert!(dominant > 0.0);
    assert_eq!(
        pca2d(Array2::<f64>::zeros((0, 0)).view())
            .expect("n=0")
            .dim(),
        (0, 2)
    );
    assert_eq!(
        pca2d(array![[4.0]].view()).expect("n=1"),
        array![[0.0, 0.0]]
    );
    assert!(pca2d(array![[f64::NAN]].view()).is_err());
}

// ---------------------------------------------------------------- properties

fn small_matrix() -> impl Strategy<Value = Array2<f64>> {
    (1usize..=12, 1usize..=8).prop_flat_map(|(n, d)| {
        prop::collection::vec(-10.0f64..10.0, n * d)
            .prop_map(move |v| Array2::from_shape_vec((n, d), v).expect("sized"))
    })
}

proptest! {
    #[test]
    fn k_equals_n_puts_every_unit_alone(x in small_matrix(), sign_aware in any::<bool>()) {
        let n = x.nrows();
        let y = embed_x(&x);
        let model = GramKMeans::params(n).sign_aware(sign_aware).fit_embedding(y.view()).expect("ok");
        let scale = 1.0 + x.iter().map(|v| v * v).sum::<f64>();
        prop_assert!(model.inertia <= 1e-9 * scale, "inertia {}", model.inertia);
        prop_assert!(model.cluster_sizes().iter().all(|&c| c == 1));
    }

    #[test]
    fn embedding_preserves_distances(x in small_matrix()) {
        let y = embed_x(&x);
        let scale = 1.0 + x.rows().into_iter().map(|r| r.dot(&r)).fold(0.0, f64::max);
        for i in 0..x.nrows() {
            for j in 0..i {
                let (dx, dy) = (sq_dist(x.row(i), x.row(j)), sq_dist(y.row(i), y.row(j)));
                prop_assert!((dx - dy).abs() <= 1e-10 * scale, "{} vs {}", dx, dy);
            }
        }
    }
}

// ---------------------------------------------------------------- timing (ignored)

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn bench_n640_m640_k64() {
    let x = uniform(640, 640, 24);
    let g = gram_of(x.view());
    let t = std::time::Instant::now();
    let y = embed(g.view()).expect("ok").y;
    println!("embed n=640: {:?} (m = {})", t.elapsed(), y.ncols());
    let params = GramKMeans::params(64).n_init(10);
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let model = params.fit_embedding(y.view()).expect("ok");
        println!(
            "kmeans uniform k=64 n_init=10: {:?} (n_iter {})",
            t.elapsed(),
            model.n_iter
        );
    }
    // Low intrinsic dimension (rank 8 + noise) makes Lloyd iterate many times.
    let xh = uniform(640, 8, 28).dot(&uniform(8, 640, 29)) + uniform(640, 640, 30) * 0.01;
    let yh = embed(gram_of(xh.view()).view()).expect("ok").y;
    let t = std::time::Instant::now();
    let model = params.fit_embedding(yh.view()).expect("ok");
    println!(
        "kmeans low-rank k=64 n_init=10: {:?} (n_iter {})",
        t.elapsed(),
        model.n_iter
    );
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let t = std::time::Instant::now();
    let model = one.install(|| params.fit_embedding(yh.view())).expect("ok");
    println!(
        "  same, 1 thread: {:?} (n_iter {})",
        t.elapsed(),
        model.n_iter
    );
    let xb = blobs(&(uniform(64, 640, 25) * 3.0), 10, 1.0, 26);
    let yb = embed(gram_of(xb.view()).view()).expect("ok").y;
    let t = std::time::Instant::now();
    let model = params.fit_embedding(yb.view()).expect("ok");
    println!(
        "kmeans blobs   k=64 n_init=10: {:?} (n_iter {})",
        t.elapsed(),
        model.n_iter
    );
    let t = std::time::Instant::now();
    let s = silhouette(g.view(), &model.labels, &model.signs).expect("ok");
    println!("silhouette n=640: {:?} ({s:.3})", t.elapsed());
    let t = std::time::Instant::now();
    let _ = pca2d(g.view()).expect("ok");
    println!("pca2d n=640: {:?}", t.elapsed());
    let checked = params.check().expect("valid");
    let t = std::time::Instant::now();
    let curve = k_curve(
        y.slice(s![..160, ..]),
        g.slice(s![..160, ..160]),
        32,
        &checked,
    )
    .expect("ok");
    println!(
        "k_curve n=160 kmax=32: {:?} (suggest {})",
        t.elapsed(),
        suggest_k(&curve)
    );
}
