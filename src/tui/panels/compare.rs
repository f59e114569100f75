//! The comparison overlay: the selected module and all modules under every method, with the
//! same figures side by side.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};
use ratatui::Frame;

use crate::tui::app::App;

/// Draws the overlay over `area`.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let popup = crate::tui::ui::centered(area, area.width.saturating_sub(4).min(130), 34);
    f.render_widget(Clear, popup);
    let cmp = app
        .comparison
        .as_ref()
        .filter(|c| c.value.module == app.selected);
    let stale = cmp.is_none_or(|c| c.generation != app.generation);
    let block = super::block(
        "Methods side by side (v/Esc closes)",
        true,
        stale && cmp.is_some(),
        t,
    );
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let Some(cmp) = cmp else {
        f.render_widget(
            Paragraph::new("computing every method…").style(t.muted()),
            inner,
        );
        return;
    };
    let c = &cmp.value;
    let n = c.module_rows.len() as u16;
    let [top, bottom] =
        Layout::vertical([Constraint::Length(n + 3), Constraint::Min(3)]).areas(inner);
    let current = |m: crate::recipe::MergeMethod| {
        if m == app.settings.method {
            t.highlight()
        } else if stale {
            t.stale()
        } else {
            Style::default()
        }
    };
    let module_rows = c.module_rows.iter().map(|(m, r)| {
        let cells: Vec<String> = match r {
            Ok(Some(s)) => vec![
                m.to_string(),
                s.rank.to_string(),
                super::num(s.error_vs_sum, 4),
                super::num(s.norm_ratio, 3),
                super::num(s.min_retention, 3),
                s.silhouette
                    .map(|x| super::num(x, 3))
                    .unwrap_or_else(|| "–".into()),
            ],
            Ok(None) => unavailable(&m.to_string(), "all weights 0", 6),
            Err(e) => unavailable(&m.to_string(), e, 6),
        };
        Row::new(cells).style(current(*m))
    });
    let name = app.engine.set.modules[c.module].key.to_string();
    let table = Table::new(
        module_rows,
        [
            Constraint::Length(20),
            Constraint::Length(5),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new([
            "method",
            "rank",
            "dist to sum",
            "norm ratio",
            "min cosine",
            "silhouette",
        ])
        .style(t.heading()),
    )
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(Line::styled(format!(" this module: {name} "), t.heading())),
    );
    f.render_widget(table, top);
    let all_rows = c.all_rows.iter().map(|r| {
        let cells: Vec<String> = match &r.unavailable {
            Some(why) => unavailable(&r.method.to_string(), why, 8),
            None => vec![
                r.method.to_string(),
                format!("{}/{:.1}", r.max_rank, r.mean_rank),
                super::num(r.error_vs_sum, 4),
                super::num(r.norm_ratio, 3),
                super::num(r.mean_retention, 3),
                super::num(r.min_retention, 3),
                crate::tui::export_dialog::human_bytes(r.bytes as u64),
                format!("{:.0} ms", r.millis),
            ],
        };
        Row::new(cells).style(current(r.method))
    });
    let table = Table::new(
        all_rows,
        [
            Constraint::Length(20),
            Constraint::Length(9),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new([
            "method",
            "rank max/mean",
            "dist to sum",
            "norm ratio",
            "mean cos",
            "min cos",
            "size",
            "time",
        ])
        .style(t.heading()),
    )
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(Line::styled(" all modules (means) ", t.heading())),
    );
    f.render_widget(table, bottom);
}

/// A row for a method that could not run: dashes, and the reason (without the module name
/// the engine prefixes) in the last column.
fn unavailable(method: &str, why: &str, columns: usize) -> Vec<String> {
    let reason = match why.find("`: ") {
        Some(i) if why.starts_with("module `") => &why[i + 3..],
        _ => why,
    };
    let mut cells = vec![method.to_string()];
    cells.extend((2..columns).map(|_| "–".to_string()));
    cells.push(reason.to_string());
    cells
}
