//! Gram-space geometry: a robust symmetric eigensolver and the isometric embedding of a
//! Gram matrix `G = X Xᵀ` into `Y` (`Y Yᵀ = G`), so k-means and PCA can run on `Y` instead
//! of the (much wider) `X`.
//!
//! Why not `linfa_linalg::eigh`: version 0.2.1 (a port of nalgebra's `symmetric_eigen`) has no
//! iteration cap and, on some sparse 0/1-patterned Gram matrices, silently returns an
//! orthonormal basis with a wrong spectrum (reconstruction error of several percent; found by
//! a randomised stress test, see the `eigh_regression_*` test). The solver here is the
//! classic Householder tridiagonalisation + implicit QL (EISPACK `tred2`/`tql2`) with an
//! iteration cap, verified by cheap random probes, with cyclic Jacobi as the fallback. faer's
//! self-adjoint solver runs first (faster, as accurate: `benches/eigen.rs`) under the same
//! probe check, so a wrong answer from it falls through to the solvers here.

use crate::linalg::dot4;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use thiserror::Error;

/// Errors from Gram-matrix routines.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GramError {
    /// The matrix is not square.
    #[error("matrix must be square, got {rows}×{cols}")]
    NotSquare {
        /// Number of rows.
        rows: usize,
        /// Number of columns.
        cols: usize,
    },
    /// The matrix holds NaN or infinite entries.
    #[error("matrix contains NaN or infinite values")]
    NonFinite,
    /// Neither eigensolver converged (not observed in practice; reported instead of looping).
    #[error("symmetric eigensolver did not converge (n = {0})")]
    NoConvergence(usize),
}

/// Eigendecomposition of a symmetric matrix: `A = V diag(values) Vᵀ`.
#[derive(Debug, Clone, PartialEq)]
pub struct SymEigen {
    /// Eigenvalues, descending.
    pub values: Array1<f64>,
    /// Orthonormal eigenvectors as columns, in the order of `values`; each column's entry of
    /// largest magnitude is positive (lowest index on ties), so output does not flip sign.
    pub vectors: Array2<f64>,
}

/// Isometric embedding of a PSD Gram matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// `n × m` coordinates with `Y Yᵀ = G`; `m = 0` (an `n × 0` matrix) when `G = 0`.
    pub y: Array2<f64>,
    /// The `m` kept eigenvalues of `G`, descending, all positive.
    pub eigenvalues: Array1<f64>,
}

/// Gram matrix `X Xᵀ` of the rows of `x`.
pub fn gram_of(x: ArrayView2<f64>) -> Array2<f64> {
    x.dot(&x.t())
}

/// Embeds `G` as `Y = U Λ^{1/2}`, keeping eigenvalues above `n·eps·λmax`.
pub fn embed(g: ArrayView2<f64>) -> Result<Embedding, GramError> {
    let rel_tol = g.nrows().max(1) as f64 * f64::EPSILON;
    embed_with_rel_tol(g, rel_tol)
}

/// Embeds `G` keeping eigenvalues `> rel_tol·λmax`; smaller and negative ones are dropped.
///
/// Dropping negative eigenvalues makes `Y Yᵀ` the nearest PSD matrix to a slightly
/// indefinite (rounded) `G`, which is what distances need.
pub fn embed_with_rel_tol(g: ArrayView2<f64>, rel_tol: f64) -> Result<Embedding, GramError> {
    let eig = sym_eigen(g)?;
    let m = count_kept(&eig.values, rel_tol);
    let eigenvalues = eig.values.slice(ndarray::s![..m]).to_owned();
    let mut y = eig
        .vectors
        .slice(ndarray::s![.., ..m])
        .as_standard_layout()
        .into_owned();
    for (mut col, &lambda) in y.axis_iter_mut(Axis(1)).zip(eigenvalues.iter()) {
        col *= lambda.sqrt();
    }
    Ok(Embedding { y, eigenvalues })
}

