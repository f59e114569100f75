//! The background thread that runs the engine for the explorer. Requests carry the generation
//! of the settings they were made for; the selected module is computed first, then the others
//! in small batches so a newer request is picked up quickly, and replies are tagged with their
//! generation so the UI can drop or mark stale ones.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use rayon::prelude::*;

use crate::recipe::{MergeMethod, MergeSettings};
use crate::session;
use crate::session::AdapterFormat;
use crate::session::KPoint;
use crate::session::LegoError;
use crate::session::MergedModule;
use crate::session::MethodRow;
use crate::session::{Engine, ModuleView};

/// How many modules are summarised between two looks at the request queue.
const BATCH: usize = 4;

/// The largest k the inertia/silhouette curve goes to.
pub const CURVE_KMAX: usize = 64;

/// The one-glance figures of a merged module (the modules list, the comparison).
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSummary {
    /// Merged rank.
    pub rank: usize,
    /// ‖ΔW' − ΔW_sum‖ / ‖ΔW_sum‖.
    pub error_vs_sum: f64,
    /// ‖ΔW'‖ / ‖ΔW_sum‖.
    pub norm_ratio: f64,
    /// The lowest retention over the module's sources.
    pub min_retention: f64,
    /// Mean silhouette (LEGO only).
    pub silhouette: Option<f64>,
}

impl ModuleSummary {
    /// The summary of a merged module.
    pub fn of(m: &MergedModule) -> Self {
        ModuleSummary {
            rank: m.rank(),
            error_vs_sum: m.metrics.error_vs_sum,
            norm_ratio: m.metrics.norm_ratio,
            min_retention: m
                .metrics
                .retention
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
            silhouette: m.clusters.as_ref().map(|c| c.silhouette),
        }
    }
}

/// A module's result: `Ok(None)` when every source has weight 0.
pub type Outcome<T> = Result<Option<T>, String>;

/// The k curve of a module and its suggested k.
pub type Curve = Result<(Vec<KPoint>, usize), String>;

/// Everything the comparison overlay shows.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The module the first table is about.
    pub module: usize,
    /// Per method: that module merged with it.
    pub module_rows: Vec<(MergeMethod, Outcome<ModuleSummary>)>,
    /// Per method: all modules.
    pub all_rows: Vec<MethodRow>,
}

/// An export to run.
#[derive(Debug, Clone)]
pub struct ExportJob {
    /// The settings (format, dtype and heads included).
    pub settings: MergeSettings,
    /// The adapters as the user gave them (for the command line).
    pub adapters: Vec<PathBuf>,
    /// Where to write.
    pub path: PathBuf,
    /// Replace an existing output.
    pub force: bool,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The output path.
    pub path: PathBuf,
    /// The format written.
    pub format: AdapterFormat,
    /// Per written module: its name and merged rank.
    pub ranks: Vec<(String, usize)>,
    /// Bytes on disk.
    pub bytes: u64,
    /// Notices from the merge and the writer (k clamped, heads dropped, …).
    pub notices: Vec<String>,
    /// The `lora-lego merge …` command that writes the same files.
    pub command: String,
    /// The recipe written beside the export.
    pub recipe: PathBuf,
    /// The settings exported.
    pub settings: MergeSettings,
}

/// A request to the worker.
#[derive(Debug, Clone)]
pub enum Job {
    /// New settings: the module `first`, then every other one.
    Recompute {
        /// The settings' generation.
        generation: u64,
        /// The settings.
        settings: Arc<MergeSettings>,
        /// The module to do first (the selected one).
        first: usize,
    },
    /// The full view of `module` under the current generation (the selection moved).
    Detail {
        /// The generation the request was made for.
        generation: u64,
        /// The settings of that generation.
        settings: Arc<MergeSettings>,
        /// The module.
        module: usize,
    },
    /// Every method side by side.
    Compare {
        /// The generation the request was made for.
        generation: u64,
        /// The settings (their method is replaced by each in turn).
        settings: Arc<MergeSettings>,
        /// The module of the first table.
        module: usize,
    },
    /// Merge everything and write it.
    Export(Box<ExportJob>),
    /// Stop the thread.
    Shutdown,
}

