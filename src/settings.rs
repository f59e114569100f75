//! The merge settings: everything besides the adapters that determines a merge's output.
//! The TUI and the CLI both fill one of these and hand it to the engine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::adapter::AdapterFormat;
use crate::merge::baselines::{BaselineMethod, MajoritySign};
use crate::merge::data_free::{DataFreeMethod, DataFreeParams};
pub use crate::merge::lego_params::{
    ClusterParams, FeatureSpace, OutputReweight, ParamReweight, PostStep, UnitBasis,
};
use crate::tensor::DType;

/// Serialises a field through its `Display` / `FromStr`, so recipes hold plain strings.
pub mod as_string {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `value` as its display string.
    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    /// Parses the string with `FromStr`, reporting its error.
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which merge to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMethod {
    /// LoRA-LEGO: k-means over rank-1 units.
    Lego,
    /// LoRA-LEGO preset `lego-tsv`: centred units, sign-aware clustering, TSV post-step.
    LegoTsv,
    /// One of PEFT's `add_weighted_adapter` combination types.
    Baseline(BaselineMethod),
    /// A data-free core-space method (TSV-M, Iso-C, CART, KnOTS, …).
    DataFree(DataFreeMethod),
}

impl MergeMethod {
    /// Every method, LEGO first.
    pub fn all() -> Vec<MergeMethod> {
        [MergeMethod::Lego, MergeMethod::LegoTsv]
            .into_iter()
            .chain(
                BaselineMethod::ALL
                    .iter()
                    .map(|m| MergeMethod::Baseline(*m)),
            )
            .chain(DataFreeMethod::all().map(MergeMethod::DataFree))
            .collect()
    }

    /// Whether this is LoRA-LEGO (plain or a preset).
    pub fn is_lego(self) -> bool {
        matches!(self, MergeMethod::Lego | MergeMethod::LegoTsv)
    }
}

impl fmt::Display for MergeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeMethod::Lego => f.write_str("lego"),
            MergeMethod::LegoTsv => f.write_str("lego-tsv"),
            MergeMethod::Baseline(b) => f.write_str(b.name()),
            MergeMethod::DataFree(m) => f.write_str(m.name()),
        }
    }
}

impl FromStr for MergeMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lego" => return Ok(MergeMethod::Lego),
            "lego-tsv" | "lego_tsv" => return Ok(MergeMethod::LegoTsv),
            _ => {}
        }
        if let Ok(m) = s.parse::<DataFreeMethod>() {
            return Ok(MergeMethod::DataFree(m));
        }
        s.parse::<BaselineMethod>()
            .map(MergeMethod::Baseline)
            .map_err(|_| {
                let names: Vec<String> = MergeMethod::all().iter().map(|m| m.to_string()).collect();
                format!(
                    "unknown method `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Reads `output_reweight` from `"mean"`, `"max"`, `"off"`, `"12.5"` or a bare number.
fn output_reweight_from_string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<OutputReweight, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(f64),
    }
    match Raw::deserialize(d)? {
        Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        Raw::Number(v) => v.to_string().parse().map_err(serde::de::Error::custom),
    }
}

/// A per-module k: modules whose path matches `pattern` get `k`. Patterns are globs (`*`, `?`;
/// a plain name matches exactly), or regular expressions when prefixed with `re:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KOverride {
    /// The pattern.
    pub pattern: String,
    /// The k for matching modules.
    pub k: usize,
    /// The pattern compiled on first use: `k_for` runs for every module on every drawn frame.
    #[serde(skip)]
    compiled: CompiledPattern,
}

/// A lazily compiled pattern, remembered with its source so a changed `pattern` is never
/// matched with a stale expression. It takes no part in equality.
#[derive(Debug, Clone, Default)]
struct CompiledPattern(std::sync::OnceLock<(String, Result<regex::Regex, String>)>);

impl PartialEq for CompiledPattern {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CompiledPattern {}

impl KOverride {
    /// Modules matching `pattern` get `k`.
    pub fn new(pattern: impl Into<String>, k: usize) -> Self {
        KOverride {
            pattern: pattern.into(),
            k,
            compiled: CompiledPattern::default(),
        }
    }

    /// Whether `module` matches the pattern (an invalid pattern matches nothing; `validate`
    /// reports it).
    pub fn matches(&self, module: &str) -> bool {
        let (source, re) = self
            .compiled
            .0
            .get_or_init(|| (self.pattern.clone(), self.matcher()));
        if *source != self.pattern {
            return self.matcher().is_ok_and(|re| re.is_match(module));
        }
        re.as_ref().is_ok_and(|re| re.is_match(module))
    }