/// The same embedding (up to a rotation) straight from the rows of `x` (n × D), for when the
/// features are fewer than the units: `XᵀX = V Λ Vᵀ` is D × D, and `Y = X V` satisfies
/// `Y Yᵀ = X Xᵀ = G`. An O(n·D² + D³) route where the Gram route costs O(n³).
pub fn embed_features(x: ArrayView2<f64>) -> Result<Embedding, GramError> {
    if x.iter().any(|v| !v.is_finite()) {
        return Err(GramError::NonFinite);
    }
    let eig = sym_eigen(x.t().dot(&x).view())?;
    let m = count_kept(&eig.values, x.ncols().max(1) as f64 * f64::EPSILON);
    let v = eig.vectors.slice(ndarray::s![.., ..m]);
    Ok(Embedding {
        y: x.dot(&v),
        eigenvalues: eig.values.slice(ndarray::s![..m]).to_owned(),
    })
}

/// Number of leading (descending) eigenvalues above `rel_tol·λmax` (0 if `λmax ≤ 0`).
pub fn count_kept(values: &Array1<f64>, rel_tol: f64) -> usize {
    let lmax = values.first().copied().unwrap_or(0.0);
    if lmax <= 0.0 {
        return 0;
    }
    let cut = rel_tol.max(0.0) * lmax;
    values.iter().take_while(|&&v| v > cut).count()
}

/// Eigendecomposition of the symmetric part `(A + Aᵀ)/2` of a square finite matrix.
pub fn sym_eigen(a: ArrayView2<f64>) -> Result<SymEigen, GramError> {
    let mut eig = at_unit_scale(a, solve_verified)?;
    // Rescaling can produce -0.0 for exact zeros; keep output bit-stable.
    eig.values.mapv_inplace(|v| if v == 0.0 { 0.0 } else { v });
    Ok(eig)
}

/// [`sym_eigen`] with the hand-written solvers only (QL, then Jacobi): the benchmark's
/// reference for the faer route.
pub fn sym_eigen_handwritten(a: ArrayView2<f64>) -> Result<SymEigen, GramError> {
    at_unit_scale(a, |s| match tridiagonal_ql(s) {
        Some((v, u)) if probes_pass(s, &v, &u) => Ok((v, u)),
        _ => jacobi(s).ok_or(GramError::NoConvergence(s.nrows())),
    })
}

/// Runs `solve` on the symmetric part of `a` scaled to unit max-abs, so huge or tiny Gram
/// matrices neither overflow nor underflow, and scales the eigenvalues back.
fn at_unit_scale(
    a: ArrayView2<f64>,
    solve: impl Fn(&Array2<f64>) -> Result<(Array1<f64>, Array2<f64>), GramError>,
) -> Result<SymEigen, GramError> {
    let n = check_square_finite(a)?;
    let mut s = symmetrise(a);
    let scale = s.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
    if scale == 0.0 {
        return Ok(SymEigen {
            values: Array1::zeros(n),
            vectors: Array2::eye(n),
        });
    }
    s /= scale;
    let (values, vectors) = solve(&s)?;
    Ok(sort_and_orient(values * scale, vectors))
}

fn check_square_finite(a: ArrayView2<f64>) -> Result<usize, GramError> {
    let (rows, cols) = a.dim();
    if rows != cols {
        return Err(GramError::NotSquare { rows, cols });
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(GramError::NonFinite);
    }
    Ok(rows)
}

fn symmetrise(a: ArrayView2<f64>) -> Array2<f64> {
    let mut s = a.to_owned();
    s += &a.t();
    s *= 0.5;
    s
}

/// faer first (fastest: 5× the QL below at n = 1 600, see `benches/eigen.rs`), then QL,
/// then Jacobi, each kept only if it passes the probe check.
fn solve_verified(s: &Array2<f64>) -> Result<(Array1<f64>, Array2<f64>), GramError> {
    let n = s.nrows();
    if let Some((values, vectors)) = faer_eigen(s) {
        if probes_pass(s, &values, &vectors) {
            return Ok((values, vectors));
        }
    }
    if let Some((values, vectors)) = tridiagonal_ql(s) {
        if probes_pass(s, &values, &vectors) {
            return Ok((values, vectors));
        }
    }
    match jacobi(s) {
        Some((values, vectors)) if probes_pass(s, &values, &vectors) => Ok((values, vectors)),
        _ => Err(GramError::NoConvergence(n)),
    }
}

