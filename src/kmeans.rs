//! k-means on the isometric embedding `Y` of a Gram matrix (see `crate::gram`), shaped like
//! `linfa-clustering`'s `KMeans`, plus silhouette scores and a k-selection curve.
//!
//! Differences from linfa that matter here: the stopping tolerance is *relative* to the
//! inertia (LoRA units have arbitrary scale), an optional sign-aware distance treats `y` and
//! `-y` as the same unit, and results are bit-identical for a given seed whatever the rayon
//! thread count (restarts are seeded by index and every float reduction is sequential).

use crate::gram::GramError;
use linfa::traits::{Fit, PredictInplace};
use linfa::{DatasetBase, ParamGuard};
use ndarray::{Array1, Array2, ArrayBase, ArrayView2, Axis, Data, Ix2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use std::collections::BTreeMap;
use thiserror::Error;

/// Default number of k-means++ restarts.
pub const DEFAULT_N_INIT: usize = 10;
/// Default cap on Lloyd iterations per restart.
pub const DEFAULT_MAX_ITER: usize = 300;
/// Default relative inertia change below which Lloyd stops.
pub const DEFAULT_TOL: f64 = 1e-6;
/// Default RNG seed when a caller sets none (linfa's default too); merges always pass the
/// settings' seed, whose default is 0.
pub const DEFAULT_SEED: u64 = 42;
/// Restarts per k inside [`k_curve`]: the curve needs a trend, not the best optimum per k,
/// and it fits every k, so it trades a little inertia for ~3× speed.
pub const K_CURVE_N_INIT: usize = 3;

/// Errors from k-means, silhouette and k-curve routines.
#[derive(Debug, Clone, Error)]
pub enum KMeansError {
    /// k must be at least 1.
    #[error("number of clusters must be at least 1")]
    ZeroClusters,
    /// n_init must be at least 1.
    #[error("n_init must be at least 1")]
    ZeroRestarts,
    /// max_iter must be at least 1.
    #[error("max_iter must be at least 1")]
    ZeroIterations,
    /// tol must be positive and finite.
    #[error("tolerance must be positive and finite, got {0}")]
    InvalidTolerance(f64),
    /// More clusters than points (the caller should clamp k).
    #[error("k = {k} exceeds the number of points n = {n}")]
    TooManyClusters {
        /// Requested clusters.
        k: usize,
        /// Available points.
        n: usize,
    },
    /// Input holds NaN/inf, or arithmetic overflowed.
    #[error("input contains NaN or infinite values (or distances overflowed)")]
    NonFinite,
    /// Inconsistent array shapes or lengths.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Error from the Gram-matrix routines.
    #[error(transparent)]
    Gram(#[from] GramError),
    /// Error surfaced by linfa.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// Checked k-means hyperparameters (build with [`GramKMeans::params`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GramKMeansValidParams {
    k: usize,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    sign_aware: bool,
}

/// Unchecked k-means hyperparameters; `check()` (linfa's `ParamGuard`) validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct GramKMeansParams(GramKMeansValidParams);

/// A fitted k-means model on embedded units.
#[derive(Debug, Clone, PartialEq)]
pub struct GramKMeans {
    /// `k × m` centroids: centroid c is the mean of `s_i·y_i` over its members.
    pub centroids: Array2<f64>,
    /// Cluster of each unit (every cluster is non-empty).
    pub labels: Vec<usize>,
    /// ±1 per unit: the orientation in which it joined its centroid (all +1 unless sign-aware).
    pub signs: Vec<f64>,
    /// `Σ_i ‖s_i·y_i − c_{label_i}‖²` for the returned centroids.
    pub inertia: f64,
    /// Lloyd iterations used by the winning restart.
    pub n_iter: usize,
    /// Whether the winning restart met the tolerance before `max_iter`.
    pub converged: bool,
    /// Whether distances ignore sign (`min(‖y−c‖², ‖y+c‖²)`).
    pub sign_aware: bool,
}

impl GramKMeansParams {
    /// Parameters for `k` clusters with the documented defaults.
    pub fn new(k: usize) -> Self {
        Self(GramKMeansValidParams {
            k,
            n_init: DEFAULT_N_INIT,
            max_iter: DEFAULT_MAX_ITER,
            tol: DEFAULT_TOL,
            seed: DEFAULT_SEED,
            sign_aware: false,
        })
    }

    /// Sets the number of clusters.
    pub fn k(mut self, k: usize) -> Self {
        self.0.k = k;
        self
    }

    /// Sets the number of k-means++ restarts; the lowest inertia wins.
    pub fn n_init(mut self, n_init: usize) -> Self {
        self.0.n_init = n_init;
        self
    }

    /// Sets the cap on Lloyd iterations per restart.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.0.max_iter = max_iter;
        self
    }

    /// Sets the relative inertia change that counts as converged.
    pub fn tol(mut self, tol: f64) -> Self {
        self.0.tol = tol;
        self
    }

    /// Sets the RNG seed; equal seeds and inputs give bit-identical results.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }

    /// Treats a unit and its negation as the same unit.
    pub fn sign_aware(mut self, sign_aware: bool) -> Self {
        self.0.sign_aware = sign_aware;
        self
    }

    /// Validates, then clusters the rows of `y` (see [`GramKMeansValidParams::fit_embedding`]).
    pub fn fit_embedding(&self, y: ArrayView2<f64>) -> Result<GramKMeans, KMeansError> {
        self.check_ref()?.fit_embedding(y)
    }
}

impl ParamGuard for GramKMeansParams {
    type Checked = GramKMeansValidParams;
    type Error = KMeansError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if p.k == 0 {
            Err(KMeansError::ZeroClusters)
        } else if p.n_init == 0 {
            Err(KMeansError::ZeroRestarts)
        } else if p.max_iter == 0 {
            Err(KMeansError::ZeroIterations)
        } else if !(p.tol > 0.0 && p.tol.is_finite()) {
            Err(KMeansError::InvalidTolerance(p.tol))
        } else {
            Ok(p)
        }
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

impl GramKMeansValidParams {
    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of restarts.
    pub fn n_init(&self) -> usize {
        self.n_init
    }

    /// Lloyd iteration cap.
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }

    /// Relative convergence tolerance.
    pub fn tol(&self) -> f64 {
        self.tol
    }

    /// RNG seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether clustering is sign-aware.
    pub fn is_sign_aware(&self) -> bool {
        self.sign_aware
    }

    /// Clusters the rows of `y` (n × m): k-means++ restarts in parallel, lowest inertia wins
    /// (lowest restart index on exact ties).
    pub fn fit_embedding(&self, y: ArrayView2<f64>) -> Result<GramKMeans, KMeansError> {
        check_points(y, self.k)?;
        // Every hot loop walks rows; a column-major input would make them strided.
        let y = y.as_standard_layout();
        let y = y.view();
        let norms = row_sq_norms(y);
        let runs: Vec<Result<GramKMeans, KMeansError>> = (0..self.n_init)
            .into_par_iter()
            .map(|restart| {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(restart_seed(self.seed, restart));
                let init = kmeans_plus_plus(y, &norms, self.k, self.sign_aware, &mut rng);
                lloyd(y, &norms, init, self.max_iter, self.tol, self.sign_aware)
            })
            .collect();
        let mut best: Option<GramKMeans> = None;
        for run in runs {
            let run = run?;
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(run);
            }
        }
        best.ok_or(KMeansError::ZeroRestarts)
    }
}

