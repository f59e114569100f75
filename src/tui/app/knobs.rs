//! Changing the merge settings: one knob a step at a time, and the recomputation each change
//! starts.

use std::sync::Arc;

use crate::recipe::{FeatureSpace, KOverride, MergeMethod, OutputReweight, ParamReweight};
use crate::tui::action::Control;
use crate::tui::view::{Focus, Status};
use crate::tui::worker::Job;

use super::events::{Effect, Effects};
use super::state::{App, Overlay};

/// The reference ranks the output-reweighting control steps through.
const R_REF: [OutputReweight; 9] = [
    OutputReweight::Mean,
    OutputReweight::Max,
    OutputReweight::Off,
    OutputReweight::Value(1.0),
    OutputReweight::Value(2.0),
    OutputReweight::Value(4.0),
    OutputReweight::Value(8.0),
    OutputReweight::Value(16.0),
    OutputReweight::Value(32.0),
];

impl App {
    pub(super) fn adjust_focused(&mut self, dir: i32) -> Effects {
        match self.focus {
            Focus::Controls => match self.controls().get(self.control_cursor) {
                Some(&c) => self.adjust(c, dir),
                None => Vec::new(),
            },
            Focus::Adapters => self.adjust(Control::Weight(self.adapter_cursor), dir),
            Focus::Modules => self.adjust(Control::ModuleK, dir),
        }
    }

    /// Changes one knob by one step in direction `dir` and recomputes.
    pub(super) fn adjust(&mut self, control: Control, dir: i32) -> Effects {
        let s = &mut self.settings;
        match control {
            Control::Method => {
                let all = MergeMethod::all();
                let i = all.iter().position(|m| *m == s.method).unwrap_or(0) as i32;
                *s = s.with_method(all[(i + dir).rem_euclid(all.len() as i32) as usize]);
            }
            Control::K => {
                let k = (s.k as i64 + dir as i64).max(1) as usize;
                if k == s.k {
                    return Vec::new();
                }
                s.k = k;
            }
            Control::ModuleK => {
                let name = self.selected_name().to_string();
                let current = self.settings.k_for(&name);
                let k = (current as i64 + dir as i64).max(1) as usize;
                let s = &mut self.settings;
                s.k_overrides.retain(|o| o.pattern != name);
                if k != s.k_for(&name) {
                    s.k_overrides.push(KOverride::new(name.clone(), k));
                }
                if s.k_for(&name) == current {
                    return Vec::new();
                }
            }
            Control::ParamReweight => {
                const ALL: [ParamReweight; 3] =
                    [ParamReweight::Linf, ParamReweight::L2, ParamReweight::Off];
                let i = ALL.iter().position(|p| *p == s.param_reweight).unwrap_or(0) as i32;
                s.param_reweight = ALL[(i + dir).rem_euclid(3) as usize];
            }
            Control::OutputReweight => {
                let i = R_REF
                    .iter()
                    .position(|r| *r == s.output_reweight)
                    .unwrap_or(0) as i32;
                s.output_reweight = R_REF[(i + dir).rem_euclid(R_REF.len() as i32) as usize];
            }
            Control::OutputScale => s.output_scale = step_tenth(s.output_scale, dir, 0.1),
            Control::Space => {
                const ALL: [FeatureSpace; 3] = [
                    FeatureSpace::Plain,
                    FeatureSpace::SignAware,
                    FeatureSpace::Balanced,
                ];
                let i = ALL.iter().position(|p| *p == s.space).unwrap_or(0) as i32;
                s.space = ALL[(i + dir).rem_euclid(3) as usize];
            }
            Control::Seed => s.seed = (s.seed as i64 + dir as i64).max(0) as u64,
            Control::Weight(i) => {
                let n = self.engine.set.adapters.len();
                if i >= n {
                    return Vec::new();
                }
                if s.weights.len() != n {
                    s.weights = vec![1.0; n];
                }
                s.weights[i] = step_tenth(s.weights[i], dir, f64::NEG_INFINITY);
            }
        }
        self.recompute()
    }

    pub(super) fn clear_override(&mut self) -> Effects {
        let name = self.selected_name().to_string();
        let before = self.settings.k_overrides.len();
        self.settings.k_overrides.retain(|o| o.pattern != name);
        if self.settings.k_overrides.len() == before {
            return Vec::new();
        }
        self.recompute()
    }

    /// A new generation: everything shown becomes stale until the worker answers.
    pub(super) fn recompute(&mut self) -> Effects {
        if let Err(e) = self.settings.validate(self.engine.set.adapters.len()) {
            self.status = Some(Status::Error(e.to_string()));
            return Vec::new();
        }
        self.generation += 1;
        if matches!(self.status, Some(Status::Error(_))) {
            self.status = None;
        }
        let mut effects = vec![Effect::Job(Job::Recompute {
            generation: self.generation,
            settings: Arc::new(self.settings.clone()),
            first: self.selected,
        })];
        if matches!(self.overlay, Some(Overlay::Compare)) {
            effects.push(Effect::Job(Job::Compare {
                generation: self.generation,
                settings: Arc::new(self.settings.clone()),
                module: self.selected,
            }));
        }
        effects
    }

    /// The requests of the first computation.
    pub fn start(&mut self) -> Effects {
        self.recompute()
    }
}

/// `x + dir · 0.1`, rounded to tenths so repeated steps do not drift, and at least `min`.
fn step_tenth(x: f64, dir: i32, min: f64) -> f64 {
    let tenths = (x * 10.0).round() + dir as f64;
    (tenths / 10.0).max(min)
}
