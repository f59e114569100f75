//! LoRA-LEGO in core space, with the options that make it competitive (methods.md §9): the
//! unit basis (`raw` ranks, each task's `svd` units, or the units of the `centred` tasks),
//! sign-aware k-means, dual reweighting, and a post-step on the merged module (`iso`, `tsv`).
//! Distances between units are those of the full space (the bases are isometries), so the
//! clustering is the paper's; only the L∞ norm needs the full-space vectors.
//!
//! Our own addition: `ensemble` averages the merged core over several k-means seeds, so the
//! result does not swing with one seed's partition.

use ndarray::{concatenate, Array1, Array2, Axis};

use super::cart::mean_core;
use super::core_space::{CoreSpace, RANK_RTOL};
use super::iso::isotropic;
use super::lego_params::{ClusterParams, OutputReweight, ParamReweight, PostStep, UnitBasis};
use super::tsv::orthogonalised;
use super::{ClusterStats, MethodError};
use crate::linalg::svd;

/// The centred basis' units per task (methods.md's preset has 6; 8 scored higher on
/// bench-quality's validation split, see the README).
pub const DEFAULT_KC: usize = 8;

/// LoRA-LEGO in core space with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LegoCore {
    /// Which units are clustered.
    pub units: UnitBasis,
    /// Units per task for the centred basis.
    pub kc: usize,
    /// Clusters requested (the merged rank before the post-step).
    pub k: usize,
    /// Parameter reweighting norm.
    pub param: ParamReweight,
    /// Output reweighting reference rank.
    pub output: OutputReweight,
    /// Free multiplier on B'.
    pub output_scale: f64,
    /// What happens to the merged module.
    pub post: PostStep,
    /// α on the clustered part (the centred basis' mean is added unscaled).
    pub alpha: f64,
    /// The k-means knobs; the seed is the first ensemble member's.
    pub cluster: ClusterParams,
    /// Number of seeds whose merges are averaged (≥ 1).
    pub ensemble: usize,
}

/// Units in core coordinates: row i is `[ã_i | b̃_i]` with `a = V_A ã`, `b = U_B b̃`.
#[derive(Debug, Clone)]
pub struct CoreUnits {
    /// `N' × n_A`.
    pub a: Array2<f64>,
    /// `N' × n_B`.
    pub b: Array2<f64>,
    /// Task of each unit.
    pub task: Vec<usize>,
    /// `r̄` of output reweighting for these units.
    pub mean_rank: f64,
    /// Largest per-task unit count.
    pub max_rank: usize,
    /// Added after clustering, unscaled (the centred basis' mean).
    pub offset: Option<Array2<f64>>,
}

/// A partition of the units: cluster labels and ±1 orientations.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// Cluster of each unit, `0..k`.
    pub labels: Vec<usize>,
    /// Orientation of each unit in its cluster.
    pub signs: Vec<f64>,
    /// k-means inertia (0 when every unit is its own cluster).
    pub inertia: f64,
}

impl Partition {
    /// Labels as given; signs chosen to minimise the partition's inertia, i.e. to maximise
    /// each cluster's ‖Σ σ_x x‖ — exhaustively for small clusters, else by the fixed point
    /// `σ_x = sign⟨x, μ⟩` started from the first member.
    pub fn from_labels(labels: Vec<usize>, units: &CoreUnits) -> Self {
        let y = units.joined();
        let k = labels.iter().copied().max().map_or(0, |m| m + 1);
        let mut signs = vec![1.0; labels.len()];
        for c in 0..k {
            let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            for (&i, s) in members.iter().zip(best_orientation(&y, &members)) {
                signs[i] = s;
            }
        }
        Partition {
            labels,
            signs,
            inertia: 0.0,
        }
    }
}

/// Clusters up to this size get every orientation tried.
const EXHAUSTIVE_SIGNS: usize = 12;

