//! Truncated SVDs for PEFT's SVD-family merges.
//!
//! Two entry points produce PEFT's factors `B' = U[:, :k]·diag(S[:k])`, `A' = Vh[:k, :]`:
//!
//! * [`lowrank_svd`] for `ΔW = B_cat·A_cat` given by its factors. `ΔW` has rank ≤ n (the
//!   inner dimension), so it takes two thin orthogonal bases (from n × n Gram matrices in f64)
//!   and one n × n SVD; the dense `d_out × d_in` matrix is never formed.
//! * [`dense_svd_truncate`] for a dense `ΔW` whose entries were pruned (ties_svd, dare_*_svd,
//!   magnitude_prune_svd): an exact SVD for small matrices, subspace iteration for large ones.
//!
//! Both return the factors zero-padded to exactly `rank` components, and [`clamp_quantile`]
//! replicates PEFT's `svd_clamp`.

use linfa_linalg::eigh::{EigSort, Eigh};
use linfa_linalg::svd::{SvdSort, SVD};
use ndarray::parallel::prelude::*;
use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Gram eigenvalues below this fraction of the largest are treated as zero (σ ratio ≈ 3e-7,
/// below the resolution of f32 inputs).
const RANK_RTOL: f64 = 1e-13;
/// Above this Gram condition number (κ² of the factor) a second orthogonalisation pass runs:
/// one Gram pass loses orthogonality like ε·κ², a second pass on the explicit basis restores it.
const REORTH_COND: f64 = 1e8;
/// Dense matrices whose smaller side is at most this use an exact SVD; larger ones iterate.
pub const EXACT_DENSE_MAX_DIM: usize = 384;
/// Relative residual (to σ₁) at which subspace iteration stops.
const SUBSPACE_TOL: f64 = 1e-7;
/// Upper bound on subspace-iteration sweeps.
const SUBSPACE_MAX_ITER: usize = 200;
/// Minimum number of extra vectors carried by subspace iteration (faster convergence).
const SUBSPACE_MIN_OVERSAMPLE: usize = 10;
/// Fixed seed of the subspace-iteration start block, so results are reproducible.
const SUBSPACE_SEED: u64 = 0x5eed_5eed_5eed_5eed;

/// Errors of the truncated SVD routines.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SvdError {
    /// The inner dimensions of `B_cat` and `A_cat` differ.
    #[error("shape mismatch: B_cat has {b_cols} columns but A_cat has {a_rows} rows")]
    Shape {
        /// Columns of `B_cat`.
        b_cols: usize,
        /// Rows of `A_cat`.
        a_rows: usize,
    },
    /// The input holds NaN or infinite values.
    #[error("the matrix to decompose contains NaN or infinite values")]
    NonFinite,
    /// `svd_clamp` is not a quantile.
    #[error("svd_clamp must be a quantile in [0, 1]; got {0}")]
    InvalidQuantile(f64),
    /// linfa-linalg reported a failure.
    #[error("linear algebra failed: {0}")]
    Linalg(String),
}

/// A rank-`k` truncated SVD in PEFT's factor layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TruncatedSvd {
    /// `d_out × k`: `U[:, :k]·diag(S[:k])`, PEFT's merged `lora_B`.
    pub u_s: Array2<f32>,
    /// `k × d_in`: `Vh[:k, :]`, PEFT's merged `lora_A`.
    pub vt: Array2<f32>,
    /// Every singular value that was computed, descending (at least `min(k, rank ΔW)` of them).
    pub singular_values: Array1<f64>,
}

/// Truncated SVD of `ΔW = b_cat·a_cat` (`d_out × n` times `n × d_in`) without forming `ΔW`.
///
/// Computes `B_cat = Q_b R_b`, `A_catᵀ = Q_a R_a` (orthonormal bases from the n × n Gram
/// matrices, in f64), the SVD of the core `R_b R_aᵀ = U' S V'ᵀ`, and maps back
/// `U = Q_b U'`, `V = Q_a V'`. Components beyond the numerical rank are zero.
pub fn lowrank_svd(
    b_cat: ArrayView2<f32>,
    a_cat: ArrayView2<f32>,
    rank: usize,
) -> Result<TruncatedSvd, SvdError> {
    if b_cat.ncols() != a_cat.nrows() {
        return Err(SvdError::Shape {
            b_cols: b_cat.ncols(),
            a_rows: a_cat.nrows(),
        });
    }
    let (d_out, d_in) = (b_cat.nrows(), a_cat.ncols());
    let b = to_f64(b_cat);
    let a_t = to_f64(a_cat.t());
    let mut bases: Vec<Result<GramBasis, SvdError>> = [b.view(), a_t.view()]
        .into_par_iter()
        .map(gram_basis)
        .collect();
    let basis_a = bases.pop().unwrap_or(Err(SvdError::NonFinite))?;
    let basis_b = bases.pop().unwrap_or(Err(SvdError::NonFinite))?;

    let core = basis_b.r.dot(&basis_a.r.t());
    let (u_core, sigma, vt_core) = sorted_svd(core)?;
    let k = rank.min(sigma.len());
    let u_core_s = &u_core.slice(s![.., ..k]) * &sigma.slice(s![..k]);
    let u_s = b.dot(&basis_b.t.dot(&u_core_s));
    let vt = vt_core.slice(s![..k, ..]).dot(&basis_a.t.t()).dot(&a_t.t());
    Ok(assemble(u_s, vt, sigma, rank, d_out, d_in))
}

