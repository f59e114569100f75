//! The few largest eigenpairs of a large symmetric PSD matrix by subspace iteration: what the
//! scatter needs (two axes) without a full O(n³) eigendecomposition.

use ndarray::{s, Array1, Array2, ArrayView2, Axis};

use crate::gram::{self, dominant_entry, GramError, SymEigen};

/// Below this size the full eigensolver is cheap (tens of ms) and is used as it is.
const MIN_N: usize = 400;
/// Extra block vectors: convergence goes as `(λ_{k+p+1} / λ_k)^iterations`, and a top
/// eigenvalue of multiplicity up to `k + p` is still found in full. On the 100 × r16 bench
/// modules (n = 1 600) 6 took 126–142 steps and 14 took 7 (`cargo bench --bench eigen`).
const OVERSAMPLE: usize = 14;
/// Iterations before falling back to the full solve (each is one n × n × (k + p) product).
const MAX_ITER: usize = 200;
/// Residual `‖A y − θ y‖` accepted, relative to the largest eigenvalue.
const RESIDUAL_RTOL: f64 = 1e-10;

/// The `k` largest eigenpairs of the symmetric part of `a` (values descending, vectors as
/// columns oriented like [`gram::sym_eigen`]'s). Subspace iteration with Rayleigh–Ritz for
/// large matrices, each pair checked by its residual; the full solver when `a` is small or
/// the iteration does not converge.
pub fn top_eigen(a: ArrayView2<f64>, k: usize) -> Result<SymEigen, GramError> {
    let n = a.nrows();
    if n < MIN_N || k + OVERSAMPLE >= n || a.ncols() != n {
        return full(a, k);
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(GramError::NonFinite);
    }
    let mut s = a.to_owned();
    s += &a.t();
    s *= 0.5;
    let scale = s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if scale == 0.0 {
        return full(a, k);
    }
    s /= scale;
    match iterate(&s, k) {
        Some((values, vectors)) => Ok(oriented(values * scale, vectors)),
        None => full(a, k),
    }
}

/// The first `k` pairs of the full decomposition.
fn full(a: ArrayView2<f64>, k: usize) -> Result<SymEigen, GramError> {
    let eig = gram::sym_eigen(a)?;
    let k = k.min(eig.values.len());
    Ok(SymEigen {
        values: eig.values.slice(s![..k]).to_owned(),
        vectors: eig.vectors.slice(s![.., ..k]).to_owned(),
    })
}

/// Block power steps with a Rayleigh–Ritz projection each time; `None` without convergence.
fn iterate(s: &Array2<f64>, k: usize) -> Option<(Array1<f64>, Array2<f64>)> {
    let n = s.nrows();
    let b = k + OVERSAMPLE;
    // A fixed pseudo-random start: deterministic, and almost surely not orthogonal to any
    // top eigenvector.
    let mut v = Array2::zeros((n, b));
    for (j, mut col) in v.axis_iter_mut(Axis(1)).enumerate() {
        col.assign(&gram::probe_vector(n, 100 + j as u64));
    }
    let mut v = orthonormal(v)?;
    for _ in 0..MAX_ITER {
        let w = s.dot(&v);
        let h = v.t().dot(&w);
        let small = gram::sym_eigen(h.view()).ok()?;
        let y = v.dot(&small.vectors);
        let ay = w.dot(&small.vectors);
        let top = small.values[0].max(f64::MIN_POSITIVE);
        let converged = (0..k).all(|i| {
            let r = &ay.column(i) - &(&y.column(i) * small.values[i]);
            r.dot(&r).sqrt() <= RESIDUAL_RTOL * top
        });
        if converged {
            return Some((
                small.values.slice(s![..k]).to_owned(),
                y.slice(s![.., ..k]).to_owned(),
            ));
        }
        v = orthonormal(ay)?;
    }
    None
}

/// Orthonormal columns spanning `x` (modified Gram–Schmidt, twice for stability); `None`
/// when the block has lost rank (the caller falls back to the full solve).
fn orthonormal(mut x: Array2<f64>) -> Option<Array2<f64>> {
    let b = x.ncols();
    for _ in 0..2 {
        for j in 0..b {
            for i in 0..j {
                let d = x.column(i).dot(&x.column(j));
                let qi = x.column(i).to_owned();
                x.column_mut(j).scaled_add(-d, &qi);
            }
            let norm = x.column(j).dot(&x.column(j)).sqrt();
            if norm.is_nan() || norm <= 1e-300 {
                return None;
            }
            x.column_mut(j).mapv_inplace(|v| v / norm);
        }
    }
    Some(x)
}

/// Each vector's largest entry made positive, as the full solver does.
fn oriented(values: Array1<f64>, mut vectors: Array2<f64>) -> SymEigen {
    for mut col in vectors.axis_iter_mut(Axis(1)) {
        if dominant_entry(col.view()) < 0.0 {
            col.mapv_inplace(|v| -v);
        }
    }
    SymEigen { values, vectors }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PSD `X Xᵀ` (n × n) of rank `r` with a decaying spectrum, from fixed probe vectors.
    fn gram_of(n: usize, r: usize) -> Array2<f64> {
        let mut x = Array2::zeros((n, r));
        for (j, mut col) in x.axis_iter_mut(Axis(1)).enumerate() {
            col.assign(&(gram::probe_vector(n, 7 + j as u64) * 0.8f64.powi(j as i32)));
        }
        x.dot(&x.t())
    }

    #[test]
    fn equals_the_full_solvers_top_pairs() {
        for (n, r) in [(450, 40), (600, 600), (500, 3)] {
            let g = gram_of(n, r);
            let full = gram::sym_eigen(g.view()).unwrap();
            let top = top_eigen(g.view(), 2).unwrap();
            let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let (values, _) = iterate(&(&g / scale), 2).expect("the iteration converges here");
            assert!((values[0] * scale - full.values[0]).abs() <= 1e-10 * full.values[0]);
            for i in 0..2 {
                let (want, got) = (full.values[i], top.values[i]);
                assert!(
                    (want - got).abs() <= 1e-10 * full.values[0],
                    "n {n} r {r} λ{i}: {got} vs {want}"
                );
                let diff = (&full.vectors.column(i) - &top.vectors.column(i))
                    .iter()
                    .fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(diff < 1e-6, "n {n} r {r} vector {i}: {diff:e}");
            }
        }
    }

    #[test]
    fn small_zero_and_non_finite_inputs_take_the_full_route() {
        let g = gram_of(50, 5);
        let full = gram::sym_eigen(g.view()).unwrap();
        let top = top_eigen(g.view(), 2).unwrap();
        assert_eq!(top.values, full.values.slice(s![..2]));
        let z = Array2::<f64>::zeros((500, 500));
        assert_eq!(
            top_eigen(z.view(), 2).unwrap().values,
            Array1::<f64>::zeros(2)
        );
        let mut bad = gram_of(500, 4);
        bad[[3, 4]] = f64::NAN;
        assert!(top_eigen(bad.view(), 2).is_err());
    }
}
