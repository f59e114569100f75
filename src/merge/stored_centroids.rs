//! LEGO's full-dimension centroids read straight from the stored factors: each unit's row is
//! widened once and added into its cluster's sum, with no n × d pool in memory (the pool and
//! a dense `M·X` product cost more than the merge itself on a re-merge).

use ndarray::Array2;
use rayon::prelude::*;

use crate::align::{AlignedModule, ModuleSet};
use crate::msu::UnitScaling;

/// Columns (of A) or rows (of B) one task sums.
const BLOCK: usize = 256;

/// Per raw unit: (index in the module's sources, row of A / column of B within it).
fn unit_origin(set: &ModuleSet, module: &AlignedModule) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (si, s) in module.sources.iter().enumerate() {
        out.extend((0..set.source(*s).rank).map(|u| (si, u)));
    }
    out
}

/// Centroids `(k × d_in, k × d_out)`: `μ_c = Σ_{t∈C} coef_t · x_t` over the pool's units `x_t`
/// (folded by `scaling`), summed in pool order in f64 and rounded once to f32. Column blocks
/// run in parallel; each sums its units in the same order, so threads do not change a bit.
pub fn stored_centroids(
    set: &ModuleSet,
    module: &AlignedModule,
    scaling: &UnitScaling,
    labels: &[usize],
    coef: &[f64],
    k: usize,
) -> (Array2<f32>, Array2<f32>) {
    let origin = unit_origin(set, module);
    let (d_in, d_out) = (module.d_in, module.d_out);
    let units: Vec<(usize, usize, usize, f64, f64)> = scaling
        .keep
        .iter()
        .enumerate()
        .map(|(t, &r)| {
            let (si, u) = origin[r];
            let w = coef[t];
            (
                si,
                u,
                labels[t],
                w * scaling.a_scale[t],
                w * scaling.b_scale[t],
            )
        })
        .collect();
    let sources: Vec<_> = module.sources.iter().map(|s| set.source(*s)).collect();

    // A: unit u of a source is row u of its r × d_in tensor.
    let a_blocks: Vec<Vec<f64>> = (0..d_in.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let c0 = b * BLOCK;
            let w = BLOCK.min(d_in - c0);
            let mut acc = vec![0.0f64; k * w];
            let mut buf = vec![0f32; w];
            for &(si, u, c, wa, _) in &units {
                sources[si].a.write_f32_range(u * d_in + c0, &mut buf);
                axpy(&mut acc[c * w..(c + 1) * w], wa, &buf);
            }
            acc
        })
        .collect();
    // B: unit u of a source is column u of its d_out × r tensor; a task stages its rows of
    // every source once.
    let b_blocks: Vec<Vec<f64>> = (0..d_out.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let o0 = b * BLOCK;
            let w = BLOCK.min(d_out - o0);
            // Staged transposed (r × w per source), so each unit's slice is contiguous.
            let mut rows = Vec::new();
            let staged: Vec<Vec<f32>> = sources
                .iter()
                .map(|m| {
                    let r = m.rank;
                    rows.resize(w * r, 0f32);
                    m.b.write_f32_range(o0 * r, &mut rows);
                    let mut t = vec![0f32; w * r];
                    for (o, chunk) in rows.chunks_exact(r).enumerate() {
                        for (u, &x) in chunk.iter().enumerate() {
                            t[u * w + o] = x;
                        }
                    }
                    t
                })
                .collect();
            let mut acc = vec![0.0f64; k * w];
            for &(si, u, c, _, wb) in &units {
                axpy(
                    &mut acc[c * w..(c + 1) * w],
                    wb,
                    &staged[si][u * w..(u + 1) * w],
                );
            }
            acc
        })
        .collect();
    // The factors now live in the sums; the mapped bytes need not stay resident.
    for m in &sources {
        m.a.release_pages();
        m.b.release_pages();
    }
    (assemble(&a_blocks, k, d_in), assemble(&b_blocks, k, d_out))
}

/// `acc += w·x`, widened to f64 (vectorised wide; the same sums at any width).
fn axpy(acc: &mut [f64], w: f64, x: &[f32]) {
    crate::simd::wide(|| {
        for (o, &v) in acc.iter_mut().zip(x) {
            *o += w * f64::from(v);
        }
    });
}

/// `k × d` from column blocks of width `BLOCK` (each `k × w`, row-major).
fn assemble(blocks: &[Vec<f64>], k: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((k, d), |(c, j)| {
        let (b, off) = (j / BLOCK, j % BLOCK);
        let w = BLOCK.min(d - b * BLOCK);
        blocks[b][c * w + off] as f32
    })
}
