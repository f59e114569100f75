//! The figures of the selected module: its scale against the exact sum and against each
//! source (‖ΔW'‖ ratios, projection coefficients), the distance to the exact sum, silhouette,
//! inertia, cluster sizes with each cluster's source mix as a stacked bar, the cosine to each
//! source and the adapter × adapter interference matrix. All are data-free geometry, shown
//! neutrally: none of them says which merge works (an evaluator does).

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::session::ModuleView;
use crate::tui::theme::Theme;
use crate::tui::view::Metrics;

/// Width of the stacked source-mix bars and of the retention bars.
const BAR: usize = 16;

/// Draws the panel.
pub fn render(p: &Metrics, t: &Theme, f: &mut Frame, area: Rect) {
    let stale = p.stale;
    let view = p.view;
    let block = super::block("Metrics", false, stale && view.is_some(), t);
    let lines = match view {
        None => vec![Line::styled("computing…", t.muted())],
        Some(Err(e)) => vec![Line::styled(e.clone(), t.error())],
        Some(Ok(None)) => vec![Line::styled(
            "nothing merged here (all weights 0)",
            t.muted(),
        )],
        Some(Ok(Some(v))) => lines(p, v, t, stale),
    };
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The panel's text for view `v`.
pub fn lines(p: &Metrics, v: &ModuleView, t: &Theme, stale: bool) -> Vec<Line<'static>> {
    let sources = &p.sources;
    let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let m = &v.merged;
    let val = |s: String| {
        Span::styled(
            s,
            super::maybe_stale(stale, Style::default().add_modifier(Modifier::BOLD), t),
        )
    };
    let mut out = Vec::new();
    // An evaluator's score, when there is one, leads: it is the only figure about quality.
    if let Some(e) = &p.score {
        let id = &e.origin;
        let split = e.split.as_deref().unwrap_or("–");
        if !e.stale {
            out.push(Line::from(vec![
                Span::styled("score ", t.heading()),
                val(format!("{:.4}", e.mean)),
                Span::styled(format!(" on {split} ({id})"), t.muted()),
            ]));
        } else {
            out.push(Line::from(vec![
                Span::styled("⟳ stale ", t.stale()),
                // The old score, for other settings than those shown.
                Span::styled(format!("score {:.4} ({id})", e.mean), t.muted()),
            ]));
        }
    }
    out.push(Line::from(vec![
        Span::styled("rank ", t.muted()),
        val(m.rank().to_string()),
        Span::styled(
            format!(" of {} units · ‖ΔW′‖/‖Σ w·ΔW‖ ", v.unit_adapter.len()),
            t.muted(),
        ),
        val(super::num(m.metrics.norm_ratio, 3)),
    ]));
    // Neutral on purpose: the exact sum is at distance 0 and is often a poor merge.
    out.push(Line::from(vec![
        Span::styled("distance to the exact sum ", t.muted()),
        val(super::num(m.metrics.error_vs_sum, 3)),
        Span::styled(" (0 = the sum itself; not a quality score)", t.muted()),
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
                let adapter = sources.get(si).map(|s| s.adapter).unwrap_or(si);
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
            format!("{} has no clusters", p.method),
            t.muted(),
        ));
    }
    let name_w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(4)
        .min(14);
    let weights: Vec<f64> = sources.iter().map(|s| s.weight).collect();
    let proj = m.metrics.projection(&weights);
    let norms = m.metrics.norm_vs_source(&weights);
    out.push(Line::styled(
        "cosine to each source w·ΔW_j (direction only)",
        t.heading(),
    ));
    for (si, r) in m.metrics.retention.iter().enumerate() {
        let adapter = sources[si].adapter;
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
        "scale per source: proj ⟨ΔW′,ΔW_j⟩/‖ΔW_j‖² · ‖ΔW′‖/‖ΔW_j‖",
        t.heading(),
    ));
    for si in 0..names.len() {
        out.push(Line::from(vec![
            Span::styled(
                format!("{:<name_w$} ", super::tail(&names[si], name_w)),
                Style::default().fg(t.adapter(sources[si].adapter)),
            ),
            Span::styled("proj ", t.muted()),
            val(format!(
                "{:>6}",
                super::num(proj.get(si).copied().unwrap_or(f64::NAN), 3)
            )),
            Span::styled("  norm ", t.muted()),
            val(format!(
                "{:>6}",
                super::num(norms.get(si).copied().unwrap_or(f64::NAN), 3)
            )),
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
            Style::default().fg(t.adapter(sources[si].adapter)),
        ));
    }
    out.push(Line::from(head));
    for (i, n) in names.iter().enumerate() {
        let mut row = vec![Span::styled(
            format!("{:<name_w$} ", super::tail(n, name_w)),
            Style::default().fg(t.adapter(sources[i].adapter)),
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
