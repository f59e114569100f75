//! Thin SVD by one-sided (Hestenes) Jacobi, with a Householder QR first for tall inputs.
//!
//! Why Jacobi: the core-space methods take SVDs of n × n matrices (n = Σ r_j) whose small
//! singular values decide ranks and polar factors; one-sided Jacobi computes every singular
//! value to high *relative* accuracy, where the route through `XᵀX` squares the condition
//! number. At these sizes it costs well under a millisecond per matrix.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::LinalgError;

/// Sweeps after which Jacobi gives up (quadratic convergence needs ~10 at these sizes).
const MAX_SWEEPS: usize = 60;
/// Squared column norms below this fraction of ‖X‖²_F count as zero (σ < 1e-15 ‖X‖_F).
const NEGLIGIBLE: f64 = 1e-30;
/// Columns count as orthogonal when |⟨x, y⟩| ≤ this · √m · ‖x‖‖y‖ (LAPACK's criterion; a
/// tighter one can cycle on rounding noise).
const ORTH_TOL: f64 = f64::EPSILON;
/// Matrices whose smaller side is at most this use Jacobi; larger ones faer's SVD first.
const JACOBI_MAX_DIM: usize = 16;

/// `X = U diag(s) Vᵀ` with `s` descending, `p = min(m, n)` triplets. Columns of `U` that belong
/// to a zero singular value are zero (callers keep only the numerically nonzero spectrum).
#[derive(Debug, Clone)]
pub struct Svd {
    /// `m × p` left singular vectors.
    pub u: Array2<f64>,
    /// `p` singular values, descending.
    pub s: Array1<f64>,
    /// `n × p` right singular vectors.
    pub v: Array2<f64>,
}

impl Svd {
    /// How many singular values exceed `rel_tol · s₁` (0 for a zero matrix).
    pub fn rank(&self, rel_tol: f64) -> usize {
        let top = self.s.first().copied().unwrap_or(0.0);
        self.s
            .iter()
            .take_while(|&&v| v > rel_tol * top && v > 0.0)
            .count()
    }
}

/// The thin SVD of `x`.
pub fn svd(x: ArrayView2<f64>) -> Result<Svd, LinalgError> {
    if x.iter().any(|v| !v.is_finite()) {
        return Err(LinalgError::NonFinite);
    }
    let (m, n) = x.dim();
    if m < n {
        let t = svd(x.t())?;
        return Ok(Svd {
            u: t.v,
            s: t.s,
            v: t.u,
        });
    }
    if n > JACOBI_MAX_DIM {
        // Why faer above this size: Jacobi costs ~10 sweeps of O(m n²) and dominated every
        // core-space merge (≈ 20 ms per 128 × 128 SVD, a dozen per module); faer's bidiagonal
        // SVD is ~10× faster. Its answer is kept only if it reconstructs `x` and is orthonormal.
        if let Some(d) = faer_svd(x) {
            return Ok(d);
        }
    }
    if m > n && n > 0 {
        // Tall: X = Q R, and the SVD of the n × n R carries over (U = Q U_R).
        let (q, r) = householder_qr(x);
        let inner = jacobi_tall(r.view())?;
        return Ok(Svd {
            u: q.dot(&inner.u),
            s: inner.s,
            v: inner.v,
        });
    }
    jacobi_tall(x)
}

/// faer's thin SVD of `x` (m ≥ n), sequential (modules already run in parallel, and results must
/// not depend on the thread count), with Jacobi's conventions: σ descending, the columns of `U`
/// of an exactly zero σ zeroed. `None` if faer fails or its answer does not pass the check.
fn faer_svd(x: ArrayView2<f64>) -> Option<Svd> {
    let (m, n) = x.dim();
    faer::set_global_parallelism(faer::Par::Seq);
    let mat = faer::Mat::<f64>::from_fn(m, n, |i, j| x[[i, j]]);
    let d = mat.thin_svd().ok()?;
    let (fu, fs, fv) = (d.U(), d.S().column_vector(), d.V());
    let mut s = Array1::from_shape_fn(n, |i| fs[i]);
    let mut u = Array2::from_shape_fn((m, n), |(i, j)| fu[(i, j)]);
    let v = Array2::from_shape_fn((n, n), |(i, j)| fv[(i, j)]);
    for (k, mut col) in u.axis_iter_mut(Axis(1)).enumerate() {
        if s[k] <= 0.0 {
            s[k] = 0.0;
            col.fill(0.0);
        }
    }
    if s.windows(2).into_iter().any(|w| w[0] < w[1]) || !svd_checks_pass(x, &u, &s, &v) {
        return None;
    }
    Some(Svd { u, s, v })
}