/// Truncated SVD of a dense `delta`, with PEFT's optional `svd_clamp` quantile.
///
/// Exact (f64 Golub–Kahan) when the smaller side is at most [`EXACT_DENSE_MAX_DIM`]; otherwise
/// subspace iteration with Rayleigh–Ritz, started from a fixed-seed block and run until the
/// Ritz residuals reach ~1e-7·σ₁ or stop shrinking (f32 noise floor).
pub fn dense_svd_truncate(
    delta: ArrayView2<f32>,
    rank: usize,
    clamp: Option<f64>,
) -> Result<TruncatedSvd, SvdError> {
    if delta.iter().any(|v| !v.is_finite()) {
        return Err(SvdError::NonFinite);
    }
    let (d_out, d_in) = delta.dim();
    let (u, sigma, vt) = if d_out.min(d_in) <= EXACT_DENSE_MAX_DIM {
        sorted_svd(to_f64(delta))?
    } else {
        subspace_svd(delta, rank)?
    };
    let k = rank.min(sigma.len());
    let u_s = &u.slice(s![.., ..k]) * &sigma.slice(s![..k]);
    let vt = vt.slice(s![..k, ..]).to_owned();
    let mut out = assemble(u_s, vt, sigma, rank, d_out, d_in);
    if let Some(q) = clamp {
        clamp_quantile(&mut out, q)?;
    }
    Ok(out)
}

/// PEFT's `svd_clamp`: `hi = torch.quantile(cat(U_S.flatten(), Vh.flatten()), q)`, then both
/// factors are clamped to `[-hi, hi]` (torch's `clamp(min, max)`, so `hi < 0` yields `hi`).
pub fn clamp_quantile(svd: &mut TruncatedSvd, q: f64) -> Result<(), SvdError> {
    if !(0.0..=1.0).contains(&q) {
        return Err(SvdError::InvalidQuantile(q));
    }
    let values: Vec<f32> = svd.u_s.iter().chain(svd.vt.iter()).copied().collect();
    let hi = torch_quantile_linear(&values, q);
    let lo = -hi;
    let clamp = |x: f32| {
        let x = if x < lo { lo } else { x };
        if x > hi {
            hi
        } else {
            x
        }
    };
    svd.u_s.mapv_inplace(clamp);
    svd.vt.mapv_inplace(clamp);
    Ok(())
}

/// `torch.quantile(values, q)` with the default linear interpolation, in f32 as torch does;
/// NaN when `values` is empty or holds a NaN.
pub fn torch_quantile_linear(values: &[f32], q: f64) -> f32 {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let rank = q as f32 * (sorted.len() - 1) as f32;
    let below = (rank as usize).min(sorted.len() - 1);
    let above = (rank.ceil() as usize).min(sorted.len() - 1);
    torch_lerp(sorted[below], sorted[above], rank - below as f32)
}

/// torch's `lerp`, which switches formula at weight 0.5 for accuracy.
fn torch_lerp(start: f32, end: f32, weight: f32) -> f32 {
    if weight < 0.5 {
        start + weight * (end - start)
    } else {
        end - (end - start) * (1.0 - weight)
    }
}

/// `x = q·r` with `q = x·t` having orthonormal columns; `q` itself is formed only when needed.
struct GramBasis {
    /// `n × rank`: maps `x` onto its orthonormal basis.
    t: Array2<f64>,
    /// `rank × n`: coordinates of `x` in that basis.
    r: Array2<f64>,
}

/// Orthonormal basis of the column space of `x` (m × n, m ≫ n) from its Gram matrix.
///
/// Eigen-decomposition instead of Cholesky so rank-deficient factors (zero or repeated
/// columns, e.g. an untrained LoRA's `B = 0`) simply lose the null directions.
fn gram_basis(x: ArrayView2<f64>) -> Result<GramBasis, SvdError> {
    let (first, cond) = gram_pass(x)?;
    if cond <= REORTH_COND {
        return Ok(first);
    }
    let q1 = x.dot(&first.t);
    let (second, _) = gram_pass(q1.view())?;
    Ok(GramBasis {
        t: first.t.dot(&second.t),
        r: second.r.dot(&first.r),
    })
}

