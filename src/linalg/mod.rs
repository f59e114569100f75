//! Dense linear algebra: small f64 matrices (core-space sizes: tens to a few hundred) and the
//! symmetric Gram product of unit pools.

mod bf16_gram;
mod gemm;
mod svd;
mod syrk;

pub use bf16_gram::{bf16_kernel_available, gram_bf16_cols, gram_bf16_rows, Bf16Part};
pub use gemm::{matmul_f32, matmul_f32_into};

pub use svd::{polar, polar_rank, svd, svd_of_product, Svd};
pub use syrk::syrk;

/// Dot product with four accumulators (fixed order: deterministic, and it vectorises).
pub fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Errors of the small dense routines.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinalgError {
    /// The input holds NaN or infinite values.
    #[error("the matrix holds NaN or infinite values")]
    NonFinite,
    /// Jacobi sweeps did not converge (never seen on finite input; a guard, not a path).
    #[error("the SVD did not converge after {0} sweeps")]
    NoConvergence(usize),
}
