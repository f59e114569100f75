//! What the explorer holds between two events, and the questions asked of it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::recipe::MergeSettings;
use crate::session::{Engine, ModuleView};
use crate::tui::action::Control;
use crate::tui::export_dialog::ExportDialog;
use crate::tui::keys::Context;
use crate::tui::layout::Screen;
use crate::tui::sweep_view::SweepView;
use crate::tui::theme::Theme;
use crate::tui::view::{ColourBy, Focus, Status};
use crate::tui::worker::{Comparison, Curve, ExportSummary, ModuleSummary, Outcome};

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
    Sweep(Box<SweepView>),
}

/// A value and the settings generation it was computed for.
#[derive(Debug, Clone)]
pub struct Slot<T> {
    /// The generation of the settings it belongs to.
    pub generation: u64,
    /// The value.
    pub value: T,
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
    pub(crate) focus: Focus,
    /// The selected module (index into the module set).
    pub(crate) selected: usize,
    /// The modules-list filter (a case-insensitive substring).
    pub(crate) filter: String,
    /// True while the filter is being typed.
    pub(crate) filter_editing: bool,
    /// The first module row shown.
    pub(crate) module_offset: usize,
    /// The selected adapter row.
    pub(crate) adapter_cursor: usize,
    /// The selected controls row.
    pub(crate) control_cursor: usize,
    /// What colours the scatter.
    pub(crate) colour_by: ColourBy,
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
    pub(crate) last_export: Option<Box<ExportSummary>>,
    /// The settings last exported (quitting asks for confirmation when they differ).
    pub(crate) exported: Option<MergeSettings>,
    /// The status-bar message.
    pub status: Option<Status>,
    /// The colours.
    pub(crate) theme: Theme,
    /// What the last frame drew, where (for mouse hit-testing and scrolling).
    pub(crate) screen: Screen,
    /// Set when the explorer should end.
    pub quit: bool,
    /// A fatal error (a worker panic): the run loop quits and reports it.
    pub fatal: Option<String>,
    /// The sweep folder the sweep view (`w`) reads (`lora-lego --sweep RESULTS_DIR`).
    pub(crate) sweep_dir: Option<PathBuf>,
    /// The evaluator's last score, with the settings it is for and where it came from (a sweep
    /// candidate, or `E`); stale once the settings change.
    pub score: Option<(MergeSettings, String, crate::session::EvalRecord)>,
    /// The evaluator `E` runs on the current settings (`lora-lego --eval CMD`), and its split.
    pub(crate) evaluator: Option<(crate::session::Evaluator, Option<String>)>,
    /// True while a score is being computed.
    pub(crate) scoring: bool,
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
            screen: Screen::default(),
            quit: false,
            fatal: None,
            sweep_dir: None,
            score: None,
            evaluator: None,
            scoring: false,
        }
    }

    /// Where keys are looked up now.
    pub(crate) fn context(&self) -> Context {
        if self.screen == Screen::TooSmall {
            return Context::TooSmall;
        }
        match &self.overlay {
            Some(Overlay::Help) => Context::Help,
            Some(Overlay::Compare) => Context::Compare,
            Some(Overlay::Export(_)) => Context::Export,
            Some(Overlay::ConfirmQuit) => Context::ConfirmQuit,
            Some(Overlay::Sweep(_)) => Context::Sweep,
            None if self.filter_editing => Context::Filter,
            None => Context::Main,
        }
    }

    /// Modules passing the filter, in set order.
    pub(crate) fn visible_modules(&self) -> Vec<usize> {
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
    pub(crate) fn selected_name(&self) -> &str {
        self.engine
            .set
            .modules
            .get(self.selected)
            .map(|m| m.key.as_str())
            .unwrap_or("")
    }

    /// The exact-name k override of the selected module, if any.
    pub(crate) fn module_override(&self) -> Option<usize> {
        let name = self.selected_name();
        self.settings
            .k_overrides
            .iter()
            .rev()
            .find(|o| o.pattern == name)
            .map(|o| o.k)
    }

    /// The rows of the controls panel.
    pub(crate) fn controls(&self) -> Vec<Control> {
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
    pub(crate) fn selected_view(&self) -> Option<&Outcome<Box<ModuleView>>> {
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
}
