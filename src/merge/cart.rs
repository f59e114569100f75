//! CART (Choi et al., arXiv 2412.12153), in core space (methods.md §8): the mean of the tasks
//! plus each task's deviation from it, reduced to its top-k singular directions.

use ndarray::{s, Array2, Axis};

use super::core_space::{CoreBasis, CoreSpace};
use super::method::{CoreMethod, Merged, MethodSpec};
use super::MethodError;
use crate::linalg::svd;

/// λ: the paper's default.
pub const DEFAULT_LAMBDA: f64 = 1.0;
/// Rank of each deviation as a share of the core size: the paper's 8 %.
pub const DEFAULT_RANK_FRACTION: f64 = 0.08;

/// CART with its parameters.
#[derive(Debug, Clone, Copy)]
pub struct Cart {
    /// λ on the deviations (the mean is not scaled).
    pub lambda: f64,
    /// k = ⌈fraction · min(n_B, n_A)⌉.
    pub rank_fraction: f64,
}

/// CART, registered as `cart`.
pub static SPEC: MethodSpec = MethodSpec {
    name: "cart",
    default_scale: DEFAULT_LAMBDA,
    default_density: None,
    basis: CoreBasis::Any,
    build: |p| {
        Box::new(Cart {
            lambda: p.scale,
            rank_fraction: p.rank_fraction.unwrap_or(DEFAULT_RANK_FRACTION),
        })
    },
};

/// The best rank-k approximation of `m`.
pub fn truncate(m: &Array2<f64>, k: usize) -> Result<Array2<f64>, MethodError> {
    let d = svd(m.view())?;
    let k = k.min(d.s.len());
    let u = &d.u.slice(s![.., ..k]) * &d.s.slice(s![..k]).insert_axis(Axis(0));
    Ok(u.dot(&d.v.slice(s![.., ..k]).t()))
}

/// `(1/T) Σ M_j`.
pub fn mean_core(cores: &[Array2<f64>], dims: (usize, usize)) -> Array2<f64> {
    let total = cores.iter().fold(Array2::zeros(dims), |acc, m| acc + m);
    total / cores.len().max(1) as f64
}

impl CoreMethod for Cart {
    fn merge(&self, core: &CoreSpace, _seed: u64) -> Result<Merged, MethodError> {
        let cores = core.cores();
        let dims = core.dims();
        let mean = mean_core(&cores, dims);
        let k = ((self.rank_fraction * dims.0.min(dims.1) as f64).ceil() as usize).max(1);
        let mut out = mean.clone();
        for m in &cores {
            out = out + truncate(&(m - &mean), k)? * self.lambda;
        }
        Ok(Merged::Core(out))
    }
}
