//! The scatter's coordinates: units and centroids projected on the units' first two principal
//! axes, all from the Gram matrix.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::gram::{self, GramError};
use crate::top_eigen::top_eigen;

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

/// The units' first two principal axes, as a map from combinations of units to 2-D points:
/// a point `z = wᵀX` lands at `wᵀP − c`. Computed once per folded pool and reused for every k.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaBasis {
    /// `n × 2`: column k is `X v_k` (the units' uncentred coordinates on axis k).
    p: Array2<f64>,
    /// `x̄·v_k`: the mean's coordinates, subtracted so the picture is centred.
    c: [f64; 2],
    /// Share of the variance each axis explains.
    explained: [f64; 2],
}

impl PcaBasis {
    /// From the Gram matrix: with `Gc = J G J = U Λ Uᵀ`, axis k is `v_k = Xcᵀ u_k / √λ_k`, so
    /// `X v_k = G u_k / √λ_k` (as `u_k ⟂ 1`). Only the top two pairs are computed (subspace
    /// iteration on large pools: O(n²) a step instead of a full O(n³) solve); the variance
    /// total is the trace.
    pub fn from_gram(g: ArrayView2<f64>) -> Result<Self, GramError> {
        let n = g.nrows();
        let gc = centre_gram(g);
        let eig = top_eigen(gc.view(), 2)?;
        let total = gc.diag().sum().max(0.0);
        Ok(Self::assemble(n, &eig, total, |u, lambda| {
            g.dot(&u) / lambda.sqrt()
        }))
    }

    /// From the units' features (`x`, n × D) when D < n: the axes are the top eigenvectors of
    /// the D × D scatter matrix `Xcᵀ Xc`. O(n·D² + D³).
    pub fn from_features(x: ArrayView2<f64>) -> Result<Self, GramError> {
        let n = x.nrows();
        let mean = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let xc = &x - &mean;
        let eig = gram::sym_eigen(xc.t().dot(&xc).view())?;
        let total = eig.values.iter().filter(|v| **v > 0.0).sum();
        // Here the eigenvectors are the axes themselves.
        Ok(Self::assemble(n, &eig, total, |v, _| x.dot(&v)))
    }

    /// Keeps the top two components of `eig` (`total`: the sum of all eigenvalues);
    /// `axis(vector, λ)` returns the units' coordinates `X v_k`.
    fn assemble(
        n: usize,
        eig: &gram::SymEigen,
        total: f64,
        axis: impl Fn(Array1<f64>, f64) -> Array1<f64>,
    ) -> Self {
        let mut p = Array2::zeros((n, 2));
        let mut c = [0.0; 2];
        let mut explained = [0.0; 2];
        if n == 0 {
            return PcaBasis { p, c, explained };
        }
        let kept =
            gram::count_kept(&eig.values, n.max(eig.values.len()) as f64 * f64::EPSILON).min(2);
        for k in 0..kept {
            let lambda = eig.values[k];
            let col = axis(eig.vectors.column(k).to_owned(), lambda);
            c[k] = col.sum() / n as f64;
            p.column_mut(k).assign(&col);
            explained[k] = if total > 0.0 { lambda / total } else { 0.0 };
        }
        PcaBasis { p, c, explained }
    }

    /// The 2-D points of the combinations `w` (rows: coefficients over the units).
    pub fn points(&self, w: ArrayView2<f64>) -> Array2<f64> {
        let mut out = w.dot(&self.p);
        for mut row in out.rows_mut() {
            row[0] -= self.c[0];
            row[1] -= self.c[1];
        }
        out
    }

    /// The units' own positions and the points of `w`.
    pub fn projection(&self, w: ArrayView2<f64>) -> Projection {
        let mut units = self.p.clone();
        for mut row in units.rows_mut() {
            row[0] -= self.c[0];
            row[1] -= self.c[1];
        }
        Projection {
            units,
            points: self.points(w),
            explained: self.explained,
        }
    }
}

/// Projects the units behind `g` and the combinations `w` (p × n; row c is the point
/// `Σ_i w_ci x_i`) on the first two principal axes of the units.
pub fn project(g: ArrayView2<f64>, w: ArrayView2<f64>) -> Result<Projection, GramError> {
    Ok(PcaBasis::from_gram(g)?.projection(w))
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

    #[test]
    fn centring_removes_means() {
        let g = ndarray::array![[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]];
        let c = centre_gram(g.view());
        for s in c.sum_axis(Axis(0)).iter().chain(c.sum_axis(Axis(1)).iter()) {
            assert!(s.abs() < 1e-14, "row/col sum {s}");
        }
    }
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

        // The feature route gives the same picture, up to the sign of each axis.
        let f = PcaBasis::from_features(x.view())
            .unwrap()
            .projection(w.view());
        for k in 0..2 {
            let sign = if (f.units[[0, k]] >= 0.0) == (p.units[[0, k]] >= 0.0) {
                1.0
            } else {
                -1.0
            };
            for i in 0..x.nrows() {
                assert!((f.units[[i, k]] - sign * p.units[[i, k]]).abs() < 1e-10);
            }
            for c in 0..2 {
                assert!((f.points[[c, k]] - sign * p.points[[c, k]]).abs() < 1e-10);
            }
            assert!((f.explained[k] - p.explained[k]).abs() < 1e-12);
        }
    }
}
