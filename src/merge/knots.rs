//! KnOTS (Stoica et al., ICLR 2025, arXiv 2410.19735; methods.md §5): one SVD of all task
//! deltas side by side, `[ΔW_1 | … | ΔW_T] = U σ [V_1ᵀ | … | V_Tᵀ]`, then TIES (optionally
//! after DARE, Yu et al., ICML 2024, arXiv 2311.03099) on the per-task right factors
//! `Z_j = σ V_jᵀ` in the input coordinates. The SVD is computed through the core.

use ndarray::{s, Array2, Axis};
use rand::Rng;

use super::baselines::stream_rng;
use super::core_space::{join, CoreBasis, CoreSpace, RANK_RTOL};
use super::method::{CoreMethod, Merged, MethodSpec};
use super::ties::ties;
use super::MethodError;
use crate::linalg::svd;

/// KnOTS-TIES: fraction kept (the reference configs for LoRA).
pub const TIES_DEFAULT_KEEP: f64 = 0.2;
/// KnOTS-TIES: λ.
pub const TIES_DEFAULT_LAMBDA: f64 = 0.6;
/// KnOTS-DARE-TIES: DARE's drop rate p.
pub const DARE_DEFAULT_DROP: f64 = 0.1;
/// KnOTS-DARE-TIES: λ.
pub const DARE_TIES_DEFAULT_LAMBDA: f64 = 0.7;

/// Where DARE's keep masks come from.
#[derive(Debug, Clone)]
pub enum Dare {
    /// Drawn from the module's seed: an entry survives when u ≥ p.
    Seeded {
        /// p.
        drop: f64,
    },
    /// Given (one `R × d_in` mask per task), e.g. a reference implementation's draws.
    Masks {
        /// p.
        drop: f64,
        /// Per task, true where the entry survives.
        keep: Vec<Array2<bool>>,
    },
}

/// KnOTS with its parameters.
#[derive(Debug, Clone)]
pub struct Knots {
    /// TIES: fraction kept.
    pub keep: f64,
    /// λ.
    pub lambda: f64,
    /// DARE before TIES, if any.
    pub dare: Option<Dare>,
}

/// KnOTS-TIES, registered as `knots_ties`.
pub static KNOTS_TIES: MethodSpec = MethodSpec {
    name: "knots_ties",
    default_scale: TIES_DEFAULT_LAMBDA,
    default_density: Some(TIES_DEFAULT_KEEP),
    basis: CoreBasis::Any,
    build: |p| {
        Box::new(Knots {
            keep: p.density,
            lambda: p.scale,
            dare: None,
        })
    },
};

/// KnOTS-DARE-TIES, registered as `knots_dare_ties`: its density is DARE's keep probability.
pub static KNOTS_DARE_TIES: MethodSpec = MethodSpec {
    name: "knots_dare_ties",
    default_scale: DARE_TIES_DEFAULT_LAMBDA,
    default_density: Some(1.0 - DARE_DEFAULT_DROP),
    basis: CoreBasis::Any,
    build: |p| {
        Box::new(Knots {
            keep: 1.0,
            lambda: p.scale,
            dare: Some(Dare::Seeded {
                drop: 1.0 - p.density,
            }),
        })
    },
};

impl Knots {
    fn apply_dare(&self, z: &mut Array2<f64>, task: usize, seed: u64) -> Result<(), MethodError> {
        let Some(dare) = &self.dare else {
            return Ok(());
        };
        match dare {
            Dare::Seeded { drop } => {
                let rescale = 1.0 / (1.0 - drop);
                let mut rng = stream_rng(seed, task as u64);
                z.iter_mut().for_each(|v| {
                    *v = if rng.gen::<f64>() >= *drop {
                        *v * rescale
                    } else {
                        0.0
                    };
                });
            }
            Dare::Masks { drop, keep } => {
                let mask = keep
                    .get(task)
                    .filter(|m| m.dim() == z.dim())
                    .ok_or_else(|| {
                        MethodError::Invalid(format!(
                            "DARE mask of task {task} missing or not {:?}",
                            z.dim()
                        ))
                    })?;
                let rescale = 1.0 / (1.0 - drop);
                ndarray::Zip::from(z)
                    .and(mask)
                    .for_each(|v, &k| *v = if k { *v * rescale } else { 0.0 });
            }
        }
        Ok(())
    }
}

impl CoreMethod for Knots {
    fn merge(&self, core: &CoreSpace, seed: u64) -> Result<Merged, MethodError> {
        let cores = core.cores();
        let joint = join(Axis(1), &cores)?;
        let d = svd(joint.view())?;
        let rank = d.rank(RANK_RTOL);
        let (_, n_a) = core.dims();
        let v_a = core.v_a();
        let sigma = d.s.slice(s![..rank]);
        let mut zs = Vec::with_capacity(cores.len());
        for j in 0..cores.len() {
            // Z_j = diag(σ) W_jᵀ V_Aᵀ, W_j = rows j·n_A.. of the right singular vectors.
            let w_j = d.v.slice(s![j * n_a..(j + 1) * n_a, ..rank]);
            let mut z = (&w_j.t() * &sigma.insert_axis(Axis(1))).dot(&v_a.t());
            self.apply_dare(&mut z, j, seed)?;
            zs.push(z);
        }
        let z_views: Vec<_> = zs.iter().map(|z| z.view()).collect();
        let z = ties(&z_views, self.keep, self.lambda);
        let l = core.u_b().dot(&d.u.slice(s![.., ..rank]));
        Ok(Merged::Factors { l, r: z })
    }
}