/// faer's self-adjoint eigensolver (divide and conquer); `None` if it reports failure.
fn faer_eigen(s: &Array2<f64>) -> Option<(Array1<f64>, Array2<f64>)> {
    let n = s.nrows();
    // Sequential inside: modules already run in parallel, and results must not depend on the
    // thread count (a parallel split would change the order of sums).
    faer::set_global_parallelism(faer::Par::Seq);
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| s[[i, j]]);
    let e = m.self_adjoint_eigen(faer::Side::Lower).ok()?;
    let values = e.S().column_vector();
    let u = e.U();
    Some((
        Array1::from_shape_fn(n, |i| values[i]),
        Array2::from_shape_fn((n, n), |(i, j)| u[(i, j)]),
    ))
}

/// Checks `S z ≈ V Λ Vᵀ z` and `Vᵀ V z ≈ z` for fixed pseudo-random `z`: O(n²), catches
/// a wrong decomposition without an O(n³) reconstruction.
fn probes_pass(s: &Array2<f64>, values: &Array1<f64>, vectors: &Array2<f64>) -> bool {
    let n = s.nrows();
    let tol = 1e-10 * (n as f64).max(1.0);
    (0..2u64).all(|p| {
        let z = probe_vector(n, p);
        let vtz = vectors.t().dot(&z);
        let recon = vectors.dot(&(&vtz * values));
        let orth = vectors.dot(&vtz);
        let z_norm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
        let bound = tol * z_norm * (1.0 + values.iter().fold(0.0f64, |a, v| a.max(v.abs())));
        max_abs_diff(&s.dot(&z), &recon) <= bound && max_abs_diff(&z, &orth) <= tol * z_norm
    })
}

fn max_abs_diff(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// Deterministic values in [-1, 1) from a SplitMix64 stream.
pub(crate) fn probe_vector(n: usize, stream: u64) -> Array1<f64> {
    let mut state = 0x5EED_0000_0000_0001u64.wrapping_add(stream.wrapping_mul(0x9E37_79B9));
    Array1::from_shape_fn(n, |_| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    })
}

/// Sorts eigenpairs descending (ties by original index) and fixes each vector's sign.
fn sort_and_orient(values: Array1<f64>, vectors: Array2<f64>) -> SymEigen {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]).then(i.cmp(&j)));
    let sorted_values = Array1::from_iter(order.iter().map(|&i| values[i]));
    // Row-major output: callers (k-means GEMV/GEMM) walk rows, and the QL buffer is
    // column-major.
    let mut sorted_vectors = Array2::from_shape_fn((n, n), |(r, c)| vectors[[r, order[c]]]);
    for mut col in sorted_vectors.axis_iter_mut(Axis(1)) {
        if dominant_entry(col.view()) < 0.0 {
            col.mapv_inplace(|v| -v);
        }
    }
    SymEigen {
        values: sorted_values,
        vectors: sorted_vectors,
    }
}

/// The entry of largest magnitude (first one on ties), 0 for an empty vector.
pub(crate) fn dominant_entry(v: ndarray::ArrayView1<f64>) -> f64 {
    let mut best = 0.0f64;
    for &x in v.iter() {
        if x.abs() > best.abs() {
            best = x;
        }
    }
    best
}

/// Iteration cap per eigenvalue for QL; EISPACK uses 30, generous here because we fall back.
const QL_MAX_ITER: usize = 60;

/// Householder tridiagonalisation + implicit QL (EISPACK tred2/tql2 as in JAMA).
///
/// The orthogonal factor is stored transposed (`t[c*n + r]` holds `V[r][c]`) so that every
/// O(n³) inner loop walks contiguous memory. `None` if QL exceeds its iteration cap.
fn tridiagonal_ql(s: &Array2<f64>) -> Option<(Array1<f64>, Array2<f64>)> {
    let n = s.nrows();
    // s is symmetric, so its row-major buffer is also V transposed.
    let mut t: Vec<f64> = s.iter().copied().collect();
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tred2(n, &mut t, &mut d, &mut e);
    if !tql2(n, &mut t, &mut d, &mut e) {
        return None;
    }
    let vt = Array2::from_shape_vec((n, n), t).ok()?;
    Some((Array1::from(d), vt.reversed_axes()))
}

/// Index of `V[r][c]` in the transposed buffer.
#[inline(always)]
fn at(n: usize, r: usize, c: usize) -> usize {
    c * n + r
}

