//! Everything a key can ask of the explorer. Keys become actions through the table in
//! `tui::keys`; `App::apply` carries them out.

use super::export_dialog::Input;

/// A merge knob the keys and the controls panel step through.
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

/// One thing the user asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Quit, asking first when the merge was never exported.
    Quit,
    /// Quit at once.
    QuitNow,
    /// Open the key list.
    Help,
    /// Focus the next panel.
    NextPanel,
    /// Focus the previous panel.
    PrevPanel,
    /// Move in the focused list by this many rows.
    Move(i64),
    /// Step the focused control (or adapter weight, or this module's k) in this direction.
    Adjust(i32),
    /// Step one knob in this direction.
    Step(Control, i32),
    /// Remove the selected module's k override.
    ClearOverride,
    /// Colour the scatter by cluster or by source.
    ToggleColour,
    /// Start typing the modules filter.
    Filter,
    /// Open the method comparison.
    Compare,
    /// Open the sweep view.
    Sweep,
    /// Open the export dialog.
    Export,
    /// Score the current settings with the evaluator.
    Score,
    /// Add a character to the filter.
    FilterType(char),
    /// Remove the filter's last character.
    FilterErase,
    /// Stop typing, keep the filter.
    FilterKeep,
    /// Stop typing, clear the filter.
    FilterClear,
    /// Close the popup.
    Close,
    /// Move the sweep view's selection.
    SweepMove(isize),
    /// Load the selected sweep candidate's settings.
    SweepLoad,
    /// Load the selected sweep candidate and open the export dialog.
    SweepExport,
    /// Put the next knob on the sweep plot's x axis.
    SweepKnob,
    /// Read the sweep's results again.
    SweepReload,
    /// An input to the export form.
    Form(Input),
}
