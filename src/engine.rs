//! The engine: per-module caches and the one entry point both the TUI and the CLI call.
//!
//! Per module, the raw Gram matrices of the unfolded units are computed once (one GEMM each)
//! and cached; a change of weights, feature space, k or reweighting only rescales them
//! (`D G D`, O(n²)) and reclusters in the embedded space.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::Array2;
use rayon::prelude::*;

use crate::align::{AlignedModule, ModuleSet};
use crate::error::{LegoError, Result};
use crate::folded_gram::FoldedGram;
use crate::gram::GramError;
use crate::gram::{embed, embed_features};
use crate::kmeans::{k_curve, silhouette, suggest_k, KPoint};
use crate::kmeans_gram::GramPartition;
use crate::linalg::{gram_bf16_cols, gram_bf16_rows, Bf16Part};
use crate::merge::baselines::{self, BaselineMethod, BaselineParams, SourceFactors};
use crate::merge::core_space::{CoreBasis, CoreSpace, StackedTasks};
use crate::merge::lego;
use crate::merge::lego_core::LegoCore;
use crate::merge::method::Merged;
use crate::merge::stored_centroids::stored_centroids;
use crate::merge::MethodError;
use crate::merge::{ClusterStats, MergedModule};
use crate::metrics::{source_mix, DeltaMetrics, UnitGeometry};
use crate::msu::{RawUnitInfo, RawUnits, UnitScaling};
use crate::scatter::{PcaBasis, Projection};
use crate::settings::{FeatureSpace, MergeMethod, MergeSettings, ParamReweight};
use crate::tensor::{DType, TensorRef};
use crate::unit_stats::{unit_stats, UnitStats};
use linfa::ParamGuard;

/// The unfolded units' Gram matrices of one module, kept in f32 (the precision the GEMM
/// produced them in) so a module of thousands of units costs 8·n² bytes, not more.
#[derive(Debug, Clone)]
pub struct RawGram {
    /// `A_raw A_rawᵀ`.
    pub ga: Array2<f32>,
    /// `B_raw B_rawᵀ` (B's columns as rows).
    pub gb: Array2<f32>,
    /// Per raw unit: index in the module's sources.
    pub source: Vec<usize>,
    /// Diagonals of `ga` and `gb`.
    a_sq: Vec<f64>,
    b_sq: Vec<f64>,
    /// Per raw unit: content hash (for the canonical order) and max-abs of its halves (for L∞
    /// reweighting without the factors). Left for [`Engine`] to fill on first use when the
    /// caller needs neither (cat's figures), since scanning for them costs as much as the
    /// Gram products.
    stats: OnceLock<UnitStats>,
}

/// Max-abs of each row, ignoring NaN as `f32::max` does. On the bit patterns: for values that
/// are not NaN, the order of `|v|` is the order of its bits, and integers vectorise. Plain
/// loops, so all of it is inlined into [`crate::simd::wide`].
fn row_max_abs(m: &Array2<f32>) -> Vec<f32> {
    let m = m.as_standard_layout();
    let (Some(all), d) = (m.as_slice(), m.ncols()) else {
        return Vec::new();
    };
    if d == 0 {
        return vec![0.0; m.nrows()];
    }
    crate::simd::wide(|| {
        let mut out = Vec::with_capacity(m.nrows());
        for row in all.chunks_exact(d) {
            let mut acc = 0u32;
            for v in row {
                let b = v.to_bits() & 0x7FFF_FFFF;
                acc = acc.max(if b > 0x7F80_0000 { 0 } else { b });
            }
            out.push(f32::from_bits(acc));
        }
        out
    })
}

