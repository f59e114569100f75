//! The core space of one module (Panariello et al., NeurIPS 2025, arXiv 2509.17786).
//!
//! Every task delta `ΔW_j = c_j B_j A_j` lies in `span(B_cat) × span(A_catᵀ)`. With orthonormal
//! bases `U_B` (d_out × n_B) and `V_A` (d_in × n_A) of those spans — the left singular vectors
//! of `B_cat` and of `A_catᵀ` — each task is the small matrix `M_j = U_Bᵀ ΔW_j V_A`, and a merge
//! computed on the `M_j` maps back exactly: `ΔW = U_B M V_Aᵀ`. No `d_out × d_in` matrix is
//! ever formed: the bases come from Gram matrices (Cholesky-QR) and n × n SVDs.

use std::ops::Range;

use ndarray::{s, Array1, Array2, ArrayView2, Axis};

use super::lowrank_svd::gram_basis;
use super::MethodError;
use crate::linalg::{svd, svd_of_product, Svd};

/// Singular values of `B_cat` / `A_catᵀ` below this fraction of the largest are not part of
/// the basis (methods.md §1).
const BASIS_RTOL: f64 = 1e-12;
/// Singular values of a merged core below this fraction of the largest are not written
/// (methods.md: `RANK_RTOL`).
pub const RANK_RTOL: f64 = 1e-9;

/// One task of a module: its units as rows and the factor that scales its product.
#[derive(Debug, Clone)]
pub struct CoreTask {
    /// `r × d_in`: the rows of `A_j`.
    pub a: Array2<f64>,
    /// `r × d_out`: the columns of `B_j`, as rows.
    pub b: Array2<f64>,
    /// `c_j = w_j s_j`: weight times the adapter's scaling.
    pub scale: f64,
}

/// A module's tasks stacked: rows of `A_j`, then of `B_jᵀ`, task after task.
#[derive(Debug, Clone)]
pub struct StackedTasks {
    /// `N × d_in`.
    pub a_cat: Array2<f64>,
    /// `N × d_out`.
    pub b_rows: Array2<f64>,
    /// Per task: its rank (rows), in order.
    pub ranks: Vec<usize>,
    /// Per task: `c_j`.
    pub scales: Vec<f64>,
}

/// A module's tasks with the bases of its core space.
#[derive(Debug, Clone)]
pub struct CoreSpace {
    /// `N × d_in`, the tasks' A rows stacked (unscaled).
    a_cat: Array2<f64>,
    /// `N × d_out`, the tasks' B columns as rows (unscaled).
    b_rows: Array2<f64>,
    ranges: Vec<Range<usize>>,
    scales: Vec<f64>,
    /// `N × n_B`: `U_B = B_cat · to_ub`.
    to_ub: Array2<f64>,
    /// `N × n_A`: `V_A = A_catᵀ · to_va`.
    to_va: Array2<f64>,
    /// `n_B × N`: `U_Bᵀ B_cat`.
    bc: Array2<f64>,
    /// `N × n_A`: `A_cat V_A`.
    ac: Array2<f64>,
}

/// Which orthonormal bases of the two spans a core space uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreBasis {
    /// The singular vectors of `B_cat` and `A_catᵀ`: what methods that read the core
    /// entry by entry (core TIES, LEGO's L∞ reweighting) are defined in.
    Singular,
    /// Any orthonormal basis (the Cholesky-QR one): for methods whose `ΔW` is the same in
    /// every basis, which saves two n × n SVDs per module.
    Any,
}

/// A basis of the column space of `x` (d × N) as `U = x · to_u`, and `Uᵀ x`.
fn basis_of(
    x: ArrayView2<f64>,
    kind: CoreBasis,
) -> Result<(Array2<f64>, Array2<f64>), MethodError> {
    // x = q r with q = x t orthonormal; the SVD of the small r gives the singular vectors of x
    // (U = q u).
    let basis = gram_basis(x)?;
    if kind == CoreBasis::Any {
        return Ok((basis.t, basis.r));
    }
    let d = svd(basis.r.view())?;
    let n = d.rank(BASIS_RTOL);
    let u = d.u.slice(s![.., ..n]);
    let to_u = basis.t.dot(&u);
    let coords = u.t().dot(&basis.r);
    Ok((to_u, coords))
}

impl CoreSpace {
    /// Builds the core space of `tasks` (all of one module, same shapes) in the singular bases.
    pub fn new(tasks: &[CoreTask]) -> Result<Self, MethodError> {
        Self::with_basis(tasks, CoreBasis::Singular)
    }