/// The ±1 orientation of `members` (rows of `y`) with the longest sum; the first member +1.
fn best_orientation(y: &Array2<f64>, members: &[usize]) -> Vec<f64> {
    let sum_norm = |signs: &[f64]| {
        let total = members
            .iter()
            .zip(signs)
            .fold(Array1::<f64>::zeros(y.ncols()), |acc, (&i, &s)| {
                acc + &(&y.row(i) * s)
            });
        total.dot(&total)
    };
    let m = members.len();
    if m <= EXHAUSTIVE_SIGNS {
        let pattern = |bits: usize| -> Vec<f64> {
            (0..m)
                .map(|b| {
                    if b > 0 && bits >> (b - 1) & 1 == 1 {
                        -1.0
                    } else {
                        1.0
                    }
                })
                .collect()
        };
        let patterns = 1usize << m.saturating_sub(1);
        // Strict improvement keeps the first pattern on ties, so the result is deterministic.
        let mut best = pattern(0);
        let mut best_norm = sum_norm(&best);
        for bits in 1..patterns {
            let p = pattern(bits);
            let n = sum_norm(&p);
            if n > best_norm {
                (best, best_norm) = (p, n);
            }
        }
        return best;
    }
    let mut signs = vec![1.0; m];
    for _ in 0..100 {
        let mean = members
            .iter()
            .zip(&signs)
            .fold(Array1::<f64>::zeros(y.ncols()), |acc, (&i, &s)| {
                acc + &(&y.row(i) * s)
            });
        let next: Vec<f64> = members
            .iter()
            .map(|&i| if y.row(i).dot(&mean) < 0.0 { -1.0 } else { 1.0 })
            .collect();
        if next == signs {
            break;
        }
        signs = next;
    }
    signs
}

impl CoreUnits {
    /// `[ã | b̃]` (N' × (n_A + n_B)): an isometric embedding of the units.
    pub fn joined(&self) -> Array2<f64> {
        concatenate![Axis(1), self.a, self.b]
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.task.len()
    }

    /// Whether there are no units.
    pub fn is_empty(&self) -> bool {
        self.task.is_empty()
    }

    /// The units of `basis` for the tasks of `core`.
    pub fn build(core: &CoreSpace, basis: UnitBasis, kc: usize) -> Result<Self, MethodError> {
        let (n_b, n_a) = core.dims();
        let mut a_rows: Vec<Array1<f64>> = Vec::new();
        let mut b_rows: Vec<Array1<f64>> = Vec::new();
        let mut task = Vec::new();
        let mut ranks = Vec::new();
        let mut offset = None;
        match basis {
            UnitBasis::Raw => {
                let (bc, ac) = core.unit_coordinates();
                for j in 0..core.n_tasks() {
                    let c = core.scale(j);
                    let root = c.abs().sqrt();
                    for i in core.range(j) {
                        a_rows.push(ac.row(i).to_owned() * root);
                        b_rows.push(bc.column(i).to_owned() * (c.signum() * root));
                        task.push(j);
                    }
                    ranks.push(core.rank(j));
                }
            }
            UnitBasis::Svd | UnitBasis::Centred => {
                let cores = core.cores();
                let mean = mean_core(&cores, (n_b, n_a));
                let centred = basis == UnitBasis::Centred;
                for (j, m) in cores.iter().enumerate() {
                    let target = if centred { m - &mean } else { m.clone() };
                    let d = svd(target.view())?;
                    let take = if centred {
                        kc.min(d.s.len())
                    } else {
                        core.rank(j).min(d.rank(RANK_RTOL))
                    };
                    for i in 0..take {
                        let root = d.s[i].sqrt();
                        a_rows.push(d.v.column(i).to_owned() * root);
                        b_rows.push(d.u.column(i).to_owned() * root);
                        task.push(j);
                    }
                    ranks.push(if centred { kc } else { core.rank(j) });
                }
                if centred {
                    offset = Some(mean);
                }
            }
        }
        let stack = |rows: &[Array1<f64>], width: usize| {
            let mut out = Array2::zeros((rows.len(), width));
            for (i, r) in rows.iter().enumerate() {
                out.row_mut(i).assign(r);
            }
            out
        };
        Ok(CoreUnits {
            a: stack(&a_rows, n_a),
            b: stack(&b_rows, n_b),
            task,
            mean_rank: ranks.iter().sum::<usize>() as f64 / ranks.len().max(1) as f64,
            max_rank: ranks.iter().copied().max().unwrap_or(1),
            offset,
        })
    }
}

