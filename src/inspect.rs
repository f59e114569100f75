//! `lora-lego inspect`: what is in each adapter, per module, with ‖ΔW‖ computed in factor space.

use std::fmt::Write;

use rayon::prelude::*;
use serde::Serialize;

use crate::adapter::{Adapter, LoraKind};
use crate::tensor::DType;

/// The report for one adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    /// Display name.
    pub name: String,
    /// Path given.
    pub path: String,
    /// `peft` or `kohya`.
    pub format: String,
    /// Base model, when known.
    pub base_model: Option<String>,
    /// Shared dtype, or `mixed`.
    pub dtype: String,
    /// Whether rsLoRA scaling applies.
    pub use_rslora: bool,
    /// Per-module details.
    pub modules: Vec<ModuleReport>,
    /// Non-LoRA tensors (never merged).
    pub non_lora_tensors: Vec<TensorReport>,
    /// Warnings raised while reading.
    pub warnings: Vec<String>,
}

/// One module's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// Module path (PEFT) or stem (kohya).
    pub module: String,
    /// Layer kind.
    pub kind: String,
    /// Stored shape of A.
    pub a_shape: Vec<usize>,
    /// Stored shape of B.
    pub b_shape: Vec<usize>,
    /// dtypes of A and B.
    pub dtype: String,
    /// Rank.
    pub rank: usize,
    /// Alpha in effect.
    pub alpha: f64,
    /// Scale in effect.
    pub scaling: f64,
    /// ‖scale·B·A‖_F.
    pub delta_norm: f64,
}

/// A non-LoRA tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Key in the file.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// dtype.
    pub dtype: DType,
}

/// Builds the report for one adapter (module norms in parallel).
pub fn report(adapter: &Adapter) -> AdapterReport {
    let modules = adapter
        .modules
        .par_iter()
        .map(|m| ModuleReport {
            module: m.key.to_string(),
            kind: match m.kind {
                LoraKind::Linear => "linear".into(),
                LoraKind::Embedding => "embedding".into(),
                LoraKind::Conv { .. } => "conv".into(),
            },
            a_shape: m.a.shape().to_vec(),
            b_shape: m.b.shape().to_vec(),
            dtype: if m.a.dtype() == m.b.dtype() {
                m.a.dtype().to_string()
            } else {
                format!("{}/{}", m.a.dtype(), m.b.dtype())
            },
            rank: m.rank,
            alpha: m.alpha,
            scaling: m.scale,
            delta_norm: m.delta_norm(),
        })
        .collect();
    AdapterReport {
        name: adapter.name.clone(),
        path: adapter.path.display().to_string(),
        format: adapter.format.to_string(),
        base_model: adapter.base_model.clone(),
        dtype: adapter
            .dtype()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "mixed".into()),
        use_rslora: adapter
            .config
            .as_ref()
            .and_then(|c| c.get("use_rslora"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        modules,
        non_lora_tensors: adapter
            .extras
            .iter()
            .map(|e| TensorReport {
                name: e.name.clone(),
                shape: e.tensor.shape().to_vec(),
                dtype: e.tensor.dtype(),
            })
            .collect(),
        warnings: adapter.warnings.clone(),
    }
}

/// Renders reports as text for a terminal.
pub fn render_text(reports: &[AdapterReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let _ = writeln!(
            s,
            "{} ({}, {}, {} modules{}){}",
            r.name,
            r.format,
            r.dtype,
            r.modules.len(),
            if r.use_rslora { ", rsLoRA" } else { "" },
            r.base_model
                .as_deref()
                .map(|b| format!(" on {b}"))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "  path: {}", r.path);
        let width = r
            .modules
            .iter()
            .map(|m| m.module.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            s,
            "  {:<width$}  {:>4}  {:>7}  {:>9}  {:>11}  {:<17}  dtype",
            "module", "rank", "alpha", "scaling", "‖ΔW‖_F", "A / B shape"
        );
        for m in &r.modules {
            let _ = writeln!(
                s,
                "  {:<width$}  {:>4}  {:>7}  {:>9.5}  {:>11.6}  {:<17}  {}{}",
                m.module,
                m.rank,
                m.alpha,
                m.scaling,
                m.delta_norm,
                format!("{:?}/{:?}", m.a_shape, m.b_shape),
                m.dtype,
                if m.kind == "linear" {
                    String::new()
                } else {
                    format!(" ({})", m.kind)
                }
            );
        }
        if !r.non_lora_tensors.is_empty() {
            let _ = writeln!(
                s,
                "  non-LoRA tensors (not merged; kept only with --keep-heads):"
            );
            for t in &r.non_lora_tensors {
                let _ = writeln!(s, "    {} {:?} {}", t.name, t.shape, t.dtype);
            }
        }
        for w in &r.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        s.push('\n');
    }
    s
}
