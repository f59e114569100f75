//! TSV-M (Gargiulo et al., CVPR 2025, arXiv 2412.00081), in core space (methods.md §6): each
//! task's singular triplets, concatenated, with the left and right vectors orthogonalised by
//! their polar factors. Each task keeps its whole rank (k_j = r_j, clamped to its numerical
//! rank): lossless for LoRAs, and equal to the full-space method.

use ndarray::{s, Array1, Array2, Axis};

use super::core_space::{join, CoreBasis, CoreSpace, RANK_RTOL};
use super::method::{CoreMethod, Merged, MethodSpec};
use super::MethodError;
use crate::linalg::{polar_rank, Svd};

/// α without validation data.
pub const DEFAULT_ALPHA: f64 = 1.0;

/// TSV-M with its coefficient.
#[derive(Debug, Clone, Copy)]
pub struct Tsv {
    /// α.
    pub alpha: f64,
}

/// TSV-M, registered as `tsv`.
pub static SPEC: MethodSpec = MethodSpec {
    name: "tsv",
    default_scale: DEFAULT_ALPHA,
    default_density: None,
    basis: CoreBasis::Any,
    build: |p| Box::new(Tsv { alpha: p.scale }),
};

/// `α · polar(U) diag(σ) polar(V)ᵀ` of triplets given as columns.
pub fn orthogonalised(
    u: &Array2<f64>,
    sigma: &Array1<f64>,
    v: &Array2<f64>,
    alpha: f64,
) -> Result<Array2<f64>, MethodError> {
    Ok(orthogonalised_svd(u, sigma, v, alpha)?.0)
}

/// [`orthogonalised`], with its SVD when both polar factors have orthonormal columns (every
/// triplet independent) and α ≥ 0: then `polar(U) diag(ασ) polar(V)ᵀ` is one.
pub fn orthogonalised_svd(
    u: &Array2<f64>,
    sigma: &Array1<f64>,
    v: &Array2<f64>,
    alpha: f64,
) -> Result<(Array2<f64>, Option<Svd>), MethodError> {
    let (pu, ru) = polar_rank(u.view(), RANK_RTOL)?;
    let (pv, rv) = polar_rank(v.view(), RANK_RTOL)?;
    let scaled = &pu * &(sigma * alpha).view().insert_axis(Axis(0));
    let m = scaled.dot(&pv.t());
    let columns = sigma.len();
    let known = (ru == columns && rv == columns && alpha >= 0.0 && sigma.iter().all(|&x| x >= 0.0))
        .then(|| Svd {
            u: pu,
            s: sigma * alpha,
            v: pv,
        });
    Ok((m, known))
}

impl CoreMethod for Tsv {
    fn merge(&self, core: &CoreSpace, _seed: u64) -> Result<Merged, MethodError> {
        let mut us = Vec::new();
        let mut vs = Vec::new();
        let mut sigmas = Vec::new();
        for j in 0..core.n_tasks() {
            let d = core.core_svd(j)?;
            let k = core.rank(j).min(d.rank(RANK_RTOL));
            us.push(d.u.slice(s![.., ..k]).to_owned());
            vs.push(d.v.slice(s![.., ..k]).to_owned());
            sigmas.extend(d.s.iter().take(k).copied());
        }
        let (n_b, n_a) = core.dims();
        if sigmas.is_empty() {
            return Ok(Merged::Core(Array2::zeros((n_b, n_a))));
        }
        let (m, svd) = orthogonalised_svd(
            &join(Axis(1), &us)?,
            &Array1::from(sigmas),
            &join(Axis(1), &vs)?,
            self.alpha,
        )?;
        Ok(Merged::core_with(m, svd))
    }
}
