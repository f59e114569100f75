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
    /// The Gram matrix of the whole units, `G_A + G_B`.
    pub fn g(&self) -> Array2<f64> {
        &self.ga + &self.gb
    }

    /// `⟨w_i ΔW_i, w_j ΔW_j⟩` for every pair of the module's sources: block sums of `G_A ∘ G_B`,
    /// since `⟨b_p a_pᵀ, b_q a_qᵀ⟩ = (a_p·a_q)(b_p·b_q)`. O(n²).
    pub fn source_products(&self) -> Array2<f64> {
        let mut out = Array2::zeros((self.n_sources, self.n_sources));
        for (p, &sp) in self.source.iter().enumerate() {
            for (q, &sq) in self.source.iter().enumerate() {
                out[[sp, sq]] += self.ga[[p, q]] * self.gb[[p, q]];
            }
        }
        out
    }

    /// The source × source cosine matrix of `w_j ΔW_j` (interference between adapters).
    pub fn source_cosines(&self) -> Array2<f64> {
        cosines(&self.source_products())
    }

    /// Error, norm ratio and retention of a merged matrix given as a combination of units.
    ///
    /// With `P = V G_A` and `Q = U G_B` (T × n), the merged matrix's inner product with unit i
    /// is `Σ_t P_ti Q_ti`, so every figure needs two T·n² products and sums.
    pub fn delta_metrics(&self, merged: &Combination) -> DeltaMetrics {
        let p = merged.v.dot(&self.ga);
        let q = merged.u.dot(&self.gb);
        let per_unit = (&p * &q).sum_axis(Axis(0));
        let mm = (p.dot(&merged.v.t()) * q.dot(&merged.u.t())).sum();
        let mut with_source = vec![0.0; self.n_sources];
        for (i, &s) in self.source.iter().enumerate() {
            with_source[s] += per_unit[i];
        }
        DeltaMetrics::from_products(mm, &self.source_products(), &with_source, None)
    }

    /// Error, norm ratio and retention of `scale · Σ_j w_j ΔW_j`, a merge that is the exact
    /// weighted sum up to a factor (`cat`: its factors are the sources' stacked). Everything
    /// follows from the source × source products, O(n²): no factor is read again.
    pub fn scaled_sum_metrics(&self, scale: f64) -> DeltaMetrics {
        let sources = self.source_products();
        let ss = sources.sum();
        let with_source: Vec<f64> = sources
            .rows()
            .into_iter()
            .map(|r| scale * r.sum())
            .collect();
        // ‖(scale − 1)·ΔW_sum‖² exactly: the general `mm + ss − 2·ms` would leave rounding
        // noise where the true distance is 0.
        let err2 = (scale - 1.0).powi(2) * ss;
        DeltaMetrics::from_products(scale * scale * ss, &sources, &with_source, Some(err2))
    }
}

/// Cosines from a matrix of inner products.
fn cosines(products: &Array2<f64>) -> Array2<f64> {
    let norms: Vec<f64> = products.diag().iter().map(|v| v.max(0.0).sqrt()).collect();
    Array2::from_shape_fn(products.dim(), |(i, j)| {
        cosine(products[[i, j]], norms[i], norms[j])
    })
}

fn cosine(dot: f64, na: f64, nb: f64) -> f64 {
    if na > 0.0 && nb > 0.0 {
        dot / (na * nb)
    } else {
        0.0
    }
}

/// How the merged ΔW' compares with the exact sum and with each source. These are data-free
/// geometry, not quality: the distance to the exact sum ranks the exact sum best, and a
/// cosine is blind to scale. Only an evaluator says which merge works.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaMetrics {
    /// Distance to the exact sum: ‖ΔW' − ΔW_sum‖ / ‖ΔW_sum‖ (0 for the sum itself).
    pub error_vs_sum: f64,
    /// ‖ΔW'‖ / ‖ΔW_sum‖, ΔW_sum = Σ w_j ΔW_j.
    pub norm_ratio: f64,
    /// Per module source: Frobenius cosine of ΔW' with `w_j ΔW_j` (direction only).
    pub retention: Vec<f64>,
    /// ‖ΔW'‖.
    pub norm: f64,
    /// Per module source: ‖w_j ΔW_j‖.
    pub source_norm: Vec<f64>,
    /// Per module source: ⟨ΔW', w_j ΔW_j⟩.
    pub source_dot: Vec<f64>,
}

impl DeltaMetrics {
    /// From `‖M‖²`, the sources' inner products and `⟨M, w_j ΔW_j⟩` per source; `err2` is
    /// `‖M − ΔW_sum‖²` when the caller knows it better than `mm + ss − 2·ms`.
    pub(crate) fn from_products(
        mm: f64,
        sources: &Array2<f64>,
        with_source: &[f64],
        err2: Option<f64>,
    ) -> Self {
        let ss = sources.sum();
        let ms: f64 = with_source.iter().sum();
        let err2 = err2.unwrap_or(mm + ss - 2.0 * ms).max(0.0);
        let s = ss.max(0.0).sqrt();
        let m = mm.max(0.0).sqrt();
        let retention = with_source
            .iter()
            .enumerate()
            .map(|(j, d)| cosine(*d, m, sources[[j, j]].max(0.0).sqrt()))
            .collect();
        DeltaMetrics {
            error_vs_sum: if s > 0.0 { err2.sqrt() / s } else { 0.0 },
            norm_ratio: if s > 0.0 { m / s } else { 0.0 },
            retention,
            norm: m,
            source_norm: (0..sources.nrows())
                .map(|j| sources[[j, j]].max(0.0).sqrt())
                .collect(),
            source_dot: with_source.to_vec(),
        }
    }

