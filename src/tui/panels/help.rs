//! The help overlay listing every key, and the quit confirmation.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::tui::app::{App, KEYS};

/// Draws the help over `area`.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let popup = crate::tui::ui::centered(area, 86, KEYS.len() as u16 + 4);
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
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border(true))
        .title(" Keys ");
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
