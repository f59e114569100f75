//! The data-free merge methods of 2023–2025, each one type behind [`CoreMethod`], all computed
//! in the core space of a module ([`CoreSpace`]).

use std::fmt;
use std::str::FromStr;

use ndarray::Array2;

use super::core_space::{balanced_factors, CoreSpace, LoraFactors};
use super::MethodError;

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
    /// Factors written as they are (exact forms, no SVD).
    Exact(LoraFactors),
}

impl Merged {
    /// The LoRA factors to write (√σ split for the SVD forms).
    pub fn into_factors(self, core: &CoreSpace) -> Result<LoraFactors, MethodError> {
        match self {
            Merged::Core(m) => core.lift(m.view()),
            Merged::Factors { l, r } => balanced_factors(l.view(), r.view()),
            Merged::Exact(f) => Ok(f),
        }
    }
}

/// One data-free merge method with its parameters, merging one module at a time.
pub trait CoreMethod: Send + Sync {
    /// Merges the tasks of one module. `seed` is this module's own seed (DARE's draws).
    fn merge(&self, core: &CoreSpace, seed: u64) -> Result<Merged, MethodError>;
}

/// The registered data-free methods, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFreeMethod {
    /// Task arithmetic: `λ Σ ΔW_j`, exact as factors.
    TaskArithmetic,
    /// TIES on the core matrices.
    CoreTies,
    /// KnOTS: TIES on the per-task right factors of a joint SVD.
    KnotsTies,
    /// KnOTS with DARE before TIES.
    KnotsDareTies,
    /// TSV-M: task singular vectors, orthogonalised.
    Tsv,
    /// Iso-C: the sum's spectrum flattened.
    IsoC,
    /// Iso-CTS: a common subspace plus task-specific ones, flattened.
    IsoCts,
    /// CART: the mean plus rank-reduced deviations from it.
    Cart,
}

impl DataFreeMethod {
    /// Every data-free method, in the order shown.
    pub const ALL: [DataFreeMethod; 8] = [
        DataFreeMethod::TaskArithmetic,
        DataFreeMethod::Tsv,
        DataFreeMethod::IsoC,
        DataFreeMethod::IsoCts,
        DataFreeMethod::Cart,
        DataFreeMethod::CoreTies,
        DataFreeMethod::KnotsTies,
        DataFreeMethod::KnotsDareTies,
    ];

    /// The command-line and recipe name.
    pub fn name(self) -> &'static str {
        match self {
            DataFreeMethod::TaskArithmetic => "task_arithmetic",
            DataFreeMethod::CoreTies => "core_ties",
            DataFreeMethod::KnotsTies => "knots_ties",
            DataFreeMethod::KnotsDareTies => "knots_dare_ties",
            DataFreeMethod::Tsv => "tsv",
            DataFreeMethod::IsoC => "iso_c",
            DataFreeMethod::IsoCts => "iso_cts",
            DataFreeMethod::Cart => "cart",
        }
    }

    /// The default of the method's global coefficient (λ or α).
    pub fn default_scale(self) -> f64 {
        match self {
            DataFreeMethod::TaskArithmetic => super::task_arithmetic::DEFAULT_LAMBDA,
            DataFreeMethod::CoreTies => super::core_ties::DEFAULT_LAMBDA,
            DataFreeMethod::KnotsTies => super::knots::TIES_DEFAULT_LAMBDA,
            DataFreeMethod::KnotsDareTies => super::knots::DARE_TIES_DEFAULT_LAMBDA,
            DataFreeMethod::Tsv => super::tsv::DEFAULT_ALPHA,
            DataFreeMethod::IsoC | DataFreeMethod::IsoCts => super::iso::DEFAULT_ALPHA,
            DataFreeMethod::Cart => super::cart::DEFAULT_LAMBDA,
        }
    }

    /// The default density (fraction kept), for the methods that prune.
    pub fn default_density(self) -> Option<f64> {
        match self {
            DataFreeMethod::CoreTies => Some(super::core_ties::DEFAULT_KEEP),
            DataFreeMethod::KnotsTies => Some(super::knots::TIES_DEFAULT_KEEP),
            DataFreeMethod::KnotsDareTies => Some(1.0 - super::knots::DARE_DEFAULT_DROP),
            _ => None,
        }
    }

    /// The method with its parameters: `scale` its λ/α, `density` the fraction kept (TIES
    /// trim, or DARE's keep probability for `knots_dare_ties`), `rank_fraction` CART's,
    /// `common_fraction` Iso-CTS's.
    pub fn build(self, p: &DataFreeParams) -> Box<dyn CoreMethod> {
        let scale = p.scale.unwrap_or(self.default_scale());
        let density = p.density.or(self.default_density()).unwrap_or(1.0);
        match self {
            DataFreeMethod::TaskArithmetic => {
                Box::new(super::task_arithmetic::TaskArithmetic { lambda: scale })
            }
            DataFreeMethod::CoreTies => Box::new(super::core_ties::CoreTies {
                keep: density,
                lambda: scale,
            }),
            DataFreeMethod::KnotsTies => Box::new(super::knots::Knots {
                keep: density,
                lambda: scale,
                dare: None,
            }),
            DataFreeMethod::KnotsDareTies => Box::new(super::knots::Knots {
                keep: 1.0,
                lambda: scale,
                dare: Some(super::knots::Dare::Seeded {
                    drop: 1.0 - density,
                }),
            }),
            DataFreeMethod::Tsv => Box::new(super::tsv::Tsv { alpha: scale }),
            DataFreeMethod::IsoC => Box::new(super::iso::IsoC { alpha: scale }),
            DataFreeMethod::IsoCts => Box::new(super::iso::IsoCts {
                alpha: scale,
                common_fraction: p
                    .common_fraction
                    .unwrap_or(super::iso::DEFAULT_COMMON_FRACTION),
            }),
            DataFreeMethod::Cart => Box::new(super::cart::Cart {
                lambda: scale,
                rank_fraction: p
                    .rank_fraction
                    .unwrap_or(super::cart::DEFAULT_RANK_FRACTION),
            }),
        }
    }
}

/// The settings a data-free method reads; `None` takes the method's published default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DataFreeParams {
    /// λ / α.
    pub scale: Option<f64>,
    /// Fraction of entries kept.
    pub density: Option<f64>,
    /// CART: rank of each deviation as a fraction of the core size.
    pub rank_fraction: Option<f64>,
    /// Iso-CTS: the common subspace's fraction of the core size.
    pub common_fraction: Option<f64>,
}

impl fmt::Display for DataFreeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataFreeMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DataFreeMethod::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown data-free method `{s}`"))
    }
}
