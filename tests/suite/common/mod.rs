//! Helpers shared by the integration tests: fixture paths and a hand-rolled safetensors writer
//! (independent of the library's writer, so reader tests do not trust the code under test).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The three peft-tiny adapters in MANIFEST order.
pub fn tiny_adapters() -> Vec<PathBuf> {
    ["reverse", "sort", "increment"]
        .iter()
        .map(|n| fixture(&format!("peft-tiny/adapters/{n}")))
        .collect()
}

/// The first two peft-tiny adapters (ranks 4 and 8): the explorer tests' set.
pub fn tiny_pair() -> Vec<PathBuf> {
    tiny_adapters().into_iter().take(2).collect()
}

/// One tensor for [`safetensors_bytes`]: name, dtype tag, shape, raw little-endian bytes.
pub struct RawTensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    /// An F32 tensor from values.
    pub fn f32(name: &str, shape: &[usize], values: &[f32]) -> Self {
        assert_eq!(values.len(), shape.iter().product::<usize>());
        RawTensor {
            name: name.into(),
            dtype: "F32",
            shape: shape.to_vec(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An F32 tensor filled with a deterministic pseudo-random pattern.
    pub fn f32_pattern(name: &str, shape: &[usize], seed: u32) -> Self {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| {
                let x = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(40503));
                ((x >> 8) as f32 / (1u32 << 24) as f32) - 0.5
            })
            .collect();
        Self::f32(name, shape, &values)
    }

    /// A tensor with raw 16-bit words (F16 or BF16 bit patterns written by hand).
    pub fn u16_words(name: &str, dtype: &'static str, shape: &[usize], words: &[u16]) -> Self {
        RawTensor {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            data: words.iter().flat_map(|w| w.to_le_bytes()).collect(),
        }
    }
}

/// A safetensors image: 8-byte header length, JSON header, data in the given order.
pub fn safetensors_bytes(tensors: &[RawTensor], metadata: Option<&str>) -> Vec<u8> {
    let mut header = String::from("{");
    if let Some(m) = metadata {
        header.push_str(&format!("\"__metadata__\":{m},"));
    }
    let mut offset = 0;
    let entries: Vec<String> = tensors
        .iter()
        .map(|t| {
            let e = format!(
                "\"{}\":{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{},{}]}}",
                t.name,
                t.dtype,
                t.shape,
                offset,
                offset + t.data.len()
            );
            offset += t.data.len();
            e
        })
        .collect();
    header.push_str(&entries.join(","));
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    for t in tensors {
        out.extend(&t.data);
    }
    out
}

/// A PEFT config with the given overrides merged over sensible defaults.
pub fn peft_config(overrides: serde_json::Value) -> String {
    let mut base = serde_json::json!({
        "peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": false,
        "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "toy",
        "task_type": "CAUSAL_LM", "fan_in_fan_out": false, "rank_pattern": {}, "alpha_pattern": {}
    });
    if let (Some(b), serde_json::Value::Object(o)) = (base.as_object_mut(), overrides) {
        for (k, v) in o {
            b.insert(k, v);
        }
    }
    serde_json::to_string_pretty(&base).unwrap()
}

/// Writes a PEFT directory `dir` with `config` and `tensors`.
pub fn write_peft_dir(dir: &Path, config: &str, tensors: &[RawTensor]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config).unwrap();
    std::fs::write(
        dir.join("adapter_model.safetensors"),
        safetensors_bytes(tensors, Some(r#"{"format":"pt"}"#)),
    )
    .unwrap();
}

/// A linear LoRA pair `<stem>.lora_A.weight [r,d_in]`, `<stem>.lora_B.weight [d_out,r]`.
pub fn lora_pair(stem: &str, r: usize, d_in: usize, d_out: usize, seed: u32) -> Vec<RawTensor> {
    vec![
        RawTensor::f32_pattern(
            &format!("base_model.model.{stem}.lora_A.weight"),
            &[r, d_in],
            seed,
        ),
        RawTensor::f32_pattern(
            &format!("base_model.model.{stem}.lora_B.weight"),
            &[d_out, r],
            seed + 1,
        ),
    ]
}

/// Dense `scale · B · A` in f64 from a loaded module (test reference only).
pub fn dense_delta(m: &lora_lego::adapter::LoraModule) -> ndarray::Array2<f64> {
    let a = m.a_matrix().mapv(f64::from);
    let b = m.b_matrix().mapv(f64::from);
    b.dot(&a) * m.scale
}

/// Relative Frobenius difference ‖x − y‖ / ‖y‖.
pub fn rel_diff(x: &ndarray::Array2<f64>, y: &ndarray::Array2<f64>) -> f64 {
    let num = (x - y).mapv(|v| v * v).sum().sqrt();
    let den = y.mapv(|v| v * v).sum().sqrt();
    num / den.max(1e-300)
}

/// The `adapter_config.json` of a written PEFT directory, parsed.
pub fn read_config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
        .unwrap()
}