/// The merged core of one module and what the clustering found.
#[derive(Debug, Clone)]
pub struct LegoCoreResult {
    /// `M`: `ΔW = U_B M V_Aᵀ`.
    pub core: Array2<f64>,
    /// Figures of the first ensemble member's clustering.
    pub stats: ClusterStats,
}

impl LegoCore {
    /// Merges `core`: clusters with k-means (or uses `partition`, for every ensemble member).
    pub fn run(
        &self,
        core: &CoreSpace,
        partition: Option<&Partition>,
    ) -> Result<LegoCoreResult, MethodError> {
        let units = CoreUnits::build(core, self.units, self.kc)?;
        let dims = core.dims();
        if units.is_empty() {
            return Err(MethodError::Invalid("no units to cluster".into()));
        }
        let n = units.len();
        let k = self.k.min(n);
        let y = units.joined();
        // A given partition, or no clustering at all, is the same for every seed.
        let members = if partition.is_some() || k >= n {
            1
        } else {
            self.ensemble.max(1)
        };
        let mut total = Array2::<f64>::zeros(dims);
        let mut first_stats = None;
        for e in 0..members {
            let part = match partition {
                Some(p) => p.clone(),
                None => self.cluster(&y, k, self.cluster.seed.wrapping_add(e as u64))?,
            };
            let (m, mut stats) = self.merge_partition(core, &units, &part)?;
            if first_stats.is_none() && k > 1 && k < n {
                let g = y.dot(&y.t());
                stats.silhouette =
                    crate::kmeans::silhouette(g.view(), &part.labels, &part.signs).unwrap_or(0.0);
            }
            total = total + m;
            first_stats.get_or_insert(stats);
        }
        let mut merged = total / members as f64;
        if let Some(offset) = &units.offset {
            merged += offset;
        }
        Ok(LegoCoreResult {
            core: merged,
            stats: first_stats.ok_or_else(|| MethodError::Invalid("no ensemble member".into()))?,
        })
    }

    fn cluster(&self, y: &Array2<f64>, k: usize, seed: u64) -> Result<Partition, MethodError> {
        let n = y.nrows();
        if k >= n {
            return Ok(Partition {
                labels: (0..n).collect(),
                signs: vec![1.0; n],
                inertia: 0.0,
            });
        }
        let model = self
            .cluster
            .kmeans(k)
            .seed(seed)
            .fit_embedding(y.view())
            .map_err(|e| MethodError::KMeans(e.to_string()))?;
        Ok(Partition {
            labels: model.labels,
            signs: model.signs,
            inertia: model.inertia,
        })
    }