    /// Compiles the pattern.
    pub fn matcher(&self) -> Result<regex::Regex, String> {
        let re = match self.pattern.strip_prefix("re:") {
            Some(r) => r.to_string(),
            None => {
                let mut s = String::from("^");
                for c in self.pattern.chars() {
                    match c {
                        '*' => s.push_str(".*"),
                        '?' => s.push('.'),
                        c => s.push_str(&regex::escape(&c.to_string())),
                    }
                }
                s.push('$');
                s
            }
        };
        regex::Regex::new(&re).map_err(|e| format!("invalid k pattern `{}`: {e}", self.pattern))
    }
}

impl FromStr for KOverride {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (pattern, k) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("expected PATTERN=K, got `{s}`"))?;
        let k: usize = k
            .parse()
            .map_err(|_| format!("k in `{s}` must be a positive integer"))?;
        if k == 0 {
            return Err(format!("k in `{s}` must be at least 1"));
        }
        Ok(KOverride::new(pattern, k))
    }
}

/// The largest `scale` accepted: beyond it a merge is a typo, not a choice.
pub const MAX_SCALE: f64 = 1e3;

/// The `lego-tsv` preset's numbers (the rest: centred units, sign-aware k-means, L∞ parameter
/// reweighting, no output reweighting, TSV post-step).
struct LegoTsvPreset {
    k: usize,
    kc: usize,
    ensemble: usize,
}

/// methods.md §9's preset, with `kc` and `ensemble` chosen on bench-quality's validation
/// split (README: kc 8 above kc 6 by 1–2 points; 10 seeds averaged keep the seed spread
/// within a few tenths, where one seed swings by ~3 points).
const LEGO_TSV: LegoTsvPreset = LegoTsvPreset {
    k: 32,
    kc: 8,
    ensemble: 10,
};

pub use crate::error::SettingsError;

/// Everything besides the adapters that determines a merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeSettings {
    /// The method.
    #[serde(with = "as_string")]
    pub method: MergeMethod,
    /// Per-source weights (empty = all 1).
    pub weights: Vec<f64>,
    /// LEGO: the global number of clusters (merged rank) per module.
    pub k: usize,
    /// LEGO: per-module overrides, applied in order (the last match wins).
    pub k_overrides: Vec<KOverride>,
    /// LEGO: feature space.
    pub space: FeatureSpace,
    /// LEGO: parameter reweighting norm.
    pub param_reweight: ParamReweight,
    /// LEGO: output reweighting reference rank.
    #[serde(
        serialize_with = "as_string::serialize",
        deserialize_with = "output_reweight_from_string_or_number"
    )]
    pub output_reweight: OutputReweight,
    /// LEGO: a free multiplier on B' on top of output reweighting.
    pub output_scale: f64,
    /// k-means seed (and DARE's).
    pub seed: u64,
    /// k-means restarts.
    pub n_init: usize,
    /// k-means iteration cap.
    pub max_iter: usize,
    /// k-means relative tolerance.
    pub tol: f64,
    /// Baselines: SVD rank (default: the largest source rank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svd_rank: Option<usize>,
    /// Fraction of entries kept by TIES / DARE / magnitude pruning (absent = the method's
    /// default: 0.5 for PEFT's, 0.3 core_ties, 0.2 knots_ties, 0.9 knots_dare_ties).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density: Option<f64>,
    /// Baselines: TIES sign election.
    #[serde(with = "as_string")]
    pub majority_sign: MajoritySign,
    /// Baselines: quantile clamp of the SVD factors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svd_clamp: Option<f64>,
    /// The method's global coefficient (λ or α; absent = the method's default, 1 for methods
    /// without one); multiplies the merged ΔW of methods that have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// LEGO: the units clustered.
    pub units: UnitBasis,
    /// LEGO with centred units: units per task.
    pub kc: usize,
    /// LEGO: the post-step on the merged module.
    pub post: PostStep,
    /// LEGO: k-means seeds whose merges are averaged (1 = one seed).
    pub ensemble: usize,
    /// CART: rank of each deviation as a fraction of the core size (absent = 0.08).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_fraction: Option<f64>,
    /// Iso-CTS: the common subspace's fraction of the core size (absent = 0.8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_fraction: Option<f64>,
    /// Output format.
    pub format: AdapterFormat,
    /// Output dtype (`None` = the sources').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<DType>,
    /// Names of adapters whose non-LoRA tensors are copied into the output.
    pub keep_heads: Vec<String>,
    /// kohya output: the key prefix of every module (`None` = chosen from the module names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kohya_prefix: Option<crate::io::naming::KohyaPrefix>,
}

