//! The explorer's state and its reaction to events, as a pure function: [`App::handle`] takes
//! an event and returns the effects to carry out (requests to the worker, saving the history,
//! quitting), so the whole UI logic runs in tests without a terminal.

use std::path::PathBuf;
use std::sync::Arc;

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use crate::engine::{Engine, ModuleView};
use crate::recipe::{
    FeatureSpace, KOverride, MergeMethod, MergeSettings, OutputReweight, ParamReweight,
};

use super::export_dialog::{fresh_path, DialogAction, ExportDialog, Phase};
use super::theme::Theme;
use super::ui;
use super::worker::{
    Comparison, Curve, ExportJob, ExportSummary, Job, ModuleSummary, Outcome, Reply,
};

/// The panels that take the focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The adapters and their weights.
    Adapters,
    /// The modules list.
    Modules,
    /// The merge knobs.
    Controls,
}

/// What colours the scatter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourBy {
    /// The unit's cluster.
    Cluster,
    /// The unit's source adapter.
    Source,
}

/// A popup over the main screen.
#[derive(Debug, Clone)]
pub enum Overlay {
    /// The key list.
    Help,
    /// Every method side by side.
    Compare,
    /// The export dialog.
    Export(Box<ExportDialog>),
    /// "Quit without exporting?"
    ConfirmQuit,
    /// A sweep's candidates and scores.
    Sweep(Box<crate::tui::sweep_view::SweepView>),
}

/// A row of the controls panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The merge method.
    Method,
    /// The global k.
    K,
    /// The selected module's k (an exact-name override).
    ModuleK,
    /// Parameter reweighting norm.
    ParamReweight,
    /// Output reweighting reference rank.
    OutputReweight,
    /// The free multiplier on B'.
    OutputScale,
    /// The clustering feature space.
    Space,
    /// The k-means seed.
    Seed,
    /// The weight of adapter `i`.
    Weight(usize),
}

/// The reference ranks the output-reweighting control steps through.
const R_REF: [OutputReweight; 9] = [
    OutputReweight::Mean,
    OutputReweight::Max,
    OutputReweight::Off,
    OutputReweight::Value(1.0),
    OutputReweight::Value(2.0),
    OutputReweight::Value(4.0),
    OutputReweight::Value(8.0),
    OutputReweight::Value(16.0),
    OutputReweight::Value(32.0),
];

/// A value and the settings generation it was computed for.
#[derive(Debug, Clone)]
pub struct Slot<T> {
    /// The generation of the settings it belongs to.
    pub generation: u64,
    /// The value.
    pub value: T,
}

/// Input to [`App::handle`].
#[derive(Debug, Clone)]
pub enum Event {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event.
    Mouse(MouseEvent),
    /// The terminal's new size.
    Resize(u16, u16),
    /// A result from the worker.
    Reply(Box<Reply>),
    /// The evaluator's verdict on `settings`.
    Scored {
        /// The settings scored.
        settings: Box<MergeSettings>,
        /// The record, or what went wrong.
        result: Result<crate::eval::EvalRecord, String>,
    },
}

/// What the run loop must do after an event.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send this request to the worker.
    Job(Job),
    /// Remember the current settings for this adapter set.
    SaveHistory,
    /// Leave the explorer.
    Quit,
    /// Score these settings with the evaluator (off the worker: scoring takes seconds to
    /// minutes and must not hold up recomputation).
    Score(Box<MergeSettings>),
}

/// The effects of one event, in order.
pub type Effects = Vec<Effect>;

/// A status-bar message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Information.
    Info(String),
    /// Something went wrong (shown in red).
    Error(String),
}

