//! The sweep view: a sweep's `results.jsonl` (re-read as it grows, so a sweep running in
//! another terminal shows up as candidates finish), the candidates best first, the selected
//! one's per-task scores as bars, and the mean score against a swept knob, one line per method.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Clear, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use crate::recipe::MergeSettings;
use crate::session::{knob_text, read_results, ResultRecord, RESULTS_FILE};
use crate::tui::theme::Theme;

/// Width of the per-task bars.
const BAR: usize = 24;

/// The state of the sweep view.
#[derive(Debug, Clone)]
pub struct SweepView {
    /// The sweep's folder.
    pub dir: PathBuf,
    /// Its records, best first (unscored last).
    pub records: Vec<ResultRecord>,
    /// Index into `records`.
    pub selected: usize,
    /// Index into [`SweepView::knobs`]: the knob on the plot's x axis.
    pub knob: usize,
    /// What went wrong reading the file, if anything.
    pub note: Option<String>,
    stamp: Option<(SystemTime, u64)>,
}

impl SweepView {
    /// Reads the sweep in `dir`.
    pub fn open(dir: &Path) -> Self {
        let mut v = SweepView {
            dir: dir.to_path_buf(),
            records: Vec::new(),
            selected: 0,
            knob: 0,
            note: None,
            stamp: None,
        };
        v.reload();
        v
    }

    fn results(&self) -> PathBuf {
        self.dir.join(RESULTS_FILE)
    }

    /// Re-reads the results when the file changed; true when it did.
    pub fn refresh(&mut self) -> bool {
        let stamp = std::fs::metadata(self.results())
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp == self.stamp {
            return false;
        }
        self.reload();
        true
    }

    /// Reads the results again, keeping the selected candidate selected.
    pub fn reload(&mut self) {
        let keep = self.selected().map(|r| r.id.clone());
        self.stamp = std::fs::metadata(self.results())
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        match read_results(&self.results()) {
            Ok((mut records, notes)) => {
                records.sort_by(|a, b| {
                    let key = |r: &ResultRecord| r.mean().unwrap_or(f64::NEG_INFINITY);
                    key(b).total_cmp(&key(a))
                });
                self.records = records;
                self.note = notes.into_iter().next();
            }
            Err(e) => {
                self.records.clear();
                self.note = Some(e.to_string());
            }
        }
        self.selected = keep
            .and_then(|id| self.records.iter().position(|r| r.id == id))
            .unwrap_or(0);
        self.knob = self.knob.min(self.knobs().len().saturating_sub(1));
    }

    /// The selected candidate.
    pub fn selected(&self) -> Option<&ResultRecord> {
        self.records.get(self.selected)
    }

    /// Moves the selection by `delta`, clamped.
    pub fn move_by(&mut self, delta: isize) {
        let last = self.records.len().saturating_sub(1) as isize;
        self.selected = (self.selected as isize + delta).clamp(0, last.max(0)) as usize;
    }

    /// The numeric knobs that take more than one value: what the plot can put on its x axis.
    pub fn knobs(&self) -> Vec<String> {
        let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for r in &self.records {
            for (k, v) in &r.knobs {
                if let Some(x) = v.as_f64() {
                    values.entry(k.as_str()).or_default().push(x);
                }
            }
        }
        values
            .into_iter()
            .filter(|(_, v)| v.iter().any(|x| *x != v[0]))
            .map(|(k, _)| k.to_string())
            .collect()
    }

