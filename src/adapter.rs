//! The in-memory model every reader produces: an adapter is a set of LoRA modules plus
//! whatever non-LoRA tensors travelled with it.

use std::cmp::Ordering;
use std::fmt;
use std::path::PathBuf;

use ndarray::Array2;

use crate::tensor::{DType, TensorRef};

/// A module path inside the base model, e.g. `model.layers.0.self_attn.q_proj`.
///
/// Ordered "naturally" (digit runs compare as numbers) so layer 10 follows layer 9.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ModuleKey(String);

impl ModuleKey {
    /// Wraps a module path.
    pub fn new(path: impl Into<String>) -> Self {
        ModuleKey(path.into())
    }

    /// The dotted path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used to match modules across formats: kohya flattens `.` to `_`, so both
    /// sides are compared in that flattened form.
    pub fn flat(&self) -> String {
        self.0.replace('.', "_")
    }
}

impl fmt::Display for ModuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for ModuleKey {
    fn cmp(&self, other: &Self) -> Ordering {
        natural_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for ModuleKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares strings with embedded numbers by value (`layers.2` < `layers.10`).
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

/// Which kind of layer a LoRA module adapts; decides tensor names and shapes on write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum LoraKind {
    /// `nn.Linear` (or GPT-2's `Conv1D`): A `[r, in]`, B `[out, r]`.
    Linear,
    /// `nn.Embedding`: PEFT's `lora_embedding_A` `[r, vocab]`, `lora_embedding_B` `[dim, r]`;
    /// the delta is `(B A)ᵀ`.
    Embedding,
    /// Convolution: A `[r, in, k…]` flattened to `[r, in·Πk]`, B `[out, r, 1…]`.
    Conv {
        /// A's stored shape without the rank axis (`[in, k…]`).
        a_tail: Vec<usize>,
        /// B's trailing unit axes (`[1, 1]` for Conv2d).
        b_tail: Vec<usize>,
    },
}

/// One adapted module of one adapter: `ΔW = scale · B · A`.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// The module path.
    pub key: ModuleKey,
    /// The layer kind.
    pub kind: LoraKind,
    /// Down-projection, stored shape `[r, …]`.
    pub a: TensorRef,
    /// Up-projection, stored shape `[out, r, …]`.
    pub b: TensorRef,
    /// Rank r.
    pub rank: usize,
    /// Columns of the flattened A.
    pub d_in: usize,
    /// Rows of B.
    pub d_out: usize,
    /// The alpha that applies to this module (after `alpha_pattern`).
    pub alpha: f64,
    /// The scale the trainer applied: `alpha / r`, or `alpha / √r` with rsLoRA.
    pub scale: f64,
}

impl LoraModule {
    /// A as an `r × d_in` f32 matrix.
    pub fn a_matrix(&self) -> Array2<f32> {
        self.a.to_matrix(self.rank, self.d_in)
    }

    /// B as a `d_out × r` f32 matrix.
    pub fn b_matrix(&self) -> Array2<f32> {
        self.b.to_matrix(self.d_out, self.rank)
    }

    /// ‖scale · B A‖_F without forming B A: `s² tr((BᵀB)(AAᵀ))`, accumulated in f64.
    pub fn delta_norm(&self) -> f64 {
        let a = self.a_matrix().mapv(f64::from);
        let b = self.b_matrix().mapv(f64::from);
        let ga = a.dot(&a.t());
        let gb = b.t().dot(&b);
        let tr: f64 = (&ga * &gb).sum();
        self.scale.abs() * tr.max(0.0).sqrt()
    }
}

/// A tensor in an adapter file that is not a LoRA factor (classifier heads, embeddings…).
#[derive(Debug, Clone)]
pub struct ExtraTensor {
    /// The key in the file.
    pub name: String,
    /// The data.
    pub tensor: TensorRef,
}

/// The file format an adapter came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AdapterFormat {
    /// Hugging Face PEFT: a directory with adapter_config.json.
    Peft,
    /// kohya / sd-scripts: one .safetensors file (lora_unet_… / lora_te_… keys).
    Kohya,
    /// diffusers' pytorch_lora_weights.safetensors: one file (unet.… / text_encoder.… keys).
    Diffusers,
}

impl AdapterFormat {
    /// Whether an adapter of this format is one `.safetensors` file (side files go beside it).
    pub fn is_single_file(self) -> bool {
        self != AdapterFormat::Peft
    }

    /// Whether modules are named by dotted paths (PEFT, diffusers) rather than kohya's
    /// flattened stems.
    pub fn has_dotted_paths(self) -> bool {
        self != AdapterFormat::Kohya
    }
}

impl fmt::Display for AdapterFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdapterFormat::Peft => "peft",
            AdapterFormat::Kohya => "kohya",
            AdapterFormat::Diffusers => "diffusers",
        })
    }
}

impl std::str::FromStr for AdapterFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "peft" => Ok(AdapterFormat::Peft),
            "kohya" => Ok(AdapterFormat::Kohya),
            "diffusers" => Ok(AdapterFormat::Diffusers),
            _ => Err(format!(
                "unknown format `{s}` (expected peft, kohya or diffusers)"
            )),
        }
    }
}

/// One loaded adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// A short name (directory or file stem).
    pub name: String,
    /// The path the user gave.
    pub path: PathBuf,
    /// The safetensors file the tensors came from.
    pub weights_file: PathBuf,
    /// Source format.
    pub format: AdapterFormat,
    /// The PEFT config as read (kept whole so the writer can copy what it does not change).
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// `base_model_name_or_path`, when known.
    pub base_model: Option<String>,
    /// `target_modules` as written in the config (a list, or a regex string).
    pub target_modules: Option<serde_json::Value>,
    /// kohya's key prefix (`lora_te_`, `lora_unet_`, …) when read from kohya.
    pub kohya_prefix: Option<String>,
    /// LoRA modules in natural order.
    pub modules: Vec<LoraModule>,
    /// Non-LoRA tensors, carried aside.
    pub extras: Vec<ExtraTensor>,
    /// The safetensors header metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Things the user should know (assumed defaults, untrained modules…).
    pub warnings: Vec<String>,
}

impl Adapter {
    /// The dtype shared by all LoRA factors, or `None` when they are mixed.
    pub fn dtype(&self) -> Option<DType> {
        let mut dtypes = self.modules.iter().flat_map(|m| [m.a.dtype(), m.b.dtype()]);
        let first = dtypes.next()?;
        dtypes.all(|d| d == first).then_some(first)
    }

    /// The rank used by most modules (ties → the larger).
    pub fn typical_rank(&self) -> usize {
        let mut counts = std::collections::BTreeMap::new();
        for m in &self.modules {
            *counts.entry(m.rank).or_insert(0usize) += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(r, c)| (*c, *r))
            .map(|(r, _)| r)
            .unwrap_or(0)
    }

    /// Total bytes of LoRA factors.
    pub fn lora_bytes(&self) -> usize {
        self.modules
            .iter()
            .map(|m| m.a.bytes().len() + m.b.bytes().len())
            .sum()
    }

    /// Finds a module by path.
    pub fn module(&self, key: &ModuleKey) -> Option<&LoraModule> {
        self.modules.iter().find(|m| &m.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_puts_layer_10_after_layer_9() {
        let mut keys: Vec<ModuleKey> = ["l.10.q", "l.9.q", "l.1.q", "l.01.k", "l.2.q"]
            .into_iter()
            .map(ModuleKey::new)
            .collect();
        keys.sort();
        let got: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        assert_eq!(got, ["l.01.k", "l.1.q", "l.2.q", "l.9.q", "l.10.q"]);
    }
}
