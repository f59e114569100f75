//! Task arithmetic (Ilharco et al., ICLR 2023, arXiv 2212.04089): `ΔW = λ Σ_j ΔW_j`, written
//! exactly as the concatenated factors (no SVD), `√|λ c_j|` folded into both halves.

use ndarray::{Array2, Axis};

use super::core_space::{join, CoreBasis, CoreSpace, LoraFactors};
use super::method::{CoreMethod, Merged, MethodSpec};
use super::MethodError;

/// λ: the TIES paper's value for when no validation data exists (methods.md §3); on
/// bench-quality's validation split it scored 80.5 against 68.6 for the plain sum (README).
pub const DEFAULT_LAMBDA: f64 = 0.4;

/// Task arithmetic with its coefficient.
#[derive(Debug, Clone, Copy)]
pub struct TaskArithmetic {
    /// λ.
    pub lambda: f64,
}

/// Task arithmetic, registered as `task_arithmetic`.
pub static SPEC: MethodSpec = MethodSpec {
    name: "task_arithmetic",
    default_scale: DEFAULT_LAMBDA,
    default_density: None,
    basis: CoreBasis::Any,
    build: |p| Box::new(TaskArithmetic { lambda: p.scale }),
};

impl CoreMethod for TaskArithmetic {
    fn merge(&self, core: &CoreSpace, _seed: u64) -> Result<Merged, MethodError> {
        let mut a_parts = Vec::with_capacity(core.n_tasks());
        let mut b_parts = Vec::with_capacity(core.n_tasks());
        for j in 0..core.n_tasks() {
            // Split |λ c_j| evenly so an F16 output stays in range.
            let (b, a) = core.task_factors(j);
            let c = core.scale(j) * self.lambda;
            let root = c.abs().sqrt();
            b_parts.push(b * (c.signum() * root));
            a_parts.push(a * root);
        }
        let a = join(Axis(0), &a_parts)?;
        let b = join(Axis(1), &b_parts)?;
        let mut core_sum = Array2::zeros(core.dims());
        for m in core.cores() {
            core_sum += &m;
        }
        Ok(Merged::Exact {
            factors: LoraFactors::from_f64(&a, &b),
            core: core_sum * self.lambda,
        })
    }
}
