//! TIES in core space (methods.md §4): TIES-merging of the core matrices `M_j`. Trimming and
//! sign election are entry-wise, so this depends on the basis: the SVD bases of
//! [`CoreSpace`], as in the Core Space reference.

use super::core_space::{CoreBasis, CoreSpace};
use super::method::{CoreMethod, Merged, MethodSpec};
use super::ties::ties;
use super::MethodError;

/// Fraction kept: the Core Space reference's TIES default (top 30 %).
pub const DEFAULT_KEEP: f64 = 0.3;
/// λ: the Core Space reference's TIES scaling.
pub const DEFAULT_LAMBDA: f64 = 0.6;

/// Core TIES with its parameters.
#[derive(Debug, Clone, Copy)]
pub struct CoreTies {
    /// Fraction of each task's entries kept.
    pub keep: f64,
    /// λ.
    pub lambda: f64,
}

/// TIES in core space, registered as `core_ties`.
pub static SPEC: MethodSpec = MethodSpec {
    name: "core_ties",
    default_scale: DEFAULT_LAMBDA,
    default_density: Some(DEFAULT_KEEP),
    basis: CoreBasis::Singular,
    build: |p| {
        Box::new(CoreTies {
            keep: p.density,
            lambda: p.scale,
        })
    },
};

impl CoreMethod for CoreTies {
    fn merge(&self, core: &CoreSpace, _seed: u64) -> Result<Merged, MethodError> {
        let cores = core.cores();
        let views: Vec<_> = cores.iter().map(|m| m.view()).collect();
        Ok(Merged::Core(ties(&views, self.keep, self.lambda)))
    }
}
