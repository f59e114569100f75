//! LoRA-LEGO for one module: k-means on the units' Gram matrix, centroids as the merged units,
//! then dual reweighting (parameter: restore the members' norm; output: undo the variance
//! growth of k terms).

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::error::{LegoError, Result};
use crate::kmeans_gram::{fit_gram, GramPartition};
use crate::merge::lego_params::{ClusterParams, OutputReweight, ParamReweight};
use crate::metrics::Combination;
use linfa::ParamGuard;

/// Clusters the units with Gram matrix `g` (n × n) into `k ≤ n` clusters with the given k-means knobs.
pub fn cluster(
    module: &str,
    g: ArrayView2<f64>,
    k: usize,
    settings: &ClusterParams,
) -> Result<GramPartition> {
    let fail = |e: crate::kmeans::KMeansError| LegoError::Module {
        module: module.to_string(),
        reason: format!("k-means failed: {e}"),
    };
    let params = settings.kmeans(k).check().map_err(fail)?;
    fit_gram(g, &params).map_err(fail)
}

/// Full-dimension centroids `M·X` as `(k × d_in, k × d_out)` from the folded pool.
pub fn centroids(
    membership: &Array2<f64>,
    pool_a: &Array2<f32>,
    pool_b: &Array2<f32>,
) -> (Array2<f32>, Array2<f32>) {
    let m = membership.mapv(|v| v as f32);
    (m.dot(pool_a), m.dot(pool_b))
}

/// The units' and the full-dimension centroids' max-abs norms' inputs, for norms that need
/// every entry.
#[derive(Debug, Clone, Copy)]
pub struct FullVectors<'a> {
    /// Per unit: max-abs of its concatenated `[a; b]` (see [`crate::msu::UnitScaling::linf_norms`]).
    pub member_linf: &'a [f64],
    /// Centroids' a halves (k × d_in).
    pub centroid_a: &'a Array2<f32>,
    /// Centroids' b halves (k × d_out).
    pub centroid_b: &'a Array2<f32>,
}

/// The parameter-reweighting factor of each cluster: mean member norm / centroid norm (≥ 1 by
/// the triangle inequality; 1 for a zero centroid). L2 needs only the Gram matrix; L∞ needs
/// the pool and the full centroids.
pub fn param_factors(
    norm: ParamReweight,
    model: &GramPartition,
    g: &Array2<f64>,
    full: Option<FullVectors>,
) -> Vec<f64> {
    let k = model.k;
    let (member_norms, centroid_norms): (Array1<f64>, Array1<f64>) = match norm {
        ParamReweight::Off => return vec![1.0; k],
        ParamReweight::L2 => {
            let m = model.membership_matrix();
            let cg = m.dot(g).dot(&m.t());
            (
                g.diag().mapv(|v| v.max(0.0).sqrt()),
                cg.diag().mapv(|v| v.max(0.0).sqrt()),
            )
        }
        ParamReweight::Linf => {
            let Some(f) = full else {
                return vec![1.0; k];
            };
            (
                Array1::from(f.member_linf.to_vec()),
                linf_rows(f.centroid_a, f.centroid_b),
            )
        }
    };
    let mut sums = vec![0.0; k];
    let mut counts = vec![0usize; k];
    for (i, &l) in model.labels.iter().enumerate() {
        sums[l] += member_norms[i];
        counts[l] += 1;
    }
    (0..k)
        .map(|c| {
            let mean = sums[c] / counts[c].max(1) as f64;
            if centroid_norms[c] > 0.0 {
                // ≥ 1 by the triangle inequality; below 1 only by f32 rounding (a singleton's
                // centroid is the unit itself), which must not shrink the unit.
                (mean / centroid_norms[c]).max(1.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// Max-abs norm of each concatenated row `[a_i; b_i]`.
fn linf_rows(a: &Array2<f32>, b: &Array2<f32>) -> Array1<f64> {
    let ma = a.map_axis(Axis(1), |r| r.iter().fold(0f32, |m, v| m.max(v.abs())));
    let mb = b.map_axis(Axis(1), |r| r.iter().fold(0f32, |m, v| m.max(v.abs())));
    ma.iter()
        .zip(mb.iter())
        .map(|(x, y)| f64::from(x.max(*y)))
        .collect()
}

/// The output-reweighting factor `√(r_ref / k)` times the free multiplier `output_scale` and
/// the global `scale` (the paper's LEGO has no coefficient of its own).
pub fn output_factor(
    reweight: OutputReweight,
    output_scale: f64,
    scale: f64,
    k: usize,
    source_ranks: &[usize],
) -> f64 {
    let r_ref = match reweight {
        OutputReweight::Off => None,
        OutputReweight::Mean => {
            Some(source_ranks.iter().sum::<usize>() as f64 / source_ranks.len().max(1) as f64)
        }
        OutputReweight::Max => Some(source_ranks.iter().copied().max().unwrap_or(1) as f64),
        OutputReweight::Value(v) => Some(v),
    };
    r_ref.map(|r| (r / k as f64).sqrt()).unwrap_or(1.0) * output_scale * scale
}

/// The merged matrix as a combination of units: term c has a-coefficients `f_c·M_c` and
/// b-coefficients `f_c·ρ·M_c`.
pub fn combination(membership: &Array2<f64>, factors: &[f64], output_factor: f64) -> Combination {
    let f = Array1::from(factors.to_vec()).insert_axis(Axis(1));
    let v = membership * &f;
    let u = &v * output_factor;
    Combination { u, v }
}

/// The merged factors `(A' k × d_in, B' d_out × k)` from the full centroids.
pub fn merged_factors(
    centroid_a: &Array2<f32>,
    centroid_b: &Array2<f32>,
    factors: &[f64],
    output_factor: f64,
) -> (Array2<f32>, Array2<f32>) {
    let f = Array1::from_iter(factors.iter().map(|v| *v as f32)).insert_axis(Axis(1));
    let a = centroid_a * &f;
    let b = (centroid_b * &f) * output_factor as f32;
    (a, b.reversed_axes().as_standard_layout().to_owned())
}
