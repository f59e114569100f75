//! Iso-C and Iso-CTS (Marczak et al., ICML 2025, arXiv 2502.04959), in core space
//! (methods.md §7): flatten the spectrum of the summed task matrix (Iso-C), after giving each
//! task a subspace of its own outside the sum's top directions (Iso-CTS).

use ndarray::{s, Array1, Array2, ArrayView2, Axis};

use super::core_space::{join, CoreBasis, CoreSpace, RANK_RTOL};
use super::method::{CoreMethod, Merged, MethodSpec};
use super::tsv::orthogonalised_svd;
use super::MethodError;
use crate::linalg::{svd, Svd};

/// α without validation data.
pub const DEFAULT_ALPHA: f64 = 1.0;
/// Iso-CTS: the common subspace's share of the core size.
pub const DEFAULT_COMMON_FRACTION: f64 = 0.8;

/// Iso-C with its coefficient.
#[derive(Debug, Clone, Copy)]
pub struct IsoC {
    /// α.
    pub alpha: f64,
}

/// Iso-CTS with its parameters.
#[derive(Debug, Clone, Copy)]
pub struct IsoCts {
    /// α.
    pub alpha: f64,
    /// Share of the core size given to the common subspace.
    pub common_fraction: f64,
}

/// Iso-C, registered as `iso_c`.
pub static ISO_C: MethodSpec = MethodSpec {
    name: "iso_c",
    default_scale: DEFAULT_ALPHA,
    default_density: None,
    basis: CoreBasis::Any,
    build: |p| Box::new(IsoC { alpha: p.scale }),
};

/// Iso-CTS, registered as `iso_cts`.
pub static ISO_CTS: MethodSpec = MethodSpec {
    name: "iso_cts",
    default_scale: DEFAULT_ALPHA,
    default_density: None,
    basis: CoreBasis::Any,
    build: |p| {
        Box::new(IsoCts {
            alpha: p.scale,
            common_fraction: p.common_fraction.unwrap_or(DEFAULT_COMMON_FRACTION),
        })
    },
};

/// `α · mean(σ) · U Vᵀ` over the numerically nonzero spectrum of `m`.
pub fn isotropic(m: ArrayView2<f64>, alpha: f64) -> Result<Array2<f64>, MethodError> {
    Ok(isotropic_svd(m, alpha)?.0)
}

/// [`isotropic`] and, for α ≥ 0, its SVD (`U`, every σ equal to `α·mean`, `V`).
fn isotropic_svd(
    m: ArrayView2<f64>,
    alpha: f64,
) -> Result<(Array2<f64>, Option<Svd>), MethodError> {
    let d = svd(m)?;
    let k = d.rank(RANK_RTOL);
    if k == 0 {
        return Ok((Array2::zeros(m.dim()), None));
    }
    let mean = d.s.slice(s![..k]).sum() / k as f64;
    let u = d.u.slice(s![.., ..k]).to_owned();
    let v = d.v.slice(s![.., ..k]).to_owned();
    let core = u.dot(&v.t()) * (alpha * mean);
    let spectrum = (alpha >= 0.0).then(|| Svd {
        s: Array1::from_elem(k, alpha * mean),
        u,
        v,
    });
    Ok((core, spectrum))
}

fn sum(cores: &[Array2<f64>], dims: (usize, usize)) -> Array2<f64> {
    cores.iter().fold(Array2::zeros(dims), |acc, m| acc + m)
}

impl CoreMethod for IsoC {
    fn merge(&self, core: &CoreSpace, _seed: u64) -> Result<Merged, MethodError> {
        let total = sum(&core.cores(), core.dims());
        let (m, svd) = isotropic_svd(total.view(), self.alpha)?;
        Ok(Merged::core_with(m, svd))
    }
}

/// Python's `round` (half to even) of a non-negative quotient, as the reference computes it.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

impl CoreMethod for IsoCts {
    fn merge(&self, core: &CoreSpace, _seed: u64) -> Result<Merged, MethodError> {
        let cores = core.cores();
        let dims = core.dims();
        let dim = dims.0.min(dims.1);
        let tasks = cores.len();
        let k0 = ((dim as f64) * self.common_fraction).floor() as usize;
        let t = (round_half_even((dim - k0.min(dim)) as f64 / tasks as f64) as usize) * tasks;
        // More task columns than the core holds would leave no common part: keep one.
        let t = t.min(dim.saturating_sub(1) / tasks * tasks);
        let k_common = dim - t;
        let per_task = t / tasks;
        let total = sum(&cores, dims);
        let d = svd(total.view())?;
        let uc = d.u.slice(s![.., ..k_common]).to_owned();
        let vc = d.v.slice(s![.., ..k_common]).to_owned();
        let mut u_cols = Vec::new();
        let mut v_cols = Vec::new();
        let mut sigmas = Vec::new();
        for m in &cores {
            // Only the output side is projected off the common subspace.
            let w = m - &uc.dot(&uc.t().dot(m));
            let dj = svd(w.view())?;
            u_cols.push(dj.u.slice(s![.., ..per_task]).to_owned());
            v_cols.push(dj.v.slice(s![.., ..per_task]).to_owned());
            sigmas.extend(dj.s.iter().take(per_task).copied());
        }
        u_cols.push(uc);
        v_cols.push(vc);
        sigmas.extend(d.s.iter().take(k_common).copied());
        let mean = sigmas.iter().sum::<f64>() / sigmas.len().max(1) as f64;
        let flat = Array1::from_elem(sigmas.len(), mean);
        let (m, svd) = orthogonalised_svd(
            &join(Axis(1), &u_cols)?,
            &flat,
            &join(Axis(1), &v_cols)?,
            self.alpha,
        )?;
        Ok(Merged::core_with(m, svd))
    }
}

#[cfg(test)]
mod tests {
    use super::round_half_even;

    #[test]
    fn rounds_half_to_even_like_python() {
        assert_eq!(round_half_even(0.5), 0.0);
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(1.3), 1.0);
        assert_eq!(round_half_even(4.0 / 3.0), 1.0);
    }
}