impl RawGram {
    /// [`RawGram::compute`] straight from stored BF16 factors, none of them widened into an
    /// n × d pool: the Gram products run on the BF16 values (exact products, f32 sums, at twice
    /// the f32 rate where the CPU has AVX-512 BF16) and the per-unit figures come from small
    /// blocks. `None` unless every factor is BF16 and the CPU has the kernel. With `release`,
    /// the factors' mapped pages are dropped from the resident set afterwards; a caller about
    /// to read them again (LEGO's centroids) keeps them and releases them itself.
    ///
    /// Without `with_stats`, the units' hashes and max-abs are left to be read on first use.
    pub fn from_bf16(
        set: &ModuleSet,
        module: &AlignedModule,
        release: bool,
        with_stats: bool,
    ) -> Option<Self> {
        if !crate::linalg::bf16_kernel_available() {
            return None;
        }
        let sources: Vec<_> = module.sources.iter().map(|s| set.source(*s)).collect();
        fn stored(t: &TensorRef, rows: usize, cols: usize) -> Option<Bf16Part<'_>> {
            (t.dtype() == DType::BF16 && t.bytes().len() == 2 * rows * cols).then(|| Bf16Part {
                bytes: t.bytes(),
                rows,
                cols,
            })
        }
        let a_parts = sources
            .iter()
            .map(|m| stored(&m.a, m.rank, module.d_in))
            .collect::<Option<Vec<_>>>()?;
        let b_parts = sources
            .iter()
            .map(|m| stored(&m.b, module.d_out, m.rank))
            .collect::<Option<Vec<_>>>()?;
        let ga = gram_bf16_rows(&a_parts);
        let gb = gram_bf16_cols(&b_parts);
        let stats = OnceLock::new();
        if with_stats {
            let _ = stats.set(unit_stats(set, module));
        }
        // The factors now live in the Gram matrices; the mapped bytes need not stay resident.
        for m in sources.iter().filter(|_| release) {
            m.a.release_pages();
            m.b.release_pages();
        }
        let source = sources
            .iter()
            .enumerate()
            .flat_map(|(si, m)| std::iter::repeat_n(si, m.rank))
            .collect();
        Some(RawGram {
            a_sq: ga.diag().iter().map(|v| f64::from(*v)).collect(),
            b_sq: gb.diag().iter().map(|v| f64::from(*v)).collect(),
            ga,
            gb,
            source,
            stats,
        })
    }

    /// One symmetric f32 product per half; everything downstream widens to f64.
    pub fn compute(raw: &RawUnits) -> Self {
        let ga = crate::linalg::syrk(raw.a.view());
        let gb = crate::linalg::syrk(raw.b.view());
        RawGram {
            a_sq: ga.diag().iter().map(|v| f64::from(*v)).collect(),
            b_sq: gb.diag().iter().map(|v| f64::from(*v)).collect(),
            ga,
            gb,
            source: raw.source.clone(),
            stats: OnceLock::from(UnitStats {
                hash: raw.hashes(),
                a_max: row_max_abs(&raw.a),
                b_max: row_max_abs(&raw.b),
            }),
        }
    }

    /// Per raw unit: content hash and max-abs of each half, read from `module`'s factors in
    /// `set` if not known yet.
    pub fn stats(&self, set: &ModuleSet, module: &AlignedModule) -> &UnitStats {
        self.stats.get_or_init(|| unit_stats(set, module))
    }
}

/// Adapters, their alignment and the per-module caches.
#[derive(Debug)]
pub struct Engine {
    /// The aligned adapters.
    pub set: ModuleSet,
    raw: Vec<Mutex<Option<Arc<RawGram>>>>,
    prepared: Vec<Mutex<Option<Arc<Prepared>>>>,
    /// Drop a module's caches once it is merged (see [`Engine::one_shot`]).
    one_shot: bool,
}

/// A module's units folded for one choice of weights and feature space, and the embedding of
/// their Gram matrix: what a change of k reuses. The folded Gram matrices themselves are
/// rebuilt from the raw ones when needed (O(n²)) rather than kept.
#[derive(Debug)]
pub struct Prepared {
    key: PreparedKey,
    /// How the units are folded.
    pub scaling: UnitScaling,
    /// The isometric embedding of `G_A + G_B` (n × m), computed when first asked for (see
    /// [`Engine::embedding`]): clustering runs on the Gram matrix and needs none.
    y: OnceLock<std::result::Result<Array2<f64>, GramError>>,
    /// The units' first two principal axes, computed when first shown.
    pca: OnceLock<std::result::Result<PcaBasis, GramError>>,
    /// The sources' inner products `⟨w_i ΔW_i, w_j ΔW_j⟩`, the same for every k.
    sources: OnceLock<Array2<f64>>,
}

/// What a [`Prepared`] depends on: the module's sources' weights (as bits) and the space.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PreparedKey {
    weights: Vec<u64>,
    space: FeatureSpace,
}

/// The intermediate state of one LEGO run.
struct LegoRun {
    prepared: Arc<Prepared>,
    membership: Array2<f64>,
    labels: Vec<usize>,
    signs: Vec<f64>,
    merged: MergedModule,
}

/// What the explorer shows for one module.
#[derive(Debug, Clone)]
pub struct ModuleView {
    /// Index into the module set.
    pub module: usize,
    /// Per unit (canonical order): the adapter it came from.
    pub unit_adapter: Vec<usize>,
    /// Per unit: the index of its adapter among the module's sources.
    pub unit_source: Vec<usize>,
    /// Per unit: its cluster (LEGO; empty for other methods).
    pub labels: Vec<usize>,
    /// Per unit: ±1 orientation in its cluster.
    pub signs: Vec<f64>,
    /// Units and centroids in 2-D.
    pub projection: Projection,
    /// Cosine between the module's sources' `w_j ΔW_j` (interference).
    pub interference: Array2<f64>,
    /// The merge of this module.
    pub merged: MergedModule,
}

