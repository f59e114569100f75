//! PEFT's classic merges (`LoraModel.add_weighted_adapter`, PEFT 0.21.2) for one module.
//!
//! Semantics follow PEFT's `_generalized_task_arithmetic_weighted_adapter`,
//! `_svd_generalized_task_arithmetic_weighted_adapter` and `utils/merge_utils.py`:
//!
//! * `cat`: `A' = [w_j s_j A_j]` (rows, input order), `B' = [B_j]` (columns): exact sum.
//! * `linear`, `ties`, `dare_linear`, `dare_ties`, `magnitude_prune` (equal ranks only) merge the
//!   A's with weights `sign(c_j)·√|c_j|` and the B's with `√|c_j|`, `c_j = w_j s_j`, separately
//!   (so `B'A'` has cross terms, as in PEFT).
//! * `svd` takes the truncated SVD of `Σ w_j s_j B_j A_j` (low-rank path, no dense matrix);
//!   `ties_svd`, `dare_linear_svd`, `dare_ties_svd`, `magnitude_prune_svd` first combine the
//!   dense deltas `D_j = s_j B_j A_j` with weights `w_j`, then take the truncated SVD.
//!
//! Pruning runs in f32 like PEFT. `prune` (magnitude) keeps `floor(density·numel)` entries of
//! largest `|x|`; PEFT's `torch.topk` breaks exact ties arbitrarily, here the entry with the
//! lower row-major index wins. DARE masks come from a seeded Xoshiro256++ (see
//! [`stream_rng`]); PEFT's `torch.bernoulli` is unseeded.
//!
//! What the caller must do for PEFT parity (this function only sees one module):
//! * pass only the adapters that target the module (PEFT skips the others);
//! * apply [`BaselineMethod::for_adapter_count`] with the *total* number of adapters (PEFT
//!   turns every method into `linear` when given one adapter);
//! * pass `svd_rank = Some(max r over all adapters)` when the user gave none (PEFT's default
//!   is global, this function's fallback is the max over this module's sources);
//! * pad to the adapter-wide rank with [`MergedFactors::pad_to_rank`] (PEFT's `cat` writes one
//!   `r = Σ r_j` for every module and leaves missing adapters' rows zero);
//! * derive a per-module seed, e.g. with [`module_seed`], so DARE masks differ across modules.

#[cfg(test)]
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use ndarray::{concatenate, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::merge::dense_delta::{self, Prune};
use crate::merge::lowrank_svd::{
    clamp_quantile, dense_svd_truncate, lowrank_svd, SvdError, TruncatedSvd,
};

/// One source adapter's factors for one module: `ΔW_j = scale·b·a`.
#[derive(Debug, Clone, Copy)]
pub struct SourceFactors<'a> {
    /// `r × d_in`, PEFT's `lora_A`.
    pub a: ArrayView2<'a, f32>,
    /// `d_out × r`, PEFT's `lora_B`.
    pub b: ArrayView2<'a, f32>,
    /// The adapter's scaling: `lora_alpha / r`, or `lora_alpha / √r` with rsLoRA.
    pub scale: f32,
    /// The user's weight for this adapter (may be negative).
    pub weight: f32,
}

/// A PEFT `combination_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaselineMethod {
    /// `linear`: weighted sum of the A's and of the B's.
    Linear,
    /// `cat`: concatenation along the rank axis (exact sum of the deltas).
    Cat,
    /// `svd`: truncated SVD of the weighted sum of the deltas.
    Svd,
    /// `ties`: TIES on the A's and on the B's.
    Ties,
    /// `ties_svd`: TIES on the dense deltas, then truncated SVD.
    TiesSvd,
    /// `dare_linear`: DARE random pruning + sum on the A's and on the B's.
    DareLinear,
    /// `dare_ties`: DARE random pruning + TIES sign election on the A's and B's.
    DareTies,
    /// `dare_linear_svd`: DARE on the dense deltas, then truncated SVD.
    DareLinearSvd,
    /// `dare_ties_svd`: DARE-TIES on the dense deltas, then truncated SVD.
    DareTiesSvd,
    /// `magnitude_prune`: magnitude pruning + sum on the A's and on the B's.
    MagnitudePrune,
    /// `magnitude_prune_svd`: magnitude pruning of the dense deltas, then truncated SVD.
    MagnitudePruneSvd,
}

impl BaselineMethod {
    /// Every method, in PEFT's documentation order.
    pub const ALL: [BaselineMethod; 11] = [
        Self::Svd,
        Self::Linear,
        Self::Cat,
        Self::Ties,
        Self::TiesSvd,
        Self::DareTies,
        Self::DareLinear,
        Self::DareTiesSvd,
        Self::DareLinearSvd,
        Self::MagnitudePrune,
        Self::MagnitudePruneSvd,
    ];

