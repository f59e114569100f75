//! Synthetic adapter sets at real model shapes, for benchmarks: units of different adapters
//! partly share directions (as adapters trained on one base model do), not i.i.d. noise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::Result;
use crate::io::peft::{CONFIG_NAME, WEIGHTS_NAME};
use crate::io::write::write_text;
use crate::tensor::{write_safetensors, DType, TensorRef};

/// The shape of a synthetic set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSpec {
    /// Number of adapters.
    pub adapters: usize,
    /// Rank of each.
    pub rank: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Hidden size (q, k, v, o are hidden → hidden).
    pub hidden: usize,
    /// MLP size (gate, up: hidden → intermediate; down: intermediate → hidden).
    pub intermediate: usize,
    /// Stored dtype.
    pub dtype: DType,
}

impl SynthSpec {
    /// Eight rank-16 adapters on Llama-2-7B (32 layers, 4096 / 11008), BF16: about 0.6 GB.
    pub fn llama7b() -> Self {
        SynthSpec {
            adapters: 8,
            rank: 16,
            layers: 32,
            hidden: 4096,
            intermediate: 11008,
            dtype: DType::BF16,
        }
    }

    /// The same structure at a size that runs in about a minute.
    pub fn small() -> Self {
        SynthSpec {
            layers: 8,
            hidden: 2048,
            intermediate: 5504,
            ..Self::llama7b()
        }
    }

    /// `(module path, d_in, d_out)` of every adapted module.
    pub fn modules(&self) -> Vec<(String, usize, usize)> {
        let (h, i) = (self.hidden, self.intermediate);
        let mut v = Vec::new();
        for l in 0..self.layers {
            for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                v.push((format!("model.layers.{l}.self_attn.{p}"), h, h));
            }
            v.push((format!("model.layers.{l}.mlp.gate_proj"), h, i));
            v.push((format!("model.layers.{l}.mlp.up_proj"), h, i));
            v.push((format!("model.layers.{l}.mlp.down_proj"), i, h));
        }
        v
    }

    /// Bytes of LoRA factors over all adapters.
    pub fn bytes(&self) -> usize {
        let per: usize = self
            .modules()
            .iter()
            .map(|(_, din, dout)| self.rank * (din + dout))
            .sum();
        per * self.adapters * self.dtype.size()
    }
}

/// Shared directions per module: how adapters overlap.
const SHARED_DIRECTIONS: usize = 12;
/// Probability that a unit follows a shared direction.
const SHARED_PROBABILITY: f64 = 0.5;

/// Writes the set into `dir` (one PEFT directory per adapter) and returns their paths.
pub fn synthesize(spec: &SynthSpec, dir: &Path, seed: u64) -> Result<Vec<PathBuf>> {
    let modules = spec.modules();
    // Shared directions are drawn once per module so every adapter can lean on the same ones.
    let shared: Vec<(Vec<f32>, Vec<f32>)> = modules
        .iter()
        .enumerate()
        .map(|(mi, (_, din, dout))| {
            let mut rng =
                Xoshiro256PlusPlus::seed_from_u64(seed ^ (mi as u64).wrapping_mul(0x9e37_79b9));
            (
                gaussian(&mut rng, SHARED_DIRECTIONS * din),
                gaussian(&mut rng, SHARED_DIRECTIONS * dout),
            )
        })
        .collect();
    let mut paths = Vec::new();
    for ai in 0..spec.adapters {
        let path = dir.join(format!("synthetic_{ai}"));
        std::fs::create_dir_all(&path).map_err(|e| crate::LegoError::io(&path, e))?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_add(1000 + ai as u64));
        let mut tensors = BTreeMap::new();
        for ((name, din, dout), (sa, sb)) in modules.iter().zip(&shared) {
            let (a, b) = adapter_module(&mut rng, spec.rank, *din, *dout, sa, sb);
            let key = format!("base_model.model.{name}");
            tensors.insert(
                format!("{key}.lora_A.weight"),
                TensorRef::from_f32(&a, vec![spec.rank, *din], spec.dtype),
            );
            tensors.insert(
                format!("{key}.lora_B.weight"),
                TensorRef::from_f32(&b, vec![*dout, spec.rank], spec.dtype),
            );
        }
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(&path.join(WEIGHTS_NAME), &tensors, &meta)?;
        let config = serde_json::json!({
            "peft_type": "LORA", "r": spec.rank, "lora_alpha": 2 * spec.rank, "use_rslora": false,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "base_model_name_or_path": "synthetic-llama-2-7b", "task_type": "CAUSAL_LM",
            "fan_in_fan_out": false, "bias": "none", "lora_dropout": 0.0
        });
        write_text(&path.join(CONFIG_NAME), &config.to_string())?;
        paths.push(path);
    }
    Ok(paths)
}

/// One adapter's A (r × d_in) and B (d_out × r), row-major, as trained LoRAs look: A rows of
/// unit scale, B small; half the units near one of the module's shared directions.
fn adapter_module(
    rng: &mut Xoshiro256PlusPlus,
    rank: usize,
    din: usize,
    dout: usize,
    shared_a: &[f32],
    shared_b: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut a = gaussian(rng, rank * din);
    let mut b_cols = gaussian(rng, rank * dout);
    for r in 0..rank {
        if rng.gen_bool(SHARED_PROBABILITY) {
            let j = rng.gen_range(0..SHARED_DIRECTIONS);
            let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            for (x, s) in a[r * din..(r + 1) * din]
                .iter_mut()
                .zip(&shared_a[j * din..(j + 1) * din])
            {
                *x = 0.4 * *x + sign * s;
            }
            for (x, s) in b_cols[r * dout..(r + 1) * dout]
                .iter_mut()
                .zip(&shared_b[j * dout..(j + 1) * dout])
            {
                *x = 0.4 * *x + sign * s;
            }
        }
    }
    let a_scale = 1.0 / (din as f32).sqrt();
    let b_scale = 0.02 / (dout as f32).sqrt();
    a.iter_mut().for_each(|x| *x *= a_scale);
    // B is stored d_out × r: transpose the per-unit columns.
    let mut b = vec![0f32; dout * rank];
    for r in 0..rank {
        for o in 0..dout {
            b[o * rank + r] = b_cols[r * dout + o] * b_scale;
        }
    }
    (a, b)
}

/// Approximately standard normal values (Irwin–Hall with 4 terms, rescaled): cheap and
/// deterministic, which is all a benchmark needs.
fn gaussian(rng: &mut Xoshiro256PlusPlus, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let s: f32 = (0..4).map(|_| rng.gen::<f32>()).sum();
            (s - 2.0) * 3f32.sqrt()
        })
        .collect()
}
