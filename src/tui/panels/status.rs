//! The status bar: the message of the moment, or the keys that work now; on the right how far
//! the recomputation has come.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::app::{App, Focus, Overlay, Status};

/// The keys that do something in the current state, as (key, action).
pub fn keys(app: &App) -> Vec<(&'static str, &'static str)> {
    match &app.overlay {
        Some(Overlay::Help) => vec![("? Esc q", "close")],
        Some(Overlay::Compare) => vec![("v Esc q", "close")],
        Some(Overlay::ConfirmQuit) => vec![("y", "quit"), ("any other key", "stay")],
        Some(Overlay::Sweep(_)) => vec![
            ("↑↓", "candidate"),
            ("Enter", "load"),
            ("e", "export"),
            ("x", "knob"),
            ("r", "reload"),
            ("Esc", "close"),
        ],
        Some(Overlay::Export(_)) => vec![
            ("Tab ↑↓", "field"),
            ("←→", "change"),
            ("Enter", "export / close"),
            ("Esc", "cancel"),
        ],
        None if app.filter_editing => vec![("type", "filter"), ("Enter", "keep"), ("Esc", "clear")],
        None => {
            // Help and quit first: the end of the line is cut on narrow terminals.
            let mut k = vec![("?", "help"), ("q", "quit")];
            k.extend(match app.focus {
                Focus::Modules => vec![("↑↓", "module"), ("←→ [ ]", "k here"), ("/", "filter")],
                Focus::Adapters => vec![("↑↓", "adapter"), ("←→", "weight")],
                Focus::Controls => vec![("↑↓", "control"), ("←→", "change")],
            });
            k.extend([
                ("+ -", "k"),
                ("m", "method"),
                ("c", "colour"),
                ("v", "compare"),
                ("e", "export"),
                ("Tab", "panel"),
            ]);
            k
        }
    }
}

/// Draws the bar.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let (fresh, total) = app.progress();
    let mut right = if fresh < total || app.view_is_stale() {
        format!("computing {fresh}/{total} ")
    } else {
        format!("{} · up to date ", app.settings.method)
    };
    if app.unexported() {
        right.push_str("· not exported ");
    }
    let [left_area, right_area] = Layout::horizontal([
        Constraint::Min(1),
        Constraint::Length(right.chars().count() as u16),
    ])
    .areas(area);
    let left = match &app.status {
        Some(Status::Error(e)) => Line::styled(format!(" {e}"), t.error()),
        Some(Status::Info(m)) if app.overlay.is_none() => Line::from(vec![
            Span::raw(format!(" {m} · ")),
            Span::styled("?", t.key()),
            Span::raw(" help"),
        ]),
        _ => {
            // Whole key hints only: a hint cut in the middle reads as a different key.
            let mut spans = vec![Span::raw(" ")];
            let mut used = 1;
            for (k, what) in keys(app) {
                let hint = format!(" {what}  ");
                let width = k.chars().count() + hint.chars().count();
                if used + width > left_area.width as usize {
                    break;
                }
                used += width;
                spans.push(Span::styled(k, t.key()));
                spans.push(Span::raw(hint));
            }
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(left), left_area);
    f.render_widget(Paragraph::new(right).style(t.muted()), right_area);
}