/// One Gram pass: returns the basis and the condition number of the kept Gram spectrum.
fn gram_pass(x: ArrayView2<f64>) -> Result<(GramBasis, f64), SvdError> {
    let n = x.ncols();
    let mut gram = x.t().dot(&x);
    symmetrize(&mut gram);
    if gram.iter().any(|v| !v.is_finite()) {
        return Err(SvdError::NonFinite);
    }
    let (values, vectors) = gram.eigh().map_err(linalg_error)?.sort_eig_desc();
    let largest = values.first().copied().unwrap_or(0.0);
    if largest <= 0.0 {
        let empty = GramBasis {
            t: Array2::zeros((n, 0)),
            r: Array2::zeros((0, n)),
        };
        return Ok((empty, 1.0));
    }
    let kept = values
        .iter()
        .take_while(|&&l| l > largest * RANK_RTOL)
        .count();
    let mut t = vectors.slice(s![.., ..kept]).to_owned();
    let mut r = t.t().to_owned();
    for (i, &l) in values.iter().take(kept).enumerate() {
        let root = l.sqrt();
        t.column_mut(i).mapv_inplace(|v| v / root);
        r.row_mut(i).mapv_inplace(|v| v * root);
    }
    Ok((GramBasis { t, r }, largest / values[kept - 1]))
}

/// Explicit orthonormal basis of the columns of `x`.
fn orthonormal(x: ArrayView2<f64>) -> Result<Array2<f64>, SvdError> {
    Ok(x.dot(&gram_basis(x)?.t))
}

/// Compact SVD sorted by descending singular value; empty input gives empty factors.
fn sorted_svd(m: Array2<f64>) -> Result<(Array2<f64>, Array1<f64>, Array2<f64>), SvdError> {
    let (rows, cols) = m.dim();
    if rows == 0 || cols == 0 {
        return Ok((
            Array2::zeros((rows, 0)),
            Array1::zeros(0),
            Array2::zeros((0, cols)),
        ));
    }
    if m.iter().any(|v| !v.is_finite()) {
        return Err(SvdError::NonFinite);
    }
    let (u, sigma, vt) = m.svd(true, true).map_err(linalg_error)?.sort_svd_desc();
    match (u, vt) {
        (Some(u), Some(vt)) => Ok((u, sigma, vt)),
        _ => Err(SvdError::Linalg("SVD returned no singular vectors".into())),
    }
}

/// Top-`rank` singular triplets of a large dense matrix by subspace iteration.
///
/// The big products run in f32 (the data is f32), the orthogonalisations in f64.
fn subspace_svd(
    d: ArrayView2<f32>,
    rank: usize,
) -> Result<(Array2<f64>, Array1<f64>, Array2<f64>), SvdError> {
    let (d_out, d_in) = d.dim();
    let width = (rank + rank.max(SUBSPACE_MIN_OVERSAMPLE)).min(d_out.min(d_in));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SUBSPACE_SEED);
    let start = Array2::from_shape_simple_fn((d_in, width), || rng.gen_range(-1.0..1.0));
    let mut p = orthonormal(start.view())?;
    let mut previous_error = f64::INFINITY;
    for sweep in 0..SUBSPACE_MAX_ITER {
        let y = to_f64(d.dot(&to_f32(&p)).view());
        let basis = gram_basis(y.view())?;
        let q = y.dot(&basis.t);
        let (u_small, sigma, vt_small) = sorted_svd(basis.r)?;
        let k = rank.min(sigma.len());
        if k == 0 || sigma[0] <= 0.0 {
            return Ok((Array2::zeros((d_out, 0)), sigma, Array2::zeros((0, d_in))));
        }
        let z = to_f64(d.t().dot(&to_f32(&q)).view());
        let u_k = u_small.slice(s![.., ..k]);
        let v_k = p.dot(&vt_small.slice(s![..k, ..]).t());
        let residual = z.dot(&u_k) - &v_k * &sigma.slice(s![..k]);
        let error = max_column_norm(&residual) / sigma[0];
        let done = error <= SUBSPACE_TOL
            || (sweep >= 2 && error >= previous_error)
            || sweep + 1 == SUBSPACE_MAX_ITER;
        if done {
            return Ok((q.dot(&u_k), sigma, v_k.reversed_axes()));
        }
        previous_error = error;
        p = orthonormal(z.view())?;
    }
    Err(SvdError::Linalg("subspace iteration did not run".into()))
}