    /// Per source: ‖ΔW'‖ / ‖ΔW_j‖, against the adapter as trained (its weight `weights[j]`
    /// taken out), so halving every weight halves it. NaN for a source left out (weight 0).
    pub fn norm_vs_source(&self, weights: &[f64]) -> Vec<f64> {
        self.source_norm
            .iter()
            .enumerate()
            .map(|(j, &n)| {
                let w = weights.get(j).copied().unwrap_or(1.0).abs();
                if n > 0.0 && w > 0.0 {
                    self.norm / (n / w)
                } else {
                    f64::NAN
                }
            })
            .collect()
    }

    /// Per source: the projection coefficient ⟨ΔW', ΔW_j⟩ / ‖ΔW_j‖² against the adapter as
    /// trained: 1 when the merge carries ΔW_j at full strength along its own direction, 0.5
    /// for a sum at weight 0.5. NaN for a source left out (weight 0).
    pub fn projection(&self, weights: &[f64]) -> Vec<f64> {
        self.source_norm
            .iter()
            .zip(&self.source_dot)
            .enumerate()
            .map(|(j, (&n, &d))| {
                let w = weights.get(j).copied().unwrap_or(1.0);
                // ⟨ΔW', ΔW_j⟩ = d / w and ‖ΔW_j‖² = n² / w².
                if n > 0.0 && w != 0.0 {
                    w * d / (n * n)
                } else {
                    f64::NAN
                }
            })
            .collect()
    }

    /// The same figures for a merge made in a module's core space: with orthonormal bases,
    /// `ΔW' = U_B M V_Aᵀ` and `w_j ΔW_j = U_B M_j V_Aᵀ`, and `⟨U_B X V_Aᵀ, U_B Y V_Aᵀ⟩ = ⟨X, Y⟩`,
    /// so every figure is a product of cores: O(T·n²), no d-wide product. `cores[t]` is task
    /// t's `M_j` (its weight and scale included), `task_source[t]` its index among the
    /// module's sources.
    pub fn from_cores(
        merged: ArrayView2<f64>,
        cores: &[Array2<f64>],
        task_source: &[usize],
        n_sources: usize,
    ) -> Self {
        let dot = |x: ArrayView2<f64>, y: ArrayView2<f64>| -> f64 {
            match (x.as_slice(), y.as_slice()) {
                (Some(x), Some(y)) => x.iter().zip(y).map(|(p, q)| p * q).sum(),
                _ => x.iter().zip(y.iter()).map(|(p, q)| p * q).sum(),
            }
        };
        let mut sources = Array2::zeros((n_sources, n_sources));
        let mut with_source = vec![0.0; n_sources];
        let mut sum = Array2::<f64>::zeros(merged.dim());
        for (cp, &sp) in cores.iter().zip(task_source) {
            for (cq, &sq) in cores.iter().zip(task_source) {
                sources[[sp, sq]] += dot(cp.view(), cq.view());
            }
            with_source[sp] += dot(merged, cp.view());
            sum += cp;
        }
        // The distance to the sum directly, not `mm + ss − 2·ms`: a merge that is the sum
        // (task arithmetic at λ = 1) must show 0, not rounding noise.
        let err2 = dot((&merged - &sum).view(), (&merged - &sum).view());
        DeltaMetrics::from_products(dot(merged, merged), &sources, &with_source, Some(err2))
    }

    /// The same figures from explicit factors: the folded units (`a` n × d_in, `b` n × d_out
    /// rows, `source` per unit) and a merged `A'` (k × d_in), `B'` (d_out × k). For merges
    /// whose result is not a combination of units (TIES, DARE, SVD…).
    ///
    /// Everything is recomputed here in f64 from the same vectors: the error against the sum
    /// is a difference of nearly equal numbers when the merge is nearly exact (cat), and mixing
    /// in the engine's f32-accumulated Gram matrices would leave ~1e-3 of noise.
    pub fn from_factors(
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
        source: &[usize],
        n_sources: usize,
        merged_a: ArrayView2<f32>,
        merged_b: ArrayView2<f32>,
    ) -> Self {
        let (a, b) = (a.mapv(f64::from), b.mapv(f64::from));
        let (ma, mb) = (merged_a.mapv(f64::from), merged_b.mapv(f64::from));
        // (a'_c·a_i)(b'_c·b_i) summed over c: the merged matrix's inner product with unit i.
        let per_unit = (ma.dot(&a.t()) * mb.t().dot(&b.t())).sum_axis(Axis(0));
        let mm = (ma.dot(&ma.t()) * mb.t().dot(&mb)).sum();
        let geom = UnitGeometry {
            ga: a.dot(&a.t()),
            gb: b.dot(&b.t()),
            source: source.to_vec(),
            n_sources,
        };
        let mut with_source = vec![0.0; n_sources];
        for (i, &s) in source.iter().enumerate() {
            with_source[s] += per_unit[i];
        }
        DeltaMetrics::from_products(mm, &geom.source_products(), &with_source, None)
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
