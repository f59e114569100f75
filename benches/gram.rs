//! Gram build: the symmetric product against the full GEMM, on bench-set modules.
//! `cargo bench --bench gram`

#[path = "common.rs"]
mod common;

use lora_lego::bench::run::gemm_peak;
use lora_lego::linalg::{bf16_kernel_available, gram_bf16_cols, gram_bf16_rows, syrk, Bf16Part};
use lora_lego::msu::RawUnits;
use ndarray::Array2;

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
    bf16_against_widened();
}

/// The Gram product straight from BF16 bytes against widening to f32 and `syrk`, on
/// synthetic r16 factors: units as rows (16 a part, as in one adapter's A) and, transposed, as
/// columns (as in B).
fn bf16_against_widened() {
    println!(
        "BF16 Gram (AVX-512 BF16 kernel: {}) vs widen to f32 + syrk, one thread:",
        if bf16_kernel_available() {
            "yes"
        } else {
            "no, fallback"
        }
    );
    for (n, d) in [(128, 4096), (128, 11008), (1600, 4096), (1600, 11008)] {
        let mut state = (n * 7 + d) as u64;
        let bytes: Vec<u8> = (0..n * d)
            .flat_map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (state >> 41) as f32 / (1u32 << 23) as f32 - 1.0;
                ((v.to_bits() >> 16) as u16).to_le_bytes()
            })
            .collect();
        let part_bytes = 16 * d * 2;
        let parts: Vec<Bf16Part> = bytes
            .chunks(part_bytes)
            .map(|b| Bf16Part {
                bytes: b,
                rows: b.len() / (2 * d),
                cols: d,
            })
            .collect();
        // The same factors stored d × 16, as B factors are.
        let transposed: Vec<Vec<u8>> = parts
            .iter()
            .map(|p| {
                (0..p.rows * d)
                    .flat_map(|k| {
                        let (o, r) = (k / p.rows, k % p.rows);
                        let at = 2 * (r * d + o);
                        [p.bytes[at], p.bytes[at + 1]]
                    })
                    .collect()
            })
            .collect();
        let col_parts: Vec<Bf16Part> = transposed
            .iter()
            .zip(&parts)
            .map(|(b, p)| Bf16Part {
                bytes: b,
                rows: d,
                cols: p.rows,
            })
            .collect();
        let widen = || {
            Array2::from_shape_fn((n, d), |(i, o)| {
                let k = 2 * (i * d + o);
                f32::from_bits(u32::from(u16::from_le_bytes([bytes[k], bytes[k + 1]])) << 16)
            })
        };
        let reps = if n >= 1000 { 3 } else { 20 };
        let (bf16_ms, _) = common::time(reps, || gram_bf16_rows(&parts));
        let (cols_ms, _) = common::time(reps, || gram_bf16_cols(&col_parts));
        let (widen_ms, x) = common::time(reps, widen);
        let (syrk_ms, _) = common::time(reps, || syrk(x.view()));
        // Rates count the full product's 2·n²·d flops.
        let rate = |ms: f64| 2.0 * (n * n * d) as f64 / ms / 1e6;
        let both_ms = widen_ms + syrk_ms;
        println!(
            "  n = {n:4}, d = {d:5}: bf16 {bf16_ms:7.1} ms ({:5.1} GFLOP/s; as columns {cols_ms:.1} ms) | widen + syrk {both_ms:7.1} ms ({:5.1} GFLOP/s; syrk alone {syrk_ms:.1} ms) | {:.2}× ({:.2}× vs syrk alone)",
            rate(bf16_ms),
            rate(both_ms),
            both_ms / bf16_ms,
            syrk_ms / bf16_ms
        );
    }
}
