//! Where the panels go: the rectangles of one frame, computed while drawing and kept by the
//! app for mouse hit-testing and list scrolling until the next frame.

use ratatui::layout::{Constraint, Flex, Layout, Rect};

/// The smallest terminal the explorer draws its panels in.
pub const MIN_WIDTH: u16 = 100;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u16 = 28;

/// Where each panel goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Adapters table.
    pub adapters: Rect,
    /// Modules list.
    pub modules: Rect,
    /// The scatter.
    pub scatter: Rect,
    /// The controls.
    pub controls: Rect,
    /// The metrics.
    pub metrics: Rect,
    /// The k curve.
    pub curve: Rect,
    /// The status bar (one line).
    pub status: Rect,
}

/// What the last frame drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Screen {
    /// Nothing yet: keys work, the mouse hits nothing.
    #[default]
    Undrawn,
    /// The terminal is below the minimum size: only quitting works.
    TooSmall,
    /// The panels, where they were drawn.
    Panels(Areas),
}

impl Screen {
    /// The panels' rectangles, when panels were drawn.
    pub fn areas(&self) -> Option<Areas> {
        match self {
            Screen::Panels(a) => Some(*a),
            _ => None,
        }
    }

    /// Rows of the modules list (inside its border), when known.
    pub fn module_rows(&self) -> Option<usize> {
        self.areas()
            .map(|a| (a.modules.height.saturating_sub(2) as usize).max(1))
    }
}

/// The panels' rectangles in `area`; `None` below the minimum size.
pub fn layout(area: Rect, n_adapters: usize) -> Option<Areas> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    let [main, status] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    let [left, middle, right] = Layout::horizontal([
        Constraint::Percentage(28),
        Constraint::Percentage(40),
        Constraint::Fill(1),
    ])
    .areas(main);
    let adapters_h = (n_adapters as u16 + 3).min(main.height / 3);
    let [adapters, modules] =
        Layout::vertical([Constraint::Length(adapters_h), Constraint::Min(3)]).areas(left);
    let controls_h = (n_adapters as u16 + 8 + 2).min(main.height / 2);
    let [scatter, controls] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(controls_h)]).areas(middle);
    let curve_h = (main.height * 2 / 5).max(8);
    let [metrics, curve] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(curve_h)]).areas(right);
    Some(Areas {
        adapters,
        modules,
        scatter,
        controls,
        metrics,
        curve,
        status,
    })
}

/// A `w × h` rectangle centred in `area` (shrunk to fit).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    r
}

/// The first row of a list of `len` rows shown `rows` at a time, moved as little as possible
/// from `offset` so that row `pos` is in view.
pub fn scroll(offset: usize, pos: usize, rows: usize, len: usize) -> usize {
    let rows = rows.max(1);
    let mut offset = offset;
    if pos < offset {
        offset = pos;
    } else if pos >= offset + rows {
        offset = pos + 1 - rows;
    }
    offset.min(len.saturating_sub(rows))
}
