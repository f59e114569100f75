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