    /// PEFT's `combination_type` string.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Cat => "cat",
            Self::Svd => "svd",
            Self::Ties => "ties",
            Self::TiesSvd => "ties_svd",
            Self::DareLinear => "dare_linear",
            Self::DareTies => "dare_ties",
            Self::DareLinearSvd => "dare_linear_svd",
            Self::DareTiesSvd => "dare_ties_svd",
            Self::MagnitudePrune => "magnitude_prune",
            Self::MagnitudePruneSvd => "magnitude_prune_svd",
        }
    }

    /// True when the method prunes entries of the dense `d_out × d_in` ΔW (and so must form it).
    pub fn needs_dense_delta(self) -> bool {
        matches!(
            self,
            Self::TiesSvd | Self::DareLinearSvd | Self::DareTiesSvd | Self::MagnitudePruneSvd
        )
    }

    /// True for the methods ending in an SVD (they take `svd_rank` and `svd_clamp`).
    pub fn is_svd(self) -> bool {
        self == Self::Svd || self.needs_dense_delta()
    }

    /// True when PEFT requires all adapters to have the same rank.
    pub fn requires_equal_ranks(self) -> bool {
        matches!(
            self,
            Self::Linear | Self::Ties | Self::DareLinear | Self::DareTies | Self::MagnitudePrune
        )
    }

    /// True when the method reads `density`.
    pub fn uses_density(self) -> bool {
        !matches!(self, Self::Linear | Self::Cat | Self::Svd)
    }

    /// True when the method reads `majority_sign`.
    pub fn uses_majority_sign(self) -> bool {
        matches!(
            self,
            Self::Ties | Self::TiesSvd | Self::DareTies | Self::DareTiesSvd
        )
    }

    /// The method PEFT actually runs for `adapter_count` adapters: `linear` when there is one.
    pub fn for_adapter_count(self, adapter_count: usize) -> Self {
        if adapter_count == 1 {
            Self::Linear
        } else {
            self
        }
    }

    /// How this method sparsifies each tensor and mixes them.
    fn rule(self) -> (Sparsify, Mix) {
        match self {
            Self::Linear | Self::Svd | Self::Cat => (Sparsify::Keep, Mix::Sum),
            Self::Ties | Self::TiesSvd => (Sparsify::Magnitude, Mix::Disjoint),
            Self::DareLinear | Self::DareLinearSvd => (Sparsify::Random, Mix::Sum),
            Self::DareTies | Self::DareTiesSvd => (Sparsify::Random, Mix::Disjoint),
            Self::MagnitudePrune | Self::MagnitudePruneSvd => (Sparsify::Magnitude, Mix::Sum),
        }
    }
}

impl fmt::Display for BaselineMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BaselineMethod {
    type Err = BaselineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| BaselineError::UnknownMethod(s.to_string()))
    }
}

/// PEFT's `majority_sign_method` for the TIES sign election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MajoritySign {
    /// `total`: the sign of the sum of the pruned values.
    #[default]
    Total,
    /// `frequency`: the sign of the sum of their signs (a vote); ties go to `+`.
    Frequency,
}

impl fmt::Display for MajoritySign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Total => "total",
            Self::Frequency => "frequency",
        })
    }
}

impl FromStr for MajoritySign {
    type Err = BaselineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "total" => Ok(Self::Total),
            "frequency" => Ok(Self::Frequency),
            _ => Err(BaselineError::UnknownMajoritySign(s.to_string())),
        }
    }
}

/// The parameters of `add_weighted_adapter` that shape one module's merge.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineParams {
    /// Output rank of the SVD methods; `None` = max rank of the given sources.
    pub svd_rank: Option<usize>,
    /// Quantile for PEFT's `svd_clamp`; `None` = no clamping.
    pub svd_clamp: Option<f64>,
    /// Fraction of entries kept by pruning, in (0, 1]; 1 disables pruning.
    pub density: f64,
    /// Sign election of the TIES methods.
    pub majority_sign: MajoritySign,
    /// Seed of the DARE masks (see [`stream_rng`]).
    pub seed: u64,
}

/// PEFT's density when none is given (the fraction kept by TIES / DARE / magnitude pruning).
pub const DEFAULT_DENSITY: f64 = 0.5;

impl Default for BaselineParams {
    fn default() -> Self {
        Self {
            svd_rank: None,
            svd_clamp: None,
            density: 1.0,
            majority_sign: MajoritySign::Total,
            seed: 0,
        }
    }
}

/// The merged factors, to be written with scaling 1 (`lora_alpha = r`): `ΔW' = b·a`.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedFactors {
    /// `r' × d_in`, the merged `lora_A`.
    pub a: Array2<f32>,
    /// `d_out × r'`, the merged `lora_B`.
    pub b: Array2<f32>,
}

impl MergedFactors {
    /// The merged rank `r'`.
    pub fn rank(&self) -> usize {
        self.a.nrows()
    }

    /// The merged delta `b·a` (dense; for checks and small modules).
    pub fn delta(&self) -> Array2<f32> {
        self.b.dot(&self.a)
    }

    /// Zero-pads to `rank` (no-op when already at least that), as PEFT leaves unused ranks zero.
    pub fn pad_to_rank(self, rank: usize) -> Self {
        let current = self.rank();
        if rank <= current {
            return self;
        }
        let mut a = Array2::zeros((rank, self.a.ncols()));
        a.slice_mut(ndarray::s![..current, ..]).assign(&self.a);
        let mut b = Array2::zeros((self.b.nrows(), rank));
        b.slice_mut(ndarray::s![.., ..current]).assign(&self.b);
        Self { a, b }
    }
}

