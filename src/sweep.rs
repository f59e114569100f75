//! Sweeps: many candidate settings, each merged in memory by one engine (so the Gram caches
//! are shared), written to a temporary folder only while an evaluator scores it, and recorded
//! line by line in `results.jsonl` so a rerun resumes where the last one stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Instant;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{Engine, MergeOutput};
use crate::error::{LegoError, Result};
use crate::eval::{EvalRecord, Evaluator};
use crate::owned_file::replace_text;
use crate::recipe::Recipe;
use crate::settings::{MergeMethod, MergeSettings};

/// The settings field `--scale` sweeps: every method's global coefficient on the merged ΔW.
pub const SCALE_FIELD: &str = "scale";
/// The results file inside a sweep's folder.
pub const RESULTS_FILE: &str = "results.jsonl";
/// The best candidate's recipe inside a sweep's folder.
pub const BEST_FILE: &str = "best.toml";
/// Where candidates are written while they are scored (inside the sweep's folder, so an
/// interrupted run's leftovers are found and removed by the next one).
const SCORING_DIR: &str = ".scoring";
/// A grid larger than this must be sampled with `random`.
const MAX_GRID: usize = 100_000;

pub use crate::sweep_spec::SweepSpec;

/// One point of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// A stable id: a hash of the inputs, the evaluator, the split and the settings.
    pub id: String,
    /// The full settings.
    pub settings: MergeSettings,
    /// The swept knobs and their values here (`method` included).
    pub knobs: BTreeMap<String, serde_json::Value>,
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The candidate's id.
    pub id: String,
    /// The method's name.
    pub method: String,
    /// The swept knobs.
    pub knobs: BTreeMap<String, serde_json::Value>,
    /// The full settings.
    pub settings: MergeSettings,
    /// sha256 of the merged factors (candidates that merge identically share a score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_sha: Option<String>,
    /// Seconds the merge took.
    pub merge_secs: f64,
    /// The evaluation (absent when the merge or the evaluator failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalRecord>,
    /// What went wrong, if anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The id of the candidate whose identical merge was scored instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
}

impl ResultRecord {
    /// The mean score, when the candidate was scored.
    pub fn mean(&self) -> Option<f64> {
        self.eval.as_ref().map(|e| e.mean)
    }
}

/// Why a sweep could not be planned.
#[derive(Debug, thiserror::Error)]
// Variant fields are the values the `#[error]` message names; documenting each would repeat it.
#[allow(missing_docs)]
pub enum SweepError {
    /// A knob or value the settings do not take.
    #[error("sweep: `{field}` = {value}: {reason}")]
    Value {
        field: String,
        value: String,
        reason: String,
    },
    /// A plan that cannot be run as given.
    #[error("sweep: {0}")]
    Plan(String),
}

/// Parses one command-line value as TOML (`16`, `0.5`, `true`), else takes it as a string
/// (`plain`, `mean`), so `--set` needs no type annotations.
pub fn parse_value(text: &str) -> toml::Value {
    let text = text.trim();
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Parses `NAME=V1,V2,...`.
pub fn parse_set(arg: &str) -> std::result::Result<(String, Vec<toml::Value>), String> {
    let (name, values) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=V1,V2,..., got `{arg}`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("no field name in `{arg}`"));
    }
    let values: Vec<toml::Value> = values
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(parse_value)
        .collect();
    if values.is_empty() {
        return Err(format!("no values for `{name}` in `{arg}`"));
    }
    Ok((name.to_string(), values))
}

