//! The merge-settings flags shared by `merge` and `compare`. Every flag is optional: what is
//! not given comes from the recipe (with `--recipe`) or from the defaults.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, ValueEnum};
use lora_lego::adapter::AdapterFormat;
use lora_lego::io::naming::KohyaPrefix;
use lora_lego::merge::baselines::MajoritySign;
use lora_lego::recipe::{
    FeatureSpace, KOverride, MergeMethod, MergeSettings, OutputReweight, ParamReweight, PostStep,
    UnitBasis,
};
use lora_lego::tensor::DType;

/// Every flag that sets merge settings (`merge`): the method, its parameters, the output.
#[derive(Debug, Clone, Default, Args)]
pub struct SettingsArgs {
    /// lego, lego-tsv, a data-free method (tsv, iso_c, …) or a PEFT combination type (linear, cat, svd, ties, ties_svd, …) [default: lego].
    #[arg(long, hide_possible_values = true)]
    pub method: Option<MergeMethod>,
    /// The method's parameters.
    #[command(flatten)]
    pub params: ParamArgs,
    /// What is written.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The merge parameters: what `compare` takes too (each method reads its own).
#[derive(Debug, Clone, Default, Args)]
pub struct ParamArgs {
    /// Clusters (merged rank) per module [default: 8].
    #[arg(short = 'k', long)]
    pub k: Option<usize>,
    /// One weight per adapter, comma-separated [default: all 1].
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub weights: Option<Vec<f64>>,
    /// Parameter reweighting norm [default: linf].
    #[arg(long)]
    pub param_reweight: Option<ParamReweight>,
    /// Output reweighting reference rank: a keyword or a number [default: mean].
    #[arg(long, value_parser = OutputReweightParser)]
    pub output_reweight: Option<OutputReweight>,
    /// A free multiplier on B' on top of output reweighting [default: 1].
    #[arg(long)]
    pub output_scale: Option<f64>,
    /// Feature space for clustering [default: plain].
    #[arg(long)]
    pub space: Option<FeatureSpace>,
    /// k-means (and DARE) seed [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// k-means restarts [default: 10].
    #[arg(long)]
    pub n_init: Option<usize>,
    /// k-means iteration cap [default: 300].
    #[arg(long)]
    pub max_iter: Option<usize>,
    /// k-means relative tolerance [default: 1e-6].
    #[arg(long)]
    pub tol: Option<f64>,
    /// Per-module k: PATTERN=K (glob, or re:REGEX); repeatable, the last match wins.
    #[arg(long = "k-for", value_name = "PATTERN=K")]
    pub k_for: Vec<KOverride>,
    /// SVD rank for the SVD baselines [default: the largest source rank].
    #[arg(long)]
    pub svd_rank: Option<usize>,
    /// Fraction kept by TIES / DARE / magnitude pruning [default: the method's: 0.5 PEFT, 0.3 core_ties, 0.2 knots_ties, 0.9 knots_dare_ties].
    #[arg(long)]
    pub density: Option<f64>,
    /// The method's λ / α; a plain multiplier of ΔW for methods without one [default: the method's].
    #[arg(long)]
    pub scale: Option<f64>,
    /// LEGO units [default: raw; lego-tsv: centred].
    #[arg(long)]
    pub units: Option<UnitBasis>,
    /// LEGO centred units per task [default: 6].
    #[arg(long)]
    pub kc: Option<usize>,
    /// LEGO post-step [default: none; lego-tsv: tsv].
    #[arg(long)]
    pub post: Option<PostStep>,
    /// LEGO: average the merges of this many k-means seeds [default: 1; lego-tsv: 10].
    #[arg(long)]
    pub ensemble: Option<usize>,
    /// CART: rank of each deviation as a fraction of the core size [default: 0.08].
    #[arg(long)]
    pub rank_fraction: Option<f64>,
    /// Iso-CTS: the common subspace's fraction of the core size [default: 0.8].
    #[arg(long)]
    pub common_fraction: Option<f64>,
    /// TIES sign election [default: total].
    #[arg(long)]
    pub majority_sign: Option<MajoritySign>,
    /// Quantile clamp of the SVD factors [default: none].
    #[arg(long)]
    pub svd_clamp: Option<f64>,
}

/// The flags that shape the written adapter.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Output format [default: peft].
    #[arg(long)]
    pub format: Option<AdapterFormat>,
    /// Output dtype [default: source].
    #[arg(long)]
    pub dtype: Option<OutputDtype>,
    /// Copy the non-LoRA tensors (classifier heads) of this adapter; repeatable.
    #[arg(long = "keep-heads", value_name = "NAME")]
    pub keep_heads: Vec<String>,
    /// kohya output: the key prefix of every module [default: chosen from the module names].
    #[arg(long)]
    pub kohya_prefix: Option<KohyaPrefix>,
}