    /// [`CoreSpace::new`] in the bases `kind`.
    pub fn with_basis(tasks: &[CoreTask], kind: CoreBasis) -> Result<Self, MethodError> {
        let Some(first) = tasks.first() else {
            return Err(MethodError::Invalid(
                "a module with no task to merge".into(),
            ));
        };
        let (d_in, d_out) = (first.a.ncols(), first.b.ncols());
        if let Some(t) = tasks
            .iter()
            .find(|t| t.a.ncols() != d_in || t.b.ncols() != d_out || t.a.nrows() != t.b.nrows())
        {
            return Err(MethodError::Invalid(format!(
                "task shapes differ: A {:?} and B rows {:?}, expected [r, {d_in}] and [r, {d_out}]",
                t.a.dim(),
                t.b.dim()
            )));
        }
        let stacked = StackedTasks {
            a_cat: join_views(Axis(0), tasks.iter().map(|t| t.a.view()))?,
            b_rows: join_views(Axis(0), tasks.iter().map(|t| t.b.view()))?,
            ranks: tasks.iter().map(|t| t.a.nrows()).collect(),
            scales: tasks.iter().map(|t| t.scale).collect(),
        };
        Self::from_stacked(stacked, kind)
    }

    /// The core space of tasks already stacked (the engine gathers them in one copy).
    pub fn from_stacked(tasks: StackedTasks, kind: CoreBasis) -> Result<Self, MethodError> {
        let StackedTasks {
            a_cat,
            b_rows,
            ranks,
            scales,
        } = tasks;
        if ranks.iter().sum::<usize>() != a_cat.nrows()
            || a_cat.nrows() != b_rows.nrows()
            || ranks.len() != scales.len()
        {
            return Err(MethodError::Invalid(format!(
                "stacked tasks of ranks {ranks:?}: A {:?}, B rows {:?}, {} scales",
                a_cat.dim(),
                b_rows.dim(),
                scales.len()
            )));
        }
        let mut ranges = Vec::with_capacity(ranks.len());
        let mut row = 0;
        for r in ranks {
            ranges.push(row..row + r);
            row += r;
        }
        let (to_ub, bc) = basis_of(b_rows.t(), kind)?;
        let (to_va, ac_t) = basis_of(a_cat.t(), kind)?;
        Ok(CoreSpace {
            scales,
            ranges,
            a_cat,
            b_rows,
            to_ub,
            to_va,
            bc,
            ac: ac_t.reversed_axes(),
        })
    }

    /// Number of tasks T.
    pub fn n_tasks(&self) -> usize {
        self.ranges.len()
    }

    /// `(n_B, n_A)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.bc.nrows(), self.ac.ncols())
    }

    /// Rank of task j.
    pub fn rank(&self, j: usize) -> usize {
        self.ranges[j].len()
    }

    /// `d_in`.
    pub fn d_in(&self) -> usize {
        self.a_cat.ncols()
    }

    /// `M_j = c_j (U_Bᵀ B_j)(A_j V_A)`.
    pub fn core(&self, j: usize) -> Array2<f64> {
        let r = self.ranges[j].clone();
        let left = self.bc.slice(s![.., r.clone()]);
        let right = self.ac.slice(s![r, ..]);
        left.dot(&right) * self.scales[j]
    }

    /// The thin SVD of `M_j` from its rank-r_j factors (r_j triplets), without an n × n SVD.
    pub fn core_svd(&self, j: usize) -> Result<Svd, MethodError> {
        let r = self.ranges[j].clone();
        let left = self
            .bc
            .slice(s![.., r.clone()])
            .mapv(|v| v * self.scales[j]);
        let right = self.ac.slice(s![r, ..]);
        Ok(svd_of_product(left.view(), right)?)
    }

    /// Every task's core matrix, in task order.
    pub fn cores(&self) -> Vec<Array2<f64>> {
        (0..self.n_tasks()).map(|j| self.core(j)).collect()
    }

    /// `U_B` (d_out × n_B), explicitly.
    pub fn u_b(&self) -> Array2<f64> {
        self.b_rows.t().dot(&self.to_ub)
    }

    /// `V_A` (d_in × n_A), explicitly.
    pub fn v_a(&self) -> Array2<f64> {
        self.a_cat.t().dot(&self.to_va)
    }

    /// The task's own unscaled factors `(B_j, A_j)`; `ΔW_j = c_j B_j A_j`.
    pub fn task_factors(&self, j: usize) -> (Array2<f64>, Array2<f64>) {
        let r = self.ranges[j].clone();
        let b = self.b_rows.slice(s![r.clone(), ..]).t().to_owned();
        (b, self.a_cat.slice(s![r, ..]).to_owned())
    }

    /// The unit rows of task j in the stacked factors.
    pub fn range(&self, j: usize) -> Range<usize> {
        self.ranges[j].clone()
    }

    /// Every stacked unit in core coordinates, unscaled: `(U_Bᵀ B_cat, A_cat V_A)`.
    pub fn unit_coordinates(&self) -> (&Array2<f64>, &Array2<f64>) {
        (&self.bc, &self.ac)
    }

    /// `c_j`, the factor of task j's product.
    pub fn scale(&self, j: usize) -> f64 {
        self.scales[j]
    }

    /// Writes `ΔW = U_B m V_Aᵀ` as LoRA factors `(A' r × d_in, B' d_out × r)` with the singular
    /// values split as √σ onto both (methods.md §2.3).
    pub fn lift(&self, m: ArrayView2<f64>) -> Result<LoraFactors, MethodError> {
        self.lift_svd(svd(m)?)
    }

    /// [`CoreSpace::lift`] of the core `U diag(σ) Vᵀ` given by its SVD `d` (σ ≥ 0, triplets in
    /// any order: they are put in decreasing order first).
    pub fn lift_svd(&self, d: Svd) -> Result<LoraFactors, MethodError> {
        let mut order: Vec<usize> = (0..d.s.len()).collect();
        order.sort_by(|&x, &y| d.s[y].total_cmp(&d.s[x]));
        let d = match order.iter().enumerate().all(|(i, &j)| i == j) {
            true => d,
            false => Svd {
                u: d.u.select(Axis(1), &order),
                s: d.s.select(Axis(0), &order),
                v: d.v.select(Axis(1), &order),
            },
        };
        let k = d.rank(RANK_RTOL).max(1).min(d.s.len());
        if k == 0 {
            // No core at all (every B or A is zero): a zero rank-1 update keeps the module.
            return Ok(LoraFactors {
                a: Array2::zeros((1, self.d_in())),
                b: Array2::zeros((self.b_rows.ncols(), 1)),
            });
        }
        let root: Array1<f64> = d.s.slice(s![..k]).mapv(f64::sqrt);
        let left = &d.u.slice(s![.., ..k]) * &root.view().insert_axis(Axis(0));
        let right = &d.v.slice(s![.., ..k]) * &root.view().insert_axis(Axis(0));
        let b = self.b_rows.t().dot(&self.to_ub.dot(&left));
        let a = self.to_va.dot(&right).t().dot(&self.a_cat);
        Ok(LoraFactors::from_f64(&a, &b))
    }
}

