//! The modules list: every adapted module with its merged rank and distance to the exact
//! sum (shown neutrally: the sum itself is at 0 and is no better for it); a filter narrows it.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::app::{App, Focus};

/// Draws the panel.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let focused = app.focus == Focus::Modules;
    let visible = app.visible_modules();
    let (fresh, total) = app.progress();
    let mut title = format!("Modules {}/{total}", visible.len());
    if app.filter_editing || !app.filter.is_empty() {
        title.push_str(&format!(
            " /{}{}",
            app.filter,
            if app.filter_editing { "▏" } else { "" }
        ));
    }
    let block = super::block(&title, focused, fresh < total, t);
    let inner = block.inner(area);
    let rows = inner.height as usize;
    let width = inner.width as usize;
    // "dist 0.123 k 8*" takes 17 columns on the right.
    let name_w = width.saturating_sub(18);
    let names: Vec<&str> = app
        .engine
        .set
        .modules
        .iter()
        .map(|m| m.key.as_str())
        .collect();
    let prefix = common_prefix(&names);
    let lines: Vec<Line> = visible
        .iter()
        .skip(app.module_offset)
        .take(rows)
        .map(|&m| {
            let name = app.engine.set.modules[m].key.as_str();
            let short = &name[prefix..];
            let selected = m == app.selected;
            let overridden = app.settings.k_overrides.iter().any(|o| o.pattern == name);
            let slot = app.summaries.get(m).and_then(|s| s.as_ref());
            let stale = slot.is_none_or(|s| s.generation != app.generation);
            let figure = match slot.map(|s| &s.value) {
                None => Span::styled("      …   ".to_string(), t.muted()),
                Some(Err(_)) => Span::styled("  error   ".to_string(), t.error()),
                Some(Ok(None)) => Span::styled("  unused  ".to_string(), t.muted()),
                Some(Ok(Some(s))) => Span::styled(
                    format!("dist {:.3}", s.error_vs_sum),
                    super::maybe_stale(stale, Style::default(), t),
                ),
            };
            let rank = match slot.map(|s| &s.value) {
                Some(Ok(Some(s))) => format!(" k{:<3}", s.rank),
                _ => "     ".into(),
            };
            let line = Line::from(vec![
                Span::raw(format!("{:<name_w$}", super::tail(short, name_w))),
                Span::raw(" "),
                figure,
                Span::styled(rank, super::maybe_stale(stale, Style::default(), t)),
                Span::raw(if overridden { "*" } else { " " }),
            ]);
            if selected {
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