impl<T> Fit<Array2<f64>, T, KMeansError> for GramKMeansValidParams {
    type Object = GramKMeans;

    fn fit(&self, dataset: &DatasetBase<Array2<f64>, T>) -> Result<GramKMeans, KMeansError> {
        self.fit_embedding(dataset.records().view())
    }
}

impl GramKMeans {
    /// Default parameters for `k` clusters.
    pub fn params(k: usize) -> GramKMeansParams {
        GramKMeansParams::new(k)
    }

    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centroids.nrows()
    }

    /// Members per cluster.
    pub fn cluster_sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.k()];
        for &l in &self.labels {
            sizes[l] += 1;
        }
        sizes
    }

    /// `k × n` matrix `M` with `M[c,i] = s_i/|C_c|` for members, so `centroids = M·Y` and the
    /// full-dimension centroids are `M·X`.
    pub fn membership_matrix(&self) -> Array2<f64> {
        let sizes = self.cluster_sizes();
        let mut m = Array2::zeros((self.k(), self.labels.len()));
        for (i, (&l, &s)) in self.labels.iter().zip(&self.signs).enumerate() {
            m[[l, i]] = s / sizes[l] as f64;
        }
        m
    }

    /// Nearest centroid and orientation for each row of `y`, validating shape and values.
    pub fn try_predict(&self, y: ArrayView2<f64>) -> Result<(Vec<usize>, Vec<f64>), KMeansError> {
        if y.ncols() != self.centroids.ncols() {
            return Err(KMeansError::Shape(format!(
                "points have {} columns, centroids {}",
                y.ncols(),
                self.centroids.ncols()
            )));
        }
        if y.iter().any(|v| !v.is_finite()) {
            return Err(KMeansError::NonFinite);
        }
        let a = assign(y, &row_sq_norms(y), &self.centroids, self.sign_aware);
        Ok((a.labels, a.signs))
    }
}

