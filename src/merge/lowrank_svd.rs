//! Truncated SVDs for PEFT's SVD-family merges.
//!
//! Two entry points produce PEFT's factors `B' = U[:, :k]·diag(S[:k])`, `A' = Vh[:k, :]`:
//!
//! * [`lowrank_svd`] for `ΔW = B_cat·A_cat` given by its factors. `ΔW` has rank ≤ n (the
//!   inner dimension), so everything happens on n × n matrices in f64 (two Gram matrices, a
//!   pivoted Cholesky, one symmetric eigen-decomposition); the dense `d_out × d_in` matrix is
//!   never formed.
//! * [`dense_svd_truncate`] for a dense `ΔW` whose entries were pruned (ties_svd, dare_*_svd,
//!   magnitude_prune_svd): an exact SVD for small matrices, subspace iteration for large ones.
//!
//! Both return the factors zero-padded to exactly `rank` components, and [`clamp_quantile`]
//! replicates PEFT's `svd_clamp`.

use ndarray::parallel::prelude::*;
use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::linalg::matmul_f32;

/// Gram pivots below this fraction of the largest diagonal are treated as zero (σ ratio
/// ≈ 3e-7, below the resolution of f32 inputs).
const RANK_RTOL: f64 = 1e-13;
/// Above this estimated Gram condition number (κ² of the factor) a second orthogonalisation
/// pass runs: one Gram pass loses orthogonality like ε·κ², a second pass restores it.
const REORTH_COND: f64 = 1e6;
/// Subspace iteration accepts a stalled residual only once it is below this (f32 noise floor).
const SUBSPACE_STALL_TOL: f64 = 1e-4;
/// Dense matrices whose smaller side is at most this use an exact SVD; larger ones iterate.
pub const EXACT_DENSE_MAX_DIM: usize = 384;
/// Singular values below this fraction of σ₁ are dropped where a division by σ is needed.
const SIGMA_RTOL: f64 = 1e-7;
/// Relative residual (to σ₁) at which subspace iteration stops early.
const SUBSPACE_TOL: f64 = 1e-7;
/// Power iterations after the randomized range finder (Halko, Martinsson & Tropp 2011, §4.5).
/// Why a fixed few instead of iterating to convergence: a TIES/DARE-pruned ΔW has a flat tail,
/// so Ritz residuals shrink by only σ_{w+1}/σ_k per sweep and 7B modules ran to the old cap
/// of 200 sweeps; with `rank` + oversampling vectors, q power iterations already bring the
/// rank-k reconstruction within a factor (1 + O((σ_{w+1}/σ_k)^{2q})) of the optimum.
pub const POWER_ITERATIONS: usize = 4;
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
/// With `A_catᵀ = Q_a R_a` (orthonormal `Q_a` from a pivoted Cholesky of `A_cat A_catᵀ`) the
/// right singular vectors are `V = Q_a V'` where `V' Λ V'ᵀ = R_a (B_catᵀB_cat) R_aᵀ` (n × n),
/// and `U·S = ΔW·V = B_cat R_aᵀ V'`; no division by σ. Components beyond the numerical rank
/// are zero. The returned singular values are `‖U S e_i‖` for the kept ones, `√λ_i` after.
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
    // Why parallel: the two d × n → n × n Gram products dominate the cost.
    let mut sides: Vec<(Array2<f64>, Array2<f64>)> = [b_cat.view(), a_cat.t()]
        .into_par_iter()
        .map(|x| {
            let x = to_f64(x);
            let gram = crate::linalg::syrk(x.t());
            (x, gram)
        })
        .collect();
    let (a_t, gram_a) = sides.pop().unwrap_or_default();
    let (b, gram_b) = sides.pop().unwrap_or_default();
    let basis_a = gram_basis_from(a_t.view(), gram_a)?;

    let mut core = basis_a.r.dot(&gram_b).dot(&basis_a.r.t());
    symmetrize(&mut core);
    let (values, vectors) = sorted_eigh(core)?;
    let largest = values.first().copied().unwrap_or(0.0);
    // Directions below f32 resolution are noise of the eigensolver: leave them zero.
    let numerical_rank = values
        .iter()
        .take_while(|&&l| l > largest * RANK_RTOL)
        .count();
    let k = rank.min(numerical_rank);
    let v_k = vectors.slice(s![.., ..k]);
    let u_s = b.dot(&basis_a.r.t().dot(&v_k));
    let vt = basis_a.t.dot(&v_k).reversed_axes().dot(&a_t.t());
    let mut sigma = values.mapv(|l| {
        if l > largest * RANK_RTOL {
            l.sqrt()
        } else {
            0.0
        }
    });
    for (i, column) in u_s.axis_iter(Axis(1)).enumerate() {
        sigma[i] = column.dot(&column).sqrt();
    }
    Ok(assemble(u_s, vt, sigma, rank, d_out, d_in))
}