/// `--dtype`: the sources' dtype or one of the three written, with the usual aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputDtype {
    /// The sources' dtype (F32 when they differ).
    Source,
    /// 32-bit float.
    #[value(alias = "fp32", alias = "float", alias = "float32")]
    F32,
    /// 16-bit IEEE half.
    #[value(alias = "fp16", alias = "half", alias = "float16")]
    F16,
    /// bfloat16.
    #[value(alias = "bfloat16")]
    Bf16,
}

impl OutputDtype {
    /// The dtype to write (`None` = the sources').
    pub fn dtype(self) -> Option<DType> {
        match self {
            OutputDtype::Source => None,
            OutputDtype::F32 => Some(DType::F32),
            OutputDtype::F16 => Some(DType::F16),
            OutputDtype::Bf16 => Some(DType::BF16),
        }
    }
}

/// Parses `--output-reweight` (a keyword or a number) and offers the keywords to completions.
#[derive(Debug, Clone, Copy)]
pub struct OutputReweightParser;

impl TypedValueParser for OutputReweightParser {
    type Value = OutputReweight;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<OutputReweight, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|e: String| {
            let name = arg.map(|a| a.to_string()).unwrap_or_default();
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value '{text}' for '{name}': {e}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            ["mean", "max", "off"].into_iter().map(PossibleValue::new),
        ))
    }
}

impl SettingsArgs {
    /// Applies the flags that were given on top of `base`.
    pub fn apply(&self, mut s: MergeSettings) -> anyhow::Result<MergeSettings> {
        // A preset's values come first, so any flag given next overrides them.
        if let Some(m) = self.method {
            if m != s.method {
                s = s.with_method(m);
            }
        }
        let mut s = self.params.apply(s);
        let o = &self.output;
        if let Some(f) = o.format {
            s.format = f;
        }
        if let Some(d) = o.dtype {
            s.dtype = d.dtype();
        }
        if !o.keep_heads.is_empty() {
            s.keep_heads = o.keep_heads.clone();
        }
        if o.kohya_prefix.is_some() {
            s.kohya_prefix = o.kohya_prefix;
        }
        Ok(s)
    }
}

/// Which methods read a parameter.
#[derive(Debug, Clone, Copy)]
enum Readers {
    /// Every method.
    All,
    /// LoRA-LEGO (plain and presets).
    Lego,
    /// LEGO and the methods whose DARE masks are seeded.
    Seeded,
    /// PEFT baselines whose names contain one of these parts, and these data-free methods.
    Named(&'static [&'static str], &'static [&'static str]),
}

impl Readers {
    fn read_by(self, method: MergeMethod) -> bool {
        match (self, method) {
            (Readers::All, _) => true,
            (Readers::Lego | Readers::Seeded, m) if m.is_lego() => true,
            (Readers::Seeded, MergeMethod::Baseline(b)) => b.name().starts_with("dare"),
            (Readers::Seeded, MergeMethod::DataFree(d)) => d.name() == "knots_dare_ties",
            (Readers::Named(parts, _), MergeMethod::Baseline(b)) => {
                parts.iter().any(|p| b.name().contains(p))
            }
            (Readers::Named(_, names), MergeMethod::DataFree(d)) => names.contains(&d.name()),
            _ => false,
        }
    }
}

