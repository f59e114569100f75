//! Many adapters at once: 200 small adapters pool 1 600 units per module. Ignored by default
//! (it measures, it does not assert timing); run with `--ignored --nocapture` for the figures.

use std::time::Instant;

use lora_lego::bench::synth::{synthesize, SynthSpec};
use lora_lego::tensor::DType;

#[test]
#[ignore]
fn two_hundred_adapters_merge_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        adapters: 200,
        rank: 8,
        layers: 1,
        hidden: 256,
        intermediate: 512,
        dtype: DType::F32,
    };
    let paths = synthesize(&spec, tmp.path(), 5).unwrap();
    let t = Instant::now();
    let engine = lora_lego::engine::Engine::new(
        lora_lego::align::ModuleSet::new(
            lora_lego::io::load_all(&paths, &Default::default()).unwrap(),
        )
        .unwrap(),
    );
    let load = t.elapsed();
    let t = Instant::now();
    let out = engine
        .merge_all(&lora_lego::recipe::MergeSettings {
            k: 64,
            ..Default::default()
        })
        .unwrap();
    let merge = t.elapsed();
    assert_eq!(out.modules.len(), 7);
    assert!(out.modules.iter().all(|m| m.rank() == 64));
    let view = |k: usize| {
        let t = Instant::now();
        let s = lora_lego::recipe::MergeSettings {
            k,
            ..Default::default()
        };
        assert!(engine.module_view(6, &s).unwrap().is_some());
        t.elapsed().as_secs_f64() * 1e3
    };
    let (first, again) = (view(64), view(32));
    println!("explorer view of one module: first {first:.0} ms, after a change of k {again:.0} ms");
    println!(
        "200 adapters, {} units per module: load {:.2} s, merge {:.2} s, peak RSS {:.0} MB, input {:.0} MB",
        engine.raw_gram(0).source.len(),
        load.as_secs_f64(),
        merge.as_secs_f64(),
        lora_lego::bench::run::peak_rss() as f64 / 1e6,
        spec.bytes() as f64 / 1e6
    );
}
