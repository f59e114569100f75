//! The controls: every merge knob the explorer edits, one per row.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::app::{App, Control, Focus};

/// The label and the current value of a control.
pub fn describe(app: &App, c: Control) -> (String, String) {
    let s = &app.settings;
    let lego = s.method.is_lego();
    let lego_only = |v: String| if lego { v } else { format!("{v} (lego only)") };
    match c {
        Control::Method => ("method".into(), s.method.to_string()),
        Control::K => ("k (all modules)".into(), lego_only(s.k.to_string())),
        Control::ModuleK => {
            let v = match app.module_override() {
                Some(k) => format!("{k} (override)"),
                None => format!("{} (global)", s.k_for(app.selected_name())),
            };
            ("k (this module)".into(), lego_only(v))
        }
        Control::ParamReweight => (
            "param reweight".into(),
            lego_only(s.param_reweight.to_string()),
        ),
        Control::OutputReweight => (
            "output r_ref".into(),
            lego_only(s.output_reweight.to_string()),
        ),
        Control::OutputScale => (
            "output multiplier".into(),
            lego_only(format!("{}", s.output_scale)),
        ),
        Control::Space => ("feature space".into(), lego_only(s.space.to_string())),
        Control::Seed => ("seed".into(), s.seed.to_string()),
        Control::Weight(i) => (
            format!(
                "weight {}",
                app.engine
                    .set
                    .adapters
                    .get(i)
                    .map(|a| a.name.as_str())
                    .unwrap_or("?")
            ),
            format!("{}", s.weight(i)),
        ),
    }
}

/// Draws the panel.
pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let focused = app.focus == Focus::Controls;
    let lines: Vec<Line> = app
        .controls()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (label, value) = describe(app, c);
            let selected = focused && i == app.control_cursor;
            let label_style = match c {
                Control::Weight(a) => Style::default().fg(t.adapter(a)),
                _ => t.heading(),
            };
            let value = if selected {
                format!("‹ {value} ›")
            } else {
                format!("  {value}")
            };
            let line = Line::from(vec![
                Span::styled(format!("{label:<22}"), label_style),
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