/// Reduces the symmetric matrix in `t` to tridiagonal form (`d` diagonal, `e` subdiagonal),
/// leaving the accumulated orthogonal transform in `t`.
fn tred2(n: usize, t: &mut [f64], d: &mut [f64], e: &mut [f64]) {
    for j in 0..n {
        d[j] = t[at(n, n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|v| v.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = t[at(n, i - 1, j)];
                t[at(n, i, j)] = 0.0;
                t[at(n, j, i)] = 0.0;
            }
        } else {
            h = householder_step(n, i, scale, t, d, e);
        }
        d[i] = h;
    }
    accumulate_tred2(n, t, d);
    for j in 0..n {
        d[j] = t[at(n, n - 1, j)];
        t[at(n, n - 1, j)] = 0.0;
    }
    t[at(n, n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// One Householder reflection of `tred2` for row `i` (`scale > 0`); returns `h`.
/// Column `j` of V lives in buffer row `j`, so the inner loops run over contiguous slices.
fn householder_step(
    n: usize,
    i: usize,
    scale: f64,
    t: &mut [f64],
    d: &mut [f64],
    e: &mut [f64],
) -> f64 {
    let mut h = 0.0;
    for dk in d[..i].iter_mut() {
        *dk /= scale;
        h += *dk * *dk;
    }
    let f = d[i - 1];
    let g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
    e[i] = scale * g;
    h -= f * g;
    d[i - 1] = f - g;
    e[..i].iter_mut().for_each(|v| *v = 0.0);
    // V[j][i] = d[j]: buffer row i, disjoint from the rows j < i read below.
    t[i * n..i * n + i].copy_from_slice(&d[..i]);
    for j in 0..i {
        let f = d[j];
        let col = &t[j * n + j + 1..j * n + i];
        let mut g = e[j] + t[j * n + j] * f;
        g += dot4(col, &d[j + 1..i]);
        for (ek, &vkj) in e[j + 1..i].iter_mut().zip(col) {
            *ek += vkj * f;
        }
        e[j] = g;
    }
    let mut f = 0.0;
    for j in 0..i {
        e[j] /= h;
        f += e[j] * d[j];
    }
    let hh = f / (h + h);
    for j in 0..i {
        e[j] -= hh * d[j];
    }
    for j in 0..i {
        let (f, g) = (d[j], e[j]);
        let col = &mut t[j * n + j..j * n + i];
        for ((v, &ek), &dk) in col.iter_mut().zip(&e[j..i]).zip(&d[j..i]) {
            *v -= f * ek + g * dk;
        }
        d[j] = t[at(n, i - 1, j)];
        t[at(n, i, j)] = 0.0;
    }
    h
}

/// Builds the orthogonal transform of `tred2` from its stored Householder vectors.
fn accumulate_tred2(n: usize, t: &mut [f64], d: &mut [f64]) {
    for i in 0..n.saturating_sub(1) {
        t[at(n, n - 1, i)] = t[at(n, i, i)];
        t[at(n, i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            // Buffer row i+1 is V's column i+1; rows 0..=i are the columns it updates.
            let (head, tail) = t.split_at_mut((i + 1) * n);
            let u = &tail[..=i];
            for (dk, &uk) in d[..=i].iter_mut().zip(u) {
                *dk = uk / h;
            }
            for j in 0..=i {
                let col = &mut head[j * n..j * n + i + 1];
                let g = dot4(u, col);
                for (v, &dk) in col.iter_mut().zip(&d[..=i]) {
                    *v -= g * dk;
                }
            }
        }
        for k in 0..=i {
            t[at(n, k, i + 1)] = 0.0;
        }
    }
}

/// Implicit QL on the tridiagonal (`d`, `e`), rotating the vectors in `t`; `false` on cap.
fn tql2(n: usize, t: &mut [f64], d: &mut [f64], e: &mut [f64]) -> bool {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let eps = f64::EPSILON;
    let mut f = 0.0;
    let mut tst1 = 0.0f64;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        // e[n-1] == 0, so the search always stops inside the matrix.
        let m = (l..n).find(|&m| e[m].abs() <= eps * tst1).unwrap_or(n - 1);
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                if iter > QL_MAX_ITER {
                    return false;
                }
                f += ql_shift(n, d, e, l);
                ql_sweep(n, t, d, e, l, m);
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    true
}

/// Applies the Wilkinson-type shift for block starting at `l`; returns the shift.
fn ql_shift(n: usize, d: &mut [f64], e: &[f64], l: usize) -> f64 {
    let g = d[l];
    let p = (d[l + 1] - g) / (2.0 * e[l]);
    let mut r = p.hypot(1.0);
    if p < 0.0 {
        r = -r;
    }
    d[l] = e[l] / (p + r);
    d[l + 1] = e[l] * (p + r);
    let h = g - d[l];
    for di in d.iter_mut().take(n).skip(l + 2) {
        *di -= h;
    }
    h
}

/// One implicit QL sweep over rows `l..=m` (JAMA tql2 inner loop).
fn ql_sweep(n: usize, t: &mut [f64], d: &mut [f64], e: &mut [f64], l: usize, m: usize) {
    let dl1 = d[l + 1];
    let mut p = d[m];
    let (mut c, mut c2, mut c3) = (1.0f64, 1.0f64, 1.0f64);
    let el1 = e[l + 1];
    let (mut s, mut s2) = (0.0f64, 0.0f64);
    for i in (l..m).rev() {
        c3 = c2;
        c2 = c;
        s2 = s;
        let g = c * e[i];
        let h = c * p;
        let r = p.hypot(e[i]);
        e[i + 1] = s * r;
        s = e[i] / r;
        c = p / r;
        p = c * d[i] - s * g;
        d[i + 1] = h + s * (c * g + s * d[i]);
        rotate_rows(n, t, i, s, c);
    }
    let p2 = -s * s2 * c3 * el1 * e[l] / dl1;
    e[l] = s * p2;
    d[l] = c * p2;
}

/// Rotates vectors `i` and `i+1` (contiguous rows of the transposed buffer).
fn rotate_rows(n: usize, t: &mut [f64], i: usize, s: f64, c: f64) {
    let (lo, hi) = t.split_at_mut((i + 1) * n);
    let vi = &mut lo[i * n..];
    let vi1 = &mut hi[..n];
    for (a, b) in vi.iter_mut().zip(vi1.iter_mut()) {
        let h = *b;
        *b = s * *a + c * h;
        *a = c * *a - s * h;
    }
}

/// Sweep cap for Jacobi; it converges quadratically, typically in < 15 sweeps.
const JACOBI_MAX_SWEEPS: usize = 100;

/// Cyclic Jacobi eigensolver: slow (O(n³) per sweep) but very robust; the fallback.
///
/// Off-diagonal entries at or below `eps·‖A‖_F` are treated as zero; a sweep that rotates
/// nothing ends it. (A relative test `|a_pq| ≤ eps·√(a_pp a_qq)` can never be met for the
/// zero eigenvalues of a rank-deficient Gram matrix.)
fn jacobi(s: &Array2<f64>) -> Option<(Array1<f64>, Array2<f64>)> {
    let n = s.nrows();
    let mut a = s.clone();
    let mut v = Array2::<f64>::eye(n);
    let threshold = f64::EPSILON * a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _ in 0..JACOBI_MAX_SWEEPS {
        let mut rotated = false;
        for p in 0..n {
            for q in (p + 1)..n {
                if a[[p, q]].abs() > threshold {
                    jacobi_rotate(&mut a, &mut v, p, q);
                    rotated = true;
                }
            }
        }
        if !rotated {
            return Some((a.diag().to_owned(), v));
        }
    }
    None
}

/// Annihilates `a[p][q]` with a plane rotation, accumulating it into `v`.
fn jacobi_rotate(a: &mut Array2<f64>, v: &mut Array2<f64>, p: usize, q: usize) {
    let apq = a[[p, q]];
    if apq == 0.0 {
        return;
    }
    let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
    let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
    let tan = sign / (theta.abs() + theta.hypot(1.0));
    let c = 1.0 / tan.hypot(1.0);
    let s = tan * c;
    let n = a.nrows();
    for k in 0..n {
        let (akp, akq) = (a[[k, p]], a[[k, q]]);
        a[[k, p]] = c * akp - s * akq;
        a[[k, q]] = s * akp + c * akq;
    }
    for k in 0..n {
        let (apk, aqk) = (a[[p, k]], a[[q, k]]);
        a[[p, k]] = c * apk - s * aqk;
        a[[q, k]] = s * apk + c * aqk;
    }
    for k in 0..n {
        let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
        v[[k, p]] = c * vkp - s * vkq;
        v[[k, q]] = s * vkp + c * vkq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_rel_err(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
        a.iter()
            .zip(b.iter())
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    fn reconstruct(values: &Array1<f64>, vectors: &Array2<f64>) -> Array2<f64> {
        (vectors * values).dot(&vectors.t())
    }

    fn lcg_matrix(n: usize, d: usize, seed: u64, zero_one: bool) -> Array2<f64> {
        let mut state = seed;
        Array2::from_shape_fn((n, d), |_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            if zero_one {
                (u < 0.3) as u8 as f64
            } else {
                u - 0.5
            }
        })
    }

    #[test]
    fn ql_and_jacobi_agree_and_reconstruct() {
        for (seed, zero_one) in [(1, false), (2, true), (3, true)] {
            let x = lcg_matrix(25, 7, seed, zero_one);
            let s = gram_of(x.view());
            let (vq, uq) = tridiagonal_ql(&s).expect("ql converges");
            let (vj, uj) = jacobi(&s).expect("jacobi converges");
            assert!(max_rel_err(&reconstruct(&vq, &uq), &s) < 1e-13);
            assert!(max_rel_err(&reconstruct(&vj, &uj), &s) < 1e-13);
            let eq = sort_and_orient(vq, uq);
            let ej = sort_and_orient(vj, uj);
            let diff = max_abs_diff(&eq.values, &ej.values);
            assert!(diff < 1e-12 * eq.values[0], "values differ by {diff}");
        }
    }

    #[test]
    fn jacobi_converges_on_rank_deficient_gram() {
        let x = lcg_matrix(150, 40, 9, false);
        let mut s = gram_of(x.view());
        s /= s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (values, vectors) = jacobi(&s).expect("jacobi converges");
        assert!(probes_pass(&s, &values, &vectors));
        let zeros = values.iter().filter(|v| v.abs() < 1e-12).count();
        assert_eq!(zeros, 110, "rank 40 of 150");
    }

    #[test]
    fn probes_reject_a_wrong_decomposition() {
        let s = gram_of(lcg_matrix(10, 4, 5, false).view());
        let (mut values, vectors) = tridiagonal_ql(&s).expect("ql converges");
        assert!(probes_pass(&s, &values, &vectors));
        values[3] += 1e-3;
        assert!(!probes_pass(&s, &values, &vectors));
    }

    /// 0/1 Gram matrices of the kind on which linfa-linalg 0.2.1 `eigh` returned a
    /// reconstruction error of ~7%; ours must reconstruct to rounding.
    #[test]
    fn eigh_regression_zero_one_grams() {
        for seed in 0..200 {
            let n = 5 + (seed as usize % 30);
            let x = lcg_matrix(n, 8, seed, true);
            let g = gram_of(x.view());
            let eig = sym_eigen(g.view()).expect("finite input");
            let err = max_rel_err(&reconstruct(&eig.values, &eig.vectors), &g);
            assert!(err < 1e-12, "seed {seed}: reconstruction error {err}");
        }
    }

    #[test]
    fn sym_eigen_edge_cases() {
        let empty = sym_eigen(Array2::<f64>::zeros((0, 0)).view()).expect("empty ok");
        assert_eq!(empty.values.len(), 0);
        let one = sym_eigen(ndarray::array![[4.0]].view()).expect("1x1 ok");
        assert_eq!(one.values[0], 4.0);
        assert_eq!(one.vectors[[0, 0]], 1.0);
        let zero = sym_eigen(Array2::<f64>::zeros((3, 3)).view()).expect("zero ok");
        assert!(zero.values.iter().all(|&v| v == 0.0));
        let bad = ndarray::array![[1.0, f64::NAN], [f64::NAN, 1.0]];
        assert_eq!(sym_eigen(bad.view()), Err(GramError::NonFinite));
        let rect = Array2::<f64>::zeros((2, 3));
        assert!(matches!(
            sym_eigen(rect.view()),
            Err(GramError::NotSquare { rows: 2, cols: 3 })
        ));
    }
}
