//! What every core-space merge method is: one type behind [`CoreMethod`], described by one
//! [`MethodSpec`] in its own file (name, published defaults, constructor). Registering a method
//! is one line in [`super::data_free::REGISTRY`].

use ndarray::{Array2, ArrayView2};

use super::core_space::{balanced_factors, CoreBasis, CoreSpace, LoraFactors};
use super::MethodError;
use crate::linalg::Svd;

/// What a method returns for one module.
#[derive(Debug, Clone)]
pub enum Merged {
    /// A core matrix `M`: `ΔW = U_B M V_Aᵀ`.
    Core(Array2<f64>),
    /// `ΔW = l·r` in the full space (l: d_out × q, r: q × d_in).
    Factors {
        /// Left factor.
        l: Array2<f64>,
        /// Right factor.
        r: Array2<f64>,
    },
    /// A core matrix `M` together with an SVD of it that its construction gave (triplets in
    /// any order), so writing it needs no SVD of its own.
    Spectral {
        /// `M`, for the figures.
        core: Array2<f64>,
        /// `M = U diag(σ) Vᵀ`, σ ≥ 0.
        svd: Svd,
    },
    /// Factors written as they are (exact forms, no SVD), with the same `ΔW` as a core `M`
    /// for the figures.
    Exact {
        /// What is written.
        factors: LoraFactors,
        /// `ΔW = U_B core V_Aᵀ`.
        core: Array2<f64>,
    },
}

impl Merged {
    /// A core matrix, with its SVD when one is known.
    pub fn core_with(core: Array2<f64>, svd: Option<Svd>) -> Self {
        match svd {
            Some(svd) => Merged::Spectral { core, svd },
            None => Merged::Core(core),
        }
    }

    /// The LoRA factors to write (√σ split for the SVD forms).
    pub fn into_factors(self, core: &CoreSpace) -> Result<LoraFactors, MethodError> {
        match self {
            Merged::Core(m) => core.lift(m.view()),
            Merged::Spectral { svd, .. } => core.lift_svd(svd),
            Merged::Factors { l, r } => balanced_factors(l.view(), r.view()),
            Merged::Exact { factors, .. } => Ok(factors),
        }
    }

    /// The merge as a core matrix when it lies in the core space (the full-space `Factors`
    /// of KnOTS' TIES step need not).
    pub fn core(&self) -> Option<ArrayView2<'_, f64>> {
        match self {
            Merged::Core(m) | Merged::Spectral { core: m, .. } | Merged::Exact { core: m, .. } => {
                Some(m.view())
            }
            Merged::Factors { .. } => None,
        }
    }
}

/// One data-free merge method with its parameters, merging one module at a time.
pub trait CoreMethod: Send + Sync {
    /// Merges the tasks of one module. `seed` is this module's own seed (DARE's draws).
    fn merge(&self, core: &CoreSpace, seed: u64) -> Result<Merged, MethodError>;
}

/// A method's parameters with its defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodParams {
    /// λ / α.
    pub scale: f64,
    /// Fraction of entries kept (1 for methods that do not prune).
    pub density: f64,
    /// CART: rank of each deviation as a fraction of the core size (`None`: its default).
    pub rank_fraction: Option<f64>,
    /// Iso-CTS: the common subspace's fraction of the core size (`None`: its default).
    pub common_fraction: Option<f64>,
}

/// One registered method: its names, published defaults and constructor.
#[derive(Debug)]
pub struct MethodSpec {
    /// The command-line and recipe name.
    pub name: &'static str,
    /// The default of the method's global coefficient (λ or α).
    pub default_scale: f64,
    /// The default density (fraction kept), for the methods that prune.
    pub default_density: Option<f64>,
    /// The bases the method needs its core space in.
    pub basis: CoreBasis,
    /// The method with its parameters.
    pub build: fn(&MethodParams) -> Box<dyn CoreMethod>,
}
