//! What a merge keeps and loses, computed from the units' Gram matrices: a low-rank matrix
//! `Σ_t (Σ_i U_ti b_i)(Σ_i V_ti a_i)ᵀ` is described by coefficient matrices `U`, `V` over the
//! units, and every Frobenius inner product of two such matrices is
//! `sum((V₁ G_A V₂ᵀ) ∘ (U₁ G_B U₂ᵀ))` — no `d_out × d_in` matrix is ever formed.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::Serialize;

/// A low-rank matrix as coefficients over the units: terms × units for the b and a halves.
#[derive(Debug, Clone)]
pub struct Combination {
    /// `T × n` coefficients on the b halves.
    pub u: Array2<f64>,
    /// `T × n` coefficients on the a halves.
    pub v: Array2<f64>,
}

impl Combination {
    /// `Σ_{i ∈ units} b_i a_iᵀ`: the units themselves, each as one term.
    pub fn units(n: usize, units: impl Iterator<Item = usize>) -> Self {
        let idx: Vec<usize> = units.collect();
        let mut m = Array2::zeros((idx.len(), n));
        for (t, &i) in idx.iter().enumerate() {
            m[[t, i]] = 1.0;
        }
        Combination { u: m.clone(), v: m }
    }
}

/// The folded units' Gram matrices of one module, and what follows from them alone.
#[derive(Debug, Clone)]
pub struct UnitGeometry {
    /// `n × n` Gram of the a halves.
    pub ga: Array2<f64>,
    /// `n × n` Gram of the b halves.
    pub gb: Array2<f64>,
    /// Per unit: index in the module's sources.
    pub source: Vec<usize>,
    /// Number of sources of the module.
    pub n_sources: usize,
}

impl UnitGeometry {
    /// `⟨L₁, L₂⟩_F` for two combinations of these units.
    pub fn inner(&self, x: &Combination, y: &Combination) -> f64 {
        let va = x.v.dot(&self.ga).dot(&y.v.t());
        let ub = x.u.dot(&self.gb).dot(&y.u.t());
        (&va * &ub).sum()
    }

    /// `Σ_j w_j ΔW_j`: every unit.
    pub fn sum(&self) -> Combination {
        let n = self.source.len();
        Combination::units(n, 0..n)
    }

    /// `w_j ΔW_j` for source `j` of the module.
    pub fn source_delta(&self, j: usize) -> Combination {
        let n = self.source.len();
        Combination::units(n, (0..n).filter(|&i| self.source[i] == j))
    }

    /// The source × source cosine matrix of `w_j ΔW_j` (interference between adapters).
    pub fn source_cosines(&self) -> Array2<f64> {
        let deltas: Vec<Combination> = (0..self.n_sources).map(|j| self.source_delta(j)).collect();
        let norms: Vec<f64> = deltas
            .iter()
            .map(|d| self.inner(d, d).max(0.0).sqrt())
            .collect();
        Array2::from_shape_fn((self.n_sources, self.n_sources), |(i, j)| {
            cosine(self.inner(&deltas[i], &deltas[j]), norms[i], norms[j])
        })
    }

    /// Error, norm ratio and retention of a merged matrix given as a combination of units.
    pub fn delta_metrics(&self, merged: &Combination) -> DeltaMetrics {
        let sum = self.sum();
        let ss = self.inner(&sum, &sum);
        let mm = self.inner(merged, merged);
        let ms = self.inner(merged, &sum);
        let retention = (0..self.n_sources)
            .map(|j| {
                let d = self.source_delta(j);
                cosine(
                    self.inner(merged, &d),
                    mm.max(0.0).sqrt(),
                    self.inner(&d, &d).max(0.0).sqrt(),
                )
            })
            .collect();
        DeltaMetrics::from_products(mm, ss, ms, retention)
    }
}

fn cosine(dot: f64, na: f64, nb: f64) -> f64 {
    if na > 0.0 && nb > 0.0 {
        dot / (na * nb)
    } else {
        0.0
    }
}

/// How the merged ΔW' compares with the exact sum and with each source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaMetrics {
    /// ‖ΔW' − ΔW_sum‖ / ‖ΔW_sum‖.
    pub error_vs_sum: f64,
    /// ‖ΔW'‖ / ‖ΔW_sum‖.
    pub norm_ratio: f64,
    /// Per module source: Frobenius cosine of ΔW' with `w_j ΔW_j`.
    pub retention: Vec<f64>,
}

impl DeltaMetrics {
    /// From `‖M‖²`, `‖S‖²`, `⟨M, S⟩` and the retentions.
    fn from_products(mm: f64, ss: f64, ms: f64, retention: Vec<f64>) -> Self {
        let err2 = (mm + ss - 2.0 * ms).max(0.0);
        let s = ss.max(0.0).sqrt();
        DeltaMetrics {
            error_vs_sum: if s > 0.0 { err2.sqrt() / s } else { 0.0 },
            norm_ratio: if s > 0.0 { mm.max(0.0).sqrt() / s } else { 0.0 },
            retention,
        }
    }

    /// The same figures from explicit factors: the units (`a` n × d_in, `b` n × d_out rows,
    /// `source` per unit) and a merged `A'` (k × d_in), `B'` (d_out × k). For merges whose
    /// result is not a combination of units (TIES, DARE, SVD…).
    pub fn from_factors(
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
        source: &[usize],
        n_sources: usize,
        merged_a: ArrayView2<f32>,
        merged_b: ArrayView2<f32>,
    ) -> Self {
        let a = a.mapv(f64::from);
        let b = b.mapv(f64::from);
        let ma = merged_a.mapv(f64::from);
        let mb = merged_b.mapv(f64::from);
        // Merged × units products: (k × n) each.
        let pa = ma.dot(&a.t());
        let pb = mb.t().dot(&b.t());
        let cross = &pa * &pb;
        let mm = (ma.dot(&ma.t()) * mb.t().dot(&mb)).sum();
        let ga = a.dot(&a.t());
        let gb = b.dot(&b.t());
        let geom = UnitGeometry {
            ga,
            gb,
            source: source.to_vec(),
            n_sources,
        };
        let sum = geom.sum();
        let ss = geom.inner(&sum, &sum);
        let ms = cross.sum();
        let per_unit = cross.sum_axis(Axis(0));
        let retention = (0..n_sources)
            .map(|j| {
                let d = geom.source_delta(j);
                let dot: f64 = per_unit
                    .iter()
                    .zip(source)
                    .filter(|(_, s)| **s == j)
                    .map(|(v, _)| v)
                    .sum();
                cosine(dot, mm.max(0.0).sqrt(), geom.inner(&d, &d).max(0.0).sqrt())
            })
            .collect();
        DeltaMetrics::from_products(mm, ss, ms, retention)
    }
}

/// Cluster sizes and, per cluster, how many units each source contributed.
pub fn source_mix(
    labels: &[usize],
    source: &[usize],
    k: usize,
    n_sources: usize,
) -> Vec<Vec<usize>> {
    let mut mix = vec![vec![0; n_sources]; k];
    for (&l, &s) in labels.iter().zip(source) {
        mix[l][s] += 1;
    }
    mix
}

/// The mean of a metric over modules, ignoring NaN.
pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Array1<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.mean().unwrap_or(f64::NAN)
    }
}
