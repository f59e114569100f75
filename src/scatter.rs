//! The scatter's coordinates: units and centroids projected on the units' first two principal
//! axes, all from the Gram matrix.

use ndarray::{Array1, Array2, ArrayView2};

use crate::gram::{self, GramError};

/// 2-D positions of the units and of any combinations of them (centroids).
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// `n × 2` unit positions (PCA scores; signs fixed so the picture does not flip).
    pub units: Array2<f64>,
    /// `p × 2` positions of the requested combinations.
    pub points: Array2<f64>,
    /// Share of the variance the two axes explain (0 when there is none).
    pub explained: [f64; 2],
}

/// Projects the units behind `g` and the combinations `w` (p × n; row c is the point
/// `Σ_i w_ci x_i`) on the first two principal axes of the units.
///
/// With `Gc = J G J = U Λ Uᵀ`, axis k is `v_k = Xcᵀ u_k / √λ_k`, so a point `z = wᵀX` lands at
/// `(z − x̄)·v_k = (w − 1/n)ᵀ G u_k / √λ_k` — a product of small matrices.
pub fn project(g: ArrayView2<f64>, w: ArrayView2<f64>) -> Result<Projection, GramError> {
    let n = g.nrows();
    let mut units = Array2::zeros((n, 2));
    let mut points = Array2::zeros((w.nrows(), 2));
    if n == 0 {
        return Ok(Projection {
            units,
            points,
            explained: [0.0; 2],
        });
    }
    let gc = crate::pca2d::centre_gram(g);
    let eig = gram::sym_eigen(gc.view())?;
    let total: f64 = eig.values.iter().filter(|v| **v > 0.0).sum();
    let kept = gram::count_kept(&eig.values, n as f64 * f64::EPSILON).min(2);
    let mut explained = [0.0; 2];
    let shifted = &w - 1.0 / n as f64;
    let gw = shifted.dot(&g);
    for (c, share) in explained.iter_mut().enumerate().take(kept) {
        let lambda = eig.values[c];
        let u = eig.vectors.column(c);
        units.column_mut(c).assign(&(&u * lambda.sqrt()));
        let p: Array1<f64> = gw.dot(&u) / lambda.sqrt();
        points.column_mut(c).assign(&p);
        *share = if total > 0.0 { lambda / total } else { 0.0 };
    }
    Ok(Projection {
        units,
        points,
        explained,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Axis};

    #[test]
    fn projected_points_match_explicit_pca_of_the_rows() {
        // Rows of X; the centroid of rows 0 and 1, and a sign-flipped mean of rows 2 and 3.
        let x = array![
            [3.0, 0.0, 1.0],
            [2.0, 1.0, 0.0],
            [-1.0, 2.0, 0.5],
            [0.0, -2.0, 1.0],
            [1.0, 1.0, 1.0]
        ];
        let g = x.dot(&x.t());
        let w = array![[0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, -0.5, 0.0]];
        let p = project(g.view(), w.view()).unwrap();
        // Explicit: centre, project on the axes the unit scores define.
        let mean = x.mean_axis(Axis(0)).unwrap();
        let xc = &x - &mean;
        for k in 0..2 {
            // axis v_k from the scores: v = Xcᵀ s / ‖s‖².
            let s = p.units.column(k);
            let v = xc.t().dot(&s) / s.dot(&s);
            let z = w.dot(&x);
            let want = (&z - &mean).dot(&v);
            for c in 0..2 {
                assert!(
                    (p.points[[c, k]] - want[c]).abs() < 1e-10,
                    "{} vs {}",
                    p.points[[c, k]],
                    want[c]
                );
            }
            // The unit scores are the centred rows' projections on a unit-length axis.
            assert!((v.dot(&v) - 1.0).abs() < 1e-10);
        }
        assert!(p.explained[0] >= p.explained[1] && p.explained[0] + p.explained[1] <= 1.0 + 1e-12);
    }
}