/// Truncated SVD of a dense `delta`, with PEFT's optional `svd_clamp` quantile.
///
/// Exact (f64 eigen-decomposition of the smaller Gram matrix) when the smaller side is at most
/// [`EXACT_DENSE_MAX_DIM`]; otherwise [`randomized_svd_truncate`]'s route.
pub fn dense_svd_truncate(
    delta: ArrayView2<f32>,
    rank: usize,
    clamp: Option<f64>,
) -> Result<TruncatedSvd, SvdError> {
    if !all_finite(delta) {
        return Err(SvdError::NonFinite);
    }
    let (d_out, d_in) = delta.dim();
    let (u_s, sigma, vt) = if d_out.min(d_in) <= EXACT_DENSE_MAX_DIM {
        exact_dense_svd(delta, rank)?
    } else {
        subspace_svd(delta, rank, POWER_ITERATIONS)?
    };
    let mut out = assemble(u_s, vt, sigma, rank, d_out, d_in);
    if let Some(q) = clamp {
        clamp_quantile(&mut out, q)?;
    }
    Ok(out)
}

/// The route [`dense_svd_truncate`] takes for large matrices, whatever the size: a randomized
/// range finder of `rank` + oversampling vectors from a fixed-seed block, a few power
/// iterations ([`POWER_ITERATIONS`] in the product; stopping early once the Ritz residuals reach ~1e-7·σ₁), Rayleigh–Ritz. Public
/// so that it can be checked against the exact route on small cases.
pub fn randomized_svd_truncate(
    delta: ArrayView2<f32>,
    rank: usize,
    power_iterations: usize,
    clamp: Option<f64>,
) -> Result<TruncatedSvd, SvdError> {
    if !all_finite(delta) {
        return Err(SvdError::NonFinite);
    }
    let (d_out, d_in) = delta.dim();
    let (u_s, sigma, vt) = subspace_svd(delta, rank, power_iterations)?;
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
pub(crate) struct GramBasis {
    /// `n × rank`: maps `x` onto its orthonormal basis.
    pub(crate) t: Array2<f64>,
    /// `rank × n`: coordinates of `x` in that basis.
    pub(crate) r: Array2<f64>,
}

/// Orthonormal basis of the column space of `x` (m × n, m ≫ n) from its Gram matrix.
pub(crate) fn gram_basis(x: ArrayView2<f64>) -> Result<GramBasis, SvdError> {
    gram_basis_from(x, crate::linalg::syrk(x.t()))
}

/// [`gram_basis`] with `gram = xᵀx` already computed (Cholesky-QR, twice when ill-conditioned).
fn gram_basis_from(x: ArrayView2<f64>, gram: Array2<f64>) -> Result<GramBasis, SvdError> {
    let (first, cond) = cholesky_basis(&gram)?;
    if cond <= REORTH_COND {
        return Ok(first);
    }
    let q1 = x.dot(&first.t);
    let (second, _) = cholesky_basis(&crate::linalg::syrk(q1.t()))?;
    Ok(GramBasis {
        t: first.t.dot(&second.t),
        r: second.r.dot(&first.r),
    })
}

/// Basis from a pivoted Cholesky `G = L Lᵀ` (L: n × rank): `r = Lᵀ`, and `t` is `L₁₁⁻ᵀ` on the
/// pivot rows (zero elsewhere) so that `tᵀ G t = I`. Pivoting makes it rank-revealing, so
/// rank-deficient factors (repeated adapters, an untrained LoRA's `B = 0`) just lose the null
/// directions. Also returns `(L₀₀ / L_last)²`, an estimate of `κ(G)`.
fn cholesky_basis(gram: &Array2<f64>) -> Result<(GramBasis, f64), SvdError> {
    if gram.iter().any(|v| !v.is_finite()) {
        return Err(SvdError::NonFinite);
    }
    let (pivots, l) = pivoted_cholesky(gram);
    let rank = l.ncols();
    let mut l11 = Array2::zeros((rank, rank));
    for (row, &p) in pivots.iter().take(rank).enumerate() {
        l11.row_mut(row).assign(&l.row(p));
    }
    let inverse = lower_triangular_inverse(&l11);
    let mut t = Array2::zeros((gram.nrows(), rank));
    for (row, &p) in pivots.iter().take(rank).enumerate() {
        t.row_mut(p).assign(&inverse.column(row));
    }
    let cond = match rank {
        0 => 1.0,
        _ => (l11[[0, 0]] / l11[[rank - 1, rank - 1]]).powi(2),
    };
    Ok((
        GramBasis {
            t,
            r: l.reversed_axes(),
        },
        cond,
    ))
}

/// Pivoted (rank-revealing) Cholesky of a PSD matrix: pivot order and `L` (n × rank, rows in
/// the original order) with `G ≈ L Lᵀ`; stops when the largest remaining pivot is below
/// `RANK_RTOL` times the largest diagonal entry.
fn pivoted_cholesky(g: &Array2<f64>) -> (Vec<usize>, Array2<f64>) {
    let n = g.nrows();
    // Row-major n × n, rows in the original order: each step's dot products run over two
    // contiguous row prefixes.
    let mut l = vec![0f64; n * n];
    let mut remaining: Vec<f64> = g.diag().to_vec();
    let mut pivots: Vec<usize> = (0..n).collect();
    let limit = remaining.iter().copied().fold(0.0, f64::max) * RANK_RTOL;
    let mut rank = 0;
    for j in 0..n {
        let best = (j..n).max_by(|&x, &y| remaining[pivots[x]].total_cmp(&remaining[pivots[y]]));
        let Some(best) = best else { break };
        let pivot_value = remaining[pivots[best]];
        // NaN cannot occur: the Gram matrix was checked to be finite.
        if pivot_value <= limit {
            break;
        }
        pivots.swap(j, best);
        let pj = pivots[j];
        let root = pivot_value.sqrt();
        l[pj * n + j] = root;
        for &i in &pivots[j + 1..] {
            let dot = crate::linalg::dot4(&l[i * n..i * n + j], &l[pj * n..pj * n + j]);
            let value = (g[[i, pj]] - dot) / root;
            l[i * n + j] = value;
            remaining[i] -= value * value;
        }
        rank = j + 1;
    }
    let l = Array2::from_shape_vec((n, n), l).unwrap_or_else(|_| Array2::zeros((n, n)));
    (pivots, l.slice(s![.., ..rank]).to_owned())
}

/// Inverse of a lower-triangular matrix with positive diagonal (forward substitution), row by
/// row: row r of the inverse is `−(L[r, ..r] · X[..r, ..]) / L[r, r]`, accumulated over the
/// rows of X already found (contiguous), adding the same terms in the same order as the
/// column-by-column recurrence.
fn lower_triangular_inverse(l: &Array2<f64>) -> Array2<f64> {
    let n = l.nrows();
    let mut inv = vec![0f64; n * n];
    let mut acc = vec![0f64; n];
    for row in 0..n {
        acc[..row].fill(0.0);
        let (done, rest) = inv.split_at_mut(row * n);
        for k in 0..row {
            let lk = l[[row, k]];
            for (a, x) in acc[..=k].iter_mut().zip(&done[k * n..=k * n + k]) {
                *a += lk * x;
            }
        }
        let d = l[[row, row]];
        for (x, a) in rest[..row].iter_mut().zip(&acc[..row]) {
            *x = -a / d;
        }
        rest[row] = 1.0 / d;
    }
    Array2::from_shape_vec((n, n), inv).unwrap_or_else(|_| Array2::zeros((n, n)))
}

/// Explicit orthonormal basis of the columns of `x`.
fn orthonormal(x: ArrayView2<f64>) -> Result<Array2<f64>, SvdError> {
    Ok(x.dot(&gram_basis(x)?.t))
}

/// `m·v = U·diag(σ)`, `v` and `σ` (descending) of a small matrix, from `eigh(mᵀm)` in f64.
///
/// Why not linfa-linalg's SVD: 0.2.1 returned a wrong σ₁ (Σσ² ≠ ‖m‖²_F) on rank-deficient
/// inputs. Returning `m·v` instead of `U` avoids dividing by small singular values.
struct SmallSvd {
    /// `q × r` right singular vectors.
    v: Array2<f64>,
    /// `p × r`: `m·v`, the left singular vectors scaled by σ.
    mv: Array2<f64>,
    /// `r = min(p, q)` singular values, descending.
    sigma: Array1<f64>,
}

fn small_svd(m: ArrayView2<f64>) -> Result<SmallSvd, SvdError> {
    let (p, q) = m.dim();
    if p == 0 || q == 0 {
        return Ok(SmallSvd {
            v: Array2::zeros((q, 0)),
            mv: Array2::zeros((p, 0)),
            sigma: Array1::zeros(0),
        });
    }
    let mut gram = m.t().dot(&m);
    symmetrize(&mut gram);
    let (_, vectors) = sorted_eigh(gram)?;
    let v = vectors.slice(s![.., ..p.min(q)]).to_owned();
    let mv = m.dot(&v);
    // ‖m·v_i‖ keeps relative accuracy for small σ, unlike sqrt(λ_i).
    let sigma = mv.axis_iter(Axis(1)).map(|c| c.dot(&c).sqrt()).collect();
    Ok(SmallSvd { v, mv, sigma })
}

/// `(U_k·S_k, S, V_kᵀ)` of a dense matrix whose smaller side is small, exactly (f64).
fn exact_dense_svd(d: ArrayView2<f32>, rank: usize) -> Result<Triplets, SvdError> {
    let (d_out, d_in) = d.dim();
    if d_in <= d_out {
        let svd = small_svd(to_f64(d).view())?;
        let k = rank.min(svd.sigma.len());
        let vt = svd.v.slice(s![.., ..k]).t().to_owned();
        return Ok((svd.mv.slice(s![.., ..k]).to_owned(), svd.sigma, vt));
    }
    // Wide matrix: decompose the transpose (small Gram d_out × d_out) and swap the roles.
    let svd = small_svd(to_f64(d.t()).view())?;
    let k = rank.min(svd.sigma.len());
    let floor = svd.sigma.first().copied().unwrap_or(0.0) * SIGMA_RTOL;
    let mut u_s = svd.v.slice(s![.., ..k]).to_owned();
    let mut vt = svd.mv.slice(s![.., ..k]).t().to_owned();
    for (i, &sigma) in svd.sigma.iter().take(k).enumerate() {
        if sigma > floor {
            u_s.column_mut(i).mapv_inplace(|x| x * sigma);
            vt.row_mut(i).mapv_inplace(|x| x / sigma);
        } else {
            // Why: below f32 resolution the direction is noise; dividing would amplify it.
            u_s.column_mut(i).fill(0.0);
            vt.row_mut(i).fill(0.0);
        }
    }
    Ok((u_s, svd.sigma, vt))
}

/// `(U_k·S_k, S, V_kᵀ)` in f64.
type Triplets = (Array2<f64>, Array1<f64>, Array2<f64>);

/// Top-`rank` singular triplets of a large dense matrix by subspace iteration.
///
/// The big products run in f32 (the data is f32), the orthogonalisations in f64.
fn subspace_svd(
    d: ArrayView2<f32>,
    rank: usize,
    power_iterations: usize,
) -> Result<Triplets, SvdError> {
    let (d_out, d_in) = d.dim();
    let width = (rank + rank.max(SUBSPACE_MIN_OVERSAMPLE)).min(d_out.min(d_in));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SUBSPACE_SEED);
    let start = Array2::from_shape_simple_fn((d_in, width), || rng.gen_range(-1.0..1.0));
    let mut p = orthonormal(start.view())?;
    let mut previous_error = f64::INFINITY;
    // Sweep 0 is the range finder, each later sweep one power iteration.
    let sweeps = power_iterations + 1;
    for sweep in 0..sweeps {
        // D·p = q·R, so the Ritz triplets of D on (q, p) are those of the small R.
        let y = to_f64(matmul_f32(d, to_f32(&p).view()).view());
        let basis = gram_basis(y.view())?;
        let q = y.dot(&basis.t);
        let svd = small_svd(basis.r.view())?;
        let k = rank.min(svd.sigma.len());
        let top = svd.sigma.first().copied().unwrap_or(0.0);
        if k == 0 || top <= 0.0 {
            return Ok((
                Array2::zeros((d_out, 0)),
                svd.sigma,
                Array2::zeros((0, d_in)),
            ));
        }
        let v_k = p.dot(&svd.v.slice(s![.., ..k]));
        let finish = |svd: SmallSvd, v_k: Array2<f64>| {
            let u_s = q.dot(&svd.mv.slice(s![.., ..k]));
            (u_s, svd.sigma, v_k.reversed_axes())
        };
        // Why no `Dᵀq` on the last sweep: the result is taken from (q, p), and `Dᵀq` would
        // only feed the residual test, one of the largest products, for nothing.
        if sweep + 1 == sweeps {
            return Ok(finish(svd, v_k));
        }
        let z = to_f64(matmul_f32(d.t(), to_f32(&q).view()).view());
        let error = ritz_residual(&z, &svd, &v_k, k) / top;
        let stalled = sweep >= 2 && error >= previous_error && error <= SUBSPACE_STALL_TOL;
        if error <= SUBSPACE_TOL || stalled {
            return Ok(finish(svd, v_k));
        }
        previous_error = error;
        p = orthonormal(z.view())?;
    }
    Err(SvdError::Linalg("subspace iteration did not run".into()))
}

