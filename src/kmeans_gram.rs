//! k-means straight on a Gram matrix `G = X Xᵀ`, with no embedding and no eigensolve.
//!
//! A centroid is the mean `μ_c = (1/|C|) Σ_{j∈C} s_j x_j` of its (oriented) members, so
//! `‖x_i − μ_c‖² = G_ii − (2/|C|) Σ_{j∈C} s_j G_ij + (1/|C|²) Σ_{j,l∈C} s_j s_l G_jl`: one pass
//! over `G` per Lloyd iteration (O(n²), against O(n·m·k) on the embedding plus the O(n³)
//! eigensolve that builds it). Seeding, restarts, tie-breaking, empty-cluster reseeding and
//! stopping follow [`crate::kmeans`] step for step, so both routes find the same partitions
//! up to rounding, and results are bit-identical for a seed whatever the thread count (each
//! row's sums run in a fixed order; restarts are seeded by index).

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::kmeans::{
    restart_seed, sample_by_weight, uniform_unchosen, GramKMeansValidParams, KMeansError,
};

/// A partition of the units found from their Gram matrix alone.
#[derive(Debug, Clone, PartialEq)]
pub struct GramPartition {
    /// Cluster of each unit (every cluster is non-empty).
    pub labels: Vec<usize>,
    /// ±1 per unit: the orientation in which it joined its centroid (all +1 unless sign-aware).
    pub signs: Vec<f64>,
    /// `Σ_i ‖s_i·x_i − μ_{label_i}‖²`, from `G`.
    pub inertia: f64,
    /// Lloyd iterations used by the winning restart.
    pub n_iter: usize,
    /// Whether the winning restart met the tolerance before `max_iter`.
    pub converged: bool,
    /// Number of clusters.
    pub k: usize,
}

impl GramPartition {
    /// Members per cluster.
    pub fn cluster_sizes(&self) -> Vec<usize> {
        sizes_of(&self.labels, self.k)
    }

    /// `k × n` matrix `M` with `M[c,i] = s_i/|C_c|` for members: the centroids are `M·X`.
    pub fn membership_matrix(&self) -> Array2<f64> {
        let sizes = self.cluster_sizes();
        let mut m = Array2::zeros((self.k, self.labels.len()));
        for (i, (&l, &s)) in self.labels.iter().zip(&self.signs).enumerate() {
            m[[l, i]] = s / sizes[l] as f64;
        }
        m
    }
}

/// Clusters the units whose Gram matrix is `g` (n × n, symmetric) with `params`' k, restarts,
/// iteration cap, tolerance, seed and sign-awareness; lowest inertia wins (lowest restart
/// index on exact ties).
pub fn fit_gram(
    g: ArrayView2<f64>,
    params: &GramKMeansValidParams,
) -> Result<GramPartition, KMeansError> {
    let n = g.nrows();
    let k = params.k();
    if g.ncols() != n {
        return Err(KMeansError::Shape(format!(
            "Gram is {}×{}",
            g.nrows(),
            g.ncols()
        )));
    }
    if k == 0 {
        return Err(KMeansError::ZeroClusters);
    }
    if k > n {
        return Err(KMeansError::TooManyClusters { k, n });
    }
    if g.iter().any(|v| !v.is_finite()) {
        return Err(KMeansError::NonFinite);
    }
    // Rows are walked contiguously in every pass.
    let g = g.as_standard_layout();
    let g = g.view();
    let sign_aware = params.is_sign_aware();
    let runs: Vec<Result<GramPartition, KMeansError>> = (0..params.n_init())
        .into_par_iter()
        .map(|restart| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(restart_seed(params.seed(), restart));
            let seeds = seed_plus_plus(g, k, sign_aware, &mut rng);
            lloyd(g, seeds, params.max_iter(), params.tol(), sign_aware)
        })
        .collect();
    let mut best: Option<GramPartition> = None;
    for run in runs {
        let run = run?;
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.ok_or(KMeansError::ZeroRestarts)
}

fn sizes_of(labels: &[usize], k: usize) -> Vec<usize> {
    let mut sizes = vec![0; k];
    for &l in labels {
        sizes[l] += 1;
    }
    sizes
}

