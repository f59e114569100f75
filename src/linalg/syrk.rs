//! Symmetric rank-k update `X Xᵀ`, computing only the blocks on and above the diagonal.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, LinalgScalar};

/// Rows per block: small enough that most of the lower blocks are skipped at n = 128, large
/// enough that each block is an efficient GEMM.
const BLOCK: usize = 32;

/// `X Xᵀ` for the rows of `x` (n × D), with about half the flops of the full product.
///
/// Each entry is the same dot product, summed in the same order, as `x.dot(&x.t())` computes
/// it (the GEMM's blocking over D does not depend on where the block sits), so the result is
/// bit-identical to the full product; the lower triangle is mirrored from the upper.
pub fn syrk<T: LinalgScalar>(x: ArrayView2<T>) -> Array2<T> {
    let n = x.nrows();
    let mut g = Array2::<T>::zeros((n, n));
    for i0 in (0..n).step_by(BLOCK) {
        let i1 = (i0 + BLOCK).min(n);
        let rows = x.slice(s![i0..i1, ..]);
        // One GEMM per block row over every column block at or right of the diagonal.
        let cols = x.slice(s![i0.., ..]);
        let mut out = g.slice_mut(s![i0..i1, i0..]);
        general_mat_mul(T::one(), &rows, &cols.t(), T::zero(), &mut out);
    }
    for i in 0..n {
        for j in 0..i {
            g[[i, j]] = g[[j, i]];
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_the_full_product_bit_for_bit() {
        for (n, d) in [(0, 5), (1, 3), (63, 40), (64, 70), (65, 300), (200, 517)] {
            let mut state = (n * 31 + d) as u64;
            let x = Array2::from_shape_fn((n, d), |_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            });
            let full = x.dot(&x.t());
            assert_eq!(syrk(x.view()), full, "n = {n}, d = {d}");
            let x64 = x.mapv(f64::from);
            assert_eq!(syrk(x64.view()), x64.dot(&x64.t()), "f64, n = {n}, d = {d}");
        }
    }
}