/// A module's tasks for the core-space methods, and each one's index among its sources.
#[derive(Debug, Clone)]
pub struct CoreTasks {
    /// Stacked in canonical order.
    pub stacked: StackedTasks,
    /// Per task: its index in the module's sources.
    pub source: Vec<usize>,
}

/// LEGO's core-space parameters from the settings, for `module`.
fn lego_core_params(settings: &MergeSettings, module: &str) -> LegoCore {
    LegoCore {
        units: settings.units,
        kc: settings.kc,
        k: settings.k_for(module),
        param: settings.param_reweight,
        output: settings.output_reweight,
        output_scale: settings.output_scale,
        post: settings.post,
        alpha: settings.scale.unwrap_or(1.0),
        cluster: settings.cluster_params(),
        ensemble: settings.ensemble,
    }
}

/// The settings with the paper's plain feature space (baselines do not cluster).
fn plain(settings: &MergeSettings) -> MergeSettings {
    MergeSettings {
        space: FeatureSpace::Plain,
        ..settings.clone()
    }
}

fn gram_error(module: &str, e: GramError) -> LegoError {
    LegoError::Module {
        module: module.to_string(),
        reason: format!("Gram matrix: {e}"),
    }
}

/// The result of merging every module.
#[derive(Debug, Clone)]
pub struct MergeOutput {
    /// One entry per module of the set that has at least one unit with non-zero weight.
    pub modules: Vec<MergedModule>,
    /// Notices from all modules, and global ones.
    pub notices: Vec<String>,
}

impl Engine {
    /// Wraps a module set; nothing is computed until asked.
    pub fn new(set: ModuleSet) -> Self {
        let raw = (0..set.modules.len()).map(|_| Mutex::new(None)).collect();
        let prepared = (0..set.modules.len()).map(|_| Mutex::new(None)).collect();
        Engine {
            set,
            raw,
            prepared,
            one_shot: false,
        }
    }

    /// An engine for a single merge (the CLI's): each module's caches are dropped as soon as
    /// it is merged, so memory holds the modules in flight, not every module's n × n Gram
    /// matrices (4.6 GB for 100 × r16 at 7B width).
    pub fn one_shot(mut self) -> Self {
        self.one_shot = true;
        self
    }

    /// How many modules hold cached Gram matrices now.
    pub fn cached_modules(&self) -> usize {
        self.raw
            .iter()
            .filter(|r| r.lock().unwrap_or_else(|e| e.into_inner()).is_some())
            .count()
    }