    /// Steps 4–7 of methods.md §9 for one partition: centroids, reweighting, post-step.
    fn merge_partition(
        &self,
        core: &CoreSpace,
        units: &CoreUnits,
        part: &Partition,
    ) -> Result<(Array2<f64>, ClusterStats), MethodError> {
        let n = units.len();
        let k_found = part.labels.iter().copied().max().map_or(0, |m| m + 1);
        let mut sizes = vec![0usize; k_found];
        for &l in &part.labels {
            sizes[l] += 1;
        }
        let mut membership = Array2::<f64>::zeros((k_found, n));
        for (i, (&l, &s)) in part.labels.iter().zip(&part.signs).enumerate() {
            membership[[l, i]] = s / sizes[l] as f64;
        }
        let ca = membership.dot(&units.a);
        let cb = membership.dot(&units.b);
        let factors = self.param_factors(core, units, part, &sizes, &ca, &cb);
        let r_ref = match self.output {
            OutputReweight::Off => None,
            OutputReweight::Mean => Some(units.mean_rank),
            OutputReweight::Max => Some(units.max_rank as f64),
            OutputReweight::Value(v) => Some(v),
        };
        let out = r_ref.map_or(1.0, |r| (r / self.k as f64).sqrt()) * self.output_scale;
        let f = Array1::from(factors.clone()).insert_axis(Axis(1));
        let a = &ca * &f;
        let b = &cb * &(&f * out);
        let m = match self.post {
            PostStep::None => b.t().dot(&a) * self.alpha,
            PostStep::Iso => isotropic(b.t().dot(&a).view(), self.alpha)?,
            PostStep::Tsv => {
                let na: Vec<f64> = a.rows().into_iter().map(|r| r.dot(&r).sqrt()).collect();
                let nb: Vec<f64> = b.rows().into_iter().map(|r| r.dot(&r).sqrt()).collect();
                let keep: Vec<usize> = (0..k_found)
                    .filter(|&c| na[c] > 0.0 && nb[c] > 0.0)
                    .collect();
                if keep.is_empty() {
                    Array2::zeros(core.dims())
                } else {
                    let ua = Array2::from_shape_fn((a.ncols(), keep.len()), |(d, c)| {
                        a[[keep[c], d]] / na[keep[c]]
                    });
                    let ub = Array2::from_shape_fn((b.ncols(), keep.len()), |(d, c)| {
                        b[[keep[c], d]] / nb[keep[c]]
                    });
                    let sigma: Array1<f64> = keep.iter().map(|&c| na[c] * nb[c]).collect();
                    orthogonalised(&ub, &sigma, &ua, self.alpha)?
                }
            }
        };
        let n_tasks = core.n_tasks();
        let mut mix = vec![vec![0usize; n_tasks]; k_found];
        for (&l, &t) in part.labels.iter().zip(&units.task) {
            mix[l][t] += 1;
        }
        let stats = ClusterStats {
            n_units: n,
            inertia: part.inertia,
            silhouette: 0.0,
            cluster_sizes: sizes,
            source_mix: mix,
            param_factors: factors,
            output_factor: out,
        };
        Ok((m, stats))
    }

    /// mean_{x∈c} ‖σ_x x‖ / ‖μ_c‖ per cluster (1 for singletons and zero centroids).
    fn param_factors(
        &self,
        core: &CoreSpace,
        units: &CoreUnits,
        part: &Partition,
        sizes: &[usize],
        ca: &Array2<f64>,
        cb: &Array2<f64>,
    ) -> Vec<f64> {
        let k = sizes.len();
        let (unit_norms, centroid_norms): (Vec<f64>, Vec<f64>) = match self.param {
            ParamReweight::Off => return vec![1.0; k],
            ParamReweight::L2 => (l2_rows(&units.a, &units.b), l2_rows(ca, cb)),
            ParamReweight::Linf => {
                // Max-abs is not preserved by the bases: map units and centroids back.
                let (v_a, u_b) = (core.v_a(), core.u_b());
                (
                    linf_rows(&units.a.dot(&v_a.t()), &units.b.dot(&u_b.t())),
                    linf_rows(&ca.dot(&v_a.t()), &cb.dot(&u_b.t())),
                )
            }
        };
        let mut sums = vec![0.0; k];
        for (i, &l) in part.labels.iter().enumerate() {
            sums[l] += unit_norms[i];
        }
        (0..k)
            .map(|c| {
                if sizes[c] <= 1 || centroid_norms[c] <= 0.0 {
                    1.0
                } else {
                    sums[c] / sizes[c] as f64 / centroid_norms[c]
                }
            })
            .collect()
    }
}

fn l2_rows(a: &Array2<f64>, b: &Array2<f64>) -> Vec<f64> {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| (x.dot(&x) + y.dot(&y)).sqrt())
        .collect()
}

fn linf_rows(a: &Array2<f64>, b: &Array2<f64>) -> Vec<f64> {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| {
            x.iter()
                .chain(y.iter())
                .fold(0.0, |m: f64, v| m.max(v.abs()))
        })
        .collect()
}