    /// Per method: (knob value, best mean at that value), sorted by value.
    pub fn series(&self, knob: &str) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut by_method: BTreeMap<&str, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
        for r in &self.records {
            let (Some(x), Some(m)) = (r.knobs.get(knob).and_then(|v| v.as_f64()), r.mean()) else {
                continue;
            };
            let slot = by_method
                .entry(r.method.as_str())
                .or_default()
                .entry(x.to_bits())
                .or_insert((x, m));
            slot.1 = slot.1.max(m);
        }
        by_method
            .into_iter()
            .map(|(method, points)| {
                let mut p: Vec<(f64, f64)> = points.into_values().collect();
                p.sort_by(|a, b| a.0.total_cmp(&b.0));
                (method.to_string(), p)
            })
            .collect()
    }

    /// Draws the view over `area`; `current` marks the candidate the explorer shows now, and
    /// `keys` are the view's keys as (keys, what they do).
    pub fn render(
        &self,
        current: &MergeSettings,
        keys: &[(&str, &str)],
        f: &mut Frame,
        area: Rect,
        t: &Theme,
    ) {
        let popup =
            crate::tui::layout::centered(area, area.width.saturating_sub(4), area.height - 2);
        f.render_widget(Clear, popup);
        let keys: Vec<String> = keys.iter().map(|(k, what)| format!("{k} {what}")).collect();
        let title = format!(
            " Sweep: {} · {} candidate(s) · {} ",
            self.dir.display(),
            self.records.len(),
            keys.join(" · ")
        );
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.border(true))
            .title(title);
        let inner = block.inner(popup);
        f.render_widget(block, popup);
        if self.records.is_empty() {
            let msg = self
                .note
                .clone()
                .unwrap_or_else(|| format!("no results yet in {}", self.results().display()));
            f.render_widget(Paragraph::new(msg).style(t.muted()), inner);
            return;
        }
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Fill(1)]).areas(inner);
        self.render_table(current, f, left, t);
        let [bars, plot] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Fill(1)]).areas(right);
        self.render_bars(current, f, bars, t);
        self.render_plot(f, plot, t);
    }

    fn render_table(&self, current: &MergeSettings, f: &mut Frame, area: Rect, t: &Theme) {
        let rows = area.height.saturating_sub(1) as usize;
        let offset = self.selected.saturating_sub(rows.saturating_sub(1));
        let mut lines = vec![Line::styled(
            format!("{:<13}{:<16}{:>8}  knobs", "id", "method", "mean"),
            t.heading(),
        )];
        for (i, r) in self.records.iter().enumerate().skip(offset).take(rows) {
            let mean = match (&r.eval, &r.error) {
                (Some(e), _) => format!("{:>8.4}", e.mean),
                (None, Some(_)) => format!("{:>8}", "failed"),
                _ => format!("{:>8}", "–"),
            };
            let mark = if &r.settings == current {
                " ◀ shown"
            } else {
                ""
            };
            let line = Line::from(vec![
                Span::raw(format!("{:<13}{:<16}", r.id, r.method)),
                Span::styled(mean, Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!("  {}", knob_text(&r.knobs))),
                Span::styled(mark, t.heading()),
            ]);
            lines.push(if i == self.selected {
                line.style(t.highlight())
            } else {
                line
            });
        }
        f.render_widget(Paragraph::new(lines), area);
    }

    fn render_bars(&self, current: &MergeSettings, f: &mut Frame, area: Rect, t: &Theme) {
        let Some(r) = self.selected() else { return };
        let mut lines = Vec::new();
        // The explorer's figures are for its current settings; these scores are not, unless
        // the candidate is the one shown.
        let stale = if &r.settings == current {
            Span::raw("")
        } else {
            Span::styled(" (not the settings shown: Enter loads them)", t.muted())
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{} {} ", r.id, r.method), t.heading()),
            Span::raw(knob_text(&r.knobs)),
            stale,
        ]));
        match (&r.eval, &r.error) {
            (Some(e), _) => {
                let top = e
                    .tasks()
                    .map(|(_, v)| *v)
                    .fold(1.0f64, f64::max)
                    .max(f64::MIN_POSITIVE);
                let name_w = e.tasks().map(|(k, _)| k.chars().count()).max().unwrap_or(4);
                for (i, (task, v)) in e.tasks().enumerate() {
                    let filled = ((v / top).clamp(0.0, 1.0) * BAR as f64).round() as usize;
                    lines.push(Line::from(vec![
                        Span::raw(format!("{task:<name_w$} ")),
                        Span::styled("█".repeat(filled), Style::default().fg(t.cluster(i))),
                        Span::styled("░".repeat(BAR - filled), t.muted()),
                        Span::raw(format!(" {v:.3}")),
                    ]));
                }
                lines.push(Line::styled(
                    format!(
                        "mean {:.4} · split {} · {:.1} s",
                        e.mean,
                        e.split.as_deref().unwrap_or("–"),
                        e.wall_secs
                    ),
                    t.muted(),
                ));
            }
            (None, Some(err)) => lines.push(Line::styled(err.clone(), t.error())),
            _ => {}
        }
        f.render_widget(
            Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }),
            area,
        );
    }

    fn render_plot(&self, f: &mut Frame, area: Rect, t: &Theme) {
        let knobs = self.knobs();
        let Some(knob) = knobs.get(self.knob) else {
            f.render_widget(
                Paragraph::new("no numeric knob varies: nothing to plot").style(t.muted()),
                area,
            );
            return;
        };
        let series = self.series(knob);
        let [legend, chart_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
        // Drawn by hand: Chart hides its own legend in small panes.
        let mut spans = vec![Span::styled(format!("mean vs {knob}: "), t.heading())];
        for (i, (m, _)) in series.iter().enumerate() {
            spans.push(Span::styled(
                format!("■ {m} "),
                Style::default().fg(t.cluster(i)),
            ));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), legend);
        let all = series.iter().flat_map(|(_, p)| p.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in all {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            return;
        }
        if x1 == x0 {
            x1 = x0 + 1.0;
        }
        if y1 - y0 < 1e-9 {
            y1 = y0 + 1e-3;
        }
        let datasets: Vec<Dataset> = series
            .iter()
            .enumerate()
            .map(|(i, (m, p))| {
                Dataset::default()
                    .name(m.clone())
                    .marker(Marker::Braille)
                    .graph_type(GraphType::Line)
                    .style(Style::default().fg(t.cluster(i)))
                    .data(p)
            })
            .collect();
        let label = |v: f64| Span::raw(format!("{v:.3}"));
        let chart = Chart::new(datasets)
            .x_axis(
                Axis::default()
                    .bounds([x0, x1])
                    .labels(vec![label(x0), label(x1)]),
            )
            .y_axis(
                Axis::default()
                    .bounds([y0, y1])
                    .labels(vec![label(y0), label(y1)]),
            )
            .legend_position(None);
        f.render_widget(chart, chart_area);
    }
}