/// Why a baseline merge was refused or failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BaselineError {
    /// No adapter has this module.
    #[error("{method} needs at least one source adapter for the module; got none")]
    NoSources {
        /// The requested method.
        method: BaselineMethod,
    },
    /// A method that PEFT restricts to equal ranks got different ranks.
    #[error("all adapters must have the same rank for {method}; got ranks {ranks}; use cat, svd or lego")]
    UnequalRanks {
        /// The requested method.
        method: BaselineMethod,
        /// The sources' ranks in input order, comma-separated.
        ranks: String,
    },
    /// `density` outside (0, 1].
    #[error("density must be in (0, 1] for {method}; got {density}")]
    Density {
        /// The requested method.
        method: BaselineMethod,
        /// The rejected density.
        density: f64,
    },
    /// `svd_rank = 0`.
    #[error("svd_rank must be at least 1 for {method}; got 0")]
    ZeroSvdRank {
        /// The requested method.
        method: BaselineMethod,
    },
    /// `svd_clamp` outside [0, 1].
    #[error("svd_clamp must be a quantile in [0, 1]; got {0}")]
    Clamp(f64),
    /// Factor shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A weight or scale is NaN or infinite.
    #[error("source {index}: weight ({weight}) and scale ({scale}) must be finite")]
    NonFiniteWeight {
        /// Position of the source.
        index: usize,
        /// Its weight.
        weight: f32,
        /// Its scale.
        scale: f32,
    },
    /// An unknown `combination_type` string.
    #[error("unknown merge method `{0}`; expected one of linear, cat, svd, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd, dare_ties_svd, magnitude_prune, magnitude_prune_svd")]
    UnknownMethod(String),
    /// An unknown `majority_sign_method` string.
    #[error("unknown majority sign method `{0}`; expected total or frequency")]
    UnknownMajoritySign(String),
    /// The SVD step failed.
    #[error(transparent)]
    Svd(#[from] SvdError),
}

/// Merges one module's sources with a PEFT method; see the module docs for the semantics.
///
/// DARE streams: tensor `t` uses [`stream_rng`]`(params.seed, t)`, with `t = j` for source
/// j's `lora_A` and `t = n + j` for its `lora_B` (n sources) in `dare_linear`/`dare_ties`, and
/// `t = j` for source j's dense delta in `dare_*_svd`. Entries are drawn in row-major order.
pub fn merge_module(
    method: BaselineMethod,
    sources: &[SourceFactors],
    params: &BaselineParams,
) -> Result<MergedFactors, BaselineError> {
    validate(method, sources, params)?;
    match method {
        BaselineMethod::Cat => merge_cat(sources),
        m if m.is_svd() => merge_svd_family(m, sources, params),
        m => Ok(merge_factorwise(m, sources, params)),
    }
}

