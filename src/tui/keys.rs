//! The key table: every key of the explorer, the action it stands for, its short label and its
//! help text, per context. Key handling looks keys up here, and both the `?` help and the
//! status-bar hints are generated from it, so they say what the keys do.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::{Action, Control};
use super::export_dialog::Input;
use super::view::Focus;

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

const fn act(a: Action) -> Does {
    Does::Act(a)
}

fn filter_type(c: char) -> Action {
    Action::FilterType(c)
}

fn form_type(c: char) -> Action {
    Action::Form(Input::Type(c))
}

use Context as C;
use KeyCode as K;

const fn ch(c: char) -> Key {
    Key::Code(K::Char(c))
}

const fn code(c: KeyCode) -> Key {
    Key::Code(c)
}

/// The table, in the order the help and the status bar list it (the status bar is cut at
/// its end on narrow terminals: what matters most comes first).
pub static BINDINGS: &[Binding] = &[
    Binding {
        context: C::Everywhere,
        keys: &[(Key::Ctrl('c'), act(Action::QuitNow))],
        shown: "Ctrl-C",
        label: "quit",
        help: "quit at once",
        hint: Hint::Never,
    },
    Binding {
        context: C::TooSmall,
        keys: &[
            (ch('q'), act(Action::QuitNow)),
            (code(K::Esc), act(Action::QuitNow)),
        ],
        shown: "q / Esc",
        label: "quit",
        help: "quit at once (a confirmation would not fit)",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[(ch('?'), act(Action::Help))],
        shown: "?",
        label: "help",
        help: "this help (any of ? Esc q closes it)",
        hint: Hint::Always("?"),
    },
    Binding {
        context: C::Main,
        keys: &[
            (ch('q'), act(Action::Quit)),
            (code(K::Esc), act(Action::Quit)),
        ],
        shown: "q / Esc",
        label: "quit",
        help: "quit (asks first when the merge was never exported)",
        hint: Hint::Always("q"),
    },
    Binding {
        context: C::Main,
        keys: &[
            (code(K::Up), act(Action::Move(-1))),
            (ch('k'), act(Action::Move(-1))),
            (code(K::Down), act(Action::Move(1))),
            (ch('j'), act(Action::Move(1))),
        ],
        shown: "↑↓ / j k",
        label: "move",
        help: "move in the focused list (module, adapter, control)",
        hint: Hint::ByFocus([
            Some(("↑↓", "adapter")),
            Some(("↑↓", "module")),
            Some(("↑↓", "control")),
        ]),
    },
    Binding {
        context: C::Main,
        keys: &[
            (code(K::Left), act(Action::Adjust(-1))),
            (ch('h'), act(Action::Adjust(-1))),
            (code(K::Right), act(Action::Adjust(1))),
            (ch('l'), act(Action::Adjust(1))),
        ],
        shown: "←→ / h l",
        label: "change",
        help: "change the focused control; adapter weight; k of this module",
        hint: Hint::ByFocus([
            Some(("←→", "weight")),
            Some(("←→ [ ]", "k here")),
            Some(("←→", "change")),
        ]),
    },
    Binding {
        context: C::Main,
        keys: &[(ch('/'), act(Action::Filter))],
        shown: "/",
        label: "filter",
        help: "filter modules (type; Enter keeps, Esc clears)",
        hint: Hint::ByFocus([None, Some(("/", "filter")), None]),
    },
    Binding {
        context: C::Main,
        keys: &[
            (ch('+'), act(Action::Step(Control::K, 1))),
            (ch('='), act(Action::Step(Control::K, 1))),
            (ch('-'), act(Action::Step(Control::K, -1))),
            (ch('_'), act(Action::Step(Control::K, -1))),
        ],
        shown: "+ / -",
        label: "k",
        help: "global k up / down",
        hint: Hint::Always("+ -"),
    },
    Binding {
        context: C::Main,
        keys: &[
            (ch('m'), act(Action::Step(Control::Method, 1))),
            (ch('M'), act(Action::Step(Control::Method, -1))),
        ],
        shown: "m / M",
        label: "method",
        help: "next / previous merge method",
        hint: Hint::Always("m"),
    },
    Binding {
        context: C::Main,
        keys: &[(ch('c'), act(Action::ToggleColour))],
        shown: "c",
        label: "colour",
        help: "colour the scatter by cluster / by source adapter",
        hint: Hint::Always("c"),
    },
    Binding {
        context: C::Main,
        keys: &[(ch('v'), act(Action::Compare))],
        shown: "v",
        label: "compare",
        help: "compare every method side by side (this module and all)",
        hint: Hint::Always("v"),
    },
    Binding {
        context: C::Main,
        keys: &[(ch('e'), act(Action::Export))],
        shown: "e",
        label: "export",
        help: "export dialog",
        hint: Hint::Always("e"),
    },
    Binding {
        context: C::Main,
        keys: &[
            (code(K::Tab), act(Action::NextPanel)),
            (code(K::BackTab), act(Action::PrevPanel)),
        ],
        shown: "Tab / Shift-Tab",
        label: "panel",
        help: "next / previous panel",
        hint: Hint::Always("Tab"),
    },
    Binding {
        context: C::Main,
        keys: &[
            (code(K::PageUp), act(Action::Move(-10))),
            (code(K::PageDown), act(Action::Move(10))),
            (code(K::Home), act(Action::Move(-100_000))),
            (ch('g'), act(Action::Move(-100_000))),
            (code(K::End), act(Action::Move(100_000))),
            (ch('G'), act(Action::Move(100_000))),
        ],
        shown: "PgUp PgDn / g G",
        label: "jump",
        help: "jump in the list",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[
            (ch(']'), act(Action::Step(Control::ModuleK, 1))),
            (ch('['), act(Action::Step(Control::ModuleK, -1))),
        ],
        shown: "] / [",
        label: "k here",
        help: "k of the selected module up / down (an override)",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[
            (ch('0'), act(Action::ClearOverride)),
            (code(K::Delete), act(Action::ClearOverride)),
        ],
        shown: "0 / Delete",
        label: "global k here",
        help: "remove the selected module's k override",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[(ch('p'), act(Action::Step(Control::ParamReweight, 1)))],
        shown: "p",
        label: "param reweight",
        help: "parameter-reweight norm: linf → l2 → off",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[(ch('o'), act(Action::Step(Control::OutputReweight, 1)))],
        shown: "o",
        label: "output r_ref",
        help: "output reweight r_ref: mean → max → off → 1 … 32",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[(ch('s'), act(Action::Step(Control::Space, 1)))],
        shown: "s",
        label: "space",
        help: "feature space: plain → sign-aware → balanced",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[(ch('S'), act(Action::Step(Control::Seed, 1)))],
        shown: "S",
        label: "seed",
        help: "next seed",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[(ch('w'), act(Action::Sweep))],
        shown: "w",
        label: "sweep",
        help: "sweep view (--sweep DIR)",
        hint: Hint::Never,
    },
    Binding {
        context: C::Main,
        keys: &[(ch('E'), act(Action::Score))],
        shown: "E",
        label: "score",
        help: "score the current settings with the evaluator (--eval CMD)",
        hint: Hint::Never,
    },
    Binding {
        context: C::Filter,
        keys: &[(code(K::Enter), act(Action::FilterKeep))],
        shown: "Enter",
        label: "keep",
        help: "keep the filter",
        hint: Hint::Always("Enter"),
    },
    Binding {
        context: C::Filter,
        keys: &[(code(K::Esc), act(Action::FilterClear))],
        shown: "Esc",
        label: "clear",
        help: "clear the filter",
        hint: Hint::Always("Esc"),
    },
    Binding {
        context: C::Filter,
        keys: &[(code(K::Backspace), act(Action::FilterErase))],
        shown: "Backspace",
        label: "erase",
        help: "erase the last character",
        hint: Hint::Never,
    },
    Binding {
        context: C::Filter,
        keys: &[(Key::AnyChar, Does::Typed(filter_type))],
        shown: "type",
        label: "filter",
        help: "the text the module names must contain",
        hint: Hint::Always("type"),
    },
    Binding {
        context: C::Help,
        keys: &[
            (ch('?'), act(Action::Close)),
            (code(K::Esc), act(Action::Close)),
            (ch('q'), act(Action::Close)),
            (ch('v'), act(Action::Close)),
            (code(K::Enter), act(Action::Close)),
        ],
        shown: "? Esc q",
        label: "close",
        help: "close the help",
        hint: Hint::Always("? Esc q"),
    },
    Binding {
        context: C::Compare,
        keys: &[
            (ch('v'), act(Action::Close)),
            (code(K::Esc), act(Action::Close)),
            (ch('q'), act(Action::Close)),
            (ch('?'), act(Action::Close)),
            (code(K::Enter), act(Action::Close)),
        ],
        shown: "v Esc q",
        label: "close",
        help: "close the comparison",
        hint: Hint::Always("v Esc q"),
    },
    Binding {
        context: C::Sweep,
        keys: &[
            (code(K::Up), act(Action::SweepMove(-1))),
            (ch('k'), act(Action::SweepMove(-1))),
            (code(K::Down), act(Action::SweepMove(1))),
            (ch('j'), act(Action::SweepMove(1))),
        ],
        shown: "↑↓",
        label: "candidate",
        help: "select a candidate",
        hint: Hint::Always("↑↓"),
    },
    Binding {
        context: C::Sweep,
        keys: &[(code(K::Enter), act(Action::SweepLoad))],
        shown: "Enter",
        label: "load",
        help: "load the candidate's settings",
        hint: Hint::Always("Enter"),
    },
    Binding {
        context: C::Sweep,
        keys: &[(ch('e'), act(Action::SweepExport))],
        shown: "e",
        label: "export",
        help: "load the candidate and export it",
        hint: Hint::Always("e"),
    },
    Binding {
        context: C::Sweep,
        keys: &[(ch('x'), act(Action::SweepKnob))],
        shown: "x",
        label: "knob",
        help: "the next knob on the plot's x axis",
        hint: Hint::Always("x"),
    },
    Binding {
        context: C::Sweep,
        keys: &[(ch('r'), act(Action::SweepReload))],
        shown: "r",
        label: "reload",
        help: "read the results again",
        hint: Hint::Always("r"),
    },
    Binding {
        context: C::Sweep,
        keys: &[
            (code(K::Esc), act(Action::Close)),
            (ch('q'), act(Action::Close)),
            (ch('w'), act(Action::Close)),
        ],
        shown: "Esc",
        label: "close",
        help: "close the sweep view",
        hint: Hint::Always("Esc"),
    },
    Binding {
        context: C::Export,
        keys: &[
            (code(K::Tab), act(Action::Form(Input::Next))),
            (code(K::Down), act(Action::Form(Input::Next))),
            (code(K::BackTab), act(Action::Form(Input::Prev))),
            (code(K::Up), act(Action::Form(Input::Prev))),
        ],
        shown: "Tab ↑↓",
        label: "field",
        help: "next / previous field",
        hint: Hint::Always("Tab ↑↓"),
    },
    Binding {
        context: C::Export,
        keys: &[
            (code(K::Left), act(Action::Form(Input::Cycle(-1)))),
            (code(K::Right), act(Action::Form(Input::Cycle(1)))),
        ],
        shown: "←→",
        label: "change",
        help: "change the field (space too)",
        hint: Hint::Always("←→"),
    },
    Binding {
        context: C::Export,
        keys: &[(code(K::Enter), act(Action::Form(Input::Submit)))],
        shown: "Enter",
        label: "export / close",
        help: "write the export; close its summary",
        hint: Hint::Always("Enter"),
    },
    Binding {
        context: C::Export,
        keys: &[(code(K::Esc), act(Action::Form(Input::Cancel)))],
        shown: "Esc",
        label: "cancel",
        help: "close the dialog",
        hint: Hint::Always("Esc"),
    },
    Binding {
        context: C::Export,
        keys: &[
            (code(K::Backspace), act(Action::Form(Input::Erase))),
            (Key::Ctrl('u'), act(Action::Form(Input::ClearPath))),
        ],
        shown: "Backspace Ctrl-U",
        label: "erase",
        help: "erase a character of the path; all of it",
        hint: Hint::Never,
    },
    Binding {
        context: C::Export,
        keys: &[(Key::AnyChar, Does::Typed(form_type))],
        shown: "type",
        label: "path",
        help: "type the output path",
        hint: Hint::Never,
    },
    Binding {
        context: C::ConfirmQuit,
        keys: &[
            (ch('y'), act(Action::QuitNow)),
            (ch('Y'), act(Action::QuitNow)),
            (ch('q'), act(Action::QuitNow)),
        ],
        shown: "y",
        label: "quit",
        help: "quit without exporting",
        hint: Hint::Always("y"),
    },
    Binding {
        context: C::ConfirmQuit,
        keys: &[(Key::AnyKey, act(Action::Close))],
        shown: "any other key",
        label: "stay",
        help: "stay",
        hint: Hint::Always("any other key"),
    },
];

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
