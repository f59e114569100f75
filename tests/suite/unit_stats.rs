//! Per-unit hashes and max-abs read from the stored factors equal those of the widened pools.

use lora_lego::align::ModuleSet;
use lora_lego::bench::synth::{synthesize, SynthSpec};
use lora_lego::engine::RawGram;
use lora_lego::io::{load_all, LoadOptions};
use lora_lego::msu::RawUnits;
use lora_lego::tensor::DType;
use lora_lego::unit_stats::unit_stats;
use ndarray::Array2;

/// Max-abs of each row, the plain way.
fn row_max(m: &Array2<f32>) -> Vec<f32> {
    m.rows()
        .into_iter()
        .map(|r| r.iter().fold(0f32, |acc, v| acc.max(v.abs())))
        .collect()
}

#[test]
fn stats_from_the_stored_factors_equal_those_of_the_pools() {
    // Odd widths and ranks: B blocks end mid-block and on an odd row, A blocks hold fewer than
    // four rows at the end.
    for (dtype, rank, hidden, intermediate) in [
        (DType::BF16, 5, 67, 131),
        (DType::F32, 3, 64, 129),
        (DType::F16, 4, 33, 200),
    ] {
        let spec = SynthSpec {
            adapters: 3,
            rank,
            layers: 1,
            hidden,
            intermediate,
            dtype,
        };
        let dir = tempfile::tempdir().unwrap();
        let paths = synthesize(&spec, dir.path(), 7).unwrap();
        let set = ModuleSet::new(load_all(&paths, &LoadOptions::default()).unwrap()).unwrap();
        for module in &set.modules {
            let raw = RawUnits::load(&set, module);
            let stats = unit_stats(&set, module);
            let what = format!("{dtype:?} {}", module.key);
            assert_eq!(stats.hash, raw.hashes(), "{what}");
            assert_eq!(stats.a_max, row_max(&raw.a), "{what}");
            assert_eq!(stats.b_max, row_max(&raw.b), "{what}");
        }
    }
}

/// Largest `|x − y|` over the largest `|y|`.
fn rel_diff(x: &Array2<f32>, y: &Array2<f32>) -> f64 {
    let scale = y.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
    let diff = x
        .iter()
        .zip(y)
        .fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
    diff / scale.max(f64::MIN_POSITIVE)
}

#[test]
fn gram_matrices_from_bf16_bytes_equal_those_of_the_widened_pools() {
    for dtype in [DType::BF16, DType::F32] {
        let spec = SynthSpec {
            adapters: 3,
            rank: 5,
            layers: 1,
            hidden: 67,
            intermediate: 131,
            dtype,
        };
        let dir = tempfile::tempdir().unwrap();
        let paths = synthesize(&spec, dir.path(), 11).unwrap();
        let set = ModuleSet::new(load_all(&paths, &LoadOptions::default()).unwrap()).unwrap();
        for module in &set.modules {
            let fast = RawGram::from_bf16(&set, module, true, true);
            if dtype != DType::BF16 || !lora_lego::linalg::bf16_kernel_available() {
                assert!(
                    fast.is_none(),
                    "{dtype:?}: only BF16 factors take this route"
                );
                continue;
            }
            let fast = fast.unwrap();
            let pools = RawGram::compute(&RawUnits::load(&set, module));
            assert!(rel_diff(&fast.ga, &pools.ga) < 1e-6, "{}", module.key);
            assert!(rel_diff(&fast.gb, &pools.gb) < 1e-6, "{}", module.key);
            assert_eq!(fast.stats(&set, module), pools.stats(&set, module));
            // Left for later, the same figures are read once asked for (after the pages went).
            let lazy = RawGram::from_bf16(&set, module, true, false).unwrap();
            assert_eq!(lazy.stats(&set, module), pools.stats(&set, module));
            assert_eq!(fast.source, pools.source);
        }
    }
}