/// The largest `output_scale` accepted: beyond it the scale is a typo, not a choice (it
/// multiplies ΔW, and F16 overflows at 65 504).
pub const MAX_OUTPUT_SCALE: f64 = 1000.0;

impl Default for MergeSettings {
    fn default() -> Self {
        MergeSettings {
            method: MergeMethod::Lego,
            weights: Vec::new(),
            k: 8,
            k_overrides: Vec::new(),
            space: FeatureSpace::Plain,
            param_reweight: ParamReweight::Linf,
            output_reweight: OutputReweight::Mean,
            output_scale: 1.0,
            seed: 0,
            n_init: crate::kmeans::DEFAULT_N_INIT,
            max_iter: crate::kmeans::DEFAULT_MAX_ITER,
            tol: crate::kmeans::DEFAULT_TOL,
            svd_rank: None,
            density: None,
            majority_sign: MajoritySign::Total,
            svd_clamp: None,
            scale: None,
            units: UnitBasis::Raw,
            kc: crate::merge::lego_core::DEFAULT_KC,
            post: PostStep::None,
            ensemble: 1,
            rank_fraction: None,
            common_fraction: None,
            format: AdapterFormat::Peft,
            dtype: None,
            keep_heads: Vec::new(),
            kohya_prefix: None,
        }
    }
}

impl MergeSettings {
    /// The k-means knobs of a LEGO clustering.
    pub fn cluster_params(&self) -> ClusterParams {
        ClusterParams {
            n_init: self.n_init,
            max_iter: self.max_iter,
            tol: self.tol,
            seed: self.seed,
            space: self.space,
        }
    }

    /// The weight of source `i` (1 when no weights were given).
    pub fn weight(&self, i: usize) -> f64 {
        self.weights.get(i).copied().unwrap_or(1.0)
    }

    /// Checks the settings against `n_adapters`; the error names the offending field.
    pub fn validate(&self, n_adapters: usize) -> Result<(), SettingsError> {
        let err = |field: &'static str, message: String| Err(SettingsError { field, message });
        if !self.weights.is_empty() && self.weights.len() != n_adapters {
            return err(
                "weights",
                format!(
                    "{} weights given for {n_adapters} adapters; give one weight per adapter",
                    self.weights.len()
                ),
            );
        }
        if let Some((i, w)) = self
            .weights
            .iter()
            .enumerate()
            .find(|(_, w)| !w.is_finite())
        {
            return err(
                "weights",
                format!("weight {} is {w}; weights must be finite numbers", i + 1),
            );
        }
        if self.k == 0 {
            return err("k", "k must be at least 1".into());
        }
        for o in &self.k_overrides {
            if o.k == 0 {
                return err(
                    "k_overrides",
                    format!("k for `{}` must be at least 1", o.pattern),
                );
            }
            if let Err(e) = o.matcher() {
                return err("k_overrides", e);
            }
        }
        if self.n_init == 0 {
            return err("n_init", "n_init must be at least 1".into());
        }
        if self.max_iter == 0 {
            return err("max_iter", "max_iter must be at least 1".into());
        }
        if !(self.tol > 0.0 && self.tol.is_finite()) {
            return err(
                "tol",
                format!("tol must be a positive number, got {}", self.tol),
            );
        }
        if !(self.output_scale.is_finite()
            && self.output_scale > 0.0
            && self.output_scale <= MAX_OUTPUT_SCALE)
        {
            return err(
                "output_scale",
                format!(
                    "output_scale must be a positive number up to {MAX_OUTPUT_SCALE}, got {:?}",
                    self.output_scale
                ),
            );
        }
        if let Some(d) = self.density {
            if !(d > 0.0 && d <= 1.0) {
                return err("density", format!("density must be in (0, 1], got {d}"));
            }
        }
        if let Some(v) = self.scale {
            if !(v.is_finite() && v > 0.0 && v <= MAX_SCALE) {
                return err(
                    "scale",
                    format!("scale must be a positive number up to {MAX_SCALE}, got {v}"),
                );
            }
        }
        for (field, value) in [
            ("rank_fraction", self.rank_fraction),
            ("common_fraction", self.common_fraction),
        ] {
            if let Some(v) = value {
                if !(v > 0.0 && v <= 1.0) {
                    return err(field, format!("{field} must be in (0, 1], got {v}"));
                }
            }
        }
        if self.kc == 0 {
            return err("kc", "kc must be at least 1".into());
        }
        if self.ensemble == 0 {
            return err("ensemble", "ensemble must be at least 1".into());
        }
        if let Some(q) = self.svd_clamp {
            if !(q > 0.0 && q <= 1.0) {
                return err("svd_clamp", format!("svd_clamp must be in (0, 1], got {q}"));
            }
        }
        if self.svd_rank == Some(0) {
            return err("svd_rank", "svd_rank must be at least 1".into());
        }
        Ok(())
    }

