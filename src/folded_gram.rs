//! A module's folded units seen through its cached raw Gram matrices (f32) and folding
//! factors, without n × n f64 copies of `G_A` and `G_B`: the folded `G`, the sources' inner
//! products, and the products a LEGO merge's metrics need — O(n²) passes each.

use ndarray::{Array2, Axis};
use rayon::prelude::*;

use crate::metrics::DeltaMetrics;
use crate::msu::UnitScaling;

/// The kept units of a module as the raw Gram matrices and the factors that fold them.
#[derive(Debug, Clone, Copy)]
pub struct FoldedGram<'a> {
    /// Raw `A Aᵀ` over every raw unit (row-major).
    pub ga: &'a Array2<f32>,
    /// Raw `B Bᵀ` (B's columns as rows).
    pub gb: &'a Array2<f32>,
    /// Which raw units are kept, in pool order, and their factors.
    pub scaling: &'a UnitScaling,
    /// Number of sources of the module.
    pub n_sources: usize,
}

/// Row `r` of a row-major matrix.
fn row(m: &Array2<f32>, r: usize) -> &[f32] {
    let cols = m.ncols();
    match m.as_slice() {
        Some(all) => &all[r * cols..(r + 1) * cols],
        None => &[],
    }
}

/// `Σ_t w_t · row[idx_t]` in four interleaved partial sums (a fixed order, short chains).
fn gather(row: &[f32], idx: &[usize], w: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ci, cw) = (idx.chunks_exact(4), w.chunks_exact(4));
    let (ri, rw) = (ci.remainder(), cw.remainder());
    for (i4, w4) in ci.zip(cw) {
        for l in 0..4 {
            acc[l] += w4[l] * f64::from(row[i4[l]]);
        }
    }
    for (l, (&i, &w)) in ri.iter().zip(rw).enumerate() {
        acc[l] += w * f64::from(row[i]);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

impl FoldedGram<'_> {
    fn scales(&self) -> (&[f64], &[f64]) {
        (
            self.scaling.a_scale.as_slice().unwrap_or(&[]),
            self.scaling.b_scale.as_slice().unwrap_or(&[]),
        )
    }

    /// `G = G_A + G_B` of the kept units, entry for entry what
    /// [`crate::metrics::UnitGeometry::g`] gives from [`UnitScaling::scale_gram`].
    pub fn g(&self) -> Array2<f64> {
        let keep = &self.scaling.keep;
        let n = keep.len();
        let (da, db) = self.scales();
        let mut g = Array2::<f64>::zeros((n, n));
        g.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(p, mut out)| {
                let (ra, rb) = (row(self.ga, keep[p]), row(self.gb, keep[p]));
                let (ap, bp) = (da[p], db[p]);
                for (q, o) in out.iter_mut().enumerate() {
                    let kq = keep[q];
                    *o = f64::from(ra[kq]) * (ap * da[q]) + f64::from(rb[kq]) * (bp * db[q]);
                }
            });
        g
    }

    /// `⟨w_i ΔW_i, w_j ΔW_j⟩` for every pair of sources: block sums of `G_A ∘ G_B`. Each unit's
    /// row is summed on its own, then the rows in order, so threads do not change the sums.
    pub fn source_products(&self) -> Array2<f64> {
        let keep = &self.scaling.keep;
        let source = &self.scaling.source;
        let (da, db) = self.scales();
        let ns = self.n_sources;
        let rows: Vec<Vec<f64>> = (0..keep.len())
            .into_par_iter()
            .map(|p| {
                let (ra, rb) = (row(self.ga, keep[p]), row(self.gb, keep[p]));
                let mut acc = vec![0.0; ns];
                for (q, &kq) in keep.iter().enumerate() {
                    let a = f64::from(ra[kq]) * (da[p] * da[q]);
                    let b = f64::from(rb[kq]) * (db[p] * db[q]);
                    acc[source[q]] += a * b;
                }
                acc
            })
            .collect();
        let mut out = Array2::zeros((ns, ns));
        for (p, acc) in rows.iter().enumerate() {
            for (sq, v) in acc.iter().enumerate() {
                out[[source[p], sq]] += v;
            }
        }
        out
    }

    /// Error, norm ratio and retention of `Σ_c (Σ_{j∈C} u_j b_j)(Σ_{j∈C} v_j a_j)ᵀ`, a merge
    /// whose term c draws on cluster c only (`labels`, `k` clusters), against the sources
    /// whose inner products are `sources`. With `P_ci = Σ_{j∈C} v_j (a_j·a_i)` and `Q` alike
    /// on b, the merge's product with unit i is `Σ_c P_ci Q_ci`: O(n²) reads, no GEMM.
    pub fn lego_metrics(
        &self,
        labels: &[usize],
        v: &[f64],
        u: &[f64],
        k: usize,
        sources: &Array2<f64>,
    ) -> DeltaMetrics {
        let keep = &self.scaling.keep;
        let n = keep.len();
        let (da, db) = self.scales();
        // Per cluster: raw indices of the members and their weights with the folding factor.
        let mut idx = vec![Vec::new(); k];
        let mut wa = vec![Vec::new(); k];
        let mut wb = vec![Vec::new(); k];
        for (j, &c) in labels.iter().enumerate() {
            idx[c].push(keep[j]);
            wa[c].push(v[j] * da[j]);
            wb[c].push(u[j] * db[j]);
        }
        // pq[i] = (P_·i, Q_·i).
        let pq: Vec<(Vec<f64>, Vec<f64>)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let (ra, rb) = (row(self.ga, keep[i]), row(self.gb, keep[i]));
                let p = (0..k)
                    .map(|c| da[i] * gather(ra, &idx[c], &wa[c]))
                    .collect();
                let q = (0..k)
                    .map(|c| db[i] * gather(rb, &idx[c], &wb[c]))
                    .collect();
                (p, q)
            })
            .collect();
        let mut with_source = vec![0.0; self.n_sources];
        // (P Vᵀ)[c, c'] and (Q Uᵀ)[c, c'].
        let mut pv = Array2::<f64>::zeros((k, k));
        let mut qu = Array2::<f64>::zeros((k, k));
        for (i, (p, q)) in pq.iter().enumerate() {
            let per_unit: f64 = p.iter().zip(q).map(|(a, b)| a * b).sum();
            with_source[self.scaling.source[i]] += per_unit;
            let ci = labels[i];
            for c in 0..k {
                pv[[c, ci]] += p[c] * v[i];
                qu[[c, ci]] += q[c] * u[i];
            }
        }
        let mm = (&pv * &qu).sum();
        DeltaMetrics::from_products(mm, sources, &with_source, None)
    }
}
