//! Two-dimensional PCA of units given only their Gram matrix, for plotting.

use crate::gram::GramError;
use ndarray::{Array2, ArrayView2};

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