/// A result from the worker.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The selected module's view.
    View {
        /// The generation it was computed for.
        generation: u64,
        /// The module.
        module: usize,
        /// The view.
        result: Outcome<Box<ModuleView>>,
    },
    /// The selected module's k curve.
    Curve {
        /// The generation it was computed for.
        generation: u64,
        /// The module.
        module: usize,
        /// The curve and the suggested k.
        result: Curve,
    },
    /// One module's summary.
    Summary {
        /// The generation it was computed for.
        generation: u64,
        /// The module.
        module: usize,
        /// The figures.
        result: Outcome<ModuleSummary>,
    },
    /// The method comparison.
    Compare {
        /// The generation it was computed for.
        generation: u64,
        /// The tables.
        result: Box<Comparison>,
    },
    /// Modules merged so far by a running export.
    ExportProgress {
        /// Modules done.
        done: usize,
        /// Modules in all.
        total: usize,
    },
    /// The export finished.
    Exported(Result<Box<ExportSummary>, String>),
    /// A background computation panicked; the explorer quits with this message.
    Panicked(String),
}

/// The view and curve of `module`, then its summary, each passed to `emit` as it is ready.
pub fn detail(
    engine: &Engine,
    generation: u64,
    settings: &MergeSettings,
    module: usize,
    emit: &mut dyn FnMut(Reply),
) {
    let view = engine
        .module_view(module, settings)
        .map_err(|e| e.to_string());
    let summary = match &view {
        Ok(Some(v)) => Ok(Some(ModuleSummary::of(&v.merged))),
        Ok(None) => Ok(None),
        Err(e) => Err(e.clone()),
    };
    emit(Reply::View {
        generation,
        module,
        result: view.map(|v| v.map(Box::new)),
    });
    emit(Reply::Summary {
        generation,
        module,
        result: summary,
    });
    let curve = engine
        .k_curve(module, settings, CURVE_KMAX)
        .map_err(|e| e.to_string());
    emit(Reply::Curve {
        generation,
        module,
        result: curve,
    });
}

/// The summary of one module.
pub fn summary(engine: &Engine, generation: u64, settings: &MergeSettings, module: usize) -> Reply {
    Reply::Summary {
        generation,
        module,
        result: engine
            .merge_module(module, settings)
            .map(|m| m.as_ref().map(ModuleSummary::of))
            .map_err(|e| e.to_string()),
    }
}

/// A whole recompute, synchronously: the module `first`, then all others (for tests and for
/// front ends without threads).
pub fn recompute_sync(
    engine: &Engine,
    generation: u64,
    settings: &MergeSettings,
    first: usize,
    emit: &mut dyn FnMut(Reply),
) {
    detail(engine, generation, settings, first, emit);
    for m in (0..engine.set.modules.len()).filter(|&m| m != first) {
        emit(summary(engine, generation, settings, m));
    }
}

/// Every method on `module` and on all modules.
pub fn comparison(engine: &Engine, settings: &MergeSettings, module: usize) -> Comparison {
    let methods = MergeMethod::all();
    let module_rows = session::compare_module(engine, settings, &methods, module)
        .into_iter()
        .map(|(method, r)| {
            let r = r
                .map(|m| m.as_ref().map(ModuleSummary::of))
                .map_err(|e| e.to_string());
            (method, r)
        })
        .collect();
    Comparison {
        module,
        module_rows,
        all_rows: session::compare(engine, settings, &methods),
    }
}

