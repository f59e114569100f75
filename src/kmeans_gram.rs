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
    fit_with(g, params, Refresh::WhenNeeded)
}

/// [`fit_gram`]'s restarts on a checked, standard-layout `g`.
fn fit_with(
    g: ArrayView2<f64>,
    params: &GramKMeansValidParams,
    refresh: Refresh,
) -> Result<GramPartition, KMeansError> {
    let k = params.k();
    let sign_aware = params.is_sign_aware();
    let diag: Vec<f64> = g.diag().to_vec();
    let scale = Scale::of(g);
    let runs: Vec<Result<GramPartition, KMeansError>> = (0..params.n_init())
        .into_par_iter()
        .map(|restart| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(restart_seed(params.seed(), restart));
            let seeds = seed_plus_plus(g, k, sign_aware, &mut rng);
            let (max_iter, tol) = (params.max_iter(), params.tol());
            lloyd(g, &diag, scale, seeds, max_iter, tol, sign_aware, refresh)
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

/// What the rounding of the sums can depend on, measured once per fit.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// `max |G_ij|`: bounds every term of every sum.
    big: f64,
    /// `max |G_ij − G_ji|`: an update reads unit j's row where a fresh sum reads unit i's.
    asym: f64,
}

impl Scale {
    fn of(g: ArrayView2<f64>) -> Self {
        let n = g.nrows();
        // Blocks of rows so the column walk reuses each cache line `BLOCK` times.
        const BLOCK: usize = 8;
        let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
        let (big, asym) = starts
            .par_iter()
            .map(|&i0| {
                let (mut big, mut asym) = (0.0f64, 0.0f64);
                // Each pair once: the upper triangle and its mirror.
                for i in i0..(i0 + BLOCK).min(n) {
                    let row = g.row(i);
                    for (j, &v) in row.iter().enumerate().skip(i) {
                        let w = g[[j, i]];
                        big = big.max(v.abs()).max(w.abs());
                        asym = asym.max((v - w).abs());
                    }
                }
                (big, asym)
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
        Scale { big, asym }
    }
}

/// `Σ_t sign_t · row[idx_t]` in four interleaved partial sums: a fixed order (so the result
/// never depends on threads) without one long dependency chain.
fn gather_sum(row: &[f64], idx: &[usize], sign: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ci, cs) = (idx.chunks_exact(4), sign.chunks_exact(4));
    let (ri, rs) = (ci.remainder(), cs.remainder());
    for (i4, s4) in ci.zip(cs) {
        for l in 0..4 {
            acc[l] += s4[l] * row[i4[l]];
        }
    }
    for (l, (&i, &s)) in ri.iter().zip(rs).enumerate() {
        acc[l] += s * row[i];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Each cluster's members in index order, and their signs.
fn members_of(labels: &[usize], signs: &[f64], k: usize) -> (Vec<Vec<usize>>, Vec<Vec<f64>>) {
    let mut idx = vec![Vec::new(); k];
    let mut sgn = vec![Vec::new(); k];
    for (i, (&l, &s)) in labels.iter().zip(signs).enumerate() {
        idx[l].push(i);
        sgn[l].push(s);
    }
    (idx, sgn)
}

/// Units per slab of [`Sums::s`].
const SLAB: usize = 64;

/// [`gather_sum`] on four rows at once, sharing the index loads; each row's sum is the one
/// [`gather_sum`] gives, bit for bit.
fn gather_sum4(rows: [&[f64]; 4], idx: &[usize], sign: &[f64]) -> [f64; 4] {
    let mut acc = [[0.0f64; 4]; 4];
    let (ci, cs) = (idx.chunks_exact(4), sign.chunks_exact(4));
    let (ri, rs) = (ci.remainder(), cs.remainder());
    for (i4, s4) in ci.zip(cs) {
        for l in 0..4 {
            let (j, sj) = (i4[l], s4[l]);
            for (a, row) in acc.iter_mut().zip(&rows) {
                a[l] += sj * row[j];
            }
        }
    }
    for (l, (&j, &sj)) in ri.iter().zip(rs).enumerate() {
        for (a, row) in acc.iter_mut().zip(&rows) {
            a[l] += sj * row[j];
        }
    }
    acc.map(|a| (a[0] + a[1]) + (a[2] + a[3]))
}

/// The state an assignment reads, for the current partition (or the seeds):
/// `S_ic = Σ_{j∈C} s_j G_ij` and `t[c] = Σ_{j∈C} s_j S_jc`, so `x_i·μ_c = S_ic/|C|` and
/// `‖μ_c‖² = t[c]/|C|²`. `S` is stored in slabs of [`SLAB`] units, cluster-major within a
/// slab, so moving a unit is two contiguous AXPYs per slab.
struct Sums {
    s: Vec<f64>,
    t: Vec<f64>,
    sizes: Vec<usize>,
    /// Per cluster: terms folded into its row sums since they were last formed afresh.
    terms: Vec<usize>,
    /// Per cluster: how many of those came from updates (read from the moved unit's row).
    updates: Vec<usize>,
    /// Whether `s` and `t` are exactly what [`Sums::fresh`] gives for the partition.
    fresh: bool,
    k: usize,
}

/// Where `S_ic` lives in [`Sums::s`].
fn at(i: usize, c: usize, k: usize) -> usize {
    (i / SLAB) * k * SLAB + c * SLAB + i % SLAB
}

impl Sums {
    fn storage(n: usize, k: usize) -> Vec<f64> {
        vec![0.0; n.div_ceil(SLAB) * SLAB * k]
    }

    /// Single-unit centroids: `S_ic = G_i,seed_c`, O(n·k).
    fn from_seeds(g: ArrayView2<f64>, seeds: &[usize]) -> Self {
        let (n, k) = (g.nrows(), seeds.len());
        let mut s = Self::storage(n, k);
        for i in 0..n {
            for (c, &j) in seeds.iter().enumerate() {
                s[at(i, c, k)] = g[[i, j]];
            }
        }
        let t = seeds
            .iter()
            .enumerate()
            .map(|(c, &j)| s[at(j, c, k)])
            .collect();
        Sums {
            s,
            t,
            sizes: vec![1; k],
            terms: vec![1; k],
            updates: vec![0; k],
            fresh: true,
            k,
        }
    }

    /// Every sum formed from `G` (one pass): the reference every update is checked against.
    fn fresh(g: ArrayView2<f64>, labels: &[usize], signs: &[f64], k: usize) -> Self {
        let n = g.nrows();
        let (idx, sgn) = members_of(labels, signs, k);
        let mut s = Self::storage(n, k);
        let row = |i: usize| -> &[f64] {
            let all = g.to_slice().unwrap_or(&[]);
            &all[i * n..(i + 1) * n]
        };
        s.par_chunks_mut(k * SLAB)
            .enumerate()
            .for_each(|(b, slab)| {
                let i0 = b * SLAB;
                let i1 = (i0 + SLAB).min(n);
                let mut i = i0;
                while i + 4 <= i1 {
                    let rows = [row(i), row(i + 1), row(i + 2), row(i + 3)];
                    for c in 0..k {
                        let v = gather_sum4(rows, &idx[c], &sgn[c]);
                        slab[c * SLAB + i - i0..c * SLAB + i - i0 + 4].copy_from_slice(&v);
                    }
                    i += 4;
                }
                for i in i..i1 {
                    for c in 0..k {
                        slab[c * SLAB + i - i0] = gather_sum(row(i), &idx[c], &sgn[c]);
                    }
                }
            });
        let sizes = sizes_of(labels, k);
        let mut sums = Sums {
            s,
            t: vec![0.0; k],
            terms: sizes.clone(),
            updates: vec![0; k],
            sizes,
            fresh: true,
            k,
        };
        sums.norms(labels, signs);
        sums
    }

    /// `S_ic` for every c.
    fn row_of(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        let base = (i / SLAB) * self.k * SLAB + i % SLAB;
        (0..self.k).map(move |c| self.s[base + c * SLAB])
    }

    /// `t` from `s`, in index order.
    fn norms(&mut self, labels: &[usize], signs: &[f64]) {
        let k = self.k;
        self.t.iter_mut().for_each(|v| *v = 0.0);
        for (j, (&l, &sj)) in labels.iter().zip(signs).enumerate() {
            self.t[l] += sj * self.s[at(j, l, k)];
        }
    }

    /// Moves units between clusters in O(n) each: `(unit, old cluster, old sign, new cluster,
    /// new sign)`. Slabs run in parallel; each applies the moves in the same order.
    fn update(
        &mut self,
        g: ArrayView2<f64>,
        moves: &[(usize, usize, f64, usize, f64)],
        labels: &[usize],
        signs: &[f64],
    ) {
        let (n, k) = (g.nrows(), self.k);
        let all = g.to_slice().unwrap_or(&[]);
        self.s
            .par_chunks_mut(k * SLAB)
            .enumerate()
            .for_each(|(b, slab)| {
                let i0 = b * SLAB;
                let len = SLAB.min(n - i0);
                for &(j, oc, os, nc, ns) in moves {
                    let gj = &all[j * n + i0..j * n + i0 + len];
                    for (o, &v) in slab[oc * SLAB..oc * SLAB + len].iter_mut().zip(gj) {
                        *o -= os * v;
                    }
                    for (o, &v) in slab[nc * SLAB..nc * SLAB + len].iter_mut().zip(gj) {
                        *o += ns * v;
                    }
                }
            });
        for &(_, oc, _, nc, _) in moves {
            self.sizes[oc] -= 1;
            self.sizes[nc] += 1;
            for c in [oc, nc] {
                self.terms[c] += 1;
                self.updates[c] += 1;
            }
        }
        self.fresh = false;
        #[cfg(test)]
        tests::UPDATES.fetch_add(moves.len(), std::sync::atomic::Ordering::Relaxed);
        self.norms(labels, signs);
    }

    /// Per cluster: a bound on how far a distance computed from these sums can be from the
    /// one fresh sums would give (both against exact arithmetic). 0 when fresh.
    fn slack(&self, scale: Scale) -> Vec<f64> {
        if self.fresh {
            return vec![0.0; self.k];
        }
        (0..self.k)
            .map(|c| {
                let m = self.sizes[c];
                let ours = distance_error(self.terms[c], self.updates[c], m, scale);
                let fresh = distance_error(m, 0, m, scale);
                // Twice the sum of the two bounds: first-order bounds, kept conservative.
                2.0 * (ours + fresh)
            })
            .collect()
    }
}

/// A bound on `|d̂ − d|` for `d = G_ii + t/m² − 2·s/m` when `s` summed `terms` terms (of which
/// `updates` were read transposed), each at most `scale.big` (Higham's γ bounds).
fn distance_error(terms: usize, updates: usize, m: usize, scale: Scale) -> f64 {
    let u = f64::EPSILON / 2.0;
    let gamma = |t: usize| {
        let x = t as f64 * u;
        x / (1.0 - x)
    };
    let (q, mf) = (terms as f64, m.max(1) as f64);
    let s_max = q * scale.big;
    let e_s = gamma(terms) * s_max + updates as f64 * scale.asym;
    let e_x = (e_s + u * s_max) / mf;
    let t_max = mf * (s_max + e_s);
    let e_t = mf * e_s + gamma(m) * t_max;
    let e_cn = (e_t + u * (t_max + e_t)) / (mf * mf);
    let cn_max = (t_max + e_t) / (mf * mf);
    let x_max = (s_max + e_s) / mf;
    2.0 * e_x + e_cn + 3.0 * u * (scale.big + cn_max + 2.0 * x_max)
}

/// Nearest-centroid assignment of every unit.
struct Assignment {
    labels: Vec<usize>,
    signs: Vec<f64>,
    /// Squared distance of each unit to its centroid (clamped ≥ 0).
    dist: Vec<f64>,
}

/// Ties go to the lowest centroid index and to sign +1, as on the embedding. With `slack`
/// (the sums have been updated), `None` when some unit's choice is closer than the sums'
/// rounding could tell from the choice fresh sums would make.
fn assign(diag: &[f64], sums: &Sums, sign_aware: bool, slack: &[f64]) -> Option<Assignment> {
    let (n, k) = (diag.len(), sums.k);
    let size: Vec<f64> = sums.sizes.iter().map(|&m| m as f64).collect();
    // An empty cluster's centroid is 0 (cross and norm 0), as for coefficient vectors.
    let cnorm: Vec<f64> = (0..k)
        .map(|c| {
            if sums.sizes[c] == 0 {
                0.0
            } else {
                sums.t[c] / (size[c] * size[c])
            }
        })
        .collect();
    let worst = slack.iter().copied().fold(0.0f64, f64::max);
    let mut a = Assignment {
        labels: vec![0; n],
        signs: vec![1.0; n],
        dist: vec![0.0; n],
    };
    for (i, &gii) in diag.iter().enumerate() {
        let mut best = (f64::INFINITY, 0usize, 1.0f64, 0.0f64);
        let mut second = f64::INFINITY;
        for (c, sum) in sums.row_of(i).enumerate() {
            let dot = if sums.sizes[c] == 0 {
                0.0
            } else {
                sum / size[c]
            };
            let (x, sign) = if sign_aware && dot < 0.0 {
                (-dot, -1.0)
            } else {
                (dot, 1.0)
            };
            let d = gii + cnorm[c] - 2.0 * x;
            if d < best.0 {
                second = best.0;
                best = (d, c, sign, x);
            } else if d < second {
                second = d;
            }
        }
        if worst > 0.0 {
            let own = slack[best.1];
            // The runner-up, or (sign-aware) the other orientation, could win on fresh sums.
            if second - best.0 <= own + worst || (sign_aware && best.3 <= own) {
                return None;
            }
        }
        a.labels[i] = best.1;
        a.signs[i] = best.2;
        a.dist[i] = best.0.max(0.0);
    }
    Some(a)
}

/// [`assign`] on `sums`, or on sums formed afresh for the partition `labels`/`signs` when the
/// updated ones cannot settle every choice or leave a cluster empty (reseeding ranks
/// distances, so it gets fresh ones too).
fn assign_exact(
    g: ArrayView2<f64>,
    diag: &[f64],
    sums: &mut Sums,
    partition: (&[usize], &[f64]),
    sign_aware: bool,
    scale: Scale,
) -> Assignment {
    if !sums.fresh {
        let slack = sums.slack(scale);
        if let Some(a) = assign(diag, sums, sign_aware, &slack) {
            if sizes_of(&a.labels, sums.k).iter().all(|&m| m > 0) {
                return a;
            }
        }
        *sums = Sums::fresh(g, partition.0, partition.1, sums.k);
    }
    assign(diag, sums, sign_aware, &[]).unwrap_or_else(|| unreachable!("fresh sums need no slack"))
}

/// The inertia an assignment against fresh sums for `labels`/`signs` reports.
fn fresh_inertia(
    g: ArrayView2<f64>,
    diag: &[f64],
    labels: &[usize],
    signs: &[f64],
    k: usize,
    sign_aware: bool,
) -> f64 {
    let sums = Sums::fresh(g, labels, signs, k);
    assign(diag, &sums, sign_aware, &[])
        .map(|a| a.dist.iter().sum())
        .unwrap_or(f64::NAN)
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

/// When Lloyd forms its sums afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Only when an update could change a decision (the product's route).
    WhenNeeded,
    /// Every iteration: the reference the updates must reproduce.
    #[cfg_attr(not(test), allow(dead_code))]
    Always,
}

/// Lloyd iterations until the labels repeat or the inertia changes by less than `tol`
/// relative (the embedding route's stopping rule).
///
/// After the first full pass, only units that changed cluster or sign are folded in (O(n) each
/// instead of O(n²) a pass); every decision — assignments, reseeding, stopping — is checked
/// against a bound on how far the updated sums can be from fresh ones, and the sums are formed
/// afresh whenever the bound could flip one, so the result is the one fresh sums every
/// iteration would give.
#[allow(clippy::too_many_arguments)]
fn lloyd(
    g: ArrayView2<f64>,
    diag: &[f64],
    scale: Scale,
    seeds: Vec<usize>,
    max_iter: usize,
    tol: f64,
    sign_aware: bool,
    refresh: Refresh,
) -> Result<GramPartition, KMeansError> {
    let (n, k) = (g.nrows(), seeds.len());
    let mut sums = Sums::from_seeds(g, &seeds);
    let mut labels: Vec<usize> = Vec::new();
    let mut signs: Vec<f64> = Vec::new();
    // The partition before `labels` (what `previous` was measured against), and whether
    // `previous` came from fresh sums.
    let mut before: (Vec<usize>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut previous: Option<(f64, f64)> = None;
    let (mut n_iter, mut converged) = (0, false);
    while n_iter < max_iter {
        n_iter += 1;
        let mut a = assign_exact(g, diag, &mut sums, (&labels, &signs), sign_aware, scale);
        let mut inertia: f64 = a.dist.iter().sum();
        if !inertia.is_finite() {
            return Err(KMeansError::NonFinite);
        }
        let small_change = match previous {
            None => false,
            Some((mut p, p_err)) => {
                let slack = sums.slack(scale);
                let err: f64 =
                    a.labels.iter().map(|&l| slack[l]).sum::<f64>() + 2.0 * gamma_n(n) * inertia;
                let u = f64::EPSILON;
                let margin = ((p - inertia).abs() - tol * p).abs();
                if margin <= err + p_err * (1.0 + tol) + 4.0 * u * (p + inertia) {
                    // Too close to call on updated sums: settle it on fresh ones.
                    if p_err > 0.0 {
                        p = fresh_inertia(g, diag, &before.0, &before.1, k, sign_aware);
                    }
                    if !sums.fresh {
                        sums = Sums::fresh(g, &labels, &signs, k);
                        a = assign_exact(g, diag, &mut sums, (&labels, &signs), sign_aware, scale);
                        inertia = a.dist.iter().sum();
                    }
                }
                (p - inertia).abs() <= tol * p
            }
        };
        let inertia_err = if sums.fresh {
            0.0
        } else {
            let slack = sums.slack(scale);
            a.labels.iter().map(|&l| slack[l]).sum::<f64>() + 2.0 * gamma_n(n) * inertia
        };
        let unchanged = a.labels == labels && a.signs == signs;
        reseed_empty(&mut a, k);
        let from_seeds = labels.is_empty();
        let old = (
            std::mem::replace(&mut labels, a.labels),
            std::mem::replace(&mut signs, a.signs),
        );
        if unchanged || small_change {
            converged = true;
            break;
        }
        let moves: Vec<(usize, usize, f64, usize, f64)> = if from_seeds {
            Vec::new()
        } else {
            (0..n)
                .filter(|&j| old.0[j] != labels[j] || old.1[j] != signs[j])
                .map(|j| (j, old.0[j], old.1[j], labels[j], signs[j]))
                .collect()
        };
        let worn = sums.terms.iter().any(|&t| t > 4 * n);
        if from_seeds || refresh == Refresh::Always || 2 * moves.len() >= n || worn {
            sums = Sums::fresh(g, &labels, &signs, k);
        } else {
            sums.update(g, &moves, &labels, &signs);
        }
        before = old;
        previous = Some((inertia, inertia_err));
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

/// Higham's `γ_n`: the relative error bound of a sum of `n` terms.
fn gamma_n(n: usize) -> f64 {
    let x = n as f64 * f64::EPSILON / 2.0;
    x / (1.0 - x)
}

/// `Σ_c (Σ_{i∈C} G_ii − (1/|C|) Σ_{i,j∈C} s_i s_j G_ij)`, each cluster clamped at 0 so
/// rounding never reports a negative spread; exactly 0 for singletons (k = n).
pub fn partition_inertia(g: ArrayView2<f64>, labels: &[usize], signs: &[f64], k: usize) -> f64 {
    let g = g.as_standard_layout();
    let (idx, sgn) = members_of(labels, signs, k);
    // Each unit against its own cluster only: Σ_c |C|² reads instead of n².
    let own: Vec<f64> = (0..labels.len())
        .into_par_iter()
        .map(|i| {
            let row = g.row(i);
            let row = row
                .as_slice()
                .expect("rows are contiguous (standard layout)");
            gather_sum(row, &idx[labels[i]], &sgn[labels[i]])
        })
        .collect();
    (0..k)
        .map(|c| {
            if idx[c].len() <= 1 {
                return 0.0;
            }
            let (mut diag, mut pair) = (0.0, 0.0);
            for (&i, &si) in idx[c].iter().zip(&sgn[c]) {
                diag += g[[i, i]];
                pair += si * own[i];
            }
            (diag - pair / idx[c].len() as f64).max(0.0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gram::gram_of;
    use crate::kmeans::GramKMeans;
    use linfa::ParamGuard;
    use std::sync::atomic::AtomicUsize;

    /// Units folded in by updates across all tests: proof the incremental path ran.
    pub(super) static UPDATES: AtomicUsize = AtomicUsize::new(0);

    fn points(n: usize, d: usize, seed: u64, grid: bool) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |_| {
            if grid {
                // Integer coordinates: exact ties between distances are common.
                f64::from(rng.gen_range(-3i32..=3))
            } else {
                rng.gen::<f64>() * 2.0 - 1.0
            }
        })
    }

    fn both(g: &Array2<f64>, k: usize, sign_aware: bool, seed: u64) -> [GramPartition; 2] {
        let params = GramKMeans::params(k)
            .seed(seed)
            .sign_aware(sign_aware)
            .check()
            .unwrap();
        [Refresh::WhenNeeded, Refresh::Always].map(|r| fit_with(g.view(), &params, r).unwrap())
    }

    #[test]
    fn updated_sums_make_the_decisions_fresh_sums_make() {
        let before = UPDATES.load(std::sync::atomic::Ordering::Relaxed);
        for (seed, grid) in [(1, false), (2, true), (3, false), (4, true)] {
            // Unstructured points: many iterations, few moves each.
            let x = points(300, 6, seed, grid);
            let mut g = gram_of(x.view());
            if seed == 3 {
                // A Gram matrix that is symmetric only up to rounding, as the engine's is.
                for i in 0..g.nrows() {
                    for j in i + 1..g.ncols() {
                        g[[i, j]] *= 1.0 + f64::EPSILON;
                    }
                }
            }
            for k in [2, 7, 16, 40] {
                for sign_aware in [false, true] {
                    let [ours, reference] = both(&g, k, sign_aware, seed);
                    assert_eq!(ours, reference, "seed {seed} k {k} sign-aware {sign_aware}");
                }
            }
        }
        let after = UPDATES.load(std::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "no run took the update path");
    }

    #[test]
    fn partition_inertia_matches_centroid_distances() {
        // Independent: explicit centroids in feature space.
        let x = points(50, 4, 9, false);
        let g = gram_of(x.view());
        let labels: Vec<usize> = (0..50).map(|i| (i * 7) % 5).collect();
        let signs: Vec<f64> = (0..50)
            .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let mut expected = 0.0;
        for c in 0..5 {
            let members: Vec<usize> = (0..50).filter(|&i| labels[i] == c).collect();
            let mut mu = ndarray::Array1::<f64>::zeros(4);
            for &i in &members {
                mu.scaled_add(signs[i], &x.row(i));
            }
            mu /= members.len() as f64;
            for &i in &members {
                let d = &x.row(i) * signs[i] - &mu;
                expected += d.dot(&d);
            }
        }
        let ours = partition_inertia(g.view(), &labels, &signs, 5);
        assert!(
            (ours - expected).abs() <= 1e-12 * expected,
            "{ours} vs {expected}"
        );
    }
}
