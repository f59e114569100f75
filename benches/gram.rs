//! Gram build: the symmetric product against the full GEMM, on bench-set modules.
//! `cargo bench --bench gram`

#[path = "common.rs"]
mod common;

use lora_lego::bench::run::gemm_peak;
use lora_lego::linalg::syrk;
use lora_lego::msu::RawUnits;

fn main() {
    // Each module's product runs on one thread here, so compare with one core's share.
    let peak = gemm_peak() / rayon::current_num_threads() as f64;
    println!("f32 GEMM rate per core (all cores busy): {peak:.1} GFLOP/s");
    for adapters in [8, 100] {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = common::engine(adapters, dir.path());
        let (mut full_ms, mut sym_ms, mut flops) = (0.0, 0.0, 0.0);
        for m in &engine.set.modules {
            let raw = RawUnits::load(&engine.set, m);
            let n = raw.a.nrows() as f64;
            flops += 2.0 * n * n * (raw.a.ncols() + raw.b.ncols()) as f64;
            let reps = if adapters >= 100 { 1 } else { 5 };
            full_ms += common::time(reps, || (raw.a.dot(&raw.a.t()), raw.b.dot(&raw.b.t()))).0;
            sym_ms += common::time(reps, || (syrk(raw.a.view()), syrk(raw.b.view()))).0;
        }
        // Rates count the full product's 2·n²·D flops, so they compare with the GEMM rate.
        let rate = |ms: f64| flops / ms / 1e6;
        println!(
            "{adapters} × r16, one 7B layer: full GEMM {full_ms:.1} ms ({:.1} GFLOP/s, {:.0}%), symmetric {sym_ms:.1} ms ({:.1} GFLOP/s-equivalent, {:.0}%), one thread per module",
            rate(full_ms),
            100.0 * rate(full_ms) / peak,
            rate(sym_ms),
            100.0 * rate(sym_ms) / peak
        );
    }
}
