//! A scripted session: the app driven by keys with the engine's work done on the calling
//! thread, and the screen rendered into a `TestBackend`. Tests and demos use it; the real
//! explorer uses the worker thread instead.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use ratatui::Terminal;

use crate::recipe::MergeSettings;
use crate::session::LoadOptions;

use super::action::Action;
use super::app::{App, Effect, Event};
use super::layout::{Areas, Screen};
use super::theme::Theme;
use super::Extras;

/// An app, a synchronous stand-in for its worker, and a screen of a fixed size that is drawn
/// after every event, as the run loop does (so the mouse hits what was drawn).
#[derive(Debug)]
pub struct Session {
    /// The app under test.
    pub app: App,
    size: (u16, u16),
}

impl Session {
    /// Loads `paths`, opens the app with `settings` on a `w × h` screen and computes
    /// everything once.
    pub fn open(
        paths: &[PathBuf],
        settings: MergeSettings,
        w: u16,
        h: u16,
    ) -> crate::Result<Session> {
        Session::open_with(paths, settings, w, h, Extras::default())
    }

    /// [`Session::open`] with a sweep view and/or an evaluator, as `lora-lego --sweep DIR
    /// --eval CMD` opens the explorer.
    pub fn open_with(
        paths: &[PathBuf],
        settings: MergeSettings,
        w: u16,
        h: u16,
        extras: Extras,
    ) -> crate::Result<Session> {
        let engine = Arc::new(crate::session::open(paths, &LoadOptions::default())?);
        let mut app = App::new(engine, paths.to_vec(), settings);
        app.sweep_dir = extras.sweep;
        app.evaluator = extras.evaluator;
        let effects = app.start();
        let mut s = Session { app, size: (w, h) };
        s.apply(effects);
        Ok(s)
    }

    /// Runs `effects` to completion: every job's replies go back into the app, and so do the
    /// jobs those replies cause. The screen is drawn afterwards.
    pub fn apply(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::Job(job) => {
                    let engine = Arc::clone(&self.app.engine);
                    let mut replies = Vec::new();
                    super::run_job_sync(&engine, job, &mut |r| replies.push(r));
                    for r in replies {
                        queue.extend(self.app.handle(Event::Reply(Box::new(r))));
                    }
                }
                Effect::Score(settings) => {
                    let Some((evaluator, split)) = self.app.evaluator.clone() else {
                        continue;
                    };
                    let result = crate::session::score_once(
                        &self.app.engine,
                        &settings,
                        &evaluator,
                        split.as_deref(),
                    );
                    queue.extend(self.app.handle(Event::Scored { settings, result }));
                }
                Effect::SaveHistory | Effect::Quit => {}
            }
        }
        self.draw();
    }

    /// Hands `event` to the app, draws, and returns its effects without carrying them out.
    pub fn event(&mut self, event: Event) -> Vec<Effect> {
        if let Event::Resize(w, h) = event {
            self.size = (w, h);
        }
        let effects = self.app.handle(event);
        self.draw();
        effects
    }

    /// Carries out `action` (as its key would) and what follows.
    pub fn act(&mut self, action: Action) {
        let effects = self.app.apply(action);
        self.apply(effects);
    }

    /// Presses `code` and carries out what follows.
    pub fn key(&mut self, code: KeyCode) {
        self.key_with(code, KeyModifiers::NONE);
    }

    /// Presses `code` with `modifiers` and carries out what follows.
    pub fn key_with(&mut self, code: KeyCode, modifiers: KeyModifiers) {
        self.press(press(code, modifiers));
    }

    /// Presses `key` and carries out what follows.
    pub fn press(&mut self, key: KeyEvent) {
        let effects = self.app.handle(Event::Key(key));
        self.apply(effects);
    }

    /// What the run loop does while no event comes: the sweep view re-reads a growing
    /// results file.
    pub fn idle(&mut self) {
        self.app.refresh_sweep();
        self.draw();
    }

    /// Draws with `theme` from now on (`NO_COLOR` picks [`Theme::plain`]).
    pub fn set_theme(&mut self, theme: Theme) {
        self.app.theme = theme;
        self.draw();
    }

    /// Types every character of `text`, one key each.
    pub fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    /// The screen as a `TestBackend` buffer of the session's size.
    pub fn render(&self) -> Buffer {
        draw(&self.app, self.size).0
    }

    /// Where the panels were at the last frame; `None` on too small a screen.
    pub fn areas(&self) -> Option<Areas> {
        self.app.screen.areas()
    }

    /// The screen's size.
    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    fn draw(&mut self) {
        let screen = draw(&self.app, self.size).1;
        self.app.drawn(screen);
    }
}

/// Draws `app` into a `TestBackend` of `size`.
fn draw(app: &App, (w, h): (u16, u16)) -> (Buffer, Screen) {
    let mut terminal = match Terminal::new(TestBackend::new(w, h)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    let mut screen = Screen::Undrawn;
    let _ = terminal.draw(|f| screen = super::ui::render(&app.view(), f));
    (terminal.backend().buffer().clone(), screen)
}

/// A key press event.
pub fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent {
        code,
        modifiers,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

/// One string per row of `buf`.
pub fn rows(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (a.y..a.y + a.height)
        .map(|y| {
            (a.x..a.x + a.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// The cell where `needle` starts (first match, row by row), counting one cell per char.
pub fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let a = buf.area;
    let first = needle.chars().next()?;
    let len = needle.chars().count() as u16;
    for y in a.y..a.y + a.height {
        for x in a.x..(a.x + a.width).saturating_sub(len - 1) {
            if !buf[(x, y)].symbol().starts_with(first) {
                continue;
            }
            let got: String = (x..x + len).map(|xx| buf[(xx, y)].symbol()).collect();
            if got == needle {
                return Some((x, y));
            }
        }
    }
    None
}
