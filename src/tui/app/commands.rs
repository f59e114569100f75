//! The commands that open popups or start work beyond recomputing: quitting, the comparison,
//! the sweep view, scoring and exporting.

use std::sync::Arc;

use crate::tui::export_dialog::{fresh_path, DialogAction, ExportDialog, Input, Phase};
use crate::tui::sweep_view::SweepView;
use crate::tui::view::Status;
use crate::tui::worker::{ExportJob, Job};

use super::events::{Effect, Effects};
use super::state::{App, Overlay};

impl App {
    /// Quits, asking first when the current merge was never exported.
    pub(super) fn request_quit(&mut self) -> Effects {
        if self.unexported() {
            self.overlay = Some(Overlay::ConfirmQuit);
            Vec::new()
        } else {
            self.quit_now()
        }
    }

    pub(super) fn quit_now(&mut self) -> Effects {
        self.quit = true;
        vec![Effect::SaveHistory, Effect::Quit]
    }

    pub(super) fn open_compare(&mut self) -> Effects {
        self.overlay = Some(Overlay::Compare);
        let fresh = self
            .comparison
            .as_ref()
            .is_some_and(|c| c.generation == self.generation && c.value.module == self.selected);
        if fresh {
            return Vec::new();
        }
        vec![Effect::Job(Job::Compare {
            generation: self.generation,
            settings: Arc::new(self.settings.clone()),
            module: self.selected,
        })]
    }

    pub(super) fn request_score(&mut self) -> Effects {
        let Some((e, _)) = &self.evaluator else {
            self.status = Some(Status::Info(
                "no evaluator: open the explorer with --eval 'CMD {dir}'".into(),
            ));
            return Vec::new();
        };
        if self.scoring {
            return Vec::new();
        }
        self.scoring = true;
        self.status = Some(Status::Info(format!("scoring with `{}`…", e.command)));
        vec![Effect::Score(Box::new(self.settings.clone()))]
    }

    pub(super) fn open_sweep(&mut self) -> Effects {
        match &self.sweep_dir {
            Some(dir) => {
                let v = SweepView::open(dir);
                self.overlay = Some(Overlay::Sweep(Box::new(v)));
            }
            None => {
                self.status = Some(Status::Info(
                    "no sweep: open the explorer with --sweep RESULTS_DIR (from `lora-lego sweep`)"
                        .into(),
                ))
            }
        }
        Vec::new()
    }

    /// Re-reads the sweep view's results when the file changed (a sweep running elsewhere).
    pub(crate) fn refresh_sweep(&mut self) {
        if let Some(Overlay::Sweep(v)) = &mut self.overlay {
            v.refresh();
        }
    }

    /// Runs `f` on the open sweep view, if it is open.
    pub(super) fn in_sweep(&mut self, f: impl FnOnce(&mut SweepView)) -> Effects {
        if let Some(Overlay::Sweep(v)) = &mut self.overlay {
            f(v);
        }
        Vec::new()
    }

    /// Loads the selected sweep candidate's settings (and its score); then exports it.
    pub(super) fn load_candidate(&mut self, export: bool) -> Effects {
        let Some(Overlay::Sweep(v)) = &self.overlay else {
            return Vec::new();
        };
        let Some(r) = v.selected().cloned() else {
            return Vec::new();
        };
        self.overlay = None;
        self.settings = r.settings.clone();
        self.score = r
            .eval
            .clone()
            .map(|e| (r.settings.clone(), format!("sweep candidate {}", r.id), e));
        self.status = Some(Status::Info(format!(
            "loaded sweep candidate {} ({})",
            r.id, r.method
        )));
        if export {
            self.open_export();
        }
        self.recompute()
    }

    pub(super) fn open_export(&mut self) {
        let heads: Vec<(String, usize)> = self
            .engine
            .set
            .adapters
            .iter()
            .filter(|a| !a.extras.is_empty())
            .map(|a| (a.name.clone(), a.extras.len()))
            .collect();
        let path = fresh_path(self.settings.format);
        self.overlay = Some(Overlay::Export(Box::new(ExportDialog::new(
            path,
            self.settings.format,
            self.settings.dtype,
            heads,
            &self.settings.keep_heads,
        ))));
    }

    /// An input to the export dialog, if it is open.
    pub(super) fn form(&mut self, input: Input) -> Effects {
        let Some(Overlay::Export(mut d)) = self.overlay.take() else {
            return Vec::new();
        };
        match d.handle(input) {
            DialogAction::None => {
                self.overlay = Some(Overlay::Export(d));
                Vec::new()
            }
            DialogAction::Close => Vec::new(),
            DialogAction::Submit => {
                let effects = self.submit_export(&mut d);
                self.overlay = Some(Overlay::Export(d));
                effects
            }
        }
    }

    fn submit_export(&mut self, d: &mut ExportDialog) -> Effects {
        let target = d.target();
        if target.as_os_str().is_empty() {
            d.phase = Phase::Failed("the output path is empty".into());
            return Vec::new();
        }
        // Format, dtype and heads do not change any module's merge: no new generation.
        self.settings.format = d.format;
        self.settings.dtype = d.dtype;
        self.settings.keep_heads = d.keep_heads();
        d.phase = Phase::Running {
            done: 0,
            total: self.engine.set.modules.len(),
        };
        vec![Effect::Job(Job::Export(Box::new(ExportJob {
            settings: self.settings.clone(),
            adapters: self.adapter_paths.clone(),
            path: target,
            force: d.force,
        })))]
    }
}
