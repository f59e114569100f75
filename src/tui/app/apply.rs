//! [`App::apply`]: one action carried out. Each arm hands over to the file that holds that
//! concern (knobs, navigation, commands); an action that does not fit the state does nothing.

use crate::tui::action::Action;
use crate::tui::view::{ColourBy, Focus};

use super::events::Effects;
use super::state::{App, Overlay};

impl App {
    /// Carries out `action` and returns what the run loop must do next.
    pub fn apply(&mut self, action: Action) -> Effects {
        match action {
            Action::Quit => self.request_quit(),
            Action::QuitNow => self.quit_now(),
            Action::Help => self.open(Overlay::Help),
            Action::NextPanel => {
                self.focus = match self.focus {
                    Focus::Adapters => Focus::Modules,
                    Focus::Modules => Focus::Controls,
                    Focus::Controls => Focus::Adapters,
                };
                Vec::new()
            }
            Action::PrevPanel => {
                self.focus = match self.focus {
                    Focus::Adapters => Focus::Controls,
                    Focus::Modules => Focus::Adapters,
                    Focus::Controls => Focus::Modules,
                };
                Vec::new()
            }
            Action::Move(delta) => self.move_cursor(delta),
            Action::Adjust(dir) => self.adjust_focused(dir),
            Action::Step(control, dir) => self.adjust(control, dir),
            Action::ClearOverride => self.clear_override(),
            Action::ToggleColour => {
                self.colour_by = match self.colour_by {
                    ColourBy::Cluster => ColourBy::Source,
                    ColourBy::Source => ColourBy::Cluster,
                };
                Vec::new()
            }
            Action::Filter => {
                self.focus = Focus::Modules;
                self.filter_editing = true;
                Vec::new()
            }
            Action::FilterType(c) => {
                self.filter.push(c);
                self.after_filter()
            }
            Action::FilterErase => {
                self.filter.pop();
                self.after_filter()
            }
            Action::FilterKeep => {
                self.filter_editing = false;
                self.after_filter()
            }
            Action::FilterClear => {
                self.filter.clear();
                self.filter_editing = false;
                self.after_filter()
            }
            Action::Compare => self.open_compare(),
            Action::Sweep => self.open_sweep(),
            Action::Export => {
                self.open_export();
                Vec::new()
            }
            Action::Score => self.request_score(),
            Action::Close => {
                self.overlay = None;
                Vec::new()
            }
            Action::SweepMove(delta) => self.in_sweep(|v| v.move_by(delta)),
            Action::SweepKnob => self.in_sweep(|v| v.knob = (v.knob + 1) % v.knobs().len().max(1)),
            Action::SweepReload => self.in_sweep(|v| v.reload()),
            Action::SweepLoad => self.load_candidate(false),
            Action::SweepExport => self.load_candidate(true),
            Action::Form(input) => self.form(input),
        }
    }

    fn open(&mut self, overlay: Overlay) -> Effects {
        self.overlay = Some(overlay);
        Vec::new()
    }
}