/// linfa prediction of labels.
///
/// # Panics
/// If the column count differs from the centroids' (as linfa's own models do); use
/// [`GramKMeans::try_predict`] for a checked call. Non-finite rows get label 0.
impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<usize>> for GramKMeans {
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<usize>) {
        assert_eq!(x.ncols(), self.centroids.ncols(), "column count mismatch");
        assert_eq!(x.nrows(), y.len(), "target length mismatch");
        let a = assign(
            x.view(),
            &row_sq_norms(x.view()),
            &self.centroids,
            self.sign_aware,
        );
        *y = Array1::from(a.labels);
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<usize> {
        Array1::zeros(x.nrows())
    }
}

/// Runs Lloyd from the given `k × m` initial centroids (no restarts, no randomness).
pub fn lloyd_from(
    y: ArrayView2<f64>,
    init_centroids: ArrayView2<f64>,
    max_iter: usize,
    tol: f64,
    sign_aware: bool,
) -> Result<GramKMeans, KMeansError> {
    GramKMeansParams::new(init_centroids.nrows())
        .max_iter(max_iter)
        .tol(tol)
        .check()?;
    check_points(y, init_centroids.nrows())?;
    if init_centroids.ncols() != y.ncols() {
        return Err(KMeansError::Shape(format!(
            "initial centroids have {} columns, points {}",
            init_centroids.ncols(),
            y.ncols()
        )));
    }
    if init_centroids.iter().any(|v| !v.is_finite()) {
        return Err(KMeansError::NonFinite);
    }
    let y = y.as_standard_layout();
    let norms = row_sq_norms(y.view());
    lloyd(
        y.view(),
        &norms,
        init_centroids.to_owned(),
        max_iter,
        tol,
        sign_aware,
    )
}

fn check_points(y: ArrayView2<f64>, k: usize) -> Result<(), KMeansError> {
    if k == 0 {
        return Err(KMeansError::ZeroClusters);
    }
    if k > y.nrows() {
        return Err(KMeansError::TooManyClusters { k, n: y.nrows() });
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err(KMeansError::NonFinite);
    }
    Ok(())
}

