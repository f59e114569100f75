//! Merge methods: LoRA-LEGO, PEFT's classic combinations and the data-free core-space
//! methods, all producing [`MergedModule`].

pub mod baselines;
pub mod cart;
pub mod core_space;
pub mod core_ties;
pub mod data_free;
mod dense_delta;
pub mod iso;
pub mod knots;
pub mod lego;
pub mod lego_core;
pub mod lego_params;
pub mod lowrank_svd;
pub mod method;
pub mod stored_centroids;
pub mod task_arithmetic;
pub mod ties;
pub mod tsv;

use ndarray::Array2;
use serde::Serialize;

use crate::linalg::LinalgError;
use crate::metrics::DeltaMetrics;
use lowrank_svd::SvdError;

/// Why a core-space method could not merge a module.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum MethodError {
    /// A dense SVD failed.
    #[error("{0}")]
    Linalg(#[from] LinalgError),
    /// A basis could not be built.
    #[error("{0}")]
    Svd(#[from] SvdError),
    /// Inconsistent inputs.
    #[error("{0}")]
    Invalid(String),
    /// k-means failed.
    #[error("k-means failed: {0}")]
    KMeans(String),
}

/// LEGO's clustering figures for one module.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStats {
    /// Units pooled.
    pub n_units: usize,
    /// k-means inertia in the embedded space.
    pub inertia: f64,
    /// Mean silhouette.
    pub silhouette: f64,
    /// Units per cluster.
    pub cluster_sizes: Vec<usize>,
    /// Per cluster, units contributed by each of the module's sources.
    pub source_mix: Vec<Vec<usize>>,
    /// Parameter-reweighting factor per cluster (1 when off).
    pub param_factors: Vec<f64>,
    /// Output-reweighting factor on B' (including the free multiplier).
    pub output_factor: f64,
}

/// One merged module: factors written with scaling 1 (`ΔW' = B'·A'`) plus its metrics.
#[derive(Debug, Clone)]
pub struct MergedModule {
    /// Index into the module set.
    pub module: usize,
    /// `k × d_in`.
    pub a: Array2<f32>,
    /// `d_out × k`.
    pub b: Array2<f32>,
    /// ΔW' against the exact weighted sum and each source (indexed like the module's sources).
    pub metrics: DeltaMetrics,
    /// Clustering figures (LEGO only).
    pub clusters: Option<ClusterStats>,
    /// Things the user should know about this module (k clamped, …).
    pub notices: Vec<String>,
}

impl MergedModule {
    /// The merged rank.
    pub fn rank(&self) -> usize {
        self.a.nrows()
    }

    /// Drops the factors' values once they are encoded for export, keeping the rank
    /// (`a` becomes `k × 0`, `b` `0 × k`) and the metrics.
    pub fn release_factors(&mut self) {
        let k = self.rank();
        self.a = Array2::zeros((k, 0));
        self.b = Array2::zeros((0, k));
    }
}