/// Merges everything, writes it, and describes what was written. Progress goes to `emit`.
pub fn export(engine: &Engine, job: &ExportJob, emit: &(dyn Fn(Reply) + Sync)) -> Reply {
    let settings = &job.settings;
    let target = session::ExportTarget {
        path: job.path.clone(),
        force: job.force,
        extra_inputs: Vec::new(),
        spill: session::SpillPolicy::Auto,
    };
    let total = engine.set.modules.len();
    let done = AtomicUsize::new(0);
    let tick = || {
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        emit(Reply::ExportProgress { done: d, total });
    };
    let result = session::export(
        engine,
        settings,
        &target,
        None,
        &tick,
        &AtomicBool::new(false),
    )
    .map(|written| {
        Box::new(ExportSummary {
            path: job.path.clone(),
            format: settings.format,
            ranks: written.ranks,
            bytes: written.bytes,
            notices: written.notices,
            command: super::command_line::render(settings, &job.adapters, &job.path),
            recipe: written.recipe,
            settings: settings.clone(),
        })
    })
    .map_err(|e| match e {
        // The explorer's way past an existing output is the dialog's overwrite field.
        LegoError::OutputExists { .. } => format!("{e}; set overwrite to yes to replace it"),
        other => other.to_string(),
    });
    Reply::Exported(result)
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f` on a new thread; a panic becomes a [`Reply::Panicked`].
fn spawn_task(name: &str, tx: Sender<Reply>, f: impl FnOnce(&Sender<Reply>) + Send + 'static) {
    let fallback = tx.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(&tx))) {
                let _ = tx.send(Reply::Panicked(panic_message(p.as_ref())));
            }
        });
    if let Err(e) = spawned {
        let _ = fallback.send(Reply::Panicked(format!("could not start a thread: {e}")));
    }
}

/// The handle of the background thread.
#[derive(Debug)]
pub struct Worker {
    tx: Sender<Job>,
    /// Results, in the order they were computed.
    pub rx: Receiver<Reply>,
}

impl Worker {
    /// Starts the thread.
    pub fn spawn(engine: Arc<Engine>) -> std::io::Result<Worker> {
        let (tx, jobs) = channel::<Job>();
        let (reply_tx, rx) = channel::<Reply>();
        std::thread::Builder::new()
            .name("lora-lego-worker".into())
            .spawn(move || {
                let panic_tx = reply_tx.clone();
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| run(&engine, &jobs, &reply_tx))) {
                    let _ = panic_tx.send(Reply::Panicked(panic_message(p.as_ref())));
                }
            })?;
        Ok(Worker { tx, rx })
    }

    /// Queues a request; `false` when the thread is gone.
    pub fn send(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The thread finishes its current batch and stops; nobody waits for it.
        let _ = self.tx.send(Job::Shutdown);
    }
}

/// The thread's loop: take every queued request, then do one unit of work.
fn run(engine: &Arc<Engine>, jobs: &Receiver<Job>, tx: &Sender<Reply>) {
    let mut current: Option<(u64, Arc<MergeSettings>)> = None;
    // At most one module: the selected one, whose full view is due.
    let mut details: VecDeque<usize> = VecDeque::new();
    let mut pending: VecDeque<usize> = VecDeque::new();
    loop {
        let mut queued = Vec::new();
        if details.is_empty() && pending.is_empty() {
            match jobs.recv() {
                Ok(j) => queued.push(j),
                Err(_) => return,
            }
        }
        queued.extend(jobs.try_iter());
        for job in queued {
            match job {
                Job::Shutdown => return,
                Job::Recompute {
                    generation,
                    settings,
                    first,
                } => {
                    details.clear();
                    details.push_back(first);
                    pending = (0..engine.set.modules.len())
                        .filter(|&m| m != first)
                        .collect();
                    current = Some((generation, settings));
                }
                Job::Detail {
                    generation, module, ..
                } => {
                    if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                        // Only the newest selection gets a full view; a module the user
                        // scrolled past goes back to the summaries, first in line.
                        for m in details.drain(..) {
                            if m != module {
                                pending.push_front(m);
                            }
                        }
                        details.push_back(module);
                        pending.retain(|&m| m != module);
                    }
                }
                Job::Compare {
                    generation,
                    settings,
                    module,
                } => {
                    let engine = Arc::clone(engine);
                    spawn_task("lora-lego-compare", tx.clone(), move |tx| {
                        let result = Box::new(comparison(&engine, &settings, module));
                        let _ = tx.send(Reply::Compare { generation, result });
                    });
                }
                Job::Export(job) => {
                    let engine = Arc::clone(engine);
                    spawn_task("lora-lego-export", tx.clone(), move |tx| {
                        let progress = std::sync::Mutex::new(tx.clone());
                        let reply = export(&engine, &job, &|r| {
                            if let Ok(t) = progress.lock() {
                                let _ = t.send(r);
                            }
                        });
                        let _ = tx.send(reply);
                    });
                }
            }
        }
        let Some((generation, settings)) = &current else {
            continue;
        };
        if let Some(m) = details.pop_front() {
            detail(engine, *generation, settings, m, &mut |r| {
                let _ = tx.send(r);
            });
            continue;
        }
        let n = pending.len().min(BATCH);
        let batch: Vec<usize> = pending.drain(..n).collect();
        let replies: Vec<Reply> = batch
            .par_iter()
            .map(|&m| summary(engine, *generation, settings, m))
            .collect();
        for r in replies {
            if tx.send(r).is_err() {
                return;
            }
        }
    }
}