/// Independent, well-mixed seed per restart (SplitMix64 finaliser).
pub(crate) fn restart_seed(seed: u64, restart: usize) -> u64 {
    let mut z = seed.wrapping_add((restart as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn row_sq_norms(y: ArrayView2<f64>) -> Array1<f64> {
    y.rows().into_iter().map(|r| r.dot(&r)).collect()
}

/// k-means++ seeding (D² sampling), one GEMV per centre. Chosen points get weight exactly
/// 0 so they are never drawn twice, even where the expanded formula rounds.
fn kmeans_plus_plus(
    y: ArrayView2<f64>,
    norms: &Array1<f64>,
    k: usize,
    sign_aware: bool,
    rng: &mut Xoshiro256PlusPlus,
) -> Array2<f64> {
    let n = y.nrows();
    let mut chosen = Vec::with_capacity(k);
    let mut d2 = vec![f64::INFINITY; n];
    let mut next = rng.gen_range(0..n);
    loop {
        chosen.push(next);
        let dots = y.dot(&y.row(next));
        for ((d, &dot), &norm) in d2.iter_mut().zip(dots.iter()).zip(norms.iter()) {
            let cross = if sign_aware { dot.abs() } else { dot };
            *d = d.min((norm + norms[next] - 2.0 * cross).max(0.0));
        }
        d2[next] = 0.0;
        if chosen.len() == k {
            break;
        }
        next = sample_by_weight(&d2, rng).unwrap_or_else(|| uniform_unchosen(&chosen, n, rng));
    }
    y.select(Axis(0), &chosen)
}

/// Index drawn with probability ∝ weight; `None` when all weights are 0 (all points coincide
/// with chosen centres).
pub(crate) fn sample_by_weight(weights: &[f64], rng: &mut Xoshiro256PlusPlus) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let target = rng.gen::<f64>() * total;
    let mut cumulative = 0.0;
    let mut last_positive = None;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            cumulative += w;
            last_positive = Some(i);
            if cumulative > target {
                return Some(i);
            }
        }
    }
    last_positive
}

/// A uniformly random index not yet chosen (duplicates would only create empty clusters).
pub(crate) fn uniform_unchosen(chosen: &[usize], n: usize, rng: &mut Xoshiro256PlusPlus) -> usize {
    let free: Vec<usize> = (0..n).filter(|i| !chosen.contains(i)).collect();
    if free.is_empty() {
        rng.gen_range(0..n)
    } else {
        free[rng.gen_range(0..free.len())]
    }
}

/// Nearest-centroid assignment of every point.
struct Assignment {
    labels: Vec<usize>,
    signs: Vec<f64>,
    /// Squared distance of each point to its centroid (expanded formula, clamped ≥ 0).
    dist: Vec<f64>,
}

/// Assigns points with one GEMM: `‖y‖² + ‖c‖² − 2·y·c` (`−2|y·c|` when sign-aware).
/// Ties go to the lowest centroid index and to sign +1.
fn assign(
    y: ArrayView2<f64>,
    norms: &Array1<f64>,
    centroids: &Array2<f64>,
    sign_aware: bool,
) -> Assignment {
    let dots = y.dot(&centroids.t());
    let cnorms = row_sq_norms(centroids.view());
    let n = y.nrows();
    let mut a = Assignment {
        labels: vec![0; n],
        signs: vec![1.0; n],
        dist: vec![0.0; n],
    };
    for (i, row) in dots.rows().into_iter().enumerate() {
        let mut best = (f64::INFINITY, 0usize, 1.0f64);
        for (j, &dot) in row.iter().enumerate() {
            let (cross, sign) = if sign_aware && dot < 0.0 {
                (-dot, -1.0)
            } else {
                (dot, 1.0)
            };
            let d = norms[i] + cnorms[j] - 2.0 * cross;
            if d < best.0 {
                best = (d, j, sign);
            }
        }
        a.labels[i] = best.1;
        a.signs[i] = best.2;
        a.dist[i] = best.0.max(0.0);
    }
    a
}

