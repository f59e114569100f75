//! The adapters panel: name, rank, alpha, dtype, colour and weight of each source.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Row, Table};
use ratatui::Frame;

use crate::adapter::Adapter;
use crate::tui::app::{App, Focus};

/// The alpha of the adapter's typical-rank modules (adapters may vary it per module).
pub fn typical_alpha(a: &Adapter) -> f64 {
    let r = a.typical_rank();
    a.modules
        .iter()
        .find(|m| m.rank == r)
        .map(|m| m.alpha)
        .unwrap_or(f64::NAN)
}

/// Draws the panel.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let focused = app.focus == Focus::Adapters;
    // Narrow panes drop alpha and dtype so the names keep some room.
    let wide = area.width >= 40;
    let header = if wide {
        Row::new(["", "adapter", "rank", "alpha", "dtype", "weight"])
    } else {
        Row::new(["", "adapter", "rank", "weight"])
    }
    .style(t.heading());
    let rows = app.engine.set.adapters.iter().enumerate().map(|(i, a)| {
        let w = app.settings.weight(i);
        let mut style = Style::default();
        if focused && i == app.adapter_cursor {
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
            Line::raw(a.typical_rank().to_string()),
        ];
        if wide {
            cells.push(Line::raw(super::num(typical_alpha(a), 0)));
            cells.push(Line::raw(
                a.dtype()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "mixed".into()),
            ));
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
        &format!("Adapters ({})", app.engine.set.adapters.len()),
        focused,
        false,
        t,
    ));
    f.render_widget(table, area);
}
