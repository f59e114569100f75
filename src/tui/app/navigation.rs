//! Moving around: the cursors of the lists, the selected module, the filter, scrolling, and
//! the mouse (hit-tested against the panels where the last frame drew them).

use std::sync::Arc;

use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use crate::tui::layout::{scroll, Screen};
use crate::tui::view::Focus;
use crate::tui::worker::Job;

use super::events::{Effect, Effects};
use super::state::App;

impl App {
    /// Takes note of what the frame just drawn showed, where; the modules list scrolls to
    /// keep the selection in view of the rows it now has.
    pub(crate) fn drawn(&mut self, screen: Screen) {
        self.screen = screen;
        self.scroll_into_view();
    }

    pub(super) fn move_cursor(&mut self, delta: i64) -> Effects {
        let step = |cur: usize, len: usize| -> usize {
            if len == 0 {
                return 0;
            }
            (cur as i64 + delta).clamp(0, len as i64 - 1) as usize
        };
        match self.focus {
            Focus::Adapters => {
                self.adapter_cursor = step(self.adapter_cursor, self.engine.set.adapters.len());
                Vec::new()
            }
            Focus::Controls => {
                self.control_cursor = step(self.control_cursor, self.controls().len());
                Vec::new()
            }
            Focus::Modules => {
                let visible = self.visible_modules();
                let pos = visible
                    .iter()
                    .position(|&m| m == self.selected)
                    .unwrap_or(0);
                match visible.get(step(pos, visible.len())) {
                    Some(&m) => self.select(m),
                    None => Vec::new(),
                }
            }
        }
    }

    /// Makes `module` the selected one and asks for its view if it is not fresh.
    pub(super) fn select(&mut self, module: usize) -> Effects {
        if module >= self.engine.set.modules.len() || module == self.selected {
            return Vec::new();
        }
        self.selected = module;
        self.scroll_into_view();
        vec![Effect::Job(Job::Detail {
            generation: self.generation,
            settings: Arc::new(self.settings.clone()),
            module,
        })]
    }

    pub(super) fn after_filter(&mut self) -> Effects {
        let visible = self.visible_modules();
        self.module_offset = 0;
        if !visible.contains(&self.selected) {
            if let Some(&m) = visible.first() {
                return self.select(m);
            }
        }
        self.scroll_into_view();
        Vec::new()
    }

    fn scroll_into_view(&mut self) {
        // Before the first frame the rows are unknown; the first frame scrolls.
        let Some(rows) = self.screen.module_rows() else {
            return;
        };
        let visible = self.visible_modules();
        let pos = visible
            .iter()
            .position(|&m| m == self.selected)
            .unwrap_or(0);
        self.module_offset = scroll(self.module_offset, pos, rows, visible.len());
    }

    pub(super) fn mouse(&mut self, m: MouseEvent) -> Effects {
        if self.overlay.is_some() {
            return Vec::new();
        }
        let Screen::Panels(l) = self.screen else {
            return Vec::new();
        };
        let at = Position::new(m.column, m.row);
        let inner_row = |r: Rect| -> Option<usize> {
            (r.contains(at) && m.row > r.y && m.row + 1 < r.y + r.height)
                .then(|| (m.row - r.y - 1) as usize)
        };
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(row) = inner_row(l.modules) {
                    self.focus = Focus::Modules;
                    let visible = self.visible_modules();
                    if let Some(&module) = visible.get(self.module_offset + row) {
                        return self.select(module);
                    }
                } else if let Some(row) = inner_row(l.adapters) {
                    self.focus = Focus::Adapters;
                    // The first inner row is the table header.
                    if row >= 1 && row - 1 < self.engine.set.adapters.len() {
                        self.adapter_cursor = row - 1;
                    }
                } else if let Some(row) = inner_row(l.controls) {
                    self.focus = Focus::Controls;
                    if row < self.controls().len() {
                        self.control_cursor = row;
                    }
                }
                Vec::new()
            }
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let dir = if m.kind == MouseEventKind::ScrollDown {
                    1
                } else {
                    -1
                };
                let focus = if l.modules.contains(at) {
                    Focus::Modules
                } else if l.adapters.contains(at) {
                    Focus::Adapters
                } else if l.controls.contains(at) {
                    Focus::Controls
                } else {
                    return Vec::new();
                };
                self.focus = focus;
                self.move_cursor(dir)
            }
            _ => Vec::new(),
        }
    }
}
