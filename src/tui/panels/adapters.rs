//! The adapters panel: name, rank, alpha, dtype, colour and weight of each source.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Row, Table};
use ratatui::Frame;

use crate::tui::theme::Theme;
use crate::tui::view::Adapters;

/// Draws the panel.
pub fn render(v: &Adapters, t: &Theme, f: &mut Frame, area: Rect) {
    let focused = v.cursor.is_some();
    // Narrow panes drop alpha and dtype so the names keep some room.
    let wide = area.width >= 40;
    let header = if wide {
        Row::new(["", "adapter", "rank", "alpha", "dtype", "weight"])
    } else {
        Row::new(["", "adapter", "rank", "weight"])
    }
    .style(t.heading());
    let rows = v.rows.iter().enumerate().map(|(i, a)| {
        let w = a.weight;
        let mut style = Style::default();
        if v.cursor == Some(i) {
            style = t.highlight();
        }
        let weight_style = if w == 0.0 {
            t.muted().add_modifier(Modifier::CROSSED_OUT)
        } else {
            Style::default()
        };
        let mut cells = vec![
            Line::from(Span::styled("●", Style::default().fg(t.adapter(i)))),
            Line::from(Span::styled(
                a.name.clone(),
                Style::default().fg(t.adapter(i)),
            )),
            Line::raw(a.rank.to_string()),
        ];
        if wide {
            cells.push(Line::raw(super::num(a.alpha, 0)));
            cells.push(Line::raw(a.dtype.clone()));
        }
        cells.push(Line::from(Span::styled(format!("{w:.1}"), weight_style)));
        Row::new(cells).style(style)
    });
    let widths = if wide {
        vec![
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(6),
        ]
    } else {
        vec![
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(4),
            Constraint::Length(6),
        ]
    };
    let table = Table::new(rows, widths).header(header).block(super::block(
        &format!("Adapters ({})", v.rows.len()),
        focused,
        false,
        t,
    ));
    f.render_widget(table, area);
}