fn settings_table(s: &MergeSettings) -> toml::Table {
    match toml::Value::try_from(s) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

/// `settings` with the field named `field` (as in recipes) set to `value`, through the
/// settings' own serde names, so every field, present and future, can be swept.
pub fn apply_field(
    settings: &MergeSettings,
    field: &str,
    value: &toml::Value,
) -> std::result::Result<MergeSettings, SweepError> {
    let attempt = |v: toml::Value| {
        let mut table = settings_table(settings);
        table.insert(field.to_string(), v);
        toml::Value::Table(table).try_into::<MergeSettings>()
    };
    let result = attempt(value.clone()).or_else(|e| match value {
        // `--set output_scale=1` means 1.0; an Option field has no default to tell its type.
        toml::Value::Integer(i) => attempt(toml::Value::Float(*i as f64)).map_err(|_| e),
        _ => Err(e),
    });
    result.map_err(|e| SweepError::Value {
        field: field.to_string(),
        value: value.to_string(),
        reason: e.message().trim().to_string(),
    })
}

/// The settings fields that differ from the defaults (what identifies a candidate; a field
/// added later with a default leaves old ids unchanged).
fn non_default(s: &MergeSettings) -> toml::Table {
    let defaults = settings_table(&MergeSettings::default());
    settings_table(s)
        .into_iter()
        .filter(|(k, v)| defaults.get(k) != Some(v))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What every candidate of one sweep shares, hashed into its id.
#[derive(Debug, Clone)]
pub struct SweepContext {
    /// sha256 of each input adapter, in order.
    pub adapter_hashes: Vec<String>,
    /// The evaluator command as given.
    pub eval: String,
    /// The split.
    pub split: Option<String>,
}

impl SweepContext {
    /// The id of a candidate with `settings`.
    pub fn id(&self, settings: &MergeSettings) -> String {
        let mut h = Sha256::new();
        for a in &self.adapter_hashes {
            h.update(a.as_bytes());
            h.update(b"\0");
        }
        h.update(b"eval\0");
        h.update(self.eval.as_bytes());
        h.update(b"\0split\0");
        h.update(self.split.as_deref().unwrap_or("").as_bytes());
        h.update(b"\0settings\0");
        h.update(toml::to_string(&non_default(settings)).unwrap_or_default());
        hex(&h.finalize()[..6])
    }
}

/// Every candidate of `spec` on top of `base`, in grid order (or the seeded random draw),
/// each validated against `n_adapters`.
pub fn candidates(
    spec: &SweepSpec,
    base: &MergeSettings,
    ctx: &SweepContext,
    n_adapters: usize,
) -> std::result::Result<Vec<Candidate>, SweepError> {
    let methods: Vec<MergeMethod> = if spec.methods.is_empty() {
        vec![base.method]
    } else {
        spec.methods
            .iter()
            .map(|m| {
                m.parse::<MergeMethod>()
                    .map_err(|reason| SweepError::Value {
                        field: "method".into(),
                        value: m.clone(),
                        reason,
                    })
            })
            .collect::<std::result::Result<_, _>>()?
    };
    let mut axes: Vec<(String, Vec<toml::Value>)> = vec![(
        "method".into(),
        methods
            .iter()
            .map(|m| toml::Value::String(m.to_string()))
            .collect(),
    )];
    for (name, values) in &spec.grid {
        if name == "method" {
            return Err(SweepError::Plan(
                "give methods with --methods (or `methods` in [sweep]), not in the grid".into(),
            ));
        }
        if values.is_empty() {
            return Err(SweepError::Plan(format!("`{name}` has no values")));
        }
        axes.push((name.clone(), values.clone()));
    }
    let total = axes
        .iter()
        .try_fold(1usize, |acc, (_, v)| acc.checked_mul(v.len()))
        .filter(|&n| n <= MAX_GRID || spec.random.is_some())
        .ok_or_else(|| {
            SweepError::Plan(format!(
                "the grid has more than {MAX_GRID} points; sample it with --random N"
            ))
        })?;
    let mut picks: Vec<usize> = match spec.random {
        Some(0) => return Err(SweepError::Plan("--random must be at least 1".into())),
        Some(n) if n < total => {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(spec.seed);
            rand::seq::index::sample(&mut rng, total, n).into_vec()
        }
        _ => (0..total).collect(),
    };
    picks.sort_unstable();
    let mut out: Vec<Candidate> = Vec::with_capacity(picks.len());
    for mut index in picks {
        let mut settings = base.clone();
        let mut knobs = BTreeMap::new();
        // Mixed radix, the last axis fastest: the grid order reads like nested loops.
        let mut chosen = vec![0; axes.len()];
        for (ai, (_, values)) in axes.iter().enumerate().rev() {
            chosen[ai] = index % values.len();
            index /= values.len();
        }
        for (ai, (name, values)) in axes.iter().enumerate() {
            let v = &values[chosen[ai]];
            settings = if ai == 0 {
                // The method axis comes first: a preset's knobs are set, then the grid's.
                settings.with_method(methods[chosen[0]])
            } else {
                apply_field(&settings, name, v)?
            };
            knobs.insert(
                name.clone(),
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            );
        }
        settings
            .validate(n_adapters)
            .map_err(|e| SweepError::Value {
                field: e.field.to_string(),
                value: knob_text(&knobs),
                reason: e.message,
            })?;
        let id = ctx.id(&settings);
        // Two grid points can be the same settings (a knob given twice): score once.
        if !out.iter().any(|c| c.id == id) {
            out.push(Candidate {
                id,
                settings,
                knobs,
            });
        }
    }
    Ok(out)
}

/// The knobs as `k=16 density=0.5`.
pub fn knob_text(knobs: &BTreeMap<String, serde_json::Value>) -> String {
    knobs
        .iter()
        .filter(|(k, _)| k.as_str() != "method")
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads `results.jsonl`; lines that do not parse (a torn write) are reported and skipped.
pub fn read_results(path: &Path) -> Result<(Vec<ResultRecord>, Vec<String>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(LegoError::io(path, e)),
    };
    let mut records = Vec::new();
    let mut notes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ResultRecord>(line) {
            Ok(r) => records.push(r),
            Err(e) => notes.push(format!(
                "{}: line {}: not a result record ({e}); ignored",
                path.display(),
                i + 1
            )),
        }
    }
    Ok((records, notes))
}

/// The candidate with the highest mean among `records` (first in order on ties).
pub fn best<'a>(records: impl IntoIterator<Item = &'a ResultRecord>) -> Option<&'a ResultRecord> {
    records
        .into_iter()
        .filter(|r| r.mean().is_some_and(f64::is_finite))
        .fold(None, |best: Option<&ResultRecord>, r| match best {
            Some(b) if b.mean() >= r.mean() => Some(b),
            _ => Some(r),
        })
}