/// Mean of `s_i·y_i` per cluster; empty clusters are reseeded first.
fn update_centroids(y: ArrayView2<f64>, a: &mut Assignment, k: usize) -> Array2<f64> {
    let mut sums = Array2::<f64>::zeros((k, y.ncols()));
    let mut counts = vec![0usize; k];
    for (i, (&l, &s)) in a.labels.iter().zip(&a.signs).enumerate() {
        sums.row_mut(l).scaled_add(s, &y.row(i));
        counts[l] += 1;
    }
    reseed_empty(y, a, &mut sums, &mut counts);
    for (mut row, &c) in sums.rows_mut().into_iter().zip(&counts) {
        if c > 0 {
            row /= c as f64;
        }
    }
    sums
}

/// Moves, for each empty cluster, the point farthest from its centroid into it, taking only
/// from clusters with ≥ 2 members so no new cluster empties (k ≤ n guarantees a donor).
fn reseed_empty(
    y: ArrayView2<f64>,
    a: &mut Assignment,
    sums: &mut Array2<f64>,
    counts: &mut [usize],
) {
    for c in 0..counts.len() {
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
        let old = a.labels[i];
        sums.row_mut(old).scaled_add(-a.signs[i], &y.row(i));
        counts[old] -= 1;
        sums.row_mut(c).assign(&y.row(i));
        counts[c] = 1;
        a.labels[i] = c;
        a.signs[i] = 1.0;
        a.dist[i] = 0.0;
    }
}

/// Lloyd iterations from `centroids` until the labels repeat or the inertia changes by less
/// than `tol` relative; the returned centroids are the means of the returned labels.
fn lloyd(
    y: ArrayView2<f64>,
    norms: &Array1<f64>,
    mut centroids: Array2<f64>,
    max_iter: usize,
    tol: f64,
    sign_aware: bool,
) -> Result<GramKMeans, KMeansError> {
    let k = centroids.nrows();
    let mut labels: Vec<usize> = Vec::new();
    let mut signs: Vec<f64> = Vec::new();
    let mut previous: Option<f64> = None;
    let (mut n_iter, mut converged) = (0, false);
    while n_iter < max_iter {
        n_iter += 1;
        let mut a = assign(y, norms, &centroids, sign_aware);
        let inertia: f64 = a.dist.iter().sum();
        if !inertia.is_finite() {
            return Err(KMeansError::NonFinite);
        }
        let unchanged = a.labels == labels && a.signs == signs;
        centroids = update_centroids(y, &mut a, k);
        labels = a.labels;
        signs = a.signs;
        let small_change = previous.is_some_and(|p| (p - inertia).abs() <= tol * p);
        if unchanged || small_change {
            converged = true;
            break;
        }
        previous = Some(inertia);
    }
    let inertia = exact_inertia(y, &centroids, &labels, &signs);
    if !inertia.is_finite() {
        return Err(KMeansError::NonFinite);
    }
    Ok(GramKMeans {
        centroids,
        labels,
        signs,
        inertia,
        n_iter,
        converged,
        sign_aware,
    })
}

/// `Σ ‖s_i·y_i − c_{l_i}‖²` by direct differences (no cancellation, exactly 0 for k = n).
fn exact_inertia(
    y: ArrayView2<f64>,
    centroids: &Array2<f64>,
    labels: &[usize],
    signs: &[f64],
) -> f64 {
    let mut total = 0.0;
    for (i, (&l, &s)) in labels.iter().zip(signs).enumerate() {
        for (x, c) in y.row(i).iter().zip(centroids.row(l).iter()) {
            let d = s * x - c;
            total += d * d;
        }
    }
    total
}

