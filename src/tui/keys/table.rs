//! The key table itself: one entry per line of the help.

use ratatui::crossterm::event::KeyCode as K;

use crate::tui::action::{Action, Control};
use crate::tui::export_dialog::Input;

use super::{Binding, Context as C, Does, Hint, Key};

const fn act(a: Action) -> Does {
    Does::Act(a)
}

fn filter_type(c: char) -> Action {
    Action::FilterType(c)
}

fn form_type(c: char) -> Action {
    Action::Form(Input::Type(c))
}

const fn ch(c: char) -> Key {
    Key::Code(K::Char(c))
}

const fn code(c: K) -> Key {
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
