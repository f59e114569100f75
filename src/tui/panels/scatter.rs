//! The scatter: the selected module's units on their first two principal axes, coloured by
//! cluster or by source adapter, with the centroids marked and a legend.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Points};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::session::ModuleView;
use crate::tui::theme::Theme;
use crate::tui::view::{ColourBy, Units};

/// The symbol centroids are drawn with.
pub const CENTROID: &str = "×";

/// Draws the panel.
pub fn render(u: &Units, t: &Theme, f: &mut Frame, area: Rect) {
    let stale = u.stale;
    let view = u.view;
    let by = match u.colour_by {
        ColourBy::Cluster => "cluster",
        ColourBy::Source => "source",
    };
    let mut title = format!("Units of {} · colour: {by}", super::tail(u.module, 40));
    if let Some(Ok(Some(v))) = view {
        let [a, b] = v.projection.explained;
        title.push_str(&format!(" · PC1 {:.0}% PC2 {:.0}%", a * 100.0, b * 100.0));
    }
    let block = super::block(&title, false, stale && view.is_some(), t);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let v = match view {
        None => {
            let msg = Paragraph::new(format!("computing {}…", u.module)).style(t.muted());
            f.render_widget(msg, inner);
            return;
        }
        Some(Err(e)) => {
            f.render_widget(
                Paragraph::new(e.clone())
                    .style(t.error())
                    .wrap(Wrap { trim: false }),
                inner,
            );
            return;
        }
        Some(Ok(None)) => {
            f.render_widget(
                Paragraph::new("every adapter of this module has weight 0: nothing to merge")
                    .style(t.muted()),
                inner,
            );
            return;
        }
        Some(Ok(Some(v))) => v,
    };
    let legend = pack(legend(u, v, t), inner.width as usize);
    let [plot, legend_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(legend.len() as u16)])
            .areas(inner);
    f.render_widget(canvas(u, v, t), plot);
    f.render_widget(
        Paragraph::new(legend).wrap(Wrap { trim: true }),
        legend_area,
    );
}

/// How each unit is coloured: by cluster when there are clusters and that was asked for.
fn by_cluster(u: &Units, v: &ModuleView) -> bool {
    u.colour_by == ColourBy::Cluster && !v.labels.is_empty()
}

/// The group (cluster or adapter) of unit `i` and its colour.
fn group(u: &Units, v: &ModuleView, t: &Theme, i: usize) -> (usize, ratatui::style::Color) {
    if by_cluster(u, v) {
        (v.labels[i], t.cluster(v.labels[i]))
    } else {
        (v.unit_adapter[i], t.adapter(v.unit_adapter[i]))
    }
}

fn bounds(v: &ModuleView) -> ([f64; 2], [f64; 2]) {
    let p = &v.projection;
    let axis = |c: usize| -> [f64; 2] {
        let (lo, hi) = p
            .units
            .column(c)
            .iter()
            .chain(p.points.column(c).iter())
            .copied()
            .filter(|x| x.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            });
        if !lo.is_finite() || hi - lo < 1e-12 {
            let c = if lo.is_finite() { lo } else { 0.0 };
            [c - 1.0, c + 1.0]
        } else {
            let pad = (hi - lo) * 0.08;
            [lo - pad, hi + pad]
        }
    };
    (axis(0), axis(1))
}

fn canvas<'a>(u: &'a Units, v: &'a ModuleView, t: &'a Theme) -> impl ratatui::widgets::Widget + 'a {
    let (xb, yb) = bounds(v);
    Canvas::default()
        .marker(Marker::Dot)
        .x_bounds(xb)
        .y_bounds(yb)
        .paint(move |ctx| {
            let n = v.projection.units.nrows();
            let groups: Vec<(usize, ratatui::style::Color)> =
                (0..n).map(|i| group(u, v, t, i)).collect();
            if t.color {
                let mut keys: Vec<usize> = groups.iter().map(|g| g.0).collect();
                keys.sort_unstable();
                keys.dedup();
                for key in keys {
                    let coords: Vec<(f64, f64)> = (0..n)
                        .filter(|&i| groups[i].0 == key)
                        .map(|i| (v.projection.units[[i, 0]], v.projection.units[[i, 1]]))
                        .collect();
                    let color = groups
                        .iter()
                        .find(|g| g.0 == key)
                        .map(|g| g.1)
                        .unwrap_or_default();
                    ctx.draw(&Points {
                        coords: &coords,
                        color,
                    });
                }
            } else {
                // Without colours each unit is drawn as its group's symbol.
                for (i, &(key, _)) in groups.iter().enumerate() {
                    let sym = if by_cluster(u, v) {
                        t.cluster_symbol(key).to_string()
                    } else {
                        ((b'A' + (key % 26) as u8) as char).to_string()
                    };
                    ctx.print(v.projection.units[[i, 0]], v.projection.units[[i, 1]], sym);
                }
            }
            ctx.layer();
            for c in 0..v.projection.points.nrows() {
                let style = Style::default()
                    .fg(t.cluster(c))
                    .add_modifier(Modifier::BOLD);
                ctx.print(
                    v.projection.points[[c, 0]],
                    v.projection.points[[c, 1]],
                    Span::styled(CENTROID, style),
                );
            }
        })
}

/// Lays legend entries out in lines of at most `width` cells, never splitting an entry.
pub fn pack(entries: Vec<Vec<Span<'static>>>, width: usize) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut current: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for e in entries {
        let w: usize = e.iter().map(|s| s.width()).sum();
        if used > 0 && used + w > width {
            lines.push(Line::from(std::mem::take(&mut current)));
            used = 0;
        }
        used += w;
        current.extend(e);
    }
    if !current.is_empty() {
        lines.push(Line::from(current));
    }
    lines
}

/// The legend entries: one per cluster (with its size) or per adapter, then the centroid mark.
pub fn legend(u: &Units, v: &ModuleView, t: &Theme) -> Vec<Vec<Span<'static>>> {
    let mut spans = Vec::new();
    if by_cluster(u, v) {
        let k = v
            .projection
            .points
            .nrows()
            .max(v.labels.iter().max().map_or(0, |m| m + 1));
        for c in 0..k {
            let size = v.labels.iter().filter(|&&l| l == c).count();
            let mark = if t.color {
                "●".to_string()
            } else {
                t.cluster_symbol(c).to_string()
            };
            spans.push(vec![
                Span::styled(format!("{mark} c{c}"), Style::default().fg(t.cluster(c))),
                Span::styled(format!("({size}) "), t.muted()),
            ]);
        }
    } else {
        let mut adapters: Vec<usize> = v.unit_adapter.clone();
        adapters.sort_unstable();
        adapters.dedup();
        for a in adapters {
            let name = u.adapter_names.get(a).copied().unwrap_or("?");
            let mark = if t.color {
                "●".to_string()
            } else {
                ((b'A' + (a % 26) as u8) as char).to_string()
            };
            spans.push(vec![Span::styled(
                format!("{mark} {name} "),
                Style::default().fg(t.adapter(a)),
            )]);
        }
        if u.colour_by == ColourBy::Cluster {
            spans.push(vec![Span::styled(
                "(no clusters for this method) ",
                t.muted(),
            )]);
        }
    }
    if v.projection.points.nrows() > 0 {
        spans.push(vec![Span::styled(
            format!("{CENTROID} centroid"),
            Style::default().add_modifier(Modifier::BOLD),
        )]);
    }
    spans
}
