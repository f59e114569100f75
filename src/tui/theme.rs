//! Colours and styles; everything falls back to plain text when `NO_COLOR` is set.

use ratatui::style::{Color, Modifier, Style};

/// Per-adapter colours (adapters are few, so named colours stay readable on any palette).
const ADAPTER: [Color; 8] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::Red,
    Color::LightCyan,
    Color::LightMagenta,
];

/// Per-cluster colours from the 256-colour cube, chosen to stay apart from each other.
const CLUSTER: [Color; 12] = [
    Color::Indexed(196),
    Color::Indexed(46),
    Color::Indexed(33),
    Color::Indexed(226),
    Color::Indexed(201),
    Color::Indexed(51),
    Color::Indexed(208),
    Color::Indexed(129),
    Color::Indexed(118),
    Color::Indexed(39),
    Color::Indexed(214),
    Color::Indexed(165),
];

/// Symbols that tell clusters apart when there are no colours.
const CLUSTER_SYMBOLS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Fill characters that tell sources apart in stacked bars without colours.
const SOURCE_FILLS: [char; 4] = ['█', '▓', '▒', '░'];

/// The explorer's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// False when `NO_COLOR` asks for plain output.
    pub color: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Theme { color: true }
    }
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to a non-empty value (no-color.org).
    pub fn from_env() -> Self {
        Self::for_no_color(std::env::var_os("NO_COLOR").as_deref())
    }

    /// The theme for a given value of `NO_COLOR` (unset, empty or set).
    pub fn for_no_color(value: Option<&std::ffi::OsStr>) -> Self {
        Theme {
            color: value.is_none_or(|v| v.is_empty()),
        }
    }

    /// A theme without any colour.
    pub fn plain() -> Self {
        Theme { color: false }
    }

    fn pick(&self, c: Color) -> Color {
        if self.color {
            c
        } else {
            Color::Reset
        }
    }

    /// The colour of adapter `i`.
    pub fn adapter(&self, i: usize) -> Color {
        self.pick(ADAPTER[i % ADAPTER.len()])
    }

    /// The colour of cluster `c`.
    pub fn cluster(&self, c: usize) -> Color {
        self.pick(CLUSTER[c % CLUSTER.len()])
    }

    /// A one-character name of cluster `c` (used for the scatter without colours).
    pub fn cluster_symbol(&self, c: usize) -> char {
        CLUSTER_SYMBOLS[c % CLUSTER_SYMBOLS.len()] as char
    }

    /// The bar fill for source `s` (distinct characters matter only without colours).
    pub fn source_fill(&self, s: usize) -> char {
        if self.color {
            '█'
        } else {
            SOURCE_FILLS[s % SOURCE_FILLS.len()]
        }
    }

    /// A panel border: bold and coloured when it has the focus.
    pub fn border(&self, focused: bool) -> Style {
        if focused {
            Style::default()
                .fg(self.pick(Color::LightYellow))
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(self.pick(Color::Gray))
        }
    }

    /// The selected row of a list.
    pub fn highlight(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    /// Data computed for older settings, still shown until the fresh figures arrive.
    pub fn stale(&self) -> Style {
        Style::default()
            .fg(self.pick(Color::DarkGray))
            .add_modifier(Modifier::DIM)
    }

    /// Errors.
    pub fn error(&self) -> Style {
        Style::default()
            .fg(self.pick(Color::LightRed))
            .add_modifier(Modifier::BOLD)
    }

    /// Secondary text (hints, units).
    pub fn muted(&self) -> Style {
        Style::default().fg(self.pick(Color::Gray))
    }

    /// Headings inside panels.
    pub fn heading(&self) -> Style {
        Style::default()
            .fg(self.pick(Color::LightBlue))
            .add_modifier(Modifier::BOLD)
    }

    /// Keys in the status bar and the help.
    pub fn key(&self) -> Style {
        Style::default()
            .fg(self.pick(Color::LightGreen))
            .add_modifier(Modifier::BOLD)
    }

    /// A cosine in [-1, 1] as a heat colour: strong overlap is hot.
    pub fn heat(&self, cosine: f64) -> Color {
        let a = cosine.abs();
        self.pick(if a >= 0.5 {
            Color::Red
        } else if a >= 0.2 {
            Color::Yellow
        } else {
            Color::Green
        })
    }
}
