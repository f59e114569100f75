//! The screen: one frame of the view model drawn panel by panel, then the popup. Drawing
//! returns where the panels went, which the app keeps for the mouse.

use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::layout::{layout, Screen, MIN_HEIGHT, MIN_WIDTH};
use super::panels;
use super::view::{Popup, View};

/// Draws the whole screen and says what it drew.
pub fn render(v: &View, f: &mut Frame) -> Screen {
    let area = f.area();
    let t = v.theme;
    let Some(l) = layout(area, v.adapters.rows.len()) else {
        let msg = vec![
            Line::raw(format!(
                "The terminal is {}×{}; the explorer needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
                area.width, area.height
            )),
            Line::raw("Enlarge the window, or press q to quit."),
        ];
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return Screen::TooSmall;
    };
    panels::adapters::render(&v.adapters, t, f, l.adapters);
    panels::modules::render(&v.modules, t, f, l.modules);
    panels::scatter::render(&v.units, t, f, l.scatter);
    panels::controls::render(&v.controls, t, f, l.controls);
    panels::metrics::render(&v.metrics, t, f, l.metrics);
    panels::curve::render(&v.curve, t, f, l.curve);
    panels::status::render(&v.status, t, f, l.status);
    match &v.overlay {
        None => {}
        Some(Popup::Help) => panels::help::render(t, f, area),
        Some(Popup::Compare(c)) => panels::compare::render(c, t, f, area),
        Some(Popup::Export(d, keys)) => d.render(keys, f, area, t),
        Some(Popup::ConfirmQuit) => panels::help::render_confirm(t, f, area),
        Some(Popup::Sweep(s, current, keys)) => s.render(current, keys, f, area, t),
    }
    Screen::Panels(l)
}