/// A stable per-module seed: FNV-1a of the module name mixed into `seed` with SplitMix64.
pub fn module_seed(seed: u64, module: &str) -> u64 {
    let hash = module.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, byte| {
        (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    splitmix64(seed ^ hash)
}

/// The RNG of DARE stream `stream`: Xoshiro256++ seeded from `seed`, jumped `stream` times
/// (each jump skips 2^128 draws, so streams never overlap).
pub fn stream_rng(seed: u64, stream: u64) -> Xoshiro256PlusPlus {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for _ in 0..stream {
        rng.jump();
    }
    rng
}

/// PEFT's `magnitude_based_pruning`: keeps the `floor(density·numel)` entries of largest `|x|`
/// (ties at the threshold: lower row-major index first), zeroes the rest; `density ≥ 1` keeps all.
pub fn prune_magnitude(x: ArrayView2<f32>, density: f64) -> Array2<f32> {
    if density >= 1.0 {
        return x.as_standard_layout().into_owned();
    }
    let x = x.as_standard_layout();
    let values = x.as_slice().unwrap_or_default();
    // Python's int() truncates, like this cast for non-negative values.
    let keep = (density * values.len() as f64) as usize;
    let mut out = vec![0.0f32; values.len()];
    if keep >= values.len() {
        out.copy_from_slice(values);
    } else if keep > 0 {
        // The bits of |v| order like |v| (total_cmp on non-negative floats), so the k-th
        // largest magnitude is found by a two-pass radix select: no copy, no comparison sort.
        let (threshold, above) = kth_largest_magnitude_bits(values, keep);
        let mut ties_left = keep - above;
        for (o, &v) in out.iter_mut().zip(values) {
            let m = magnitude_bits(v);
            if m > threshold {
                *o = v;
            } else if m == threshold && ties_left > 0 {
                // Equal magnitudes at the threshold go to lower row-major indices.
                ties_left -= 1;
                *o = v;
            }
        }
    }
    Array2::from_shape_vec(x.raw_dim(), out).unwrap_or_else(|_| Array2::zeros(x.raw_dim()))
}

/// `|v|` as ordered bits: for non-negative floats (NaN included) the u32 order is `total_cmp`'s.
#[inline(always)]
pub(crate) fn magnitude_bits(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

/// The `k`-th largest (1-based, `1 ≤ k ≤ len`) of `magnitude_bits(v)` and how many items are
/// strictly larger: a histogram of the top 16 bits finds its bucket, a histogram of the low 16
/// bits within that bucket the value.
fn kth_largest_magnitude_bits(values: &[f32], k: usize) -> (u32, usize) {
    let mut high = vec![0usize; 1 << 16];
    for &v in values {
        high[(magnitude_bits(v) >> 16) as usize] += 1;
    }
    let (bucket, need, above_bucket) = descend(&high, k);
    let mut low = vec![0usize; 1 << 16];
    for &v in values {
        let m = magnitude_bits(v);
        if (m >> 16) as usize == bucket {
            low[(m & 0xffff) as usize] += 1;
        }
    }
    let (value, _, above_value) = descend(&low, need);
    (
        ((bucket as u32) << 16) | value as u32,
        above_bucket + above_value,
    )
}

/// From the highest bucket down: the bucket holding the `k`-th largest item, its rank (1-based)
/// within that bucket, and how many items lie in higher buckets.
pub(crate) fn descend(histogram: &[usize], k: usize) -> (usize, usize, usize) {
    let mut remaining = k;
    for (bucket, &count) in histogram.iter().enumerate().rev() {
        if count >= remaining {
            return (bucket, remaining, k - remaining);
        }
        remaining -= count;
    }
    (0, remaining, k - remaining)
}

/// PEFT's `random_pruning` with `rescale=True`: keeps each entry when a uniform draw in [0, 1)
/// is below `density` and divides kept entries by `density`; `density ≥ 1` keeps all, no draws.
pub fn prune_random(x: ArrayView2<f32>, density: f64, rng: &mut impl Rng) -> Array2<f32> {
    if density >= 1.0 {
        return x.as_standard_layout().into_owned();
    }
    let mut out = x.as_standard_layout().into_owned();
    if let Some(values) = out.as_slice_mut() {
        prune_random_in_place(values, density, rng);
    }
    out
}

/// [`prune_random`] on a row-major slice, in place (one draw per entry, in order).
#[inline(always)]
pub(crate) fn prune_random_in_place(values: &mut [f32], density: f64, rng: &mut impl Rng) {
    let divisor = density as f32;
    for v in values {
        *v = if rng.gen::<f64>() < density {
            *v / divisor
        } else {
            0.0
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sparsify {
    Keep,
    Magnitude,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Sum,
    Disjoint,
}

fn validate(
    method: BaselineMethod,
    sources: &[SourceFactors],
    params: &BaselineParams,
) -> Result<(), BaselineError> {
    let first = sources.first().ok_or(BaselineError::NoSources { method })?;
    let (d_out, d_in) = (first.b.nrows(), first.a.ncols());
    for (index, s) in sources.iter().enumerate() {
        check_source_shape(index, s, d_out, d_in)?;
        if !(s.weight.is_finite() && s.scale.is_finite()) {
            return Err(BaselineError::NonFiniteWeight {
                index,
                weight: s.weight,
                scale: s.scale,
            });
        }
    }
    if method.requires_equal_ranks() && sources.iter().any(|s| s.a.nrows() != first.a.nrows()) {
        let ranks: Vec<String> = sources.iter().map(|s| s.a.nrows().to_string()).collect();
        return Err(BaselineError::UnequalRanks {
            method,
            ranks: ranks.join(", "),
        });
    }
    if method.uses_density() && !(params.density > 0.0 && params.density <= 1.0) {
        return Err(BaselineError::Density {
            method,
            density: params.density,
        });
    }
    if method.is_svd() {
        if params.svd_rank == Some(0) {
            return Err(BaselineError::ZeroSvdRank { method });
        }
        if let Some(q) = params.svd_clamp.filter(|q| !(0.0..=1.0).contains(q)) {
            return Err(BaselineError::Clamp(q));
        }
    }
    Ok(())
}

fn check_source_shape(
    index: usize,
    s: &SourceFactors,
    d_out: usize,
    d_in: usize,
) -> Result<(), BaselineError> {
    let ((ra, ca), (rb, cb)) = (s.a.dim(), s.b.dim());
    if ra != cb || ra == 0 {
        return Err(BaselineError::Shape(format!(
            "source {index}: lora_A is {ra}×{ca} and lora_B is {rb}×{cb}; \
             lora_A's rows must equal lora_B's columns and be at least 1"
        )));
    }
    if (rb, ca) != (d_out, d_in) {
        return Err(BaselineError::Shape(format!(
            "source {index} has a {rb}×{ca} delta but source 0 has {d_out}×{d_in}"
        )));
    }
    Ok(())
}

/// `cat`: PEFT computes `A_j * weight * scaling` in f32, in that order. Written straight
/// into the stacked factors (no scaled copies to concatenate).
fn merge_cat(sources: &[SourceFactors]) -> Result<MergedFactors, BaselineError> {
    let (Some(first), n) = (sources.first(), sources.iter().map(|s| s.a.nrows()).sum()) else {
        return Err(BaselineError::Shape("cat of no source".into()));
    };
    let (d_in, d_out) = (first.a.ncols(), first.b.nrows());
    if let Some(s) = sources
        .iter()
        .find(|s| s.a.ncols() != d_in || s.b.nrows() != d_out || s.b.ncols() != s.a.nrows())
    {
        return Err(BaselineError::Shape(format!(
            "cat of A {:?} and B {:?} with A [_, {d_in}] and B [{d_out}, _]",
            s.a.dim(),
            s.b.dim()
        )));
    }
    // Built by appending, so each output value is written once (no zero fill first).
    let mut a = Vec::with_capacity(n * d_in);
    for s in sources {
        let (w, c) = (s.weight, s.scale);
        for row in s.a.rows() {
            // A contiguous row goes through its slice, which vectorises.
            crate::simd::wide(|| match row.as_slice() {
                Some(row) => a.extend(row.iter().map(|&v| v * w * c)),
                None => a.extend(row.iter().map(|&v| v * w * c)),
            });
        }
    }
    let mut b = Vec::with_capacity(d_out * n);
    for i in 0..d_out {
        for s in sources {
            b.extend(s.b.row(i).iter().copied());
        }
    }
    let shape = |rows, cols, v| {
        Array2::from_shape_vec((rows, cols), v).map_err(|e| BaselineError::Shape(e.to_string()))
    };
    Ok(MergedFactors {
        a: shape(n, d_in, a)?,
        b: shape(d_out, n, b)?,
    })
}

/// linear / ties / dare_linear / dare_ties / magnitude_prune on the A's and B's separately.
fn merge_factorwise(
    method: BaselineMethod,
    sources: &[SourceFactors],
    params: &BaselineParams,
) -> MergedFactors {
    // PEFT: c = weight * scaling in Python floats; sqrt|c| on both sides, sign on A only.
    let (weights_a, weights_b): (Vec<f32>, Vec<f32>) = sources
        .iter()
        .map(|s| {
            let c = f64::from(s.weight) * f64::from(s.scale);
            let root = c.abs().sqrt();
            let sign = if c >= 0.0 { 1.0 } else { -1.0 };
            ((sign * root) as f32, root as f32)
        })
        .unzip();
    let combiner = Combiner::new(method, params);
    let a_views: Vec<ArrayView2<f32>> = sources.iter().map(|s| s.a).collect();
    let b_views: Vec<ArrayView2<f32>> = sources.iter().map(|s| s.b).collect();
    MergedFactors {
        a: combiner.combine(&a_views, &weights_a, 0),
        b: combiner.combine(&b_views, &weights_b, sources.len() as u64),
    }
}

/// The dense `d_out × d_in` matrix a `*_svd` method decomposes: PEFT's combination of the
/// sources' ΔW (pruned, sign-elected, summed). Public so the truncated SVD can be checked on it.
pub fn dense_combination(
    method: BaselineMethod,
    sources: &[SourceFactors],
    params: &BaselineParams,
) -> Array2<f32> {
    let (prune, mix) = dense_rule(method, params);
    dense_delta::combine(sources, prune, mix)
}

/// The panel-wise form of `method`'s [`Combiner`] rule for the dense deltas.
fn dense_rule(method: BaselineMethod, params: &BaselineParams) -> (Prune, dense_delta::Mix) {
    let (sparsify, mix) = method.rule();
    let prune = match sparsify {
        Sparsify::Keep => Prune::Keep,
        Sparsify::Magnitude => Prune::Magnitude(params.density),
        Sparsify::Random => Prune::Random {
            density: params.density,
            seed: params.seed,
        },
    };
    let mix = match mix {
        Mix::Sum => dense_delta::Mix::Sum,
        Mix::Disjoint => dense_delta::Mix::Disjoint(params.majority_sign),
    };
    (prune, mix)
}

/// svd and the *_svd methods.
fn merge_svd_family(
    method: BaselineMethod,
    sources: &[SourceFactors],
    params: &BaselineParams,
) -> Result<MergedFactors, BaselineError> {
    let max_rank = sources.iter().map(|s| s.a.nrows()).max().unwrap_or(1);
    let rank = params.svd_rank.unwrap_or(max_rank);
    let svd = if method.needs_dense_delta() {
        let (prune, mix) = dense_rule(method, params);
        dense_delta::with_combined(sources, prune, mix, |dim, values| {
            let combined = ArrayView2::from_shape(dim, values)
                .map_err(|e| BaselineError::Shape(e.to_string()))?;
            Ok::<_, BaselineError>(dense_svd_truncate(combined, rank, params.svd_clamp)?)
        })?
    } else {
        weighted_sum_svd(sources, rank, params.svd_clamp)?
    };
    let (a, b) = split_sigma(svd.vt, svd.u_s);
    Ok(MergedFactors { a, b })
}

/// Moves half of each component's magnitude from B to A: with `B = U·S`, `A = Vh` (PEFT's
/// layout, σ all in B) this gives `U·√S` and `√S·Vh`. ΔW = B·A is unchanged, but neither factor
/// holds σ₁ alone, so large merges stay finite in F16. After `svd_clamp` the factors are no
/// longer exactly `U·S` and `Vh`, so the split balances their norms, which is the same thing.
fn split_sigma(mut a: Array2<f32>, mut b: Array2<f32>) -> (Array2<f32>, Array2<f32>) {
    for (mut a_row, mut b_col) in a.outer_iter_mut().zip(b.axis_iter_mut(Axis(1))) {
        let na = a_row
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        let nb = b_col
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        if na > 0.0 && nb > 0.0 {
            let c = (na / nb).sqrt();
            b_col.mapv_inplace(|v| (f64::from(v) * c) as f32);
            a_row.mapv_inplace(|v| (f64::from(v) / c) as f32);
        }
    }
    (a, b)
}

/// Plain `svd`: the SVD of `Σ w_j s_j B_j A_j` from the stacked factors.
fn weighted_sum_svd(
    sources: &[SourceFactors],
    rank: usize,
    clamp: Option<f64>,
) -> Result<TruncatedSvd, BaselineError> {
    let scaled_b: Vec<Array2<f32>> = sources
        .iter()
        .map(|s| s.b.mapv(|v| v * s.weight * s.scale))
        .collect();
    let b_views: Vec<ArrayView2<f32>> = scaled_b.iter().map(|b| b.view()).collect();
    let a_views: Vec<ArrayView2<f32>> = sources.iter().map(|s| s.a).collect();
    let shape_error = |e: ndarray::ShapeError| BaselineError::Shape(e.to_string());
    let b_cat = concatenate(Axis(1), &b_views).map_err(shape_error)?;
    let a_cat = concatenate(Axis(0), &a_views).map_err(shape_error)?;
    let mut svd = lowrank_svd(b_cat.view(), a_cat.view(), rank)?;
    if let Some(q) = clamp {
        clamp_quantile(&mut svd, q)?;
    }
    Ok(svd)
}

/// PEFT's `task_arithmetic` / `ties` / `dare_*` / `magnitude_prune` over a list of tensors.
struct Combiner {
    sparsify: Sparsify,
    mix: Mix,
    density: f64,
    majority: MajoritySign,
    seed: u64,
}

impl Combiner {
    fn new(method: BaselineMethod, params: &BaselineParams) -> Self {
        let (sparsify, mix) = method.rule();
        Self {
            sparsify,
            mix,
            density: params.density,
            majority: params.majority_sign,
            seed: params.seed,
        }
    }

    /// Sparsifies each tensor (tensor j on DARE stream `first_stream + j`) and mixes them.
    fn combine(
        &self,
        tensors: &[ArrayView2<f32>],
        weights: &[f32],
        first_stream: u64,
    ) -> Array2<f32> {
        let pruned: Vec<Array2<f32>> = tensors
            .iter()
            .zip(first_stream..)
            .map(|(t, stream)| self.sparsify_one(*t, stream))
            .collect();
        match self.mix {
            Mix::Sum => weighted_sum(&pruned, weights),
            Mix::Disjoint => disjoint_merge(&pruned, weights, self.majority),
        }
    }

    fn sparsify_one(&self, x: ArrayView2<f32>, stream: u64) -> Array2<f32> {
        match self.sparsify {
            Sparsify::Keep => x.as_standard_layout().into_owned(),
            Sparsify::Magnitude => prune_magnitude(x, self.density),
            Sparsify::Random => prune_random(x, self.density, &mut stream_rng(self.seed, stream)),
        }
    }
}

/// `Σ_j w_j X_j` in f32, accumulated in input order like torch's `sum(dim=0)`.
fn weighted_sum(tensors: &[Array2<f32>], weights: &[f32]) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(tensors[0].raw_dim());
    for (t, &w) in tensors.iter().zip(weights) {
        out.zip_mut_with(t, |o, &v| *o += v * w);
    }
    out
}

/// [`weighted_sum`] on equal-length slices, written into `out` (overwritten).
#[inline(always)]
pub(crate) fn weighted_sum_into(slices: &[&[f32]], weights: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (t, &w) in slices.iter().zip(weights) {
        for (o, &v) in out.iter_mut().zip(*t) {
            *o += v * w;
        }
    }
}

/// TIES' sign election and disjoint mean, entry by entry (PEFT's
/// `calculate_majority_sign_mask` on the *unweighted* pruned tensors, then `disjoint_merge`).
fn disjoint_merge(tensors: &[Array2<f32>], weights: &[f32], majority: MajoritySign) -> Array2<f32> {
    let dim = tensors[0].raw_dim();
    let standard: Vec<_> = tensors.iter().map(|t| t.as_standard_layout()).collect();
    let slices: Vec<&[f32]> = standard
        .iter()
        .map(|t| t.as_slice().unwrap_or_default())
        .collect();
    let mut out = vec![0.0f32; slices.first().map_or(0, |s| s.len())];
    disjoint_merge_into(&slices, weights, majority, &mut out);
    Array2::from_shape_vec(dim, out).unwrap_or_else(|_| Array2::zeros(dim))
}

/// [`disjoint_merge`] on equal-length slices, written into `out` (overwritten).
#[inline(always)]
pub(crate) fn disjoint_merge_into(
    slices: &[&[f32]],
    weights: &[f32],
    majority: MajoritySign,
    out: &mut [f32],
) {
    // Why blocks of entries with every tensor's value in registers: the same f32 operations
    // in the same order as `disjoint_entry` per entry, but each value is loaded once and the
    // loops over the block vectorise (the tensor-by-tensor form re-read the partial sums).
    const BLOCK: usize = 16;
    let full = out.len() / BLOCK * BLOCK;
    let (head, tail) = out.split_at_mut(full);
    for (b, block) in head.chunks_exact_mut(BLOCK).enumerate() {
        disjoint_block::<BLOCK>(slices, weights, majority, b * BLOCK, block);
    }
    for (i, o) in tail.iter_mut().enumerate() {
        disjoint_block::<1>(slices, weights, majority, full + i, std::slice::from_mut(o));
    }
}

/// `out[i]` = the disjoint merge of entry `start + i` of every slice, `i < L`.
#[inline(always)]
fn disjoint_block<const L: usize>(
    slices: &[&[f32]],
    weights: &[f32],
    majority: MajoritySign,
    start: usize,
    out: &mut [f32],
) {
    let mut election = [0.0f32; L];
    for t in slices {
        let chunk = &t[start..start + L];
        // Plain loops, not `for_each` closures: those were left out of line, so out of the
        // caller's AVX2 code.
        match majority {
            MajoritySign::Total => {
                for i in 0..L {
                    election[i] += chunk[i];
                }
            }
            MajoritySign::Frequency => {
                for i in 0..L {
                    election[i] += torch_sign(chunk[i]);
                }
            }
        }
    }
    for e in election.iter_mut() {
        *e = select(*e >= 0.0, 1.0, -1.0);
    }
    let (mut sum, mut count) = ([0.0f32; L], [0.0f32; L]);
    for (t, &w) in slices.iter().zip(weights) {
        let chunk = &t[start..start + L];
        for i in 0..L {
            let v = chunk[i];
            // `torch_sign(v) == e` for e = ±1 (NaN and 0 never agree), as a select of both
            // outcomes: agreement is a coin flip per entry, and a branch mispredicted often
            // enough to dominate ties_svd.
            let agree = v * election[i] > 0.0;
            sum[i] = select(agree, sum[i] + v * w, sum[i]);
            count[i] = select(agree, count[i] + 1.0, count[i]);
        }
    }
    for i in 0..L.min(out.len()) {
        out[i] = sum[i] / count[i].max(1.0);
    }
}

/// One entry of TIES' disjoint merge, as PEFT writes it: the reference of `disjoint_merge`.
#[cfg(test)]
fn disjoint_entry(values: &[f32], weights: &[f32], majority: MajoritySign) -> f32 {
    let election: f32 = match majority {
        MajoritySign::Total => values.iter().sum(),
        MajoritySign::Frequency => values.iter().map(|&v| torch_sign(v)).sum(),
    };
    let elected = if election >= 0.0 { 1.0 } else { -1.0 };
    let (mut sum, mut count) = (0.0f32, 0.0f32);
    for (&v, &w) in values.iter().zip(weights) {
        // torch.sign(0) = 0 never equals ±1: pruned entries never count.
        if torch_sign(v) == elected {
            sum += v * w;
            count += 1.0;
        }
    }
    sum / count.max(1.0)
}

/// `if take { a } else { b }` by bit masks: LLVM keeps `if` on floats as a branch here, and
/// masks vectorise; the result is bit-exact either way.
#[inline(always)]
fn select(take: bool, a: f32, b: f32) -> f32 {
    let mask = u32::from(take).wrapping_neg();
    f32::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

#[inline(always)]
fn torch_sign(v: f32) -> f32 {
    // Selects, not a match on `partial_cmp`, so loops over it vectorise.
    let sign = if v > 0.0 { 1.0 } else { -1.0 };
    let sign = if v == 0.0 { 0.0 } else { sign };
    if v.is_nan() {
        f32::NAN
    } else {
        sign
    }
}

/// Mask of the `k` largest `|v|`; equal magnitudes at the threshold go to lower indices (the
/// straightforward selection, kept as the reference of the radix select in `prune_magnitude`).
#[cfg(test)]
fn top_k_mask(values: &[f32], k: usize) -> Vec<bool> {
    if k >= values.len() {
        return vec![true; values.len()];
    }
    if k == 0 {
        return vec![false; values.len()];
    }
    let mut magnitudes: Vec<f32> = values.iter().map(|v| v.abs()).collect();
    let (_, threshold, _) = magnitudes.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *threshold;
    let above = values
        .iter()
        .filter(|v| v.abs().total_cmp(&threshold) == Ordering::Greater)
        .count();
    let mut ties_left = k - above;
    values
        .iter()
        .map(|v| match v.abs().total_cmp(&threshold) {
            Ordering::Greater => true,
            Ordering::Equal if ties_left > 0 => {
                ties_left -= 1;
                true
            }
            _ => false,
        })
        .collect()
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fast_prune_and_disjoint_merge_equal_their_per_entry_references() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        // Few distinct magnitudes (many ties at the threshold) and some exact zeros.
        let draw = |rng: &mut Xoshiro256PlusPlus| f32::from(rng.gen_range(-6i8..=6)) * 0.25;
        let tensors: Vec<Array2<f32>> = (0..3)
            .map(|_| Array2::from_shape_simple_fn((37, 151), || draw(&mut rng)))
            .collect();
        for density in [0.0, 0.1, 0.37, 0.5, 0.99] {
            for t in &tensors {
                let values: Vec<f32> = t.iter().copied().collect();
                let keep = (density * values.len() as f64) as usize;
                let mask = top_k_mask(&values, keep);
                let expected: Vec<f32> = values
                    .iter()
                    .zip(&mask)
                    .map(|(&v, &m)| if m { v } else { 0.0 })
                    .collect();
                let ours: Vec<f32> = prune_magnitude(t.view(), density).iter().copied().collect();
                assert_eq!(ours, expected, "density {density}");
            }
        }
        let weights = [0.7f32, -1.3, 2.0];
        for majority in [MajoritySign::Total, MajoritySign::Frequency] {
            let merged = disjoint_merge(&tensors, &weights, majority);
            for (i, &m) in merged.iter().enumerate() {
                let values: Vec<f32> = tensors.iter().map(|t| t.as_slice().unwrap()[i]).collect();
                let expected = disjoint_entry(&values, &weights, majority);
                assert_eq!(m.to_bits(), expected.to_bits(), "entry {i}");
            }
        }
    }

    /// The dense deltas of `sources`, pruned and mixed as PEFT writes it, whole matrices and
    /// entry by entry: the reference of the panel-wise `dense_combination`.
    fn whole_matrix_reference(
        method: BaselineMethod,
        sources: &[SourceFactors],
        params: &BaselineParams,
    ) -> Vec<f32> {
        let (sparsify, mix) = method.rule();
        let pruned: Vec<Vec<f32>> = sources
            .iter()
            .zip(0u64..)
            .map(|(s, j)| {
                let d: Vec<f32> = (s.b.dot(&s.a) * s.scale).iter().copied().collect();
                match sparsify {
                    Sparsify::Keep => d,
                    Sparsify::Magnitude => {
                        let keep = (params.density * d.len() as f64) as usize;
                        let mask = top_k_mask(&d, keep);
                        d.iter()
                            .zip(&mask)
                            .map(|(&v, &m)| if m { v } else { 0.0 })
                            .collect()
                    }
                    Sparsify::Random => {
                        let mut rng = stream_rng(params.seed, j);
                        d.iter()
                            .map(|&v| {
                                let draw: f64 = rng.gen();
                                if params.density >= 1.0 {
                                    v
                                } else if draw < params.density {
                                    v / params.density as f32
                                } else {
                                    0.0
                                }
                            })
                            .collect()
                    }
                }
            })
            .collect();
        let weights: Vec<f32> = sources.iter().map(|s| s.weight).collect();
        (0..pruned[0].len())
            .map(|i| {
                let values: Vec<f32> = pruned.iter().map(|p| p[i]).collect();
                match mix {
                    Mix::Sum => values
                        .iter()
                        .zip(&weights)
                        .fold(0.0, |acc, (&v, &w)| acc + v * w),
                    Mix::Disjoint => disjoint_entry(&values, &weights, params.majority_sign),
                }
            })
            .collect()
    }

    #[test]
    fn panel_combination_equals_the_whole_matrix_reference() {
        // Dyadic factors: every product and sum is exact in f32, so the GEMM kernel's order
        // cannot matter and the comparison is bit for bit. Wide enough for several panels.
        let (d_out, d_in, r) = (70, 4100, 3);
        for (levels, seed) in [(8i32, 21u64), (1000, 22)] {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let scale = 1.0 / levels as f32;
            let mut draw = |rows, cols| {
                Array2::from_shape_simple_fn((rows, cols), || {
                    rng.gen_range(-levels..=levels) as f32 * scale
                })
            };
            let factors: Vec<(Array2<f32>, Array2<f32>)> =
                (0..3).map(|_| (draw(r, d_in), draw(d_out, r))).collect();
            let sources: Vec<SourceFactors> = factors
                .iter()
                .zip([0.7f32, -1.3, 2.0])
                .map(|((a, b), weight)| SourceFactors {
                    a: a.view(),
                    b: b.view(),
                    scale: 0.5,
                    weight,
                })
                .collect();
            let methods = [
                BaselineMethod::TiesSvd,
                BaselineMethod::MagnitudePruneSvd,
                BaselineMethod::DareTiesSvd,
                BaselineMethod::DareLinearSvd,
            ];
            for method in methods {
                for majority in [MajoritySign::Total, MajoritySign::Frequency] {
                    for density in [1e-6, 0.1, 0.37, 0.5, 1.0] {
                        let params = BaselineParams {
                            density,
                            majority_sign: majority,
                            seed: 5,
                            ..BaselineParams::default()
                        };
                        let expected = whole_matrix_reference(method, &sources, &params);
                        let (prune, mix) = dense_rule(method, &params);
                        // The default sample, then none (the histogram fallback alone).
                        let routes = [
                            dense_combination(method, &sources, &params),
                            dense_delta::combine_with_sample(&sources, prune, mix, 0),
                        ];
                        for (route, ours) in routes.iter().enumerate() {
                            assert_eq!(ours.dim(), (d_out, d_in));
                            let mismatch = ours
                                .iter()
                                .zip(&expected)
                                .position(|(o, e)| o.to_bits() != e.to_bits());
                            assert_eq!(
                                mismatch, None,
                                "{method} {majority} density {density} levels {levels} route {route}"
                            );
                        }
                    }
                }
            }
        }
    }
}