/// Mean silhouette from the Gram matrix alone (sklearn conventions; see
/// [`silhouette_samples`]); 0 when there are fewer than 2 or exactly n clusters.
pub fn silhouette(g: ArrayView2<f64>, labels: &[usize], signs: &[f64]) -> Result<f64, KMeansError> {
    let samples = silhouette_samples(g, labels, signs)?;
    if samples.is_empty() {
        return Ok(0.0);
    }
    Ok(samples.iter().sum::<f64>() / samples.len() as f64)
}

/// Per-unit silhouette `(b − a)/max(a, b)` with `d_ij² = G_ii + G_jj − 2 s_i s_j G_ij`.
///
/// Singletons score 0 (sklearn). With fewer than 2 or exactly n clusters silhouette is
/// undefined (sklearn raises); we return all zeros so a k-curve stays plottable.
pub fn silhouette_samples(
    g: ArrayView2<f64>,
    labels: &[usize],
    signs: &[f64],
) -> Result<Array1<f64>, KMeansError> {
    let n = check_silhouette_inputs(g, labels, signs)?;
    let (compact, k) = compact_labels(labels);
    if k < 2 || k >= n {
        return Ok(Array1::zeros(n));
    }
    let mut sizes = vec![0usize; k];
    for &l in &compact {
        sizes[l] += 1;
    }
    // Blocks of rows, so the transposed reads of `g` reuse each cache line `BLOCK` times.
    const BLOCK: usize = 8;
    let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
    let values: Vec<f64> = starts
        .into_par_iter()
        .flat_map_iter(|i0| block_silhouettes(g, &compact, signs, &sizes, i0..(i0 + BLOCK).min(n)))
        .collect();
    Ok(Array1::from(values))
}

fn check_silhouette_inputs(
    g: ArrayView2<f64>,
    labels: &[usize],
    signs: &[f64],
) -> Result<usize, KMeansError> {
    let n = g.nrows();
    if g.ncols() != n || labels.len() != n || signs.len() != n {
        return Err(KMeansError::Shape(format!(
            "Gram {}×{}, {} labels, {} signs",
            g.nrows(),
            g.ncols(),
            labels.len(),
            signs.len()
        )));
    }
    if g.iter().chain(signs).any(|v| !v.is_finite()) {
        return Err(KMeansError::NonFinite);
    }
    Ok(n)
}

/// Maps arbitrary label values to 0..k in increasing order of value.
fn compact_labels(labels: &[usize]) -> (Vec<usize>, usize) {
    let mut ids = BTreeMap::new();
    for &l in labels {
        ids.entry(l).or_insert(0usize);
    }
    for (next, id) in ids.values_mut().enumerate() {
        *id = next;
    }
    let compact = labels.iter().map(|l| ids[l]).collect();
    (compact, ids.len())
}

fn block_silhouettes(
    g: ArrayView2<f64>,
    labels: &[usize],
    signs: &[f64],
    sizes: &[usize],
    rows: std::ops::Range<usize>,
) -> Vec<f64> {
    let (n, k) = (labels.len(), sizes.len());
    let b = rows.len();
    // The block's columns, read row by row.
    let mut col = vec![0.0; b * n];
    for (j, row) in g.rows().into_iter().enumerate() {
        for (r, &v) in row.slice(ndarray::s![rows.clone()]).iter().enumerate() {
            col[r * n + j] = v;
        }
    }
    let diag: Vec<f64> = g.diag().to_vec();
    let mut dist = vec![0.0; n];
    rows.enumerate()
        .map(|(r, i)| {
            let own = labels[i];
            if sizes[own] < 2 {
                return 0.0;
            }
            let (gii, si) = (diag[i], signs[i]);
            // `d_ij` as represented (`s_i·x_i`, `s_j·x_j`) for every j, in a loop the compiler
            // can vectorise.
            let cols = &col[r * n..(r + 1) * n];
            for ((((d, &gij), &gji), &gjj), &sj) in dist
                .iter_mut()
                .zip(g.row(i))
                .zip(cols)
                .zip(&diag)
                .zip(signs)
            {
                let x = 0.5 * (gij + gji);
                *d = (gii + gjj - 2.0 * si * sj * x).max(0.0).sqrt();
            }
            let mut sums = vec![0.0; k];
            for (j, (&lj, &d)) in labels.iter().zip(&dist).enumerate() {
                if j != i {
                    sums[lj] += d;
                }
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let denom = a.max(b);
            if denom > 0.0 {
                (b - a) / denom
            } else {
                0.0
            }
        })
        .collect()
}

/// One point of the k-selection curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KPoint {
    /// Number of clusters.
    pub k: usize,
    /// Best inertia found.
    pub inertia: f64,
    /// Mean silhouette of that clustering (0 for k = 1 and k = n).
    pub silhouette: f64,
}

