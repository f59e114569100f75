//! The view model: what one frame shows, built by the app from its state once per frame
//! (`App::view`). Panels draw from these plain structs only, so they
//! know nothing of how the app keeps its state.

use crate::recipe::{MergeMethod, MergeSettings};
use crate::session::ModuleView;

use super::export_dialog::ExportDialog;
use super::sweep_view::SweepView;
use super::theme::Theme;
use super::worker::{Comparison, Curve, Outcome};

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

/// A status-bar message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Information.
    Info(String),
    /// Something went wrong (shown in red).
    Error(String),
}

/// Keys as (keys, what they do), from the key table.
pub type Keys = Vec<(&'static str, &'static str)>;

/// One frame.
#[derive(Debug)]
pub struct View<'a> {
    /// The colours.
    pub theme: &'a Theme,
    /// The adapters panel.
    pub adapters: Adapters,
    /// The modules list.
    pub modules: Modules<'a>,
    /// The scatter of the selected module's units.
    pub units: Units<'a>,
    /// The controls panel.
    pub controls: Controls,
    /// The metrics panel.
    pub metrics: Metrics<'a>,
    /// The k curve.
    pub curve: KCurve<'a>,
    /// The status bar.
    pub status: StatusBar<'a>,
    /// The popup, if one is open.
    pub overlay: Option<Popup<'a>>,
}

/// One source adapter.
#[derive(Debug, Clone)]
pub struct AdapterRow {
    /// Its name.
    pub name: String,
    /// Its typical rank.
    pub rank: usize,
    /// The alpha of its typical-rank modules.
    pub alpha: f64,
    /// Its dtype, or "mixed".
    pub dtype: String,
    /// Its merge weight.
    pub weight: f64,
}

/// The adapters panel.
#[derive(Debug, Clone)]
pub struct Adapters {
    /// Every adapter.
    pub rows: Vec<AdapterRow>,
    /// The highlighted row, when the panel has the focus.
    pub cursor: Option<usize>,
}

/// A module's one-glance figure in the list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Figure {
    /// Not computed yet.
    Pending,
    /// The merge failed.
    Failed,
    /// Every source has weight 0.
    Unused,
    /// Merged.
    Merged {
        /// Distance to the exact sum.
        error_vs_sum: f64,
        /// Merged rank.
        rank: usize,
        /// Computed for older settings.
        stale: bool,
    },
}

/// A row of the modules list.
#[derive(Debug, Clone)]
pub struct ModuleRow<'a> {
    /// The module's full name.
    pub name: &'a str,
    /// The selected module.
    pub selected: bool,
    /// It has its own k.
    pub overridden: bool,
    /// Its figure.
    pub figure: Figure,
}

/// The modules list.
#[derive(Debug, Clone)]
pub struct Modules<'a> {
    /// Has the focus.
    pub focused: bool,
    /// Every module's name (the list leaves out the prefix they share).
    pub all_names: Vec<&'a str>,
    /// The modules passing the filter.
    pub rows: Vec<ModuleRow<'a>>,
    /// The first row shown.
    pub offset: usize,
    /// Modules whose figures are fresh.
    pub fresh: usize,
    /// The filter as typed.
    pub filter: &'a str,
    /// The filter is being typed.
    pub filter_editing: bool,
}

/// The scatter.
#[derive(Debug, Clone)]
pub struct Units<'a> {
    /// The selected module's name.
    pub module: &'a str,
    /// Its latest view (possibly stale); `None` before the first.
    pub view: Option<&'a Outcome<Box<ModuleView>>>,
    /// The view is for older settings.
    pub stale: bool,
    /// What colours the units.
    pub colour_by: ColourBy,
    /// The adapters' names.
    pub adapter_names: Vec<&'a str>,
}

/// A row of the controls panel.
#[derive(Debug, Clone)]
pub struct ControlRow {
    /// What it is.
    pub label: String,
    /// Its value.
    pub value: String,
    /// The adapter it weighs, for a weight row.
    pub adapter: Option<usize>,
}

/// The controls panel.
#[derive(Debug, Clone)]
pub struct Controls {
    /// Every knob.
    pub rows: Vec<ControlRow>,
    /// The highlighted row, when the panel has the focus.
    pub cursor: Option<usize>,
}

/// One source of the selected module.
#[derive(Debug, Clone)]
pub struct SourceRow {
    /// The adapter's index.
    pub adapter: usize,
    /// Its name.
    pub name: String,
    /// Its weight.
    pub weight: f64,
}

/// An evaluator's score.
#[derive(Debug, Clone)]
pub struct Score {
    /// The mean.
    pub mean: f64,
    /// The split scored.
    pub split: Option<String>,
    /// Where it came from.
    pub origin: String,
    /// It is for other settings than those shown.
    pub stale: bool,
}

/// The metrics panel.
#[derive(Debug, Clone)]
pub struct Metrics<'a> {
    /// The selected module's latest view.
    pub view: Option<&'a Outcome<Box<ModuleView>>>,
    /// The view is for older settings.
    pub stale: bool,
    /// The sources of the viewed module, in its order.
    pub sources: Vec<SourceRow>,
    /// The evaluator's score, if any.
    pub score: Option<Score>,
    /// The current method.
    pub method: MergeMethod,
}

/// The k curve panel.
#[derive(Debug, Clone)]
pub struct KCurve<'a> {
    /// The selected module's curve.
    pub curve: Option<&'a Curve>,
    /// The curve is for older settings.
    pub stale: bool,
    /// The selected module's current k.
    pub current_k: usize,
}

/// The status bar.
#[derive(Debug, Clone)]
pub struct StatusBar<'a> {
    /// The message of the moment.
    pub message: Option<&'a Status>,
    /// A popup is open (information then gives way to its keys).
    pub popup: bool,
    /// The keys that work now, as (keys, what they do).
    pub hints: Vec<(&'static str, &'static str)>,
    /// Modules with fresh figures.
    pub fresh: usize,
    /// Modules in all.
    pub total: usize,
    /// The selected module's view is stale.
    pub view_stale: bool,
    /// The current method.
    pub method: MergeMethod,
    /// The current settings were never exported.
    pub unexported: bool,
}

/// The comparison popup.
#[derive(Debug, Clone)]
pub struct CompareView<'a> {
    /// The comparison of the selected module, once computed.
    pub comparison: Option<&'a Comparison>,
    /// It is for older settings.
    pub stale: bool,
    /// The current method (highlighted).
    pub method: MergeMethod,
    /// The compared module's name.
    pub module: &'a str,
}

/// A popup over the panels.
#[derive(Debug)]
pub enum Popup<'a> {
    /// The key list.
    Help,
    /// Every method side by side.
    Compare(CompareView<'a>),
    /// The export dialog, and its keys as (keys, what they do).
    Export(&'a ExportDialog, Keys),
    /// "Quit without exporting?"
    ConfirmQuit,
    /// A sweep, with the settings shown now and its keys.
    Sweep(&'a SweepView, &'a MergeSettings, Keys),
}