/// The explorer's whole state.
#[derive(Debug)]
pub struct App {
    /// The engine (adapters, modules, caches).
    pub engine: Arc<Engine>,
    /// The adapter paths as given (for the command line and the history).
    pub adapter_paths: Vec<PathBuf>,
    /// The settings being edited.
    pub settings: MergeSettings,
    /// Bumped on every change of settings; results of older generations are stale.
    pub generation: u64,
    /// The focused panel.
    pub focus: Focus,
    /// The selected module (index into the module set).
    pub selected: usize,
    /// The modules-list filter (a case-insensitive substring).
    pub filter: String,
    /// True while the filter is being typed.
    pub filter_editing: bool,
    /// The first module row shown.
    pub module_offset: usize,
    /// The selected adapter row.
    pub adapter_cursor: usize,
    /// The selected controls row.
    pub control_cursor: usize,
    /// What colours the scatter.
    pub colour_by: ColourBy,
    /// The open popup.
    pub overlay: Option<Overlay>,
    /// The selected module's view (its module index and the result).
    pub view: Option<(usize, Slot<Outcome<Box<ModuleView>>>)>,
    /// The selected module's k curve.
    pub curve: Option<(usize, Slot<Curve>)>,
    /// Per module: the latest summary.
    pub summaries: Vec<Option<Slot<Outcome<ModuleSummary>>>>,
    /// The method comparison.
    pub comparison: Option<Slot<Box<Comparison>>>,
    /// The last export.
    pub last_export: Option<Box<ExportSummary>>,
    /// The settings last exported (quitting asks for confirmation when they differ).
    pub exported: Option<MergeSettings>,
    /// The status-bar message.
    pub status: Option<Status>,
    /// The colours.
    pub theme: Theme,
    /// The terminal area (for mouse hit-testing).
    pub area: Rect,
    /// Set when the explorer should end.
    pub quit: bool,
    /// A fatal error (a worker panic): the run loop quits and reports it.
    pub fatal: Option<String>,
    /// The sweep folder the sweep view (`w`) reads (`lora-lego --sweep RESULTS_DIR`).
    pub sweep_dir: Option<PathBuf>,
    /// The evaluator's last score, with the settings it is for and where it came from (a sweep
    /// candidate, or `E`); stale once the settings change.
    pub score: Option<(MergeSettings, String, crate::eval::EvalRecord)>,
    /// The evaluator `E` runs on the current settings (`lora-lego --eval CMD`), and its split.
    pub evaluator: Option<(crate::eval::Evaluator, Option<String>)>,
    /// True while a score is being computed.
    pub scoring: bool,
}

impl App {
    /// A new explorer on `engine`; call [`App::start`] for the first computation.
    pub fn new(engine: Arc<Engine>, adapter_paths: Vec<PathBuf>, settings: MergeSettings) -> Self {
        let n = engine.set.modules.len();
        App {
            engine,
            adapter_paths,
            settings,
            generation: 0,
            focus: Focus::Modules,
            selected: 0,
            filter: String::new(),
            filter_editing: false,
            module_offset: 0,
            adapter_cursor: 0,
            control_cursor: 0,
            colour_by: ColourBy::Cluster,
            overlay: None,
            view: None,
            curve: None,
            summaries: vec![None; n],
            comparison: None,
            last_export: None,
            exported: None,
            status: None,
            theme: Theme::default(),
            area: Rect::new(0, 0, 160, 48),
            quit: false,
            fatal: None,
            sweep_dir: None,
            score: None,
            evaluator: None,
            scoring: false,
        }
    }

    /// The requests of the first computation.
    pub fn start(&mut self) -> Vec<Effect> {
        self.recompute()
    }

    /// Modules passing the filter, in set order.
    pub fn visible_modules(&self) -> Vec<usize> {
        let f = self.filter.to_lowercase();
        (0..self.engine.set.modules.len())
            .filter(|&i| {
                f.is_empty()
                    || self.engine.set.modules[i]
                        .key
                        .as_str()
                        .to_lowercase()
                        .contains(&f)
            })
            .collect()
    }

    /// The name of the selected module.
    pub fn selected_name(&self) -> &str {
        self.engine
            .set
            .modules
            .get(self.selected)
            .map(|m| m.key.as_str())
            .unwrap_or("")
    }

    /// The exact-name k override of the selected module, if any.
    pub fn module_override(&self) -> Option<usize> {
        let name = self.selected_name();
        self.settings
            .k_overrides
            .iter()
            .rev()
            .find(|o| o.pattern == name)
            .map(|o| o.k)
    }

