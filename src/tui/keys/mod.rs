//! The key table: every key of the explorer, the action it stands for, its short label and its
//! help text, per context. Key handling looks keys up here, and both the `?` help and the
//! status-bar hints are generated from it, so they say what the keys do.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::tui::action::Action;
use crate::tui::view::Focus;

mod table;

pub use table::BINDINGS;

/// Where a binding works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// In every context, before the others are looked at.
    Everywhere,
    /// The terminal is too small for the panels.
    TooSmall,
    /// The panels, no popup.
    Main,
    /// Typing the modules filter.
    Filter,
    /// The key list.
    Help,
    /// The method comparison.
    Compare,
    /// The sweep view.
    Sweep,
    /// The export dialog.
    Export,
    /// "Quit without exporting?"
    ConfirmQuit,
}

impl Context {
    /// How the help names the popups' contexts.
    pub fn title(self) -> &'static str {
        match self {
            Context::Everywhere => "anywhere",
            Context::TooSmall => "too small a terminal",
            Context::Main => "the panels",
            Context::Filter => "typing a filter",
            Context::Help => "this help",
            Context::Compare => "the comparison",
            Context::Sweep => "the sweep view",
            Context::Export => "the export dialog",
            Context::ConfirmQuit => "quit?",
        }
    }
}

/// A key, or a class of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// This key without Ctrl (Shift allowed: it makes the capitals and Shift-Tab).
    Code(KeyCode),
    /// Ctrl and this character.
    Ctrl(char),
    /// Any character without Ctrl.
    AnyChar,
    /// Any key at all.
    AnyKey,
}

impl Key {
    /// True when `k` is this key.
    pub fn matches(self, k: &KeyEvent) -> bool {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            Key::Code(c) => !ctrl && k.code == c,
            Key::Ctrl(c) => ctrl && k.code == KeyCode::Char(c),
            Key::AnyChar => !ctrl && matches!(k.code, KeyCode::Char(_)),
            Key::AnyKey => true,
        }
    }

    /// An event of this key (`x` for the classes), as a test or a script presses it.
    pub fn event(self) -> KeyEvent {
        match self {
            Key::Code(c) => {
                let shift =
                    matches!(c, KeyCode::Char(ch) if ch.is_uppercase()) || c == KeyCode::BackTab;
                let m = if shift {
                    KeyModifiers::SHIFT
                } else {
                    KeyModifiers::NONE
                };
                KeyEvent::new(c, m)
            }
            Key::Ctrl(c) => KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL),
            Key::AnyChar | Key::AnyKey => KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE),
        }
    }
}

/// What a key does: an action, or one made from the character typed.
#[derive(Debug, Clone, Copy)]
pub enum Does {
    /// This action.
    Act(Action),
    /// The action for the character typed.
    Typed(fn(char) -> Action),
}

/// When a binding shows in the status bar.
#[derive(Debug, Clone, Copy)]
pub enum Hint {
    /// Never (the help lists it).
    Never,
    /// Always in its context, as these keys and the binding's label.
    Always(&'static str),
    /// Per focus (adapters, modules, controls): these keys and label, or nothing.
    ByFocus([Option<(&'static str, &'static str)>; 3]),
}

/// One line of the table.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// Where it works.
    pub context: Context,
    /// The keys and what each does.
    pub keys: &'static [(Key, Does)],
    /// The keys as the help shows them.
    pub shown: &'static str,
    /// What it does, in a word or two (status bar, popups' help lines).
    pub label: &'static str,
    /// What it does, in a sentence (the help).
    pub help: &'static str,
    /// How the status bar shows it.
    pub hint: Hint,
}

/// The action `key` stands for in `context` (bindings that work everywhere first).
pub fn lookup(context: Context, key: &KeyEvent) -> Option<Action> {
    [Context::Everywhere, context].into_iter().find_map(|c| {
        of(c)
            .flat_map(|b| b.keys.iter())
            .find(|(k, _)| k.matches(key))
            .and_then(|(_, does)| match (does, key.code) {
                (Does::Act(a), _) => Some(*a),
                (Does::Typed(f), KeyCode::Char(ch)) => Some(f(ch)),
                (Does::Typed(_), _) => None,
            })
    })
}

/// The bindings of `context`, in table order.
pub fn of(context: Context) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| b.context == context)
}

/// The status-bar hints of `context` with `focus` on the panels, as (keys, label).
pub fn hints(context: Context, focus: Focus) -> Vec<(&'static str, &'static str)> {
    let slot = match focus {
        Focus::Adapters => 0,
        Focus::Modules => 1,
        Focus::Controls => 2,
    };
    of(context)
        .filter_map(|b| match b.hint {
            Hint::Never => None,
            Hint::Always(keys) => Some((keys, b.label)),
            Hint::ByFocus(per) => per[slot],
        })
        .collect()
}
