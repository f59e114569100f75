//! The explorer's state and its reaction to events, as a pure function: [`App::handle`] takes
//! an event and returns the effects to carry out (requests to the worker, saving the history,
//! quitting), so the whole UI logic runs in tests without a terminal. A key becomes an
//! [`Action`](crate::tui::action::Action) through the key table, and [`App::apply`] carries
//! it out; `App::view` builds each frame's view model.

mod apply;
mod commands;
mod events;
mod knobs;
mod navigation;
mod state;
mod view_model;

pub use crate::tui::action::Control;
pub use crate::tui::view::{ColourBy, Focus, Status};
pub use events::{Effect, Effects, Event};
pub use state::{App, Overlay, Slot};
