//! The screen: the layout (shared with mouse hit-testing), the panels and the popups.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Overlay};
use super::panels;

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

/// Draws the whole screen.
pub fn render(app: &App, f: &mut Frame) {
    let area = f.area();
    let Some(l) = layout(area, app.engine.set.adapters.len()) else {
        let msg = vec![
            Line::raw(format!(
                "The terminal is {}×{}; the explorer needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
                area.width, area.height
            )),
            Line::raw("Enlarge the window, or press q to quit."),
        ];
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    };
    panels::adapters::render(app, f, l.adapters);
    panels::modules::render(app, f, l.modules);
    panels::scatter::render(app, f, l.scatter);
    panels::controls::render(app, f, l.controls);
    panels::metrics::render(app, f, l.metrics);
    panels::curve::render(app, f, l.curve);
    panels::status::render(app, f, l.status);
    match &app.overlay {
        None => {}
        Some(Overlay::Help) => panels::help::render(app, f, area),
        Some(Overlay::Compare) => panels::compare::render(app, f, area),
        Some(Overlay::Export(d)) => d.render(f, area, &app.theme),
        Some(Overlay::ConfirmQuit) => panels::help::render_confirm(app, f, area),
        Some(Overlay::Sweep(v)) => v.render(&app.settings, f, area, &app.theme),
    }
}