    /// Drops module `i`'s cached Gram matrices and folding.
    fn forget(&self, i: usize) {
        *self.raw[i].lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.prepared[i].lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Computes every module's raw Gram matrices in parallel.
    pub fn prepare(&self) {
        (0..self.raw.len()).into_par_iter().for_each(|i| {
            self.raw_gram(i);
        });
    }

    /// The cached raw Gram matrices of module `i`.
    pub fn raw_gram(&self, i: usize) -> Arc<RawGram> {
        self.raw_gram_reading(i, true, true)
    }

    /// [`Engine::raw_gram`], leaving the factors' pages mapped when `release` is false and the
    /// units' hashes and max-abs for later without `with_stats` (see [`RawGram::from_bf16`]).
    fn raw_gram_reading(&self, i: usize, release: bool, with_stats: bool) -> Arc<RawGram> {
        let module = &self.set.modules[i];
        self.raw_gram_with(i, || {
            RawGram::from_bf16(&self.set, module, release, with_stats)
                .unwrap_or_else(|| RawGram::compute(&RawUnits::load(&self.set, module)))
        })
    }

    /// [`Engine::raw_gram`] from module `i`'s factors when the caller has them already read.
    /// BF16 factors still go through the BF16 kernel (twice the f32 rate even counting the
    /// re-read), so a module's cached Gram matrices do not depend on which caller made them.
    fn raw_gram_of(&self, i: usize, raw: &RawUnits) -> Arc<RawGram> {
        let module = &self.set.modules[i];
        self.raw_gram_with(i, || {
            RawGram::from_bf16(&self.set, module, true, true)
                .unwrap_or_else(|| RawGram::compute(raw))
        })
    }

    /// The cached value, or `compute`'s, cached. The lock is held while computing so two
    /// threads asking for one module compute it once.
    fn raw_gram_with(&self, i: usize, compute: impl FnOnce() -> RawGram) -> Arc<RawGram> {
        let mut slot = self.raw[i].lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(slot.get_or_insert_with(|| Arc::new(compute())))
    }

    /// How the units of module `i` are folded under `settings`.
    pub fn scaling(&self, i: usize, settings: &MergeSettings) -> UnitScaling {
        self.scaling_ordered(i, settings, true)
    }

    /// [`Engine::scaling`], with the units in the canonical order only when `canonical`: the
    /// order changes nothing but rounding in sums over all units (cat's figures), and finding
    /// it reads every factor for its hashes.
    fn scaling_ordered(&self, i: usize, settings: &MergeSettings, canonical: bool) -> UnitScaling {
        let raw = self.raw_gram(i);
        let module = &self.set.modules[i];
        let info = RawUnitInfo {
            source: &raw.source,
            a_sq: &raw.a_sq,
            b_sq: &raw.b_sq,
            hash: canonical.then(|| raw.stats(&self.set, module).hash.as_slice()),
        };
        UnitScaling::new(
            &self.set,
            module,
            &info,
            |ai| settings.weight(ai),
            settings.space,
        )
    }

    /// The folded units' geometry of module `i`.
    pub fn geometry(&self, i: usize, scaling: &UnitScaling) -> UnitGeometry {
        let raw = self.raw_gram(i);
        UnitGeometry {
            ga: scaling.scale_gram(&raw.ga, &scaling.a_scale),
            gb: scaling.scale_gram(&raw.gb, &scaling.b_scale),
            source: scaling.source.clone(),
            n_sources: self.set.modules[i].sources.len(),
        }
    }

    /// Module `i` folded and embedded for `settings`' weights and space, reused while only k,
    /// reweighting or the method change. `None` when no unit has a non-zero weight.
    pub fn prepared(&self, i: usize, settings: &MergeSettings) -> Result<Option<Arc<Prepared>>> {
        let key = PreparedKey {
            weights: self.set.modules[i]
                .sources
                .iter()
                .map(|s| settings.weight(s.0).to_bits())
                .collect(),
            space: settings.space,
        };
        // A poisoned lock only means another thread panicked mid-computation: recompute.
        let mut slot = self.prepared[i].lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref().filter(|p| p.key == key) {
            return Ok(Some(Arc::clone(p)));
        }
        let scaling = self.scaling(i, settings);
        if scaling.is_empty() {
            return Ok(None);
        }
        let p = Arc::new(Prepared {
            key,
            scaling,
            y: OnceLock::new(),
            pca: OnceLock::new(),
            sources: OnceLock::new(),
        });
        *slot = Some(Arc::clone(&p));
        Ok(Some(p))
    }

    /// Module `i`'s kept units seen through its raw Gram matrices.
    fn folded<'a>(&self, raw: &'a RawGram, i: usize, scaling: &'a UnitScaling) -> FoldedGram<'a> {
        FoldedGram {
            ga: &raw.ga,
            gb: &raw.gb,
            scaling,
            n_sources: self.set.modules[i].sources.len(),
        }
    }

    /// The isometric embedding `Y` (`Y Yᵀ = G`) of a prepared pool of module `i`, computed once.
    pub fn embedding<'a>(&self, i: usize, prep: &'a Prepared) -> Result<&'a Array2<f64>> {
        let module = &self.set.modules[i];
        prep.y
            .get_or_init(|| {
                // Many units on narrow layers: embed from the features (D × D) instead of the
                // units (n × n); either way Y Yᵀ = G.
                let embedding = if module.d_in + module.d_out < prep.scaling.len() {
                    embed_features(self.feature_rows(i, &prep.scaling).view())
                } else {
                    embed(self.geometry(i, &prep.scaling).g().view())
                };
                embedding.map(|e| e.y)
            })
            .as_ref()
            .map_err(|e| gram_error(module.key.as_str(), e.clone()))
    }

    /// Merges module `i`. `None` when no unit has a non-zero weight.
    pub fn merge_module(&self, i: usize, settings: &MergeSettings) -> Result<Option<MergedModule>> {
        match settings.method {
            MergeMethod::Lego | MergeMethod::LegoTsv if settings.lego_is_classic() => {
                Ok(self.run_lego(i, settings)?.map(|run| run.merged))
            }
            MergeMethod::Lego | MergeMethod::LegoTsv | MergeMethod::DataFree(_) => {
                self.merge_core(i, settings)
            }
            MergeMethod::Baseline(method) => self.merge_baseline(i, method, settings),
        }
    }

    /// Module `i`'s tasks for the core-space methods, in a canonical order (ranks by content
    /// within a task, tasks by their ranks' content), so the result does not depend on the
    /// order of the adapters or of their ranks. Tasks with weight 0 are left out.
    pub fn core_tasks(&self, i: usize, raw: &RawUnits, settings: &MergeSettings) -> CoreTasks {
        let module = &self.set.modules[i];
        let hashes = raw.hashes();
        let mut tasks: Vec<(Vec<u64>, f64, usize, Vec<usize>)> = Vec::new();
        for (si, &s) in module.sources.iter().enumerate() {
            let weight = settings.weight(s.0);
            if weight == 0.0 {
                continue;
            }
            let mut rows: Vec<usize> = (0..raw.source.len())
                .filter(|&r| raw.source[r] == si)
                .collect();
            rows.sort_by_key(|&r| (hashes[r], r));
            let key = rows.iter().map(|&r| hashes[r]).collect();
            tasks.push((key, weight * self.set.source(s).scale, si, rows));
        }
        // Equal keys mean equal tasks (up to the weight), so their order cannot matter.
        tasks.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        let order: Vec<usize> = tasks.iter().flat_map(|t| t.3.iter().copied()).collect();
        // One widening copy straight into the stacked layout.
        let gather = |m: &Array2<f32>| {
            let mut out = Array2::zeros((order.len(), m.ncols()));
            for (dst, &r) in out.rows_mut().into_iter().zip(&order) {
                dst.into_iter()
                    .zip(m.row(r))
                    .for_each(|(d, &v)| *d = f64::from(v));
            }
            out
        };
        CoreTasks {
            stacked: StackedTasks {
                a_cat: gather(&raw.a),
                b_rows: gather(&raw.b),
                ranks: tasks.iter().map(|t| t.3.len()).collect(),
                scales: tasks.iter().map(|t| t.1).collect(),
            },
            source: tasks.iter().map(|t| t.2).collect(),
        }
    }

    /// A core-space merge of module `i`: a data-free method, or LEGO with core-space options
    /// (both carry `--scale` as their own λ / α).
    pub fn merge_core(&self, i: usize, settings: &MergeSettings) -> Result<Option<MergedModule>> {
        let module = &self.set.modules[i];
        let name = module.key.as_str();
        // One read of the factors serves the tasks and, for a full-space result, the metrics.
        let raw = RawUnits::load(&self.set, module);
        let CoreTasks { stacked, source } = self.core_tasks(i, &raw, settings);
        if source.is_empty() {
            return Ok(None);
        }
        let fail = |e: MethodError| LegoError::Module {
            module: name.to_string(),
            reason: e.to_string(),
        };
        let basis = match settings.method {
            MergeMethod::DataFree(method) => method.basis(),
            _ => CoreBasis::Singular,
        };
        let core = CoreSpace::from_stacked(stacked, basis).map_err(fail)?;
        let mut notices = Vec::new();
        let mut clusters = None;
        let merged = match settings.method {
            MergeMethod::DataFree(method) => method
                .build(&settings.data_free_params())
                .merge(&core, baselines::module_seed(settings.seed, name))
                .map_err(fail)?,
            _ => {
                let lego = lego_core_params(settings, name);
                let result = lego.run(&core, None).map_err(fail)?;
                if lego.k > result.stats.n_units {
                    notices.push(format!(
                        "module `{name}`: k = {} is more than its {} units; every unit is its own cluster",
                        lego.k, result.stats.n_units
                    ));
                }
                clusters = Some(result.stats);
                Merged::Core(result.core)
            }
        };
        let n_sources = module.sources.len();
        let in_core = merged
            .core()
            .map(|m| DeltaMetrics::from_cores(m, &core.cores(), &source, n_sources));
        let factors = merged.into_factors(&core).map_err(fail)?;
        let metrics = match in_core {
            Some(m) => m,
            None => self.metrics_from(i, &raw, settings, &factors.a, &factors.b),
        };
        Ok(Some(MergedModule {
            module: i,
            a: factors.a,
            b: factors.b,
            metrics,
            clusters,
            notices,
        }))
    }

    /// ΔW' = b·a of module `i` (its factors already read) against the exact weighted sum and
    /// each source.
    fn metrics_from(
        &self,
        i: usize,
        raw: &RawUnits,
        settings: &MergeSettings,
        a: &Array2<f32>,
        b: &Array2<f32>,
    ) -> DeltaMetrics {
        let module = &self.set.modules[i];
        self.raw_gram_of(i, raw);
        let scaling = self.scaling(i, &plain(settings));
        let (pool_a, pool_b) = scaling.pool(raw);
        DeltaMetrics::from_factors(
            pool_a.view(),
            pool_b.view(),
            &scaling.source,
            module.sources.len(),
            a.view(),
            b.view(),
        )
    }

    /// Merges every module in parallel; the output order is the module order.
    pub fn merge_all(&self, settings: &MergeSettings) -> Result<MergeOutput> {
        self.merge_all_with(settings, &|| {})
    }

    /// [`Engine::merge_all`], calling `done` after each module (for progress displays).
    pub fn merge_all_with(
        &self,
        settings: &MergeSettings,
        done: &(dyn Fn() + Sync),
    ) -> Result<MergeOutput> {
        self.merge_all_until(settings, done, &AtomicBool::new(false))
    }

    /// [`Engine::merge_all_with`] that stops with [`LegoError::Cancelled`] once `cancel` is
    /// set (checked before each module).
    pub fn merge_all_until(
        &self,
        settings: &MergeSettings,
        done: &(dyn Fn() + Sync),
        cancel: &AtomicBool,
    ) -> Result<MergeOutput> {
        self.merge_all_each(settings, done, cancel, &|_, _| Ok(()))
    }

    /// [`Engine::merge_all_until`] that hands each module, merged (`None`: it has no output),
    /// to `each` as soon as it is made, on the thread that made it: an export encodes it there,
    /// writes it and releases its f32 factors, so the whole merge is never held at once.
    /// Modules are taken up in order, so they also finish about in order.
    pub fn merge_all_each(
        &self,
        settings: &MergeSettings,
        done: &(dyn Fn() + Sync),
        cancel: &AtomicBool,
        each: &(dyn Fn(usize, Option<&mut MergedModule>) -> Result<()> + Sync),
    ) -> Result<MergeOutput> {
        settings.validate(self.set.adapters.len())?;
        let mut merged: Vec<(usize, Option<MergedModule>)> = (0..self.set.modules.len())
            .par_bridge()
            .map(|i| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(LegoError::Cancelled);
                }
                let mut m = self.merge_module(i, settings)?;
                each(i, m.as_mut())?;
                if self.one_shot {
                    self.forget(i);
                }
                done();
                Ok((i, m))
            })
            .collect::<Result<_>>()?;
        merged.sort_unstable_by_key(|(i, _)| *i);
        let mut notices = Vec::new();
        let mut modules = Vec::new();
        for (i, m) in merged {
            match m {
                Some(m) => {
                    notices.extend(m.notices.iter().cloned());
                    modules.push(m);
                }
                None => notices.push(format!(
                    "module `{}`: every contributing adapter has weight 0; left out of the output",
                    self.set.modules[i].key
                )),
            }
        }
        Ok(MergeOutput { modules, notices })
    }

    /// LEGO on module `i`, keeping the intermediate state the explorer shows.
    fn run_lego(&self, i: usize, settings: &MergeSettings) -> Result<Option<LegoRun>> {
        let module = &self.set.modules[i];
        let name = module.key.as_str();
        // Everything but the centroids comes from the cached Gram matrices (built from the
        // factors on a first merge): a change of k reads each stored factor once. The centroids
        // read the factors right after and release their pages.
        let raw = self.raw_gram_reading(i, false, true);
        let Some(prep) = self.prepared(i, settings)? else {
            return Ok(None);
        };
        let scaling = &prep.scaling;
        let folded = self.folded(&raw, i, scaling);
        let g = folded.g();
        let n = scaling.len();
        let mut notices = Vec::new();
        let k_req = settings.k_for(name);
        let k = k_req.min(n);
        if k < k_req {
            notices.push(format!(
                "module `{name}`: k = {k_req} is more than its {n} units; using k = {n}"
            ));
        }
        let model = lego::cluster(name, g.view(), k, &settings.cluster_params())?;
        let membership = model.membership_matrix();
        let coef: Vec<f64> = model
            .labels
            .iter()
            .enumerate()
            .map(|(t, &c)| membership[[c, t]])
            .collect();
        let (ca, cb) = stored_centroids(&self.set, module, scaling, &model.labels, &coef, k);
        let stats = raw.stats(&self.set, module);
        let member_linf = scaling.linf_norms(&stats.a_max, &stats.b_max);
        let full = (settings.param_reweight == ParamReweight::Linf).then_some(lego::FullVectors {
            member_linf: &member_linf,
            centroid_a: &ca,
            centroid_b: &cb,
        });
        let factors = lego::param_factors(settings.param_reweight, &model, &g, full);
        let ranks = self.source_ranks(i, scaling);
        let out = lego::output_factor(
            settings.output_reweight,
            settings.output_scale,
            settings.scale.unwrap_or(1.0),
            k,
            &ranks,
        );
        let (a, b) = lego::merged_factors(&ca, &cb, &factors, out);
        // The combination's coefficients `f_c·M_c` (a) and `ρ·f_c·M_c` (b), per unit.
        let v: Vec<f64> = coef
            .iter()
            .zip(&model.labels)
            .map(|(m, &c)| m * factors[c])
            .collect();
        let u: Vec<f64> = v.iter().map(|x| x * out).collect();
        let sources = prep.sources.get_or_init(|| folded.source_products());
        let metrics = folded.lego_metrics(&model.labels, &v, &u, k, sources);
        let sil = silhouette(g.view(), &model.labels, &model.signs).unwrap_or(0.0);
        let clusters = ClusterStats {
            n_units: n,
            inertia: model.inertia,
            silhouette: sil,
            cluster_sizes: model.cluster_sizes(),
            source_mix: source_mix(&model.labels, &scaling.source, k, module.sources.len()),
            param_factors: factors,
            output_factor: out,
        };
        let merged = MergedModule {
            module: i,
            a,
            b,
            metrics,
            clusters: Some(clusters),
            notices,
        };
        Ok(Some(LegoRun {
            prepared: Arc::clone(&prep),
            membership,
            labels: model.labels,
            signs: model.signs,
            merged,
        }))
    }

    /// Only the clustering of module `i` (no factors, no metrics): what a change of k costs
    /// before anything is shown.
    pub fn cluster_only(
        &self,
        i: usize,
        settings: &MergeSettings,
    ) -> Result<Option<GramPartition>> {
        let name = self.set.modules[i].key.as_str();
        let Some(prep) = self.prepared(i, settings)? else {
            return Ok(None);
        };
        let k = settings.k_for(name).min(prep.scaling.len());
        let g = self.folded(&self.raw_gram(i), i, &prep.scaling).g();
        lego::cluster(name, g.view(), k, &settings.cluster_params()).map(Some)
    }

    /// Everything the explorer shows for module `i`: the merge, the units with their sources
    /// and clusters, the 2-D scatter and the interference between sources.
    pub fn module_view(&self, i: usize, settings: &MergeSettings) -> Result<Option<ModuleView>> {
        let module = &self.set.modules[i];
        let name = module.key.as_str();
        let classic_lego = settings.method.is_lego() && settings.lego_is_classic();
        let (prep, labels, signs, membership, merged) = match classic_lego {
            true => match self.run_lego(i, settings)? {
                Some(r) => (r.prepared, r.labels, r.signs, r.membership, r.merged),
                None => return Ok(None),
            },
            false => {
                let Some(merged) = self.merge_module(i, settings)? else {
                    return Ok(None);
                };
                let Some(prep) = self.prepared(i, &plain(settings))? else {
                    return Ok(None);
                };
                let n = prep.scaling.len();
                (
                    prep,
                    Vec::new(),
                    vec![1.0; n],
                    Array2::zeros((0, n)),
                    merged,
                )
            }
        };
        let scaling = &prep.scaling;
        let geom = self.geometry(i, scaling);
        let projection = self
            .pca_basis(i, &prep, &geom)
            .map_err(|e| gram_error(name, e))?
            .projection(membership.view());
        Ok(Some(ModuleView {
            module: i,
            unit_adapter: scaling
                .source
                .iter()
                .map(|&si| module.sources[si].0)
                .collect(),
            unit_source: scaling.source.clone(),
            labels,
            signs,
            projection,
            interference: geom.source_cosines(),
            merged,
        }))
    }

    /// The folded units as full feature rows `[a | b]` (n × D), for the routes that work in
    /// feature space when D < n.
    fn feature_rows(&self, i: usize, scaling: &UnitScaling) -> Array2<f64> {
        let (a, b) = scaling.pool(&RawUnits::load(&self.set, &self.set.modules[i]));
        ndarray::concatenate![ndarray::Axis(1), a, b].mapv(f64::from)
    }

    /// The principal axes of a prepared pool, from the features when they are fewer than the
    /// units (as for the embedding), computed once per pool.
    fn pca_basis<'a>(
        &self,
        i: usize,
        prep: &'a Prepared,
        geom: &UnitGeometry,
    ) -> std::result::Result<&'a PcaBasis, GramError> {
        let module = &self.set.modules[i];
        prep.pca
            .get_or_init(|| {
                if module.d_in + module.d_out < prep.scaling.len() {
                    PcaBasis::from_features(self.feature_rows(i, &prep.scaling).view())
                } else {
                    PcaBasis::from_gram(geom.g().view())
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Inertia and silhouette over k = 1..=min(n, kmax) for module `i`, and the suggested k.
    pub fn k_curve(
        &self,
        i: usize,
        settings: &MergeSettings,
        kmax: usize,
    ) -> Result<(Vec<KPoint>, usize)> {
        let name = self.set.modules[i].key.as_str();
        let Some(prep) = self.prepared(i, settings)? else {
            return Ok((Vec::new(), 0));
        };
        let params = settings
            .cluster_params()
            .kmeans(1)
            .check()
            .map_err(|e| LegoError::Invalid(e.to_string()))?;
        let g = self.geometry(i, &prep.scaling).g();
        let curve =
            k_curve(self.embedding(i, &prep)?.view(), g.view(), kmax, &params).map_err(|e| {
                LegoError::Module {
                    module: name.to_string(),
                    reason: format!("k curve: {e}"),
                }
            })?;
        let k = suggest_k(&curve);
        Ok((curve, k))
    }

    /// Ranks of the module's sources that have units in the pool.
    fn source_ranks(&self, i: usize, scaling: &UnitScaling) -> Vec<usize> {
        let module = &self.set.modules[i];
        let mut present: Vec<usize> = scaling.source.clone();
        present.sort_unstable();
        present.dedup();
        present
            .into_iter()
            .map(|si| self.set.source(module.sources[si]).rank)
            .collect()
    }

    /// Each source's factors of module `i` widened in their stored layouts (A `r × d_in`, B
    /// `d_out × r`): what cat stacks, without the pool's transposed copy of B.
    fn stored_factors(&self, i: usize) -> Vec<(Array2<f32>, Array2<f32>)> {
        let module = &self.set.modules[i];
        // The pages stay mapped: the Gram build reads them next and releases them.
        let widen = |t: &TensorRef, rows: usize, cols: usize| {
            Array2::from_shape_vec((rows, cols), t.to_f32_vec())
                .unwrap_or_else(|_| Array2::zeros((rows, cols)))
        };
        module
            .sources
            .iter()
            .map(|&s| {
                let m = self.set.source(s);
                (
                    widen(&m.a, m.rank, module.d_in),
                    widen(&m.b, module.d_out, m.rank),
                )
            })
            .collect()
    }

    fn merge_baseline(
        &self,
        i: usize,
        method: BaselineMethod,
        settings: &MergeSettings,
    ) -> Result<Option<MergedModule>> {
        let module = &self.set.modules[i];
        let method = method.for_adapter_count(self.set.adapters.len());
        let weight = |s: (usize, usize)| settings.weight(s.0) as f32;
        // cat needs each source's factors only as stored, and the Gram matrices for its
        // figures; the others read the pool once for the merge, the metrics and, when not
        // cached yet, the Gram matrices.
        let (raw, stored) = match method {
            BaselineMethod::Cat => (None, self.stored_factors(i)),
            _ => (Some(RawUnits::load(&self.set, module)), Vec::new()),
        };
        let sources: Vec<SourceFactors> = match &raw {
            Some(raw) => {
                self.raw_gram_of(i, raw);
                pool_sources(&self.set, module, raw, weight)
            }
            None => {
                self.raw_gram_reading(i, true, false);
                (module.sources.iter().zip(&stored))
                    .map(|(&s, (a, b))| SourceFactors {
                        a: a.view(),
                        b: b.view(),
                        scale: self.set.source(s).scale as f32,
                        weight: weight(s),
                    })
                    .collect()
            }
        };
        let max_rank = self
            .set
            .adapters
            .iter()
            .flat_map(|a| a.modules.iter().map(|m| m.rank))
            .max()
            .unwrap_or(1);
        let params = BaselineParams {
            svd_rank: Some(settings.svd_rank.unwrap_or(max_rank)),
            svd_clamp: settings.svd_clamp,
            density: settings.density.unwrap_or(baselines::DEFAULT_DENSITY),
            majority_sign: settings.majority_sign,
            seed: baselines::module_seed(settings.seed, module.key.as_str()),
        };
        let merged =
            baselines::merge_module(method, &sources, &params).map_err(|e| LegoError::Module {
                module: module.key.to_string(),
                reason: e.to_string(),
            })?;
        let scaling = self.scaling_ordered(i, &plain(settings), raw.is_some());
        if scaling.is_empty() {
            return Ok(None);
        }
        let mut merged = merged;
        if let Some(scale) = settings.scale.filter(|&v| v != 1.0) {
            // PEFT's methods have no coefficient of their own: `--scale` multiplies ΔW.
            merged.b.mapv_inplace(|v| (f64::from(v) * scale) as f32);
        }
        let metrics = match &raw {
            Some(raw) => self.metrics_from(i, raw, settings, &merged.a, &merged.b),
            None => {
                // cat stacks the sources' factors: ΔW' is the weighted sum (times `--scale`),
                // so the cached Gram matrices give every figure in O(n²) — no d-wide products.
                self.geometry(i, &scaling)
                    .scaled_sum_metrics(settings.scale.unwrap_or(1.0))
            }
        };
        Ok(Some(MergedModule {
            module: i,
            a: merged.a,
            b: merged.b,
            metrics,
            clusters: None,
            notices: Vec::new(),
        }))
    }
}

/// The sources of `module` as PEFT sees them, as views of the pool `raw` (rows of A; B's
/// columns stored as rows, viewed transposed).
fn pool_sources<'a>(
    set: &ModuleSet,
    module: &AlignedModule,
    raw: &'a RawUnits,
    weight: impl Fn((usize, usize)) -> f32,
) -> Vec<SourceFactors<'a>> {
    let mut row = 0;
    module
        .sources
        .iter()
        .map(|&s| {
            let m = set.source(s);
            let rows = row..row + m.rank;
            row += m.rank;
            SourceFactors {
                a: raw.a.slice(ndarray::s![rows.clone(), ..]),
                b: raw.b.slice(ndarray::s![rows, ..]).reversed_axes(),
                scale: m.scale as f32,
                weight: weight(s),
            }
        })
        .collect()
}