/// `parts` side by side (`Axis(1)`) or stacked (`Axis(0)`); the shapes come from one module,
/// so a mismatch is a bug reported as an invalid input rather than a panic.
pub fn join(axis: Axis, parts: &[Array2<f64>]) -> Result<Array2<f64>, MethodError> {
    join_views(axis, parts.iter().map(|p| p.view()))
}

/// [`join`] of views, so parts held elsewhere are copied once.
fn join_views<'a>(
    axis: Axis,
    parts: impl Iterator<Item = ArrayView2<'a, f64>>,
) -> Result<Array2<f64>, MethodError> {
    let views: Vec<_> = parts.collect();
    ndarray::concatenate(axis, &views).map_err(|e| MethodError::Invalid(e.to_string()))
}

/// Merged factors of one module, `ΔW = B·A`, as written.
#[derive(Debug, Clone)]
pub struct LoraFactors {
    /// `r × d_in`.
    pub a: Array2<f32>,
    /// `d_out × r`.
    pub b: Array2<f32>,
}

impl LoraFactors {
    /// Narrows f64 factors to f32.
    pub fn from_f64(a: &Array2<f64>, b: &Array2<f64>) -> Self {
        LoraFactors {
            a: a.mapv(|v| v as f32),
            b: b.mapv(|v| v as f32),
        }
    }
}

/// Writes `ΔW = l·r` (l: d_out × q, r: q × d_in) as balanced LoRA factors: thin bases of `l`
/// and `rᵀ`, an SVD of the q × q middle, √σ onto both sides (methods.md §2.3).
pub fn balanced_factors(
    l: ArrayView2<f64>,
    r: ArrayView2<f64>,
) -> Result<LoraFactors, MethodError> {
    let left = gram_basis(l)?;
    let right = gram_basis(r.t())?;
    let middle = left.r.dot(&right.r.t());
    let d = svd(middle.view())?;
    let k = d.rank(RANK_RTOL).max(1).min(d.s.len());
    if k == 0 {
        return Ok(LoraFactors {
            a: Array2::zeros((1, r.ncols())),
            b: Array2::zeros((l.nrows(), 1)),
        });
    }
    let root: Array1<f64> = d.s.slice(s![..k]).mapv(f64::sqrt);
    let u = &d.u.slice(s![.., ..k]) * &root.view().insert_axis(Axis(0));
    let v = &d.v.slice(s![.., ..k]) * &root.view().insert_axis(Axis(0));
    let b = l.dot(&left.t.dot(&u));
    let a = right.t.dot(&v).t().dot(&r);
    Ok(LoraFactors::from_f64(&a, &b))
}