/// k-means++ (D² sampling) with `‖x_i − x_c‖² = G_ii + G_cc − 2 G_ic`: the same draws as the
/// embedding route's seeding, one row of `G` per centre.
fn seed_plus_plus(
    g: ArrayView2<f64>,
    k: usize,
    sign_aware: bool,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<usize> {
    let n = g.nrows();
    let mut chosen = Vec::with_capacity(k);
    let mut d2 = vec![f64::INFINITY; n];
    let mut next = rng.gen_range(0..n);
    loop {
        chosen.push(next);
        let row = g.row(next);
        let gnn = g[[next, next]];
        for (i, (d, &dot)) in d2.iter_mut().zip(row.iter()).enumerate() {
            let cross = if sign_aware { dot.abs() } else { dot };
            *d = d.min((g[[i, i]] + gnn - 2.0 * cross).max(0.0));
        }
        d2[next] = 0.0;
        if chosen.len() == k {
            return chosen;
        }
        next = sample_by_weight(&d2, rng).unwrap_or_else(|| uniform_unchosen(&chosen, n, rng));
    }
}

/// Each centroid as coefficients over the units: `μ_c = Σ_j coef_j x_j` for `j` with
/// `label_j = c` (`coef_j = s_j/|C|`), or a single unit while seeding.
struct Centroids {
    /// Per unit: the centroid it is a term of, if any.
    of: Vec<Option<usize>>,
    /// Per unit: its coefficient in that centroid.
    coef: Vec<f64>,
    k: usize,
}

impl Centroids {
    fn from_seeds(n: usize, seeds: &[usize]) -> Self {
        let mut of = vec![None; n];
        let mut coef = vec![0.0; n];
        for (c, &i) in seeds.iter().enumerate() {
            of[i] = Some(c);
            coef[i] = 1.0;
        }
        Centroids {
            of,
            coef,
            k: seeds.len(),
        }
    }

    fn from_labels(labels: &[usize], signs: &[f64], k: usize) -> Self {
        let sizes = sizes_of(labels, k);
        Centroids {
            of: labels.iter().map(|&l| Some(l)).collect(),
            coef: labels
                .iter()
                .zip(signs)
                .map(|(&l, &s)| s / sizes[l] as f64)
                .collect(),
            k,
        }
    }

    /// `cross[i·k + c] = x_i·μ_c` for every unit and centroid (one pass over `G`), and
    /// `‖μ_c‖²`.
    fn products(&self, g: ArrayView2<f64>) -> (Vec<f64>, Vec<f64>) {
        let (n, k) = (g.nrows(), self.k);
        let mut cross = vec![0.0; n * k];
        cross.par_chunks_mut(k).enumerate().for_each(|(i, out)| {
            let row = g.row(i);
            for ((&gij, of), &w) in row.iter().zip(&self.of).zip(&self.coef) {
                if let Some(c) = *of {
                    out[c] += w * gij;
                }
            }
        });
        let mut cnorm = vec![0.0; k];
        for (j, (of, &w)) in self.of.iter().zip(&self.coef).enumerate() {
            if let Some(c) = *of {
                cnorm[c] += w * cross[j * k + c];
            }
        }
        (cross, cnorm)
    }
}

/// Nearest-centroid assignment of every unit.
struct Assignment {
    labels: Vec<usize>,
    signs: Vec<f64>,
    /// Squared distance of each unit to its centroid (clamped ≥ 0).
    dist: Vec<f64>,
}

/// Ties go to the lowest centroid index and to sign +1, as on the embedding.
fn assign(g: ArrayView2<f64>, centroids: &Centroids, sign_aware: bool) -> Assignment {
    let (cross, cnorm) = centroids.products(g);
    let (n, k) = (g.nrows(), centroids.k);
    let mut a = Assignment {
        labels: vec![0; n],
        signs: vec![1.0; n],
        dist: vec![0.0; n],
    };
    for i in 0..n {
        let gii = g[[i, i]];
        let mut best = (f64::INFINITY, 0usize, 1.0f64);
        for (c, &dot) in cross[i * k..(i + 1) * k].iter().enumerate() {
            let (x, sign) = if sign_aware && dot < 0.0 {
                (-dot, -1.0)
            } else {
                (dot, 1.0)
            };
            let d = gii + cnorm[c] - 2.0 * x;
            if d < best.0 {
                best = (d, c, sign);
            }
        }
        a.labels[i] = best.1;
        a.signs[i] = best.2;
        a.dist[i] = best.0.max(0.0);
    }
    a
}

/// Moves, for each empty cluster, the unit farthest from its centroid into it, taking only
/// from clusters with ≥ 2 members (the embedding route's rule).
fn reseed_empty(a: &mut Assignment, k: usize) {
    let mut counts = sizes_of(&a.labels, k);
    for c in 0..k {
        if counts[c] > 0 {
            continue;
        }
        let mut far: Option<usize> = None;
        for i in 0..a.labels.len() {
            let donor_ok = counts[a.labels[i]] > 1;
            if donor_ok && far.is_none_or(|f| a.dist[i] > a.dist[f]) {
                far = Some(i);
            }
        }
        let Some(i) = far else { return };
        counts[a.labels[i]] -= 1;
        counts[c] = 1;
        a.labels[i] = c;
        a.signs[i] = 1.0;
        a.dist[i] = 0.0;
    }
}

/// Lloyd iterations until the labels repeat or the inertia changes by less than `tol`
/// relative (the embedding route's stopping rule).
fn lloyd(
    g: ArrayView2<f64>,
    seeds: Vec<usize>,
    max_iter: usize,
    tol: f64,
    sign_aware: bool,
) -> Result<GramPartition, KMeansError> {
    let k = seeds.len();
    let mut centroids = Centroids::from_seeds(g.nrows(), &seeds);
    let mut labels: Vec<usize> = Vec::new();
    let mut signs: Vec<f64> = Vec::new();
    let mut previous: Option<f64> = None;
    let (mut n_iter, mut converged) = (0, false);
    while n_iter < max_iter {
        n_iter += 1;
        let mut a = assign(g, &centroids, sign_aware);
        let inertia: f64 = a.dist.iter().sum();
        if !inertia.is_finite() {
            return Err(KMeansError::NonFinite);
        }
        let unchanged = a.labels == labels && a.signs == signs;
        reseed_empty(&mut a, k);
        centroids = Centroids::from_labels(&a.labels, &a.signs, k);
        labels = a.labels;
        signs = a.signs;
        let small_change = previous.is_some_and(|p| (p - inertia).abs() <= tol * p);
        if unchanged || small_change {
            converged = true;
            break;
        }
        previous = Some(inertia);
    }
    let inertia = partition_inertia(g, &labels, &signs, k);
    if !inertia.is_finite() {
        return Err(KMeansError::NonFinite);
    }
    Ok(GramPartition {
        labels,
        signs,
        inertia,
        n_iter,
        converged,
        k,
    })
}

/// `Σ_c (Σ_{i∈C} G_ii − (1/|C|) Σ_{i,j∈C} s_i s_j G_ij)`, each cluster clamped at 0 so
/// rounding never reports a negative spread; exactly 0 for singletons (k = n).
pub fn partition_inertia(g: ArrayView2<f64>, labels: &[usize], signs: &[f64], k: usize) -> f64 {
    let sizes = sizes_of(labels, k);
    let mut diag = vec![0.0; k];
    let mut pair = vec![0.0; k];
    for (i, (&li, &si)) in labels.iter().zip(signs).enumerate() {
        diag[li] += g[[i, i]];
        let row = g.row(i);
        let mut acc = 0.0;
        for (j, (&lj, &sj)) in labels.iter().zip(signs).enumerate() {
            if lj == li {
                acc += sj * row[j];
            }
        }
        pair[li] += si * acc;
    }
    (0..k)
        .map(|c| {
            if sizes[c] <= 1 {
                0.0
            } else {
                (diag[c] - pair[c] / sizes[c] as f64).max(0.0)
            }
        })
        .sum()
}
