//! The controls: every merge knob the explorer edits, one per row.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::theme::Theme;
use crate::tui::view::Controls;

/// Draws the panel.
pub fn render(v: &Controls, t: &Theme, f: &mut Frame, area: Rect) {
    let focused = v.cursor.is_some();
    let lines: Vec<Line> = v
        .rows
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let selected = v.cursor == Some(i);
            let label_style = match c.adapter {
                Some(a) => Style::default().fg(t.adapter(a)),
                None => t.heading(),
            };
            let value = if selected {
                format!("‹ {} ›", c.value)
            } else {
                format!("  {}", c.value)
            };
            let line = Line::from(vec![
                Span::styled(format!("{:<22}", c.label), label_style),
                Span::raw(value),
            ]);
            if selected {
                line.style(t.highlight())
            } else {
                line
            }
        })
        .collect();
    let block = super::block("Controls (←→ change)", focused, false, t);
    f.render_widget(Paragraph::new(lines).block(block), area);
}
