//! The selected module's inertia and silhouette against k, with the suggested and the current
//! k marked. The legend is drawn by hand: `Chart` hides its own in small panes.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use crate::session::KPoint;
use crate::tui::theme::Theme;
use crate::tui::view::KCurve;

/// The colours of the two curves and the two k marks.
pub fn colours(t: &Theme) -> [Color; 4] {
    if t.color {
        [
            Color::LightCyan,
            Color::LightMagenta,
            Color::LightGreen,
            Color::White,
        ]
    } else {
        [Color::Reset; 4]
    }
}

/// Draws the panel.
pub fn render(v: &KCurve, t: &Theme, f: &mut Frame, area: Rect) {
    let stale = v.stale;
    let curve = v.curve;
    let block = super::block(
        "Inertia & silhouette vs k",
        false,
        stale && curve.is_some(),
        t,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    let (points, suggested) = match curve {
        None => {
            f.render_widget(Paragraph::new("computing…").style(t.muted()), inner);
            return;
        }
        Some(Err(e)) => {
            f.render_widget(Paragraph::new(e.clone()).style(t.error()), inner);
            return;
        }
        Some(Ok((p, k))) => (p, *k),
    };
    let current = v.current_k;
    let [legend_area, chart_area] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(inner);
    f.render_widget(
        Paragraph::new(legend(t, suggested, current)).wrap(ratatui::widgets::Wrap { trim: true }),
        legend_area,
    );
    if points.is_empty() {
        return;
    }
    let (inertia, silhouette) = series(points);
    let kmax = points.iter().map(|p| p.k).max().unwrap_or(1).max(2) as f64;
    let mark = |k: usize| vec![(k as f64, 0.0), (k as f64, 1.0)];
    let suggested_line = mark(suggested);
    let current_line = mark(current.min(kmax as usize));
    let [ci, cs, cg, cc] = colours(t);
    let datasets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(cc))
            .data(&current_line),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(cg))
            .data(&suggested_line),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(ci))
            .data(&inertia),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(cs))
            .data(&silhouette),
    ];
    let chart = Chart::new(datasets)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds([1.0, kmax])
                .labels(["1".to_string(), format!("{}", kmax as usize)])
                .style(t.muted()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, 1.0])
                .labels(["0", "1"])
                .style(t.muted()),
        );
    f.render_widget(chart, chart_area);
}

/// (x, y) points of one line of the chart.
pub type Series = Vec<(f64, f64)>;

/// Inertia scaled to [0, 1] by its largest value, and silhouette (negative values at 0).
pub fn series(points: &[KPoint]) -> (Series, Series) {
    let top = points.iter().map(|p| p.inertia).fold(0.0, f64::max);
    let inertia = points
        .iter()
        .map(|p| (p.k as f64, if top > 0.0 { p.inertia / top } else { 0.0 }))
        .collect();
    let silhouette = points
        .iter()
        .filter(|p| p.k >= 2)
        .map(|p| (p.k as f64, p.silhouette.clamp(0.0, 1.0)))
        .collect();
    (inertia, silhouette)
}

/// "— inertia/max  — silhouette  ┃ suggested k=5  ┃ current k=8".
pub fn legend(t: &Theme, suggested: usize, current: usize) -> Line<'static> {
    let [ci, cs, cg, cc] = colours(t);
    Line::from(vec![
        Span::styled("— inertia/max  ", Style::default().fg(ci)),
        Span::styled("— silhouette  ", Style::default().fg(cs)),
        Span::styled(
            format!("┃ suggested k={suggested}  "),
            Style::default().fg(cg),
        ),
        Span::styled(format!("┃ current k={current}"), Style::default().fg(cc)),
    ])
}
