//! The modules list: every adapted module with its merged rank and distance to the exact
//! sum (shown neutrally: the sum itself is at 0 and is no better for it); a filter narrows it.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::layout::scroll;
use crate::tui::theme::Theme;
use crate::tui::view::{Figure, Modules};

/// Draws the panel.
pub fn render(v: &Modules, t: &Theme, f: &mut Frame, area: Rect) {
    let total = v.all_names.len();
    let mut title = format!("Modules {}/{total}", v.rows.len());
    if v.filter_editing || !v.filter.is_empty() {
        title.push_str(&format!(
            " /{}{}",
            v.filter,
            if v.filter_editing { "▏" } else { "" }
        ));
    }
    let block = super::block(&title, v.focused, v.fresh < total, t);
    let inner = block.inner(area);
    let rows = inner.height as usize;
    let width = inner.width as usize;
    // "dist 0.123 k 8*" takes 17 columns on the right.
    let name_w = width.saturating_sub(18);
    let prefix = common_prefix(&v.all_names);
    // The app scrolls for the rows it last saw; after a resize the selection stays in view.
    let selected = v.rows.iter().position(|r| r.selected).unwrap_or(0);
    let offset = scroll(v.offset, selected, rows, v.rows.len());
    let lines: Vec<Line> = v
        .rows
        .iter()
        .skip(offset)
        .take(rows)
        .map(|m| {
            let short = &m.name[prefix.min(m.name.len())..];
            let stale = !matches!(m.figure, Figure::Merged { stale: false, .. });
            let figure = match m.figure {
                Figure::Pending => Span::styled("      …   ".to_string(), t.muted()),
                Figure::Failed => Span::styled("  error   ".to_string(), t.error()),
                Figure::Unused => Span::styled("  unused  ".to_string(), t.muted()),
                Figure::Merged { error_vs_sum, .. } => Span::styled(
                    format!("dist {error_vs_sum:.3}"),
                    super::maybe_stale(stale, Style::default(), t),
                ),
            };
            let rank = match m.figure {
                Figure::Merged { rank, .. } => format!(" k{rank:<3}"),
                _ => "     ".into(),
            };
            let line = Line::from(vec![
                Span::raw(format!("{:<name_w$}", super::tail(short, name_w))),
                Span::raw(" "),
                figure,
                Span::styled(rank, super::maybe_stale(stale, Style::default(), t)),
                Span::raw(if m.overridden { "*" } else { " " }),
            ]);
            if m.selected {
                line.style(t.highlight())
            } else {
                line
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(block), area);
}

/// The length of the dotted prefix all `names` share ("encoder.layer."), which the list
/// leaves out to make room for the part that tells modules apart.
pub fn common_prefix(names: &[&str]) -> usize {
    let Some(first) = names.first() else {
        return 0;
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = first
            .bytes()
            .zip(n.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Byte-wise agreement can end inside a multi-byte character.
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    // Cut after the last dot inside the shared part, and never swallow a whole name.
    first[..len]
        .rfind('.')
        .map(|i| i + 1)
        .filter(|&i| names.iter().all(|n| n.len() > i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn the_shared_dotted_prefix_is_cut_at_a_dot_and_never_inside_a_character() {
        assert_eq!(common_prefix(&["a.b.c", "a.b.d"]), 4);
        assert_eq!(common_prefix(&["a.bc", "a.bd"]), 2);
        assert_eq!(common_prefix(&["x", "y"]), 0);
        assert_eq!(common_prefix(&["only.one"]), 5);
        assert_eq!(common_prefix(&["m.é1", "m.è2"]), 2);
        assert_eq!(common_prefix(&["é.a", "é.b"]), 3);
    }
}
