//! [`App::view`]: the state turned into what one frame shows.

use crate::session::Adapter;
use crate::tui::action::Control;
use crate::tui::keys::{self, Context};
use crate::tui::view::{
    AdapterRow, Adapters, CompareView, ControlRow, Controls, Figure, Focus, KCurve, Keys, Metrics,
    ModuleRow, Modules, Popup, Score, SourceRow, StatusBar, Units, View,
};

use super::state::{App, Overlay};

/// The alpha of the adapter's typical-rank modules (adapters may vary it per module).
fn typical_alpha(a: &Adapter) -> f64 {
    let r = a.typical_rank();
    a.modules
        .iter()
        .find(|m| m.rank == r)
        .map(|m| m.alpha)
        .unwrap_or(f64::NAN)
}

/// Every key of a popup, as its help line lists them.
fn keys_of(context: Context) -> Keys {
    keys::of(context).map(|b| (b.shown, b.label)).collect()
}

impl App {
    /// The view model of the next frame.
    pub(crate) fn view(&self) -> View<'_> {
        let (fresh, total) = self.progress();
        View {
            theme: &self.theme,
            adapters: self.adapters_view(),
            modules: self.modules_view(fresh),
            units: Units {
                module: self.selected_name(),
                view: self.selected_view(),
                stale: self.view_is_stale(),
                colour_by: self.colour_by,
                adapter_names: self
                    .engine
                    .set
                    .adapters
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect(),
            },
            controls: Controls {
                rows: self
                    .controls()
                    .into_iter()
                    .map(|c| self.control_row(c))
                    .collect(),
                cursor: (self.focus == Focus::Controls).then_some(self.control_cursor),
            },
            metrics: self.metrics_view(),
            curve: KCurve {
                curve: match &self.curve {
                    Some((m, slot)) if *m == self.selected => Some(&slot.value),
                    _ => None,
                },
                stale: self.curve_is_stale(),
                current_k: self.settings.k_for(self.selected_name()),
            },
            status: StatusBar {
                message: self.status.as_ref(),
                popup: self.overlay.is_some(),
                hints: keys::hints(self.context(), self.focus),
                fresh,
                total,
                view_stale: self.view_is_stale(),
                method: self.settings.method,
                unexported: self.unexported(),
            },
            overlay: self.overlay.as_ref().map(|o| match o {
                Overlay::Help => Popup::Help,
                Overlay::Compare => Popup::Compare(self.compare_view()),
                Overlay::Export(d) => Popup::Export(d, keys_of(Context::Export)),
                Overlay::ConfirmQuit => Popup::ConfirmQuit,
                Overlay::Sweep(v) => Popup::Sweep(v, &self.settings, keys_of(Context::Sweep)),
            }),
        }
    }

    fn adapters_view(&self) -> Adapters {
        Adapters {
            rows: self
                .engine
                .set
                .adapters
                .iter()
                .enumerate()
                .map(|(i, a)| AdapterRow {
                    name: a.name.clone(),
                    rank: a.typical_rank(),
                    alpha: typical_alpha(a),
                    dtype: a
                        .dtype()
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "mixed".into()),
                    weight: self.settings.weight(i),
                })
                .collect(),
            cursor: (self.focus == Focus::Adapters).then_some(self.adapter_cursor),
        }
    }

    fn modules_view(&self, fresh: usize) -> Modules<'_> {
        let modules = &self.engine.set.modules;
        let rows = self
            .visible_modules()
            .into_iter()
            .map(|m| {
                let name = modules[m].key.as_str();
                let slot = self.summaries.get(m).and_then(|s| s.as_ref());
                let figure = match slot {
                    None => Figure::Pending,
                    Some(s) => match &s.value {
                        Err(_) => Figure::Failed,
                        Ok(None) => Figure::Unused,
                        Ok(Some(x)) => Figure::Merged {
                            error_vs_sum: x.error_vs_sum,
                            rank: x.rank,
                            stale: s.generation != self.generation,
                        },
                    },
                };
                ModuleRow {
                    name,
                    selected: m == self.selected,
                    overridden: self.settings.k_overrides.iter().any(|o| o.pattern == name),
                    figure,
                }
            })
            .collect();
        Modules {
            focused: self.focus == Focus::Modules,
            all_names: modules.iter().map(|m| m.key.as_str()).collect(),
            rows,
            offset: self.module_offset,
            fresh,
            filter: &self.filter,
            filter_editing: self.filter_editing,
        }
    }

    /// The label and the current value of a control.
    fn control_row(&self, c: Control) -> ControlRow {
        let s = &self.settings;
        let lego = s.method.is_lego();
        let lego_only = |v: String| if lego { v } else { format!("{v} (lego only)") };
        let (label, value) = match c {
            Control::Method => ("method".into(), s.method.to_string()),
            Control::K => ("k (all modules)".into(), lego_only(s.k.to_string())),
            Control::ModuleK => {
                let v = match self.module_override() {
                    Some(k) => format!("{k} (override)"),
                    None => format!("{} (global)", s.k_for(self.selected_name())),
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
                    self.engine
                        .set
                        .adapters
                        .get(i)
                        .map(|a| a.name.as_str())
                        .unwrap_or("?")
                ),
                format!("{}", s.weight(i)),
            ),
        };
        ControlRow {
            label,
            value,
            adapter: match c {
                Control::Weight(a) => Some(a),
                _ => None,
            },
        }
    }

    fn metrics_view(&self) -> Metrics<'_> {
        let view = self.selected_view();
        let set = &self.engine.set;
        let sources = match view {
            Some(Ok(Some(v))) => set
                .modules
                .get(v.module)
                .map(|m| {
                    m.sources
                        .iter()
                        .map(|s| SourceRow {
                            adapter: s.0,
                            name: set
                                .adapters
                                .get(s.0)
                                .map(|a| a.name.clone())
                                .unwrap_or_default(),
                            weight: self.settings.weight(s.0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Metrics {
            view,
            stale: self.view_is_stale(),
            sources,
            score: self.score.as_ref().map(|(settings, origin, e)| Score {
                mean: e.mean,
                split: e.split.clone(),
                origin: origin.clone(),
                stale: settings != &self.settings,
            }),
            method: self.settings.method,
        }
    }

    fn compare_view(&self) -> CompareView<'_> {
        let cmp = self
            .comparison
            .as_ref()
            .filter(|c| c.value.module == self.selected);
        CompareView {
            comparison: cmp.map(|c| &*c.value),
            stale: cmp.is_none_or(|c| c.generation != self.generation),
            method: self.settings.method,
            module: self.selected_name(),
        }
    }
}
