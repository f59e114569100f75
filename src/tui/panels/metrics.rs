//! The metrics of the selected module: silhouette, inertia, error against the exact sum,
//! cluster sizes with each cluster's source mix as a stacked bar, retention per source and
//! the adapter × adapter interference matrix.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::engine::ModuleView;
use crate::tui::app::App;
use crate::tui::theme::Theme;

/// Width of the stacked source-mix bars and of the retention bars.
const BAR: usize = 16;

/// Draws the panel.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let stale = app.view_is_stale();
    let view = app.selected_view();
    let block = super::block("Metrics", false, stale && view.is_some(), t);
    let lines = match view {
        None => vec![Line::styled("computing…", t.muted())],
        Some(Err(e)) => vec![Line::styled(e.clone(), t.error())],
        Some(Ok(None)) => vec![Line::styled(
            "nothing merged here (all weights 0)",
            t.muted(),
        )],
        Some(Ok(Some(v))) => lines(app, v, t, stale),
    };
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The panel's text for view `v`.
pub fn lines(app: &App, v: &ModuleView, t: &Theme, stale: bool) -> Vec<Line<'static>> {
    let set = &app.engine.set;
    let sources = &set.modules[v.module].sources;
    let names: Vec<String> = sources
        .iter()
        .map(|s| set.adapters[s.0].name.clone())
        .collect();
    let m = &v.merged;
    let val = |s: String| {
        Span::styled(
            s,
            super::maybe_stale(stale, Style::default().add_modifier(Modifier::BOLD), t),
        )
    };
    let mut out = Vec::new();
    out.push(Line::from(vec![
        Span::styled("rank ", t.muted()),
        val(m.rank().to_string()),
        Span::styled(
            format!(" of {} units · error vs sum ", v.unit_adapter.len()),
            t.muted(),
        ),
        Span::styled(
            super::num(m.metrics.error_vs_sum, 3),
            super::maybe_stale(
                stale,
                Style::default()
                    .fg(t.health(m.metrics.error_vs_sum))
                    .add_modifier(Modifier::BOLD),
                t,
            ),
        ),
        Span::styled(" · norm ratio ", t.muted()),
        val(super::num(m.metrics.norm_ratio, 3)),
    ]));
    if let Some(c) = &m.clusters {
        out.push(Line::from(vec![
            Span::styled("silhouette ", t.muted()),
            val(super::num(c.silhouette, 3)),
            Span::styled(" · inertia ", t.muted()),
            val(format!("{:.4}", c.inertia)),
            Span::styled(" · output factor ", t.muted()),
            val(format!("{:.3}", c.output_factor)),
        ]));
        out.push(Line::styled("clusters: size and source mix", t.heading()));
        let biggest = c.cluster_sizes.iter().copied().max().unwrap_or(1).max(1);
        let per_unit = (BAR / biggest).max(1);
        for (ci, mix) in c.source_mix.iter().enumerate() {
            let mut spans = vec![Span::styled(
                format!("c{ci:<3}"),
                Style::default().fg(t.cluster(ci)),
            )];
            for (si, &count) in mix.iter().enumerate() {
                let adapter = sources.get(si).map(|s| s.0).unwrap_or(si);
                let fill: String =
                    std::iter::repeat_n(t.source_fill(si), count * per_unit).collect();
                spans.push(Span::styled(fill, Style::default().fg(t.adapter(adapter))));
            }
            let size = c.cluster_sizes.get(ci).copied().unwrap_or(0);
            let parts: Vec<String> = mix.iter().map(|n| n.to_string()).collect();
            spans.push(Span::styled(
                format!(" {size} ({})", parts.join("+")),
                t.muted(),
            ));
            out.push(Line::from(spans));
        }
    } else {
        out.push(Line::styled(
            format!("{} has no clusters", app.settings.method),
            t.muted(),
        ));
    }
    out.push(Line::styled(
        "retention per source (cosine of ΔW' with w·ΔW_j)",
        t.heading(),
    ));
    let name_w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(4)
        .min(14);
    for (si, r) in m.metrics.retention.iter().enumerate() {
        let adapter = sources[si].0;
        let filled = ((r.clamp(0.0, 1.0)) * BAR as f64).round() as usize;
        out.push(Line::from(vec![
            Span::styled(
                format!("{:<name_w$} ", super::tail(&names[si], name_w)),
                Style::default().fg(t.adapter(adapter)),
            ),
            Span::styled("█".repeat(filled), Style::default().fg(t.adapter(adapter))),
            Span::styled("░".repeat(BAR - filled), t.muted()),
            Span::raw(" "),
            val(super::num(*r, 3)),
        ]));
    }
    out.push(Line::styled(
        "interference (cosine between sources)",
        t.heading(),
    ));
    let mut head = vec![Span::raw(format!("{:<name_w$} ", ""))];
    for (si, n) in names.iter().enumerate() {
        head.push(Span::styled(
            format!("{:>10}", super::tail(n, 9)),
            Style::default().fg(t.adapter(sources[si].0)),
        ));
    }
    out.push(Line::from(head));
    for (i, n) in names.iter().enumerate() {
        let mut row = vec![Span::styled(
            format!("{:<name_w$} ", super::tail(n, name_w)),
            Style::default().fg(t.adapter(sources[i].0)),
        )];
        for j in 0..names.len() {
            let c = v.interference.get((i, j)).copied().unwrap_or(f64::NAN);
            let style = if i == j {
                t.muted()
            } else {
                Style::default().fg(t.heat(c))
            };
            row.push(Span::styled(
                format!("{:>10}", super::num(c, 2)),
                super::maybe_stale(stale, style, t),
            ));
        }
        out.push(Line::from(row));
    }
    for n in &m.notices {
        out.push(Line::styled(format!("note: {n}"), t.muted()));
    }
    out
}
