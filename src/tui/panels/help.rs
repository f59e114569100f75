//! The help overlay listing every key, and the quit confirmation.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::tui::app::{App, KEYS};

/// What each figure of the metrics panel is; none of them is a quality score.
pub const FIGURES: &[(&str, &str)] = &[
    (
        "‖ΔW′‖/‖Σ w·ΔW‖",
        "size of the merge against the exact weighted sum (1 = as large)",
    ),
    (
        "distance to sum",
        "‖ΔW′ − Σ w·ΔW‖ / ‖Σ w·ΔW‖: 0 is the sum itself, which often merges badly",
    ),
    (
        "cosine to source",
        "direction shared with w·ΔW_j; blind to scale (the sum at w 1 and 0.5 agree)",
    ),
    (
        "proj",
        "⟨ΔW′, ΔW_j⟩ / ‖ΔW_j‖²: how much of adapter j, as trained, the merge carries",
    ),
    ("norm", "‖ΔW′‖ / ‖ΔW_j‖ against adapter j as trained"),
    (
        "",
        "geometry, not quality: score merges with `lora-lego sweep --eval CMD`",
    ),
];

/// Draws the help over `area`.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let popup = crate::tui::ui::centered(area, 100, (KEYS.len() + FIGURES.len()) as u16 + 5);
    f.render_widget(Clear, popup);
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<18}"), t.key()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::styled(
        " Stale figures are greyed and marked ⟳ until recomputed.",
        t.muted(),
    ));
    lines.push(Line::styled(" The figures", t.heading()));
    lines.extend(FIGURES.iter().map(|(name, what)| {
        Line::from(vec![
            Span::styled(format!(" {name:<18}"), t.muted()),
            Span::raw(*what),
        ])
    }));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border(true))
        .title(" Keys and figures ");
    f.render_widget(Paragraph::new(lines).block(block), popup);
}

/// Draws "quit without exporting?".
pub fn render_confirm(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let popup = crate::tui::ui::centered(area, 56, 5);
    f.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border(true))
        .title(" Quit? ");
    let lines = vec![
        Line::raw(" The current merge was never exported."),
        Line::from(vec![
            Span::raw(" Quit anyway? "),
            Span::styled("y", t.key()),
            Span::raw(" quit · any other key stays"),
        ]),
    ];
    f.render_widget(Paragraph::new(lines).block(block), popup);
}