/// sha256 over what an export of `output` depends on: every merged factor and the output
/// settings.
pub fn merge_sha(output: &MergeOutput, settings: &MergeSettings) -> String {
    let mut h = Sha256::new();
    h.update(settings.format.to_string().as_bytes());
    h.update(format!("{:?}{:?}", settings.dtype, settings.keep_heads).as_bytes());
    for m in &output.modules {
        h.update((m.module as u64).to_le_bytes());
        for x in m.a.iter().chain(m.b.iter()) {
            h.update(x.to_bits().to_le_bytes());
        }
    }
    hex(&h.finalize())
}

/// What the runner reports as it goes.
#[derive(Debug)]
pub enum SweepEvent<'a> {
    /// A candidate already scored in an earlier run.
    Skipped(&'a ResultRecord),
    /// A candidate finished (scored, failed, or shared an identical merge's score).
    Finished(&'a ResultRecord),
}

/// How to run a sweep.
pub struct SweepRun<'a> {
    /// The engine holding the adapters.
    pub engine: &'a Engine,
    /// The recipe of the inputs (`merge` replaced per candidate), for each export.
    pub described: &'a Recipe,
    /// The scorer.
    pub evaluator: &'a Evaluator,
    /// The split it is asked for.
    pub split: Option<&'a str>,
    /// Scorers run at once (≥ 1).
    pub jobs: usize,
    /// The sweep's folder (holds `results.jsonl`).
    pub dir: &'a Path,
}

/// Messages to the thread that records results.
enum Msg {
    Done(ResultRecord),
    /// A candidate whose merge is identical to one scored (or being scored) under `sha`.
    Same(ResultRecord),
}