/// `X z ≈ U Σ Vᵀ z` and `Vᵀ V ≈ I` on fixed probe vectors: O(mn), catches a wrong answer
/// without an O(mn²) reconstruction.
fn svd_checks_pass(x: ArrayView2<f64>, u: &Array2<f64>, s: &Array1<f64>, v: &Array2<f64>) -> bool {
    let n = x.ncols();
    let tol = 1e-11 * (x.nrows().max(n) as f64);
    let top = s.first().copied().unwrap_or(0.0);
    (0..2u64).all(|p| {
        let mut state = 0x5EED_0000_0000_0001u64.wrapping_add(p.wrapping_mul(0x9E37_79B9));
        let z = Array1::from_shape_fn(n, |_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut y = state;
            y = (y ^ (y >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            y = (y ^ (y >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            y ^= y >> 31;
            (y >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        });
        let z_norm = z.dot(&z).sqrt();
        let vtz = v.t().dot(&z);
        let recon = u.dot(&(&vtz * s));
        let exact = x.dot(&z);
        let err = exact
            .iter()
            .zip(recon.iter())
            .fold(0.0f64, |a, (p, q)| a.max((p - q).abs()));
        let orth = v
            .dot(&vtz)
            .iter()
            .zip(z.iter())
            .fold(0.0f64, |a, (p, q)| a.max((p - q).abs()));
        err <= tol * top * z_norm && orth <= tol * z_norm
    })
}

/// The thin SVD of the product `l · r` (l: m × q, r: q × n, q ≤ min(m, n)) from its factors:
/// `l = Q_l R_l`, `rᵀ = Q_r R_r`, so `l r = Q_l (R_l R_rᵀ) Q_rᵀ` and only the q × q middle is
/// decomposed (`U = Q_l u`, `V = Q_r v`). Why: a task's core has rank r_j ≪ n, and its n × n
/// SVD cost ~(n / r_j)³ times this. Falls back to [`svd`] of the product when q is not smaller.
pub fn svd_of_product(l: ArrayView2<f64>, r: ArrayView2<f64>) -> Result<Svd, LinalgError> {
    let (m, q) = l.dim();
    let n = r.ncols();
    if q == 0 || q >= m || q >= n {
        return svd(l.dot(&r).view());
    }
    if l.iter().chain(r.iter()).any(|v| !v.is_finite()) {
        return Err(LinalgError::NonFinite);
    }
    let (q_l, r_l) = householder_qr(l);
    let (q_r, r_r) = householder_qr(r.t());
    let inner = svd(r_l.dot(&r_r.t()).view())?;
    Ok(Svd {
        u: q_l.dot(&inner.u),
        s: inner.s,
        v: q_r.dot(&inner.v),
    })
}

/// The orthogonal polar factor `P Qᵀ` of `x = P diag(σ) Qᵀ` (m × n, m ≥ n expected), over the
/// numerically nonzero spectrum (`σ > rel_tol · σ₁`).
pub fn polar(x: ArrayView2<f64>, rel_tol: f64) -> Result<Array2<f64>, LinalgError> {
    Ok(polar_rank(x, rel_tol)?.0)
}

/// [`polar`] and the rank it kept: with rank equal to the column count, the factor's columns
/// are orthonormal.
pub fn polar_rank(x: ArrayView2<f64>, rel_tol: f64) -> Result<(Array2<f64>, usize), LinalgError> {
    let d = svd(x)?;
    let r = d.rank(rel_tol);
    let u = d.u.slice(ndarray::s![.., ..r]);
    let v = d.v.slice(ndarray::s![.., ..r]);
    Ok((u.dot(&v.t()), r))
}

/// One-sided Jacobi on the columns of `x` (m ≥ n): rotate column pairs until orthogonal; the
/// column norms are then the singular values.
fn jacobi_tall(x: ArrayView2<f64>) -> Result<Svd, LinalgError> {
    let (m, n) = x.dim();
    // Column-major working copies: every rotation touches two whole columns.
    let mut w: Vec<Vec<f64>> = x.axis_iter(Axis(1)).map(|c| c.to_vec()).collect();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|j| (0..n).map(|i| f64::from(u8::from(i == j))).collect())
        .collect();
    let tol = ORTH_TOL * (m.max(1) as f64).sqrt();
    // A column this much shorter than the whole matrix carries a singular value below every
    // rank cut used here; rotating it only churns denormals (and can cycle).
    let negligible = NEGLIGIBLE * w.iter().map(|c| dot(c, c)).sum::<f64>();
    let mut converged = n < 2;
    for _ in 0..MAX_SWEEPS {
        if converged {
            break;
        }
        let mut rotated = false;
        // Squared column norms, refreshed every sweep and updated exactly by each rotation
        // (‖w_p‖² − tγ, ‖w_q‖² + tγ): one dot product per pair instead of three.
        let mut norms: Vec<f64> = w.iter().map(|c| dot(c, c)).collect();
        for p in 0..n {
            for q in (p + 1)..n {
                let (alpha, beta) = (norms[p], norms[q]);
                if alpha.min(beta) <= negligible {
                    continue;
                }
                let gamma = dot(&w[p], &w[q]);
                if gamma == 0.0 || gamma.abs() <= tol * alpha.sqrt() * beta.sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                rotate(&mut w, p, q, c, s);
                rotate(&mut v, p, q, c, s);
                norms[p] = alpha - t * gamma;
                norms[q] = beta + t * gamma;
            }
        }
        converged = !rotated;
    }
    if !converged {
        return Err(LinalgError::NoConvergence(MAX_SWEEPS));
    }
    let norms: Vec<f64> = w.iter().map(|c| dot(c, c).sqrt()).collect();
    let mut order: Vec<usize> = (0..n).collect();
    // Stable on ties, so equal singular values keep their column order.
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
    let mut u = Array2::zeros((m, n));
    let mut vv = Array2::zeros((n, n));
    let mut s = Array1::zeros(n);
    for (k, &j) in order.iter().enumerate() {
        s[k] = norms[j];
        if norms[j] > 0.0 {
            for i in 0..m {
                u[[i, k]] = w[j][i] / norms[j];
            }
        }
        for i in 0..n {
            vv[[i, k]] = v[j][i];
        }
    }
    Ok(Svd { u, s, v: vv })
}

fn rotate(cols: &mut [Vec<f64>], p: usize, q: usize, c: f64, s: f64) {
    let (left, right) = cols.split_at_mut(q);
    let (xp, xq) = (&mut left[p], &mut right[0]);
    for (a, b) in xp.iter_mut().zip(xq.iter_mut()) {
        let (x, y) = (*a, *b);
        *a = c * x - s * y;
        *b = s * x + c * y;
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Thin Householder QR of a tall `x` (m × n, m ≥ n): `Q` (m × n, orthonormal columns), `R`
/// (n × n, upper triangular).
fn householder_qr(x: ArrayView2<f64>) -> (Array2<f64>, Array2<f64>) {
    let (m, n) = x.dim();
    let mut cols: Vec<Vec<f64>> = x.axis_iter(Axis(1)).map(|c| c.to_vec()).collect();
    let mut reflectors: Vec<Vec<f64>> = Vec::with_capacity(n);
    for k in 0..n {
        let tail_norm = dot(&cols[k][k..], &cols[k][k..]).sqrt();
        let mut h = cols[k][k..].to_vec();
        if tail_norm > 0.0 {
            let alpha = if h[0] >= 0.0 { -tail_norm } else { tail_norm };
            h[0] -= alpha;
            let hn = dot(&h, &h).sqrt();
            h.iter_mut().for_each(|v| *v /= hn);
            for col in cols.iter_mut().skip(k) {
                let proj = 2.0 * dot(&h, &col[k..]);
                for (c, hv) in col[k..].iter_mut().zip(&h) {
                    *c -= proj * hv;
                }
            }
        } else {
            h.iter_mut().for_each(|v| *v = 0.0);
        }
        reflectors.push(h);
    }
    let mut r = Array2::zeros((n, n));
    for (j, col) in cols.iter().enumerate() {
        for i in 0..=j.min(n - 1) {
            r[[i, j]] = col[i];
        }
    }
    // Q = H_0 ⋯ H_{n-1} applied to the first n unit vectors.
    let mut q_cols: Vec<Vec<f64>> = (0..n)
        .map(|j| (0..m).map(|i| f64::from(u8::from(i == j))).collect())
        .collect();
    for (k, h) in reflectors.iter().enumerate().rev() {
        for col in q_cols.iter_mut() {
            let proj = 2.0 * dot(h, &col[k..]);
            for (c, hv) in col[k..].iter_mut().zip(h) {
                *c -= proj * hv;
            }
        }
    }
    let mut q = Array2::zeros((m, n));
    for (j, col) in q_cols.iter().enumerate() {
        for i in 0..m {
            q[[i, j]] = col[i];
        }
    }
    (q, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn reconstruct(d: &Svd) -> Array2<f64> {
        (&d.u * &d.s.view().insert_axis(Axis(0))).dot(&d.v.t())
    }

    fn max_abs(a: &Array2<f64>) -> f64 {
        a.iter().fold(0.0, |m, v| m.max(v.abs()))
    }

    #[test]
    fn hand_computed_diagonal_and_rank_one() {
        // diag(3, 1) with its columns swapped: σ = (3, 1).
        let x = array![[0.0, 3.0], [1.0, 0.0]];
        let d = svd(x.view()).expect("svd");
        assert_eq!(d.s.to_vec(), vec![3.0, 1.0]);
        // u vᵀ for a rank-one outer product [1,2]ᵀ[2,2]: σ = ‖[1,2]‖·‖[2,2]‖ = √5·√8.
        let y = array![[2.0, 2.0], [4.0, 4.0]];
        let e = svd(y.view()).expect("svd");
        assert!((e.s[0] - (40f64).sqrt()).abs() < 1e-12);
        assert!(e.s[1].abs() < 1e-12);
        assert_eq!(e.rank(1e-9), 1);
    }

    #[test]
    fn tall_wide_and_square_reconstruct_with_orthonormal_factors() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        for (m, n) in [(9, 4), (4, 9), (6, 6), (30, 3)] {
            let x = Array2::from_shape_simple_fn((m, n), &mut next);
            let d = svd(x.view()).expect("svd");
            assert!(max_abs(&(reconstruct(&d) - &x)) < 1e-13, "{m}×{n}");
            let p = m.min(n);
            let eye = Array2::<f64>::eye(p);
            assert!(max_abs(&(d.u.t().dot(&d.u) - &eye)) < 1e-13);
            assert!(max_abs(&(d.v.t().dot(&d.v) - &eye)) < 1e-13);
            assert!(d.s.windows(2).into_iter().all(|w| w[0] >= w[1]));
        }
    }

    #[test]
    fn product_and_faer_routes_reconstruct_with_orthonormal_factors() {
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        // (m, q, n): a rank-q product of sizes that take faer (> 16) and Jacobi (≤ 16) inside.
        for (m, q, n) in [(40, 6, 30), (128, 16, 128), (20, 3, 50)] {
            let l = Array2::from_shape_simple_fn((m, q), &mut next);
            let r = Array2::from_shape_simple_fn((q, n), &mut next);
            let product = l.dot(&r);
            let d = svd_of_product(l.view(), r.view()).expect("svd of product");
            assert_eq!(d.s.len(), q);
            assert!(
                max_abs(&(reconstruct(&d) - &product)) < 1e-12,
                "{m}×{q}×{n}"
            );
            let eye = Array2::<f64>::eye(q);
            assert!(max_abs(&(d.u.t().dot(&d.u) - &eye)) < 1e-12);
            assert!(max_abs(&(d.v.t().dot(&d.v) - &eye)) < 1e-12);
            // The full SVD of the product (faer here) has the same nonzero spectrum.
            let full = svd(product.view()).expect("svd");
            assert!(max_abs(&(reconstruct(&full) - &product)) < 1e-12);
            for i in 0..q {
                assert!((full.s[i] - d.s[i]).abs() < 1e-12 * full.s[0], "σ_{i}");
            }
        }
    }

    #[test]
    fn polar_of_scaled_rotation_is_the_rotation() {
        let (c, s) = (0.6, 0.8);
        let rot = array![[c, -s], [s, c]];
        let scaled = rot.dot(&array![[5.0, 0.0], [0.0, 0.5]]);
        let p = polar(scaled.view(), 1e-9).expect("polar");
        assert!(max_abs(&(p - rot)) < 1e-14);
    }

    #[test]
    fn non_finite_input_is_an_error() {
        let x = array![[1.0, f64::NAN]];
        assert_eq!(svd(x.view()).unwrap_err(), LinalgError::NonFinite);
    }
}