/// Inertia and silhouette for k = 1..=min(n, kmax), using `params` except k and with at most
/// [`K_CURVE_N_INIT`] restarts; parallel over k, deterministic.
pub fn k_curve(
    y: ArrayView2<f64>,
    g: ArrayView2<f64>,
    kmax: usize,
    params: &GramKMeansValidParams,
) -> Result<Vec<KPoint>, KMeansError> {
    let n = y.nrows();
    if g.dim() != (n, n) {
        return Err(KMeansError::Shape(format!(
            "Gram is {}×{} for {n} points",
            g.nrows(),
            g.ncols()
        )));
    }
    (1..=n.min(kmax))
        .into_par_iter()
        .map(|k| {
            let mut p = params.clone();
            p.k = k;
            p.n_init = p.n_init.min(K_CURVE_N_INIT);
            let model = p.fit_embedding(y)?;
            let silhouette = silhouette(g, &model.labels, &model.signs)?;
            Ok(KPoint {
                k,
                inertia: model.inertia,
                silhouette,
            })
        })
        .collect()
}

/// Suggested k: the highest silhouette over k ≥ 2 (smaller k on exact ties, the cheaper
/// merge); if no silhouette is positive, the elbow of the inertia curve.
///
/// Why the fallback: silhouette is undefined at k = 1 and k = n (so n < 3 has no usable
/// value) and cannot see structure when every score is ≤ 0, while the inertia curve
/// always exists. Returns 0 for an empty curve.
pub fn suggest_k(curve: &[KPoint]) -> usize {
    let mut best: Option<&KPoint> = None;
    for p in curve.iter().filter(|p| p.k >= 2 && p.silhouette > 0.0) {
        let better = best.is_none_or(|b| {
            p.silhouette > b.silhouette || (p.silhouette == b.silhouette && p.k < b.k)
        });
        if better {
            best = Some(p);
        }
    }
    best.map_or_else(|| elbow_k(curve), |p| p.k)
}

/// Elbow of the inertia curve: the point farthest below the chord from its first to its
/// last point (normalised axes). Degenerate curves: all inertia 0 → first k; two points →
/// the first k that is lossless to 1e-12 relative, else the last; no bend → last k.
fn elbow_k(curve: &[KPoint]) -> usize {
    let (Some(first), Some(last)) = (curve.first(), curve.last()) else {
        return 0;
    };
    // NaN counts as degenerate too: there is no curve to read an elbow from.
    if first.inertia.is_nan() || first.inertia <= 0.0 {
        return first.k;
    }
    if curve.len() < 3 {
        return curve
            .iter()
            .find(|p| p.inertia <= 1e-12 * first.inertia)
            .map_or(last.k, |p| p.k);
    }
    let span = (last.k as f64 - first.k as f64).max(1.0);
    let y_last = last.inertia / first.inertia;
    let mut best = (0.0f64, last.k);
    for p in curve {
        let x = (p.k as f64 - first.k as f64) / span;
        let below = (1.0 + (y_last - 1.0) * x) - p.inertia / first.inertia;
        if below > best.0 {
            best = (below, p.k);
        }
    }
    best.1
}
