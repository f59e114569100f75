//! The status bar: the message of the moment, or the keys that work now (from the key
//! table); on the right how far the recomputation has come.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::theme::Theme;
use crate::tui::view::{Status, StatusBar};

/// Draws the bar.
pub fn render(v: &StatusBar, t: &Theme, f: &mut Frame, area: Rect) {
    let mut right = if v.fresh < v.total || v.view_stale {
        format!("computing {}/{} ", v.fresh, v.total)
    } else {
        format!("{} · up to date ", v.method)
    };
    if v.unexported {
        right.push_str("· not exported ");
    }
    let [left_area, right_area] = Layout::horizontal([
        Constraint::Min(1),
        Constraint::Length(right.chars().count() as u16),
    ])
    .areas(area);
    let left = match v.message {
        Some(Status::Error(e)) => Line::styled(format!(" {e}"), t.error()),
        Some(Status::Info(m)) if !v.popup => Line::from(vec![
            Span::raw(format!(" {m} · ")),
            Span::styled("?", t.key()),
            Span::raw(" help"),
        ]),
        _ => {
            // Whole key hints only: a hint cut in the middle reads as a different key.
            let mut spans = vec![Span::raw(" ")];
            let mut used = 1;
            for &(k, what) in &v.hints {
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
