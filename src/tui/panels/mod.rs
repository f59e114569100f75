//! One file per panel; each draws from its part of the frame's [view model](super::view).

pub mod adapters;
pub mod compare;
pub mod controls;
pub mod curve;
pub mod help;
pub mod metrics;
pub mod modules;
pub mod scatter;
pub mod status;

use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

use super::theme::Theme;

/// A bordered block with a title, marked "stale" while its figures are being recomputed.
pub fn block<'a>(title: &str, focused: bool, stale: bool, theme: &Theme) -> Block<'a> {
    let mut spans = vec![Span::raw(format!(" {title} "))];
    if stale {
        spans.push(Span::styled("⟳ stale ", theme.stale()));
    }
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(ratatui::text::Line::from(spans))
}

/// A number for a table cell; "–" for NaN.
pub fn num(x: f64, prec: usize) -> String {
    if x.is_finite() {
        format!("{x:.prec$}")
    } else {
        "–".into()
    }
}

/// Keeps the end of `s` (module names differ at their ends) within `w` characters.
pub fn tail(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        let skip = n - (w - 1);
        format!("…{}", s.chars().skip(skip).collect::<String>())
    }
}

/// The style of a value that may be stale.
pub fn maybe_stale(stale: bool, base: Style, theme: &Theme) -> Style {
    if stale {
        theme.stale()
    } else {
        base
    }
}
