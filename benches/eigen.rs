//! Symmetric eigensolvers on bench-set Gram matrices: the hand-written Householder + QL
//! (probe-verified, Jacobi fallback) against faer's self-adjoint eigensolver, one thread each,
//! with each one's reconstruction error; and the scatter's top-two solve against the full
//! one. `cargo bench --bench eigen`

#[path = "common.rs"]
mod common;

use faer::{Mat, Side};
use lora_lego::gram::{sym_eigen, sym_eigen_handwritten};
use lora_lego::top_eigen::top_eigen;
use ndarray::Array2;

/// ‖V Λ Vᵀ − G‖_max / ‖G‖_max.
fn recon_err(g: &Array2<f64>, values: &[f64], v: &Array2<f64>) -> f64 {
    let scaled = v * &ndarray::Array1::from(values.to_vec());
    let r = scaled.dot(&v.t());
    let scale = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    r.iter()
        .zip(g.iter())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn faer_eigen(g: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = g.nrows();
    let m = Mat::<f64>::from_fn(n, n, |i, j| g[[i, j]]);
    let e = m.self_adjoint_eigen(Side::Lower).expect("faer converges");
    let s = e.S().column_vector();
    let u = e.U();
    let values = (0..n).map(|i| s[i]).collect();
    (values, Array2::from_shape_fn((n, n), |(i, j)| u[(i, j)]))
}

fn main() {
    println!("threads: {}", rayon::current_num_threads());
    for adapters in [8, 100] {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = common::engine(adapters, dir.path());
        let grams = common::grams(&engine);
        let take = if adapters >= 100 { 2 } else { grams.len() };
        for (name, g) in grams.iter().take(take) {
            let reps = if adapters >= 100 { 1 } else { 5 };
            let (ours_ms, ours) =
                common::time(reps, || sym_eigen_handwritten(g.view()).expect("ours"));
            // Sequential, as the product runs it (sym_eigen sets faer's parallelism).
            let _ = sym_eigen(Array2::<f64>::eye(2).view());
            let (faer_ms, (fv, fu)) = common::time(reps, || faer_eigen(g));
            let ours_err = recon_err(g, ours.values.as_slice().unwrap_or(&[]), &ours.vectors);
            let faer_err = recon_err(g, &fv, &fu);
            println!(
                "n = {:>4} {name}: hand-written QL {ours_ms:8.1} ms (err {ours_err:.1e}), faer {faer_ms:8.1} ms (err {faer_err:.1e}), faer/ours {:.2}",
                g.nrows(),
                faer_ms / ours_ms
            );
            // What the scatter computes: the top two pairs only.
            let (full_ms, full) = common::time(reps, || sym_eigen(g.view()).expect("full"));
            let (top_ms, top) = common::time(reps, || top_eigen(g.view(), 2).expect("top two"));
            let gap = (0..2)
                .map(|i| (top.values[i] - full.values[i]).abs() / full.values[0])
                .fold(0.0f64, f64::max);
            println!(
                "         top two pairs: full solve {full_ms:8.1} ms, subspace iteration {top_ms:8.1} ms (relative eigenvalue difference {gap:.1e})"
            );
        }
    }
}