    /// The settings `method` starts from: the defaults, with the preset's values for a
    /// LoRA-LEGO preset (`lego-tsv`: methods.md §9's best setting, see the README).
    pub fn preset(method: MergeMethod) -> MergeSettings {
        let mut s = MergeSettings {
            method,
            ..MergeSettings::default()
        };
        if method == MergeMethod::LegoTsv {
            s.apply_preset_fields(&[]);
        }
        s
    }

    /// Sets the `lego-tsv` preset's fields, except those named in `keep`.
    pub fn apply_preset_fields(&mut self, keep: &[&str]) {
        let p = LEGO_TSV;
        let preset = MergeSettings {
            k: p.k,
            units: UnitBasis::Centred,
            kc: p.kc,
            space: FeatureSpace::SignAware,
            param_reweight: ParamReweight::Linf,
            output_reweight: OutputReweight::Off,
            post: PostStep::Tsv,
            ensemble: p.ensemble,
            ..MergeSettings::default()
        };
        self.copy_preset_fields(&preset, keep);
    }

    /// Copies the fields a LEGO preset sets from `from`, except those named in `keep`.
    fn copy_preset_fields(&mut self, from: &MergeSettings, keep: &[&str]) {
        let set = |name: &str| !keep.contains(&name);
        if set("k") {
            self.k = from.k;
        }
        if set("units") {
            self.units = from.units;
        }
        if set("kc") {
            self.kc = from.kc;
        }
        if set("space") {
            self.space = from.space;
        }
        if set("param_reweight") {
            self.param_reweight = from.param_reweight;
        }
        if set("output_reweight") {
            self.output_reweight = from.output_reweight;
        }
        if set("post") {
            self.post = from.post;
        }
        if set("ensemble") {
            self.ensemble = from.ensemble;
        }
    }

    /// This settings' method with its preset applied when switching to a preset from another
    /// method, and LEGO's defaults restored when leaving it (the explorer's method key,
    /// `compare` and `sweep`).
    pub fn with_method(&self, method: MergeMethod) -> MergeSettings {
        let mut s = MergeSettings {
            method,
            ..self.clone()
        };
        if method == MergeMethod::LegoTsv && self.method != MergeMethod::LegoTsv {
            s.apply_preset_fields(&[]);
        } else if method == MergeMethod::Lego && self.method == MergeMethod::LegoTsv {
            s.copy_preset_fields(&MergeSettings::default(), &[]);
        }
        s
    }

    /// What a data-free method reads.
    pub fn data_free_params(&self) -> DataFreeParams {
        DataFreeParams {
            scale: self.scale,
            density: self.density,
            rank_fraction: self.rank_fraction,
            common_fraction: self.common_fraction,
        }
    }

    /// Whether LEGO runs the classic full-space route (raw units, no post-step, one seed);
    /// anything else runs in core space.
    pub fn lego_is_classic(&self) -> bool {
        self.units == UnitBasis::Raw && self.post == PostStep::None && self.ensemble == 1
    }

    /// The k requested for `module` (before clamping to the number of units).
    pub fn k_for(&self, module: &str) -> usize {
        self.k_overrides
            .iter()
            .rev()
            .find(|o| o.matches(module))
            .map(|o| o.k)
            .unwrap_or(self.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_module_k_follows_the_last_matching_pattern() {
        let mut s = MergeSettings {
            k: 8,
            k_overrides: vec![
                "*.q_proj=3".parse().unwrap(),
                "re:layers\\.1\\..*=5".parse().unwrap(),
            ],
            ..MergeSettings::default()
        };
        assert_eq!(s.k_for("layers.0.q_proj"), 3);
        assert_eq!(s.k_for("layers.1.q_proj"), 5);
        assert_eq!(s.k_for("layers.0.v_proj"), 8);
        // A pattern edited after its first use is matched as it is now, not as compiled.
        s.k_overrides[0].pattern = "*.v_proj".into();
        assert_eq!(s.k_for("layers.0.q_proj"), 8);
        assert_eq!(s.k_for("layers.0.v_proj"), 3);
        let invalid = KOverride::new("re:(", 2);
        assert!(!invalid.matches("("));
    }
}
