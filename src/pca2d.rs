//! Two-dimensional PCA of units given only their Gram matrix, for plotting.

use crate::gram::GramError;
use ndarray::{Array2, ArrayView2, Axis};

/// PCA scores (n × 2) of the units behind `g` from the centred Gram `J G J`.
///
/// Scores are eigenvectors scaled by √eigenvalue, i.e. exactly the projections of the centred
/// rows of `X` onto its first two principal axes. Each column's entry of largest magnitude is
/// made positive (lowest index on ties) so the picture never flips between runs. A component
/// whose eigenvalue is not above `n·eps·λmax` (or not positive) is a zero column, never NaN.
pub fn pca2d(g: ArrayView2<f64>) -> Result<Array2<f64>, GramError> {
    let (rows, cols) = g.dim();
    if rows != cols {
        return Err(GramError::NotSquare { rows, cols });
    }
    let none = Array2::zeros((0, rows));
    Ok(crate::scatter::project(g, none.view())?.units)
}

/// `J G J` with `J = I − 11ᵀ/n`: subtract row and column means, add back the grand mean.
pub(crate) fn centre_gram(g: ArrayView2<f64>) -> Array2<f64> {
    let n = g.nrows() as f64;
    let row_means = g.sum_axis(Axis(1)) / n;
    let col_means = g.sum_axis(Axis(0)) / n;
    let grand = row_means.sum() / n;
    let mut c = g.to_owned();
    for ((i, j), v) in c.indexed_iter_mut() {
        *v += grand - row_means[i] - col_means[j];
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn centring_removes_means() {
        let g = array![[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]];
        let c = centre_gram(g.view());
        for s in c.sum_axis(Axis(0)).iter().chain(c.sum_axis(Axis(1)).iter()) {
            assert!(s.abs() < 1e-14, "row/col sum {s}");
        }
    }
}