impl ParamArgs {
    /// The flags given that `method` does not read (`--method svd -k 3` is still rank 8).
    pub fn ignored_by(&self, method: MergeMethod) -> Vec<&'static str> {
        let lego = Readers::Lego;
        let svd = Readers::Named(&["svd"], &[]);
        let pruned = Readers::Named(
            &["ties", "dare", "magnitude"],
            &["core_ties", "knots_ties", "knots_dare_ties"],
        );
        // A flag set to its default changes nothing, whatever the method (the explorer's
        // command lines spell every default out).
        let d = MergeSettings::default();
        let flags: [(&str, bool, Readers); 22] = [
            ("-k", self.k.is_some_and(|v| v != d.k), lego),
            ("--k-for", !self.k_for.is_empty(), lego),
            ("--weights", self.weights.is_some(), Readers::All),
            (
                "--param-reweight",
                self.param_reweight.is_some_and(|v| v != d.param_reweight),
                lego,
            ),
            (
                "--output-reweight",
                self.output_reweight.is_some_and(|v| v != d.output_reweight),
                lego,
            ),
            (
                "--output-scale",
                self.output_scale.is_some_and(|v| v != d.output_scale),
                lego,
            ),
            ("--space", self.space.is_some_and(|v| v != d.space), lego),
            (
                "--seed",
                self.seed.is_some_and(|v| v != d.seed),
                Readers::Seeded,
            ),
            ("--n-init", self.n_init.is_some_and(|v| v != d.n_init), lego),
            (
                "--max-iter",
                self.max_iter.is_some_and(|v| v != d.max_iter),
                lego,
            ),
            ("--tol", self.tol.is_some_and(|v| v != d.tol), lego),
            ("--svd-rank", self.svd_rank.is_some(), svd),
            ("--density", self.density.is_some(), pruned),
            ("--scale", self.scale.is_some(), Readers::All),
            ("--units", self.units.is_some_and(|v| v != d.units), lego),
            ("--kc", self.kc.is_some_and(|v| v != d.kc), lego),
            ("--post", self.post.is_some_and(|v| v != d.post), lego),
            (
                "--ensemble",
                self.ensemble.is_some_and(|v| v != d.ensemble),
                lego,
            ),
            (
                "--rank-fraction",
                self.rank_fraction.is_some(),
                Readers::Named(&[], &["cart"]),
            ),
            (
                "--common-fraction",
                self.common_fraction.is_some(),
                Readers::Named(&[], &["iso_cts"]),
            ),
            (
                "--majority-sign",
                self.majority_sign.is_some_and(|v| v != d.majority_sign),
                Readers::Named(&["ties"], &[]),
            ),
            ("--svd-clamp", self.svd_clamp.is_some(), svd),
        ];
        flags
            .into_iter()
            .filter(|(_, given, readers)| *given && !readers.read_by(method))
            .map(|(flag, _, _)| flag)
            .collect()
    }

    /// Applies the parameters that were given on top of `s`.
    pub fn apply(&self, mut s: MergeSettings) -> MergeSettings {
        macro_rules! set {
            ($($field:ident),*) => {$(if let Some(v) = &self.$field { s.$field = v.clone(); })*};
        }
        set!(
            k,
            weights,
            param_reweight,
            output_reweight,
            output_scale,
            space,
            seed,
            n_init,
            max_iter,
            tol,
            majority_sign,
            units,
            kc,
            post,
            ensemble
        );
        for (target, value) in [
            (&mut s.density, self.density),
            (&mut s.scale, self.scale),
            (&mut s.rank_fraction, self.rank_fraction),
            (&mut s.common_fraction, self.common_fraction),
        ] {
            if value.is_some() {
                *target = value;
            }
        }
        if self.svd_rank.is_some() {
            s.svd_rank = self.svd_rank;
        }
        if self.svd_clamp.is_some() {
            s.svd_clamp = self.svd_clamp;
        }
        if !self.k_for.is_empty() {
            s.k_overrides = self.k_for.clone();
        }
        s
    }
}