/// Casts to f32 and zero-pads to exactly `rank` components.
fn assemble(
    u_s: Array2<f64>,
    vt: Array2<f64>,
    singular_values: Array1<f64>,
    rank: usize,
    d_out: usize,
    d_in: usize,
) -> TruncatedSvd {
    let mut out = TruncatedSvd {
        u_s: Array2::zeros((d_out, rank)),
        vt: Array2::zeros((rank, d_in)),
        singular_values,
    };
    let k = u_s.ncols().min(rank);
    out.u_s
        .slice_mut(s![.., ..k])
        .assign(&u_s.slice(s![.., ..k]).mapv(|v| v as f32));
    out.vt
        .slice_mut(s![..k, ..])
        .assign(&vt.slice(s![..k, ..]).mapv(|v| v as f32));
    out
}

fn max_column_norm(m: &Array2<f64>) -> f64 {
    m.axis_iter(Axis(1))
        .map(|c| c.dot(&c).sqrt())
        .fold(0.0, f64::max)
}

fn symmetrize(m: &mut Array2<f64>) {
    let n = m.nrows();
    for i in 0..n {
        for j in (i + 1)..n {
            let mean = 0.5 * (m[[i, j]] + m[[j, i]]);
            m[[i, j]] = mean;
            m[[j, i]] = mean;
        }
    }
}

fn to_f64(x: ArrayView2<f32>) -> Array2<f64> {
    x.mapv(f64::from)
}

fn to_f32(x: &Array2<f64>) -> Array2<f32> {
    x.mapv(|v| v as f32)
}

fn linalg_error(e: linfa_linalg::LinalgError) -> SvdError {
    SvdError::Linalg(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decaying(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let inner = rows.min(cols);
        let u = Array2::from_shape_simple_fn((rows, inner), || rng.gen_range(-1.0f32..1.0));
        let v = Array2::from_shape_simple_fn((inner, cols), || rng.gen_range(-1.0f32..1.0));
        let decay = Array1::from_shape_fn(inner, |i| 0.9f32.powi(i as i32));
        (&u * &decay).dot(&v)
    }

    fn delta_of(t: &TruncatedSvd) -> Array2<f64> {
        to_f64(t.u_s.view()).dot(&to_f64(t.vt.view()))
    }

    fn rel(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        let d = a - b;
        (d.dot(&d.t()).diag().sum() / b.dot(&b.t()).diag().sum()).sqrt()
    }

    #[test]
    fn subspace_iteration_matches_exact_svd() {
        let d = decaying(420, 450, 7);
        let exact = sorted_svd(to_f64(d.view())).map(|(u, s, vt)| {
            let u_s = &u.slice(s![.., ..12]) * &s.slice(s![..12]);
            (u_s.dot(&vt.slice(s![..12, ..])), s)
        });
        let (exact_delta, exact_s) = exact.expect("exact svd");
        let iter = subspace_svd(d.view(), 12).expect("subspace");
        let t = assemble(
            &iter.0.slice(s![.., ..12]) * &iter.1.slice(s![..12]),
            iter.2,
            iter.1.clone(),
            12,
            420,
            450,
        );
        for i in 0..12 {
            assert!((iter.1[i] - exact_s[i]).abs() <= 1e-5 * exact_s[i]);
        }
        assert!(rel(&delta_of(&t), &exact_delta) < 1e-4);
    }

    #[test]
    fn quantile_interpolates_like_torch() {
        let v = [4.0f32, 1.0, 3.0, 2.0];
        assert_eq!(torch_quantile_linear(&v, 0.0), 1.0);
        assert_eq!(torch_quantile_linear(&v, 1.0), 4.0);
        assert!((torch_quantile_linear(&v, 0.5) - 2.5).abs() < 1e-7);
        assert!((torch_quantile_linear(&v, 0.9) - 3.7).abs() < 1e-6);
        assert!(torch_quantile_linear(&[1.0, f32::NAN], 0.5).is_nan());
    }

    #[test]
    fn clamp_limits_both_factors() {
        let mut t = TruncatedSvd {
            u_s: Array2::from_shape_vec((2, 1), vec![-5.0, 0.5]).expect("shape"),
            vt: Array2::from_shape_vec((1, 2), vec![1.0, 2.0]).expect("shape"),
            singular_values: Array1::zeros(1),
        };
        clamp_quantile(&mut t, 0.5).expect("valid q");
        // sorted: -5, 0.5, 1, 2 → q=0.5 at rank 1.5 → 0.75
        assert_eq!(t.u_s.as_slice(), Some(&[-0.75f32, 0.5][..]));
        assert_eq!(t.vt.as_slice(), Some(&[0.75f32, 0.75][..]));
        assert!(clamp_quantile(&mut t, 1.5).is_err());
    }
}