impl SweepRun<'_> {
    /// Runs every candidate not yet scored in `results.jsonl`; returns the records of all
    /// `candidates` (old and new) in candidate order, and notes about the results file.
    pub fn run(
        &self,
        candidates: &[Candidate],
        on_event: &(dyn Fn(SweepEvent) + Sync),
    ) -> Result<(Vec<ResultRecord>, Vec<String>)> {
        std::fs::create_dir_all(self.dir).map_err(|e| LegoError::io(self.dir, e))?;
        let results_path = self.dir.join(RESULTS_FILE);
        let (mut all, notes) = read_results(&results_path)?;
        let scoring = self.dir.join(SCORING_DIR);
        if scoring.exists() {
            std::fs::remove_dir_all(&scoring).map_err(|e| LegoError::io(&scoring, e))?;
        }
        // Only clean runs count as done: a failure (a timeout on a busy machine) is retried.
        let done: HashMap<String, ResultRecord> = all
            .iter()
            .filter(|r| r.eval.is_some())
            .map(|r| (r.id.clone(), r.clone()))
            .collect();
        let mut by_sha: HashMap<String, ResultRecord> = HashMap::new();
        for r in done.values() {
            if let Some(s) = &r.merge_sha {
                by_sha.entry(s.clone()).or_insert_with(|| r.clone());
            }
        }
        let todo: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| match done.get(&c.id) {
                Some(r) => {
                    on_event(SweepEvent::Skipped(r));
                    false
                }
                None => true,
            })
            .collect();
        if !todo.is_empty() {
            std::fs::create_dir_all(&scoring).map_err(|e| LegoError::io(&scoring, e))?;
        }
        let write_error: Mutex<Option<LegoError>> = Mutex::new(None);
        let known: std::collections::HashSet<String> = by_sha.keys().cloned().collect();
        // Set when results can no longer be recorded: the producer stops merging and the
        // scorers drain the queue without scoring, so no thread waits on another.
        let stop = AtomicBool::new(false);
        let (job_tx, job_rx) = mpsc::sync_channel::<(ResultRecord, PathBuf)>(self.jobs.max(1));
        let job_rx = Mutex::new(job_rx);
        std::thread::scope(|scope| {
            let (msg_tx, msg_rx) = mpsc::channel::<Msg>();
            for _ in 0..self.jobs.max(1) {
                let msg_tx = msg_tx.clone();
                let (job_rx, stop) = (&job_rx, &stop);
                scope.spawn(move || loop {
                    let next = job_rx.lock().ok().and_then(|rx| rx.recv().ok());
                    let Some((mut record, path)) = next else {
                        return;
                    };
                    if stop.load(Ordering::SeqCst) {
                        remove(&path);
                        continue;
                    }
                    match self.evaluator.run(&path, self.split) {
                        Ok(e) => record.eval = Some(e),
                        Err(e) => record.error = Some(e.to_string()),
                    }
                    remove(&path);
                    if msg_tx.send(Msg::Done(record)).is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                });
            }
            let producer_tx = msg_tx;
            let todo = &todo;
            let scoring = &scoring;
            let stop = &stop;
            scope.spawn(move || {
                let mut in_flight = known;
                for c in todo {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut record = ResultRecord {
                        id: c.id.clone(),
                        method: c.settings.method.to_string(),
                        knobs: c.knobs.clone(),
                        settings: c.settings.clone(),
                        merge_sha: None,
                        merge_secs: 0.0,
                        eval: None,
                        error: None,
                        same_as: None,
                    };
                    let t = Instant::now();
                    let merged = self.engine.merge_all(&c.settings);
                    record.merge_secs = t.elapsed().as_secs_f64();
                    let output = match merged {
                        Ok(o) => o,
                        Err(e) => {
                            record.error = Some(format!("merge: {e}"));
                            if producer_tx.send(Msg::Done(record)).is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    let sha = merge_sha(&output, &c.settings);
                    record.merge_sha = Some(sha.clone());
                    if in_flight.contains(&sha) {
                        if producer_tx.send(Msg::Same(record)).is_err() {
                            return;
                        }
                        continue;
                    }
                    in_flight.insert(sha);
                    let path = candidate_path(scoring, &c.id, &c.settings);
                    let recipe = Recipe {
                        merge: c.settings.clone(),
                        ..self.described.clone()
                    };
                    let written = recipe.to_toml().and_then(|text| {
                        crate::export::export_with_recipe(
                            self.engine,
                            &output,
                            &c.settings,
                            &path,
                            false,
                            &text,
                        )
                    });
                    drop(output);
                    let sent = match written {
                        Ok(_) => job_tx.send((record, path)).is_ok(),
                        Err(e) => {
                            remove(&path);
                            record.error = Some(format!("writing the candidate: {e}"));
                            producer_tx.send(Msg::Done(record)).is_ok()
                        }
                    };
                    if !sent {
                        return;
                    }
                }
            });
            // Identical merges wait here for the score of the first of them.
            let mut waiting: HashMap<String, Vec<ResultRecord>> = HashMap::new();
            let mut finished = 0;
            while finished < todo.len() {
                let Ok(msg) = msg_rx.recv() else { break };
                let mut ready = Vec::new();
                match msg {
                    Msg::Done(r) => {
                        if let Some(sha) = r.merge_sha.clone() {
                            by_sha.entry(sha.clone()).or_insert_with(|| r.clone());
                            for mut w in waiting.remove(&sha).unwrap_or_default() {
                                w.eval = r.eval.clone();
                                w.error = r.error.clone();
                                w.same_as = Some(r.id.clone());
                                ready.push(w);
                            }
                        }
                        ready.insert(0, r);
                    }
                    Msg::Same(mut r) => {
                        let sha = r.merge_sha.clone().unwrap_or_default();
                        match by_sha.get(&sha) {
                            Some(orig) => {
                                r.eval = orig.eval.clone();
                                r.error = orig.error.clone();
                                r.same_as = Some(orig.id.clone());
                                ready.push(r);
                            }
                            None => waiting.entry(sha).or_default().push(r),
                        }
                    }
                }
                for r in ready {
                    finished += 1;
                    all.retain(|old| old.id != r.id);
                    all.push(r.clone());
                    if let Err(e) = write_results(&results_path, &all) {
                        if let Ok(mut slot) = write_error.lock() {
                            *slot = Some(e);
                        }
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    on_event(SweepEvent::Finished(&r));
                }
            }
        });
        if scoring.exists() {
            let _ = std::fs::remove_dir_all(&scoring);
        }
        if let Some(e) = write_error.into_inner().ok().flatten() {
            return Err(e);
        }
        let by_id: HashMap<&str, &ResultRecord> = all.iter().map(|r| (r.id.as_str(), r)).collect();
        let ordered = candidates
            .iter()
            .filter_map(|c| by_id.get(c.id.as_str()).map(|r| (*r).clone()))
            .collect();
        Ok((ordered, notes))
    }
}

/// Merges `settings`, writes the result into a fresh temporary folder, scores it and removes
/// it: one evaluation outside a sweep (`compare --eval`, the explorer). The error is a message
/// naming what failed.
pub fn score_once(
    engine: &Engine,
    settings: &MergeSettings,
    evaluator: &Evaluator,
    split: Option<&str>,
) -> std::result::Result<EvalRecord, String> {
    let output = engine
        .merge_all(settings)
        .map_err(|e| format!("merge: {e}"))?;
    let tmp = tempfile::Builder::new()
        .prefix("lora-lego-score-")
        .tempdir()
        .map_err(|e| format!("creating a temporary folder: {e}"))?;
    let path = candidate_path(tmp.path(), &settings.method.to_string(), settings);
    crate::export::export(engine, &output, settings, &path, false)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    drop(output);
    evaluator.run(&path, split).map_err(|e| e.to_string())
}

fn candidate_path(scoring: &Path, id: &str, settings: &MergeSettings) -> PathBuf {
    if settings.format.is_single_file() {
        scoring.join(format!("{id}.safetensors"))
    } else {
        scoring.join(id)
    }
}

/// Removes a scored candidate (a directory, or a kohya file and its recipe).
fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
        if let (Some(parent), Some(stem)) = (path.parent(), path.file_stem()) {
            let prefix = format!("{}.", stem.to_string_lossy());
            if let Ok(entries) = std::fs::read_dir(parent) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }
}

