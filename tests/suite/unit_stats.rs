//! Per-unit hashes and max-abs read from the stored factors equal those of the widened pools.

use lora_lego::align::ModuleSet;
use lora_lego::bench::synth::{synthesize, SynthSpec};
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
