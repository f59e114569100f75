//! What comes in (keys, the mouse, the worker's replies, a score) and what goes out (the
//! effects the run loop carries out).

use ratatui::crossterm::event::{KeyEvent, KeyEventKind, MouseEvent};

use crate::recipe::MergeSettings;
use crate::tui::export_dialog::Phase;
use crate::tui::keys::{self, Context};
use crate::tui::view::Status;
use crate::tui::worker::{Job, Reply};

use super::state::{App, Overlay, Slot};

/// Input to [`App::handle`].
#[derive(Debug, Clone)]
pub enum Event {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event.
    Mouse(MouseEvent),
    /// The terminal's new size (the next frame lays the panels out again).
    Resize(u16, u16),
    /// A result from the worker.
    Reply(Box<Reply>),
    /// The evaluator's verdict on `settings`.
    Scored {
        /// The settings scored.
        settings: Box<MergeSettings>,
        /// The record, or what went wrong.
        result: Result<crate::session::EvalRecord, String>,
    },
}

/// What the run loop must do after an event.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send this request to the worker.
    Job(Job),
    /// Remember the current settings for this adapter set.
    SaveHistory,
    /// Leave the explorer.
    Quit,
    /// Score these settings with the evaluator (off the worker: scoring takes seconds to
    /// minutes and must not hold up recomputation).
    Score(Box<MergeSettings>),
}

/// The effects of one event, in order.
pub type Effects = Vec<Effect>;

impl App {
    /// Reacts to one event.
    pub fn handle(&mut self, event: Event) -> Effects {
        match event {
            Event::Key(k) if k.kind != KeyEventKind::Release => self.key(k),
            Event::Key(_) | Event::Resize(..) => Vec::new(),
            Event::Mouse(m) => self.mouse(m),
            Event::Reply(r) => self.reply(*r),
            Event::Scored { settings, result } => {
                self.scoring = false;
                match result {
                    Ok(e) => {
                        self.status = Some(Status::Info(format!("scored: mean {:.4}", e.mean)));
                        self.score = Some((*settings, "scored here".into(), e));
                    }
                    Err(e) => self.status = Some(Status::Error(format!("scoring failed: {e}"))),
                }
                Vec::new()
            }
        }
    }

    /// A key: looked up in the key table for the current context, then applied.
    fn key(&mut self, k: KeyEvent) -> Effects {
        let context = self.context();
        // A note is read by the time the next key comes; errors stay until fixed.
        if matches!(context, Context::Main | Context::Filter)
            && matches!(self.status, Some(Status::Info(_)))
        {
            self.status = None;
        }
        match keys::lookup(context, &k) {
            Some(action) => self.apply(action),
            None => Vec::new(),
        }
    }

    fn reply(&mut self, r: Reply) -> Effects {
        match r {
            Reply::View {
                generation,
                module,
                result,
            } => {
                if generation == self.generation && module == self.selected {
                    if let Err(e) = &result {
                        self.status = Some(Status::Error(e.clone()));
                    }
                    self.view = Some((
                        module,
                        Slot {
                            generation,
                            value: result,
                        },
                    ));
                }
            }
            Reply::Curve {
                generation,
                module,
                result,
            } => {
                if generation == self.generation && module == self.selected {
                    self.curve = Some((
                        module,
                        Slot {
                            generation,
                            value: result,
                        },
                    ));
                }
            }
            Reply::Summary {
                generation,
                module,
                result,
            } => {
                let newer = self
                    .summaries
                    .get(module)
                    .and_then(|s| s.as_ref())
                    .is_none_or(|s| s.generation <= generation);
                if newer && module < self.summaries.len() {
                    self.summaries[module] = Some(Slot {
                        generation,
                        value: result,
                    });
                }
            }
            Reply::Compare { generation, result } => {
                self.comparison = Some(Slot {
                    generation,
                    value: result,
                });
            }
            Reply::ExportProgress { done, total } => {
                if let Some(Overlay::Export(d)) = &mut self.overlay {
                    if matches!(d.phase, Phase::Running { .. }) {
                        d.phase = Phase::Running { done, total };
                    }
                }
            }
            Reply::Exported(result) => {
                let mut effects = Vec::new();
                match &result {
                    Ok(s) => {
                        self.exported = Some(s.settings.clone());
                        self.last_export = Some(s.clone());
                        self.status =
                            Some(Status::Info(format!("exported to {}", s.path.display())));
                        effects.push(Effect::SaveHistory);
                    }
                    Err(e) => self.status = Some(Status::Error(format!("export failed: {e}"))),
                }
                if let Some(Overlay::Export(d)) = &mut self.overlay {
                    d.phase = match result {
                        Ok(s) => Phase::Done(s),
                        Err(e) => Phase::Failed(e),
                    };
                }
                return effects;
            }
            Reply::Panicked(msg) => {
                self.fatal = Some(format!("a background computation panicked: {msg}"));
                self.quit = true;
                return vec![Effect::Quit];
            }
        }
        Vec::new()
    }
}