/// Rewrites `results.jsonl` through a temporary file and a rename, so a reader (or a killed
/// run) never sees half a line; the file is small (one line per candidate).
pub fn write_results(path: &Path, records: &[ResultRecord]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| LegoError::Invalid(e.to_string()))?;
        text.push_str(&line);
        text.push('\n');
    }
    replace_text(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SweepContext {
        SweepContext {
            adapter_hashes: vec!["a".into()],
            eval: "e {dir}".into(),
            split: Some("val".into()),
        }
    }

    #[test]
    fn values_parse_as_toml_or_else_as_strings() {
        assert_eq!(parse_value("16"), toml::Value::Integer(16));
        assert_eq!(parse_value("0.5"), toml::Value::Float(0.5));
        assert_eq!(parse_value("plain"), toml::Value::String("plain".into()));
        assert_eq!(
            parse_value("sign-aware"),
            toml::Value::String("sign-aware".into())
        );
        assert!(parse_set("k").is_err());
        assert!(parse_set("k=").is_err());
        assert_eq!(parse_set("k=8,16").unwrap().1.len(), 2);
    }

    #[test]
    fn any_field_is_set_by_its_recipe_name_and_integers_widen_to_floats() {
        let base = MergeSettings::default();
        let s = apply_field(&base, "output_scale", &toml::Value::Integer(2)).unwrap();
        assert_eq!(s.output_scale, 2.0);
        let s = apply_field(&base, "svd_rank", &toml::Value::Integer(4)).unwrap();
        assert_eq!(s.svd_rank, Some(4));
        let s = apply_field(&base, "space", &parse_value("balanced")).unwrap();
        assert_eq!(s.space, crate::settings::FeatureSpace::Balanced);
        let e = apply_field(&base, "no_such_field", &toml::Value::Integer(1)).unwrap_err();
        assert!(e.to_string().contains("no_such_field"), "{e}");
        let e = apply_field(&base, "k", &parse_value("many")).unwrap_err();
        assert!(e.to_string().contains("`k`"), "{e}");
    }

    #[test]
    fn a_preset_method_gets_its_preset_and_the_grid_still_overrides_it() {
        let mut spec = SweepSpec {
            methods: vec!["lego-tsv".into(), "lego".into()],
            ..Default::default()
        };
        spec.grid.insert("k".into(), vec![toml::Value::Integer(16)]);
        let all = candidates(&spec, &MergeSettings::default(), &ctx(), 1).unwrap();
        let preset = MergeSettings::preset(MergeMethod::LegoTsv);
        assert_eq!(all[0].settings, MergeSettings { k: 16, ..preset });
        assert_eq!(
            all[1].settings,
            MergeSettings {
                k: 16,
                ..MergeSettings::default()
            }
        );
    }

    #[test]
    fn the_grid_is_a_product_and_the_random_draw_is_seeded_and_a_subset() {
        let mut spec = SweepSpec {
            methods: vec!["lego".into(), "linear".into()],
            ..Default::default()
        };
        spec.grid.insert(
            "k".into(),
            vec![toml::Value::Integer(2), toml::Value::Integer(4)],
        );
        spec.grid.insert(
            "density".into(),
            vec![toml::Value::Float(0.3), toml::Value::Float(0.7)],
        );
        let base = MergeSettings::default();
        let all = candidates(&spec, &base, &ctx(), 1).unwrap();
        assert_eq!(all.len(), 8);
        let ids: std::collections::BTreeSet<_> = all.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), 8, "ids are distinct");
        assert_eq!(all[0].settings.method, MergeMethod::Lego);
        assert_eq!((all[0].settings.density, all[0].settings.k), (Some(0.3), 2));
        assert_eq!((all[1].settings.density, all[1].settings.k), (Some(0.3), 4));
        spec.random = Some(3);
        spec.seed = 5;
        let a = candidates(&spec, &base, &ctx(), 1).unwrap();
        let b = candidates(&spec, &base, &ctx(), 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|c| ids.contains(&c.id)));
        spec.seed = 6;
        let c = candidates(&spec, &base, &ctx(), 1).unwrap();
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn ids_ignore_fields_at_their_default_and_change_with_the_scorer() {
        let c = ctx();
        let base = MergeSettings::default();
        let explicit = apply_field(&base, "k", &toml::Value::Integer(8)).unwrap();
        assert_eq!(c.id(&base), c.id(&explicit));
        let other = SweepContext {
            split: Some("test".into()),
            ..ctx()
        };
        assert_ne!(c.id(&base), other.id(&base));
    }

    #[test]
    fn an_invalid_value_is_refused_before_anything_runs() {
        let mut spec = SweepSpec::default();
        spec.grid
            .insert("density".into(), vec![toml::Value::Float(1.5)]);
        let e = candidates(&spec, &MergeSettings::default(), &ctx(), 1).unwrap_err();
        assert!(e.to_string().contains("density"), "{e}");
        let spec = SweepSpec {
            methods: vec!["nope".into()],
            ..Default::default()
        };
        assert!(candidates(&spec, &MergeSettings::default(), &ctx(), 1).is_err());
    }
}