/// `max_i ‖Dᵀu_i − σ_i v_i‖` with `Dᵀq = z` and `u_i σ_i = q·(R v)_i`.
fn ritz_residual(z: &Array2<f64>, svd: &SmallSvd, v_k: &Array2<f64>, k: usize) -> f64 {
    let scaled = z.dot(&svd.mv.slice(s![.., ..k]));
    (0..k)
        .filter(|&i| svd.sigma[i] > 0.0)
        .map(|i| {
            let sigma = svd.sigma[i];
            let r = &scaled.column(i) / sigma - &v_k.column(i) * sigma;
            r.dot(&r).sqrt()
        })
        .fold(0.0, f64::max)
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

/// Eigen-decomposition of a symmetric matrix, eigenvalues descending.
fn sorted_eigh(m: Array2<f64>) -> Result<(Array1<f64>, Array2<f64>), SvdError> {
    if m.iter().any(|v| !v.is_finite()) {
        return Err(SvdError::NonFinite);
    }
    if m.is_empty() {
        return Ok((Array1::zeros(0), m));
    }
    // The project's solver: linfa-linalg 0.2.1's eigh returns wrong spectra on some inputs
    // (see `crate::gram`).
    let eig = crate::gram::sym_eigen(m.view()).map_err(|e| SvdError::Linalg(e.to_string()))?;
    Ok((eig.values, eig.vectors))
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

/// Whether no entry is NaN or infinite. Why not `iter().any`: its early exit kept the scan
/// scalar, a full extra pass over the dense matrix per module; a max of the magnitude bits
/// vectorises (NaN and ±∞ are exactly the magnitudes from the all-ones exponent up).
fn all_finite(x: ArrayView2<f32>) -> bool {
    const NON_FINITE: u32 = 0x7f80_0000;
    match x.as_slice_memory_order() {
        Some(values) => {
            let largest = values
                .iter()
                .fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
            largest < NON_FINITE
        }
        None => x.iter().all(|v| v.is_finite()),
    }
}

fn to_f64(x: ArrayView2<f32>) -> Array2<f64> {
    x.mapv(f64::from)
}

fn to_f32(x: &Array2<f64>) -> Array2<f32> {
    x.mapv(|v| v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triangular_inverse_adds_what_the_column_recurrence_adds() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        for n in [1, 2, 7, 33] {
            let l = Array2::from_shape_fn((n, n), |(i, j)| match i.cmp(&j) {
                std::cmp::Ordering::Less => 0.0,
                std::cmp::Ordering::Equal => rng.gen_range(0.5..2.0),
                std::cmp::Ordering::Greater => rng.gen_range(-1.0..1.0),
            });
            // The textbook recurrence, column by column.
            let mut expect = Array2::<f64>::zeros((n, n));
            for col in 0..n {
                expect[[col, col]] = 1.0 / l[[col, col]];
                for row in col + 1..n {
                    let dot: f64 = (col..row).map(|c| l[[row, c]] * expect[[c, col]]).sum();
                    expect[[row, col]] = -dot / l[[row, row]];
                }
            }
            let inv = lower_triangular_inverse(&l);
            assert_eq!(inv, expect, "n {n}");
            let id = l.dot(&inv);
            assert!(id
                .indexed_iter()
                .all(|((i, j), v)| (v - f64::from(u8::from(i == j))).abs() < 1e-9));
        }
    }

    #[test]
    fn pivoted_cholesky_factors_a_gram_matrix_and_stops_at_its_rank() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        // 9 vectors spanning 6 dimensions: rank 6.
        let base = Array2::from_shape_simple_fn((6, 40), || rng.gen_range(-1.0..1.0));
        let mix = Array2::from_shape_simple_fn((9, 6), || rng.gen_range(-1.0..1.0));
        let x: Array2<f64> = mix.dot(&base);
        let g = x.dot(&x.t());
        let (pivots, l) = pivoted_cholesky(&g);
        assert_eq!(l.ncols(), 6);
        let err = (&l.dot(&l.t()) - &g)
            .mapv(f64::abs)
            .fold(0.0, |m: f64, v| m.max(*v));
        assert!(
            err < 1e-9 * g.diag().fold(0.0, |m: f64, v| m.max(*v)),
            "{err}"
        );
        // Each pivot was the largest remaining diagonal: L's diagonal does not grow.
        let diag: Vec<f64> = (0..6).map(|j| l[[pivots[j], j]]).collect();
        assert!(
            diag.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-12)),
            "{diag:?}"
        );
    }

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
        let (exact_us, exact_s, exact_vt) = exact_dense_svd(d.view(), 12).expect("exact");
        let (iter_us, iter_s, iter_vt) =
            subspace_svd(d.view(), 12, POWER_ITERATIONS).expect("subspace");
        for i in 0..12 {
            assert!((iter_s[i] - exact_s[i]).abs() <= 1e-5 * exact_s[i], "σ_{i}");
        }
        let exact = assemble(exact_us, exact_vt, exact_s, 12, 420, 450);
        let iter = assemble(iter_us, iter_vt, iter_s, 12, 420, 450);
        assert!(rel(&delta_of(&iter), &delta_of(&exact)) < 1e-4);
    }

    #[test]
    fn wide_and_tall_exact_paths_agree() {
        let d = decaying(30, 50, 8);
        let wide = dense_svd_truncate(d.view(), 6, None).expect("wide");
        let tall = dense_svd_truncate(d.t(), 6, None).expect("tall");
        assert!(rel(&delta_of(&wide), &delta_of(&tall).reversed_axes()) < 1e-6);
        let fro2: f64 = d.iter().map(|&v| f64::from(v).powi(2)).sum();
        let sum2: f64 = wide.singular_values.iter().map(|s| s * s).sum();
        assert!((fro2 - sum2).abs() < 1e-9 * fro2);
    }

    #[test]
    fn all_finite_rejects_nan_and_infinities_in_any_layout() {
        let mut m = Array2::from_elem((3, 4), -f32::MAX);
        m[[1, 2]] = f32::MIN_POSITIVE / 2.0;
        assert!(all_finite(m.view()) && all_finite(m.t()));
        assert!(all_finite(m.slice(s![.., ..;2])));
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut b = m.clone();
            b[[2, 1]] = bad;
            assert!(!all_finite(b.view()) && !all_finite(b.t()), "{bad}");
            assert!(!all_finite(b.slice(s![.., 1..;2])), "{bad} strided");
        }
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
