//! LoRA-LEGO's own parameters: the feature space, the two reweightings, the unit basis and the
//! post-step, and the k-means knobs. They live beside the method (not in `settings`) so the
//! merge code reads only what it needs and does not depend on the recipe's settings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

impl ClusterParams {
    /// The k-means for `k` clusters with these knobs (one builder for every LEGO route).
    pub fn kmeans(&self, k: usize) -> crate::kmeans::GramKMeansParams {
        crate::kmeans::GramKMeans::params(k)
            .n_init(self.n_init)
            .max_iter(self.max_iter)
            .tol(self.tol)
            .seed(self.seed)
            .sign_aware(self.space == FeatureSpace::SignAware)
    }
}

/// The k-means knobs one LEGO clustering reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterParams {
    /// Restarts.
    pub n_init: usize,
    /// Iteration cap.
    pub max_iter: usize,
    /// Relative tolerance.
    pub tol: f64,
    /// Seed of the first restart.
    pub seed: u64,
    /// The feature space units are clustered in.
    pub space: FeatureSpace,
}

/// The feature space units are clustered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureSpace {
    /// The paper's: unit = `[a; b]` as folded.
    #[default]
    Plain,
    /// A unit and its negation are one unit (assigned to the nearer of ±centroid).
    SignAware,
    /// Each unit rescaled so ‖a‖ = ‖b‖ before clustering (the product is unchanged).
    Balanced,
}

impl FromStr for FeatureSpace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Self::Plain),
            "sign-aware" => Ok(Self::SignAware),
            "balanced" => Ok(Self::Balanced),
            _ => Err(format!(
                "unknown feature space `{s}` (expected plain, sign-aware or balanced)"
            )),
        }
    }
}

impl fmt::Display for FeatureSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain",
            Self::SignAware => "sign-aware",
            Self::Balanced => "balanced",
        })
    }
}

/// Parameter reweighting: rescale each centroid to its members' mean norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamReweight {
    /// Max-abs norm (the default; needs the full-dimension centroid).
    #[default]
    Linf,
    /// Euclidean norm (computed from the Gram matrix alone).
    L2,
    /// No parameter reweighting.
    Off,
}

impl FromStr for ParamReweight {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linf" => Ok(Self::Linf),
            "l2" => Ok(Self::L2),
            "off" => Ok(Self::Off),
            _ => Err(format!(
                "unknown parameter reweighting `{s}` (expected linf, l2 or off)"
            )),
        }
    }
}

impl fmt::Display for ParamReweight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Linf => "linf",
            Self::L2 => "l2",
            Self::Off => "off",
        })
    }
}

/// The reference rank of output reweighting `B' ← B'·√(r_ref / k)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum OutputReweight {
    /// r_ref = mean rank of the module's sources (the default).
    #[default]
    Mean,
    /// r_ref = largest rank of the module's sources.
    Max,
    /// A fixed r_ref.
    Value(f64),
    /// No output reweighting.
    Off,
}

impl FromStr for OutputReweight {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mean" => Ok(Self::Mean),
            "max" => Ok(Self::Max),
            "off" => Ok(Self::Off),
            _ => match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(Self::Value(v)),
                _ => Err(format!(
                    "invalid output reweighting `{s}` (expected mean, max, off or a positive number)"
                )),
            },
        }
    }
}

impl fmt::Display for OutputReweight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mean => f.write_str("mean"),
            Self::Max => f.write_str("max"),
            Self::Off => f.write_str("off"),
            Self::Value(v) => write!(f, "{v}"),
        }
    }
}

/// Which rank-1 units LoRA-LEGO clusters (methods.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitBasis {
    /// The adapters' own ranks, as stored (the paper).
    #[default]
    Raw,
    /// Each task's singular vectors (canonical up to sign).
    Svd,
    /// The singular vectors of each task minus the tasks' mean (`kc` per task); the mean is
    /// added back once.
    Centred,
}

impl FromStr for UnitBasis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(Self::Raw),
            "svd" => Ok(Self::Svd),
            "centred" | "centered" => Ok(Self::Centred),
            _ => Err(format!(
                "unknown unit basis `{s}` (expected raw, svd or centred)"
            )),
        }
    }
}

impl fmt::Display for UnitBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw",
            Self::Svd => "svd",
            Self::Centred => "centred",
        })
    }
}

/// What LoRA-LEGO does to the merged module after clustering (methods.md §9 step 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostStep {
    /// The centroids as they are (the paper).
    #[default]
    None,
    /// Flatten the merged spectrum (Iso-C).
    Iso,
    /// Orthogonalise the merged units' directions, keeping their norms (TSV).
    Tsv,
}

impl FromStr for PostStep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "iso" => Ok(Self::Iso),
            "tsv" => Ok(Self::Tsv),
            _ => Err(format!(
                "unknown post-step `{s}` (expected none, iso or tsv)"
            )),
        }
    }
}

impl fmt::Display for PostStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Iso => "iso",
            Self::Tsv => "tsv",
        })
    }
}
