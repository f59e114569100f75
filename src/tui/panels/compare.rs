//! The comparison overlay: the selected module and all modules under every method, with the
//! same figures side by side.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Row, Table};
use ratatui::Frame;

use crate::tui::theme::Theme;
use crate::tui::view::CompareView;

/// Draws the overlay over `area`.
pub fn render(v: &CompareView, t: &Theme, f: &mut Frame, area: Rect) {
    let rows = crate::recipe::MergeMethod::all().len() as u16;
    let popup = crate::tui::layout::centered(
        area,
        area.width.saturating_sub(4).min(140),
        (rows + 5).min(area.height.saturating_sub(2)),
    );
    f.render_widget(Clear, popup);
    let cmp = v.comparison;
    let stale = v.stale;
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
    let c = cmp;
    let current = |m: crate::recipe::MergeMethod| {
        if m == v.method {
            t.highlight()
        } else if stale {
            t.stale()
        } else {
            Style::default()
        }
    };
    // One row per method: this module's figures, then the means over all modules, so every
    // method fits on one screen however many there are.
    let rows = c.module_rows.iter().map(|(m, r)| {
        let mut cells: Vec<String> = match r {
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
            Ok(None) => dashes(m, 6),
            Err(_) => dashes(m, 6),
        };
        let all = c.all_rows.iter().find(|row| row.method == *m);
        match all {
            Some(row) if row.unavailable.is_none() => cells.extend([
                format!("│ {}/{:.1}", row.max_rank, row.mean_rank),
                super::num(row.error_vs_sum, 4),
                super::num(row.mean_retention, 3),
                super::num(row.min_retention, 3),
                crate::tui::export_dialog::human_bytes(row.bytes as u64),
                format!("{:.0} ms", row.millis),
            ]),
            _ => {
                let why = match (r, all.and_then(|row| row.unavailable.as_deref())) {
                    (Err(e), _) => e.as_str(),
                    (_, Some(why)) => why,
                    (Ok(None), None) => "all weights 0",
                    _ => "",
                };
                cells.push("│ –".into());
                cells.extend((0..4).map(|_| "–".to_string()));
                cells.push(reason(why).to_string());
            }
        }
        Row::new(cells).style(current(*m))
    });
    let name = v.module;
    let widths = [
        Constraint::Length(19),
        Constraint::Length(5),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new([
                "method",
                "rank",
                "dist/sum",
                "norm ratio",
                "min cos",
                "silhouette",
                "│ max/mean",
                "dist/sum",
                "mean cos",
                "min cos",
                "size",
                "time",
            ])
            .style(t.heading()),
        )
        .column_spacing(1);
    let [titles, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(inner);
    // The right group starts after the first six columns and their spacing.
    let left_width: usize = 19 + 5 + 10 + 10 + 9 + 10 + 6;
    let left = format!(" this module: {name}");
    let title = format!("{left:<left_width$}│ all modules (means)");
    f.render_widget(Paragraph::new(Line::styled(title, t.heading())), titles);
    f.render_widget(table, body);
}

fn dashes(m: &crate::recipe::MergeMethod, columns: usize) -> Vec<String> {
    let mut cells = vec![m.to_string()];
    cells.extend((1..columns).map(|_| "–".to_string()));
    cells
}

/// The reason a method could not run, without the module name the engine prefixes.
fn reason(why: &str) -> &str {
    match why.find("`: ") {
        Some(i) if why.starts_with("module `") => &why[i + 3..],
        _ => why,
    }
}
