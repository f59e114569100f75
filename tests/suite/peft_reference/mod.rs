//! Fixture loading shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// One PEFT adapter: its scaling and `(lora_A, lora_B)` per module path.
pub struct Adapter {
    pub scaling: f32,
    pub r: usize,
    pub modules: BTreeMap<String, (Array2<f32>, Array2<f32>)>,
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft-tiny")
}

pub fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures().join("MANIFEST.json")).expect("MANIFEST.json");
    serde_json::from_str(&text).expect("MANIFEST.json parses")
}

/// A golden's input adapters and their weights, as its MANIFEST entry names them.
pub fn golden_inputs(spec: &Value) -> (Vec<Adapter>, Vec<f32>) {
    let inputs = spec["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| load_adapter(&format!("adapters/{}", i.as_str().expect("input name"))))
        .collect();
    let weights = spec["weights"]
        .as_array()
        .expect("weights")
        .iter()
        .map(|w| w.as_f64().expect("weight") as f32)
        .collect();
    (inputs, weights)
}

/// One module's sources across `inputs` (those that have it), as the baselines take them.
pub fn module_sources<'a>(
    inputs: &'a [Adapter],
    weights: &[f32],
    module: &str,
) -> Vec<lora_lego::merge::baselines::SourceFactors<'a>> {
    inputs
        .iter()
        .zip(weights)
        .filter_map(|(adapter, &weight)| {
            adapter
                .modules
                .get(module)
                .map(|(a, b)| lora_lego::merge::baselines::SourceFactors {
                    a: a.view(),
                    b: b.view(),
                    scale: adapter.scaling,
                    weight,
                })
        })
        .collect()
}

pub fn load_adapter(relative: &str) -> Adapter {
    let dir = fixtures().join(relative);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("adapter_config.json")).expect("adapter_config.json"),
    )
    .expect("config parses");
    let r = config["r"].as_u64().expect("r") as usize;
    let alpha = config["lora_alpha"].as_f64().expect("lora_alpha");
    let rslora = config["use_rslora"].as_bool().unwrap_or(false);
    let scaling = if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    } as f32;
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).expect("safetensors file");
    let tensors = SafeTensors::deserialize(&bytes).expect("safetensors parses");
    let mut modules = BTreeMap::new();
    for name in tensors.names() {
        let Some(module) = name.strip_suffix(".lora_A.weight") else {
            continue;
        };
        let a = read_f32(&tensors, name);
        let b = read_f32(&tensors, &format!("{module}.lora_B.weight"));
        let module = module.strip_prefix("base_model.model.").unwrap_or(module);
        modules.insert(module.to_string(), (a, b));
    }
    Adapter {
        scaling,
        r,
        modules,
    }
}

fn read_f32(tensors: &SafeTensors, name: &str) -> Array2<f32> {
    let view = tensors.tensor(name).expect("tensor present");
    assert_eq!(view.dtype(), Dtype::F32, "{name} must be F32");
    let shape = view.shape();
    assert_eq!(shape.len(), 2, "{name} must be 2-D");
    let data: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Array2::from_shape_vec((shape[0], shape[1]), data).expect("shape fits data")
}

/// ‖a − b‖_F / ‖b‖_F in f64.
pub fn rel_frobenius(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        num += (f64::from(x) - f64::from(y)).powi(2);
        den += f64::from(y).powi(2);
    }
    (num / den).sqrt()
}

/// `scale·b·a` computed in f64, returned as f32.
pub fn delta(a: &Array2<f32>, b: &Array2<f32>, scale: f64) -> Array2<f32> {
    let a64 = a.mapv(f64::from);
    let b64 = b.mapv(f64::from);
    (b64.dot(&a64) * scale).mapv(|v| v as f32)
}

/// Independent reference SVD (one-sided Jacobi, f64) of `m`: returns `σ` descending and the
/// rank-`k` truncation `Σ_{i<k} σ_i u_i v_iᵀ`.
pub fn jacobi_svd(m: &Array2<f64>, k: usize) -> (Vec<f64>, Array2<f64>) {
    let transpose = m.nrows() < m.ncols();
    let work = if transpose {
        m.t().to_owned()
    } else {
        m.clone()
    };
    let (rows, cols) = work.dim();
    let mut u: Vec<Vec<f64>> = (0..cols).map(|j| work.column(j).to_vec()).collect();
    let mut v: Vec<Vec<f64>> = (0..cols)
        .map(|j| (0..cols).map(|i| f64::from(u8::from(i == j))).collect())
        .collect();
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..cols {
            for q in (p + 1)..cols {
                let (alpha, beta, gamma) =
                    (dot(&u[p], &u[p]), dot(&u[q], &u[q]), dot(&u[p], &u[q]));
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for vecs in [&mut u, &mut v] {
                    let (head, tail) = vecs.split_at_mut(q);
                    for (x, y) in head[p].iter_mut().zip(tail[0].iter_mut()) {
                        let (xv, yv) = (*x, *y);
                        *x = c * xv - s * yv;
                        *y = s * xv + c * yv;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut order: Vec<usize> = (0..cols).collect();
    let norms: Vec<f64> = u.iter().map(|c| dot(c, c).sqrt()).collect();
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]));
    let sigma: Vec<f64> = order.iter().map(|&j| norms[j]).collect();
    let mut trunc = Array2::<f64>::zeros((rows, cols));
    for &j in order.iter().take(k) {
        for r in 0..rows {
            for c in 0..cols {
                trunc[[r, c]] += u[j][r] * v[j][c];
            }
        }
    }
    let trunc = if transpose {
        trunc.reversed_axes()
    } else {
        trunc
    };
    (sigma, trunc)
}