    /// The rows of the controls panel.
    pub fn controls(&self) -> Vec<Control> {
        let mut c = vec![
            Control::Method,
            Control::K,
            Control::ModuleK,
            Control::ParamReweight,
            Control::OutputReweight,
            Control::OutputScale,
            Control::Space,
            Control::Seed,
        ];
        c.extend((0..self.engine.set.adapters.len()).map(Control::Weight));
        c
    }

    /// The latest view computed for the selected module, if any (it may be stale).
    pub fn selected_view(&self) -> Option<&Outcome<Box<ModuleView>>> {
        match &self.view {
            Some((m, slot)) if *m == self.selected => Some(&slot.value),
            _ => None,
        }
    }

    /// True when the view shown is for older settings or another module.
    pub fn view_is_stale(&self) -> bool {
        !matches!(&self.view, Some((m, s)) if *m == self.selected && s.generation == self.generation)
    }

    /// True when the curve shown is for older settings or another module.
    pub fn curve_is_stale(&self) -> bool {
        !matches!(&self.curve, Some((m, s)) if *m == self.selected && s.generation == self.generation)
    }

    /// Modules whose summary is fresh, and modules in all.
    pub fn progress(&self) -> (usize, usize) {
        let fresh = self
            .summaries
            .iter()
            .filter(|s| s.as_ref().is_some_and(|s| s.generation == self.generation))
            .count();
        (fresh, self.summaries.len())
    }

    /// True when the current settings differ from the last export (or nothing was exported).
    pub fn unexported(&self) -> bool {
        self.exported.as_ref() != Some(&self.settings)
    }

    /// Reacts to one event.
    pub fn handle(&mut self, event: Event) -> Effects {
        match event {
            Event::Key(k) if k.kind != KeyEventKind::Release => self.key(k),
            Event::Key(_) => Vec::new(),
            Event::Mouse(m) => self.mouse(m),
            Event::Resize(w, h) => {
                self.area = Rect::new(0, 0, w, h);
                self.scroll_into_view();
                Vec::new()
            }
            Event::Reply(r) => self.reply(*r),
            Event::Scored { settings, result } => {
                self.scoring = false;
                match result {
                    Ok(e) => {
                        self.status = Some(Status::Info(format!("scored: mean {:.4}", e.mean)));
                        self.score = Some((*settings, "scored here".into(), e));
                    }
                    Err(e) => self.status = Some(Status::Error(format!("scoring failed: {e}"))),
                }
                Vec::new()
            }
        }
    }

    fn reply(&mut self, r: Reply) -> Vec<Effect> {
        match r {
            Reply::View {
                generation,
                module,
                result,
            } => {
                if generation == self.generation && module == self.selected {
                    if let Err(e) = &result {
                        self.status = Some(Status::Error(e.clone()));
                    }
                    self.view = Some((
                        module,
                        Slot {
                            generation,
                            value: result,
                        },
                    ));
                }
            }
            Reply::Curve {
                generation,
                module,
                result,
            } => {
                if generation == self.generation && module == self.selected {
                    self.curve = Some((
                        module,
                        Slot {
                            generation,
                            value: result,
                        },
                    ));
                }
            }
            Reply::Summary {
                generation,
                module,
                result,
            } => {
                let newer = self
                    .summaries
                    .get(module)
                    .and_then(|s| s.as_ref())
                    .is_none_or(|s| s.generation <= generation);
                if newer && module < self.summaries.len() {
                    self.summaries[module] = Some(Slot {
                        generation,
                        value: result,
                    });
                }
            }
            Reply::Compare { generation, result } => {
                self.comparison = Some(Slot {
                    generation,
                    value: result,
                });
            }
            Reply::ExportProgress { done, total } => {
                if let Some(Overlay::Export(d)) = &mut self.overlay {
                    if matches!(d.phase, Phase::Running { .. }) {
                        d.phase = Phase::Running { done, total };
                    }
                }
            }
            Reply::Exported(result) => {
                let mut effects = Vec::new();
                match &result {
                    Ok(s) => {
                        self.exported = Some(s.settings.clone());
                        self.last_export = Some(s.clone());
                        self.status =
                            Some(Status::Info(format!("exported to {}", s.path.display())));
                        effects.push(Effect::SaveHistory);
                    }
                    Err(e) => self.status = Some(Status::Error(format!("export failed: {e}"))),
                }
                if let Some(Overlay::Export(d)) = &mut self.overlay {
                    d.phase = match result {
                        Ok(s) => Phase::Done(s),
                        Err(e) => Phase::Failed(e),
                    };
                }
                return effects;
            }
            Reply::Panicked(msg) => {
                self.fatal = Some(format!("a background computation panicked: {msg}"));
                self.quit = true;
                return vec![Effect::Quit];
            }
        }
        Vec::new()
    }

    fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && k.code == KeyCode::Char('c') {
            return self.quit_now();
        }
        if ui::layout(self.area, self.engine.set.adapters.len()).is_none() {
            // Only quitting works on the "too small" screen, and at once: a confirmation
            // could not be drawn there.
            return match k.code {
                KeyCode::Char('q') | KeyCode::Esc => self.quit_now(),
                _ => Vec::new(),
            };
        }
        if let Some(overlay) = self.overlay.take() {
            return self.overlay_key(overlay, k);
        }
        // A note is read by the time the next key comes; errors stay until fixed.
        if matches!(self.status, Some(Status::Info(_))) {
            self.status = None;
        }
        if self.filter_editing {
            match k.code {
                KeyCode::Enter => self.filter_editing = false,
                KeyCode::Esc => {
                    self.filter.clear();
                    self.filter_editing = false;
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            return self.after_filter();
        }
        match k.code {
            KeyCode::Char('q') | KeyCode::Esc => self.request_quit(),
            KeyCode::Char('?') => {
                self.overlay = Some(Overlay::Help);
                Vec::new()
            }
            KeyCode::Tab => {
                self.focus = match self.focus {
                    Focus::Adapters => Focus::Modules,
                    Focus::Modules => Focus::Controls,
                    Focus::Controls => Focus::Adapters,
                };
                Vec::new()
            }
            KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Adapters => Focus::Controls,
                    Focus::Modules => Focus::Adapters,
                    Focus::Controls => Focus::Modules,
                };
                Vec::new()
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_cursor(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_cursor(1),
            KeyCode::PageUp => self.move_cursor(-10),
            KeyCode::PageDown => self.move_cursor(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_cursor(-100_000),
            KeyCode::End | KeyCode::Char('G') => self.move_cursor(100_000),
            KeyCode::Left | KeyCode::Char('h') => self.adjust_focused(-1),
            KeyCode::Right | KeyCode::Char('l') => self.adjust_focused(1),
            KeyCode::Char('/') => {
                self.focus = Focus::Modules;
                self.filter_editing = true;
                Vec::new()
            }
            KeyCode::Char('+') | KeyCode::Char('=') => self.adjust(Control::K, 1),
            KeyCode::Char('-') | KeyCode::Char('_') => self.adjust(Control::K, -1),
            KeyCode::Char(']') => self.adjust(Control::ModuleK, 1),
            KeyCode::Char('[') => self.adjust(Control::ModuleK, -1),
            KeyCode::Char('0') | KeyCode::Delete => self.clear_override(),
            KeyCode::Char('m') => self.adjust(Control::Method, 1),
            KeyCode::Char('M') => self.adjust(Control::Method, -1),
            KeyCode::Char('s') => self.adjust(Control::Space, 1),
            KeyCode::Char('p') => self.adjust(Control::ParamReweight, 1),
            KeyCode::Char('o') => self.adjust(Control::OutputReweight, 1),
            KeyCode::Char('S') => self.adjust(Control::Seed, 1),
            KeyCode::Char('c') => {
                self.colour_by = match self.colour_by {
                    ColourBy::Cluster => ColourBy::Source,
                    ColourBy::Source => ColourBy::Cluster,
                };
                Vec::new()
            }
            KeyCode::Char('v') => self.open_compare(),
            KeyCode::Char('w') => {
                self.open_sweep();
                Vec::new()
            }
            KeyCode::Char('E') => self.request_score(),
            KeyCode::Char('e') => {
                self.open_export();
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn overlay_key(&mut self, overlay: Overlay, k: KeyEvent) -> Vec<Effect> {
        match overlay {
            Overlay::Help | Overlay::Compare => {
                let closes = matches!(
                    k.code,
                    KeyCode::Esc
                        | KeyCode::Char('q')
                        | KeyCode::Char('?')
                        | KeyCode::Char('v')
                        | KeyCode::Enter
                );
                if !closes {
                    self.overlay = Some(overlay);
                }
                Vec::new()
            }
            Overlay::Sweep(mut v) => match k.code {
                KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('w') => Vec::new(),
                KeyCode::Up | KeyCode::Char('k') => {
                    v.move_by(-1);
                    self.overlay = Some(Overlay::Sweep(v));
                    Vec::new()
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    v.move_by(1);
                    self.overlay = Some(Overlay::Sweep(v));
                    Vec::new()
                }
                KeyCode::Char('x') => {
                    v.knob = (v.knob + 1) % v.knobs().len().max(1);
                    self.overlay = Some(Overlay::Sweep(v));
                    Vec::new()
                }
                KeyCode::Char('r') => {
                    v.reload();
                    self.overlay = Some(Overlay::Sweep(v));
                    Vec::new()
                }
                KeyCode::Enter | KeyCode::Char('e') => {
                    let Some(r) = v.selected() else {
                        self.overlay = Some(Overlay::Sweep(v));
                        return Vec::new();
                    };
                    self.settings = r.settings.clone();
                    self.score = r
                        .eval
                        .clone()
                        .map(|e| (r.settings.clone(), format!("sweep candidate {}", r.id), e));
                    self.status = Some(Status::Info(format!(
                        "loaded sweep candidate {} ({})",
                        r.id, r.method
                    )));
                    if k.code == KeyCode::Char('e') {
                        self.open_export();
                    }
                    self.recompute()
                }
                _ => {
                    self.overlay = Some(Overlay::Sweep(v));
                    Vec::new()
                }
            },
            Overlay::ConfirmQuit => match k.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Char('q') => self.quit_now(),
                _ => Vec::new(),
            },
            Overlay::Export(mut d) => match d.handle(k) {
                DialogAction::None => {
                    self.overlay = Some(Overlay::Export(d));
                    Vec::new()
                }
                DialogAction::Close => Vec::new(),
                DialogAction::Submit => {
                    let effects = self.submit_export(&mut d);
                    self.overlay = Some(Overlay::Export(d));
                    effects
                }
            },
        }
    }

    fn request_quit(&mut self) -> Vec<Effect> {
        if self.unexported() {
            self.overlay = Some(Overlay::ConfirmQuit);
            Vec::new()
        } else {
            self.quit_now()
        }
    }

    fn quit_now(&mut self) -> Vec<Effect> {
        self.quit = true;
        vec![Effect::SaveHistory, Effect::Quit]
    }

    fn open_compare(&mut self) -> Vec<Effect> {
        self.overlay = Some(Overlay::Compare);
        let fresh = self
            .comparison
            .as_ref()
            .is_some_and(|c| c.generation == self.generation && c.value.module == self.selected);
        if fresh {
            return Vec::new();
        }
        vec![Effect::Job(Job::Compare {
            generation: self.generation,
            settings: Arc::new(self.settings.clone()),
            module: self.selected,
        })]
    }

    fn request_score(&mut self) -> Vec<Effect> {
        let Some((e, _)) = &self.evaluator else {
            self.status = Some(Status::Info(
                "no evaluator: open the explorer with --eval 'CMD {dir}'".into(),
            ));
            return Vec::new();
        };
        if self.scoring {
            return Vec::new();
        }
        self.scoring = true;
        self.status = Some(Status::Info(format!("scoring with `{}`…", e.command)));
        vec![Effect::Score(Box::new(self.settings.clone()))]
    }

    fn open_sweep(&mut self) {
        match &self.sweep_dir {
            Some(dir) => {
                let v = crate::tui::sweep_view::SweepView::open(dir);
                self.overlay = Some(Overlay::Sweep(Box::new(v)));
            }
            None => {
                self.status = Some(Status::Info(
                    "no sweep: open the explorer with --sweep RESULTS_DIR (from `lora-lego sweep`)"
                        .into(),
                ))
            }
        }
    }

    /// Re-reads the sweep view's results when the file changed (a sweep running elsewhere).
    pub fn refresh_sweep(&mut self) {
        if let Some(Overlay::Sweep(v)) = &mut self.overlay {
            v.refresh();
        }
    }

    fn open_export(&mut self) {
        let heads: Vec<(String, usize)> = self
            .engine
            .set
            .adapters
            .iter()
            .filter(|a| !a.extras.is_empty())
            .map(|a| (a.name.clone(), a.extras.len()))
            .collect();
        let path = fresh_path(self.settings.format);
        self.overlay = Some(Overlay::Export(Box::new(ExportDialog::new(
            path,
            self.settings.format,
            self.settings.dtype,
            heads,
            &self.settings.keep_heads,
        ))));
    }

    fn submit_export(&mut self, d: &mut ExportDialog) -> Vec<Effect> {
        let target = d.target();
        if target.as_os_str().is_empty() {
            d.phase = Phase::Failed("the output path is empty".into());
            return Vec::new();
        }
        // Format, dtype and heads do not change any module's merge: no new generation.
        self.settings.format = d.format;
        self.settings.dtype = d.dtype;
        self.settings.keep_heads = d.keep_heads();
        d.phase = Phase::Running {
            done: 0,
            total: self.engine.set.modules.len(),
        };
        vec![Effect::Job(Job::Export(Box::new(ExportJob {
            settings: self.settings.clone(),
            adapters: self.adapter_paths.clone(),
            path: target,
            force: d.force,
        })))]
    }

    fn move_cursor(&mut self, delta: i64) -> Vec<Effect> {
        let step = |cur: usize, len: usize| -> usize {
            if len == 0 {
                return 0;
            }
            (cur as i64 + delta).clamp(0, len as i64 - 1) as usize
        };
        match self.focus {
            Focus::Adapters => {
                self.adapter_cursor = step(self.adapter_cursor, self.engine.set.adapters.len());
                Vec::new()
            }
            Focus::Controls => {
                self.control_cursor = step(self.control_cursor, self.controls().len());
                Vec::new()
            }
            Focus::Modules => {
                let visible = self.visible_modules();
                let pos = visible
                    .iter()
                    .position(|&m| m == self.selected)
                    .unwrap_or(0);
                match visible.get(step(pos, visible.len())) {
                    Some(&m) => self.select(m),
                    None => Vec::new(),
                }
            }
        }
    }

    /// Makes `module` the selected one and asks for its view if it is not fresh.
    pub fn select(&mut self, module: usize) -> Vec<Effect> {
        if module >= self.engine.set.modules.len() || module == self.selected {
            return Vec::new();
        }
        self.selected = module;
        self.scroll_into_view();
        vec![Effect::Job(Job::Detail {
            generation: self.generation,
            settings: Arc::new(self.settings.clone()),
            module,
        })]
    }

    fn after_filter(&mut self) -> Vec<Effect> {
        let visible = self.visible_modules();
        self.module_offset = 0;
        if !visible.contains(&self.selected) {
            if let Some(&m) = visible.first() {
                return self.select(m);
            }
        }
        self.scroll_into_view();
        Vec::new()
    }

    fn scroll_into_view(&mut self) {
        let rows = ui::layout(self.area, self.engine.set.adapters.len())
            .map(|l| l.modules.height.saturating_sub(2) as usize)
            .unwrap_or(1)
            .max(1);
        let visible = self.visible_modules();
        let pos = visible
            .iter()
            .position(|&m| m == self.selected)
            .unwrap_or(0);
        if pos < self.module_offset {
            self.module_offset = pos;
        } else if pos >= self.module_offset + rows {
            self.module_offset = pos + 1 - rows;
        }
        self.module_offset = self.module_offset.min(visible.len().saturating_sub(rows));
    }

    fn adjust_focused(&mut self, dir: i32) -> Vec<Effect> {
        match self.focus {
            Focus::Controls => match self.controls().get(self.control_cursor) {
                Some(&c) => self.adjust(c, dir),
                None => Vec::new(),
            },
            Focus::Adapters => self.adjust(Control::Weight(self.adapter_cursor), dir),
            Focus::Modules => self.adjust(Control::ModuleK, dir),
        }
    }

    /// Changes one knob by one step in direction `dir` and recomputes.
    pub fn adjust(&mut self, control: Control, dir: i32) -> Vec<Effect> {
        let s = &mut self.settings;
        match control {
            Control::Method => {
                let all = MergeMethod::all();
                let i = all.iter().position(|m| *m == s.method).unwrap_or(0) as i32;
                *s = s.with_method(all[(i + dir).rem_euclid(all.len() as i32) as usize]);
            }
            Control::K => {
                let k = (s.k as i64 + dir as i64).max(1) as usize;
                if k == s.k {
                    return Vec::new();
                }
                s.k = k;
            }
            Control::ModuleK => {
                let name = self.selected_name().to_string();
                let current = self.settings.k_for(&name);
                let k = (current as i64 + dir as i64).max(1) as usize;
                let s = &mut self.settings;
                s.k_overrides.retain(|o| o.pattern != name);
                if k != s.k_for(&name) {
                    s.k_overrides.push(KOverride::new(name.clone(), k));
                }
                if s.k_for(&name) == current {
                    return Vec::new();
                }
            }
            Control::ParamReweight => {
                const ALL: [ParamReweight; 3] =
                    [ParamReweight::Linf, ParamReweight::L2, ParamReweight::Off];
                let i = ALL.iter().position(|p| *p == s.param_reweight).unwrap_or(0) as i32;
                s.param_reweight = ALL[(i + dir).rem_euclid(3) as usize];
            }
            Control::OutputReweight => {
                let i = R_REF
                    .iter()
                    .position(|r| *r == s.output_reweight)
                    .unwrap_or(0) as i32;
                s.output_reweight = R_REF[(i + dir).rem_euclid(R_REF.len() as i32) as usize];
            }
            Control::OutputScale => s.output_scale = step_tenth(s.output_scale, dir, 0.1),
            Control::Space => {
                const ALL: [FeatureSpace; 3] = [
                    FeatureSpace::Plain,
                    FeatureSpace::SignAware,
                    FeatureSpace::Balanced,
                ];
                let i = ALL.iter().position(|p| *p == s.space).unwrap_or(0) as i32;
                s.space = ALL[(i + dir).rem_euclid(3) as usize];
            }
            Control::Seed => s.seed = (s.seed as i64 + dir as i64).max(0) as u64,
            Control::Weight(i) => {
                let n = self.engine.set.adapters.len();
                if i >= n {
                    return Vec::new();
                }
                if s.weights.len() != n {
                    s.weights = vec![1.0; n];
                }
                s.weights[i] = step_tenth(s.weights[i], dir, f64::NEG_INFINITY);
            }
        }
        self.recompute()
    }

    fn clear_override(&mut self) -> Vec<Effect> {
        let name = self.selected_name().to_string();
        let before = self.settings.k_overrides.len();
        self.settings.k_overrides.retain(|o| o.pattern != name);
        if self.settings.k_overrides.len() == before {
            return Vec::new();
        }
        self.recompute()
    }

    /// A new generation: everything shown becomes stale until the worker answers.
    fn recompute(&mut self) -> Vec<Effect> {
        if let Err(e) = self.settings.validate(self.engine.set.adapters.len()) {
            self.status = Some(Status::Error(e.to_string()));
            return Vec::new();
        }
        self.generation += 1;
        if matches!(self.status, Some(Status::Error(_))) {
            self.status = None;
        }
        let mut effects = vec![Effect::Job(Job::Recompute {
            generation: self.generation,
            settings: Arc::new(self.settings.clone()),
            first: self.selected,
        })];
        if matches!(self.overlay, Some(Overlay::Compare)) {
            effects.push(Effect::Job(Job::Compare {
                generation: self.generation,
                settings: Arc::new(self.settings.clone()),
                module: self.selected,
            }));
        }
        effects
    }

    fn mouse(&mut self, m: MouseEvent) -> Vec<Effect> {
        if self.overlay.is_some() {
            return Vec::new();
        }
        let Some(l) = ui::layout(self.area, self.engine.set.adapters.len()) else {
            return Vec::new();
        };
        let at = Position::new(m.column, m.row);
        let inner_row = |r: Rect| -> Option<usize> {
            (r.contains(at) && m.row > r.y && m.row + 1 < r.y + r.height)
                .then(|| (m.row - r.y - 1) as usize)
        };
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(row) = inner_row(l.modules) {
                    self.focus = Focus::Modules;
                    let visible = self.visible_modules();
                    if let Some(&module) = visible.get(self.module_offset + row) {
                        return self.select(module);
                    }
                } else if let Some(row) = inner_row(l.adapters) {
                    self.focus = Focus::Adapters;
                    // The first inner row is the table header.
                    if row >= 1 && row - 1 < self.engine.set.adapters.len() {
                        self.adapter_cursor = row - 1;
                    }
                } else if let Some(row) = inner_row(l.controls) {
                    self.focus = Focus::Controls;
                    if row < self.controls().len() {
                        self.control_cursor = row;
                    }
                }
                Vec::new()
            }
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let dir = if m.kind == MouseEventKind::ScrollDown {
                    1
                } else {
                    -1
                };
                let focus = if l.modules.contains(at) {
                    Focus::Modules
                } else if l.adapters.contains(at) {
                    Focus::Adapters
                } else if l.controls.contains(at) {
                    Focus::Controls
                } else {
                    return Vec::new();
                };
                self.focus = focus;
                self.move_cursor(dir)
            }
            _ => Vec::new(),
        }
    }
}

/// `x + dir · 0.1`, rounded to tenths so repeated steps do not drift, and at least `min`.
fn step_tenth(x: f64, dir: i32, min: f64) -> f64 {
    let tenths = (x * 10.0).round() + dir as f64;
    (tenths / 10.0).max(min)
}

/// The help overlay's lines: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    (
        "↑↓ / j k",
        "move in the focused list (module, adapter, control)",
    ),
    ("PgUp PgDn / g G", "jump in the list"),
    (
        "←→ / h l",
        "change the focused control; adapter weight; k of this module",
    ),
    ("Tab / Shift-Tab", "next / previous panel"),
    ("+ / -", "global k up / down"),
    ("] / [", "k of the selected module up / down (an override)"),
    ("0 / Delete", "remove the selected module's k override"),
    ("m / M", "next / previous merge method"),
    ("p", "parameter-reweight norm: linf → l2 → off"),
    ("o", "output reweight r_ref: mean → max → off → 1 … 32"),
    ("s", "feature space: plain → sign-aware → balanced"),
    ("S", "next seed"),
    ("c", "colour the scatter by cluster / by source adapter"),
    ("/", "filter modules (type; Enter keeps, Esc clears)"),
    (
        "v",
        "compare every method side by side (this module and all)",
    ),
    ("e", "export dialog"),
    (
        "w",
        "sweep view (--sweep DIR): ↑↓ select, Enter loads, e exports, x knob",
    ),
    (
        "E",
        "score the current settings with the evaluator (--eval CMD)",
    ),
    ("mouse", "click selects in lists; the wheel scrolls them"),
    ("?", "this help (any of ? Esc q closes it)"),
    (
        "q / Esc",
        "quit (asks first when the merge was never exported)",
    ),
    ("Ctrl-C", "quit at once"),
];
