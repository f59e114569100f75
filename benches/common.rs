//! Bench-set modules shared by the micro-benchmarks: synthetic adapters at Llama-2-7B width
//! (one layer, 7 modules), 8 × r16 (n = 128 units a module) and 100 × r16 (the 1 600-unit
//! scale probe).

// Each bench includes this file and uses a different subset of it.
#![allow(dead_code)]
use std::time::Instant;

use lora_lego::align::ModuleSet;
use lora_lego::bench::synth::{synthesize, SynthSpec};
use lora_lego::engine::Engine;
use lora_lego::io::{load_all, LoadOptions};
use lora_lego::settings::MergeSettings;
use ndarray::Array2;

/// An engine over a freshly synthesised one-layer set of `adapters` × r16 adapters.
pub fn engine(adapters: usize, dir: &std::path::Path) -> Engine {
    let spec = SynthSpec {
        adapters,
        layers: 1,
        ..SynthSpec::llama7b()
    };
    let paths = synthesize(&spec, dir, 42).expect("synthesis");
    let set =
        ModuleSet::new(load_all(&paths, &LoadOptions::default()).expect("load")).expect("align");
    Engine::new(set)
}

/// The folded Gram matrix `G = G_A + G_B` of every module of `engine` (default settings).
pub fn grams(engine: &Engine) -> Vec<(String, Array2<f64>)> {
    let s = MergeSettings::default();
    (0..engine.set.modules.len())
        .map(|i| {
            let prep = engine.prepared(i, &s).expect("prepare").expect("units");
            let g = engine.geometry(i, &prep.scaling).g();
            (engine.set.modules[i].key.to_string(), g)
        })
        .collect()
}

/// Median wall time of `f` over `reps` runs, in ms, and its last result.
pub fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        last = Some(std::hint::black_box(f()));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last.expect("at least one run"))
}

/// A rayon pool of `threads` workers.
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}
