//! The help overlay listing every key of the key table, and the quit confirmation.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::tui::keys::{self, Context};
use crate::tui::layout::centered;
use crate::tui::theme::Theme;

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

/// The popups whose keys the help lists after the panels' keys, one entry per popup.
const POPUPS: [Context; 6] = [
    Context::Filter,
    Context::Export,
    Context::Sweep,
    Context::Compare,
    Context::Help,
    Context::ConfirmQuit,
];

/// Width of the key column.
const KEY_W: usize = 18;
/// Inner width of the popup.
const WIDTH: usize = 98;

/// The help's lines: every key of the panels with what it does, every popup's keys, then
/// what each figure is. All the keys come from the key table.
pub fn lines(t: &Theme) -> Vec<Line<'static>> {
    let key_line = |keys: &str, what: &str| {
        Line::from(vec![
            Span::styled(format!(" {keys:<KEY_W$}"), t.key()),
            Span::raw(what.to_string()),
        ])
    };
    let mut lines: Vec<Line> = keys::of(Context::Main)
        .chain(keys::of(Context::Everywhere))
        .map(|b| key_line(b.shown, b.help))
        .collect();
    lines.push(key_line(
        "mouse",
        "click selects in lists; the wheel scrolls them",
    ));
    lines.push(Line::styled(" In the popups", t.heading()));
    for c in POPUPS {
        let entries: Vec<Vec<Span<'static>>> = keys::of(c)
            .map(|b| {
                vec![
                    Span::styled(b.shown, t.key()),
                    Span::raw(format!(" {}   ", b.label)),
                ]
            })
            .collect();
        let packed = super::scatter::pack(entries, WIDTH - KEY_W - 2);
        for (i, l) in packed.into_iter().enumerate() {
            let head = if i == 0 { c.title() } else { "" };
            let mut spans = vec![Span::styled(format!(" {head:<KEY_W$}"), t.muted())];
            spans.extend(l.spans);
            lines.push(Line::from(spans));
        }
    }
    lines.push(Line::styled(
        " Stale figures are greyed and marked ⟳ until recomputed.",
        t.muted(),
    ));
    lines.push(Line::styled(" The figures", t.heading()));
    lines.extend(FIGURES.iter().map(|(name, what)| {
        Line::from(vec![
            Span::styled(format!(" {name:<KEY_W$}"), t.muted()),
            Span::raw(*what),
        ])
    }));
    lines
}

/// Draws the help over `area`.
pub fn render(t: &Theme, f: &mut Frame, area: Rect) {
    let lines = lines(t);
    let popup = centered(area, WIDTH as u16 + 2, lines.len() as u16 + 2);
    f.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border(true))
        .title(" Keys and figures ");
    f.render_widget(Paragraph::new(lines).block(block), popup);
}

/// Draws "quit without exporting?".
pub fn render_confirm(t: &Theme, f: &mut Frame, area: Rect) {
    let popup = centered(area, 56, 5);
    f.render_widget(Clear, popup);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border(true))
        .title(" Quit? ");
    // The answers are the key table's, so the question cannot promise other keys.
    let mut answer = vec![Span::raw(" Quit anyway? ")];
    for (i, b) in keys::of(Context::ConfirmQuit).enumerate() {
        if i > 0 {
            answer.push(Span::raw(" · "));
        }
        answer.push(Span::styled(b.shown, t.key()));
        answer.push(Span::raw(format!(" {}", b.label)));
    }
    let lines = vec![
        Line::raw(" The current merge was never exported."),
        Line::from(answer),
    ];
    f.render_widget(Paragraph::new(lines).block(block), popup);
}
