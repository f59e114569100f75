//! Minimal Semantic Units: every rank of every source adapter as one `(a, b)` pair, with the
//! source's weight and scale folded in so the units sum exactly to `Σ_j w_j ΔW_j`.

use ndarray::{Array1, Array2, Axis};

use crate::align::{AlignedModule, ModuleSet};
use crate::merge::lego_params::FeatureSpace;

/// The raw (unfolded) units of one module: rows of every source's A and columns of its B.
#[derive(Debug, Clone)]
pub struct RawUnits {
    /// `N × d_in`: row i is `A_j[r, :]`.
    pub a: Array2<f32>,
    /// `N × d_out`: row i is `B_j[:, r]`.
    pub b: Array2<f32>,
    /// Which entry of the module's `sources` each unit came from.
    pub source: Vec<usize>,
}

/// Writes the `rows × cols` row-major `src` transposed into `dst` (`cols × rows`), in tiles so
/// both sides stay in cache (a plain strided scatter dominated loading B).
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 256;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c in 0..cols {
            let out = &mut dst[c * rows + r0..c * rows + r1];
            for (o, r) in out.iter_mut().zip(r0..r1) {
                *o = src[r * cols + c];
            }
        }
    }
}

/// A hash of a unit's stored values (the f32 bits of a then b, two at a time, multiplicative
/// mixing): a key that does not depend on where the unit sits, used to put units in a
/// canonical order.
pub fn unit_hash(a: &[f32], b: &[f32]) -> u64 {
    unit_hashes([a], [b])[0]
}

/// Multiplier of [`unit_hash`]'s mixing.
const HASH_K: u64 = 0x9e37_79b9_7f4a_7c15;
/// [`unit_hash`]'s starting state.
pub(crate) const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Mixes one 64-bit word (two f32 bit patterns, or one) into a hash state.
#[inline(always)]
pub(crate) fn hash_mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(23) ^ w).wrapping_mul(HASH_K)
}

/// The word of two consecutive values.
#[inline(always)]
fn hash_pair(x: f32, y: f32) -> u64 {
    u64::from(x.to_bits()) | (u64::from(y.to_bits()) << 32)
}

/// Ends a part of `len` values: separates a from b, so moving a value across the boundary
/// changes the hash.
#[inline(always)]
pub(crate) fn hash_end_part(h: u64, len: usize) -> u64 {
    (h ^ len as u64).wrapping_mul(HASH_K)
}

/// [`unit_hash`] of `L` units at once (equal lengths): the chains are independent, so
/// interleaving them hides the latency of each multiply.
fn unit_hashes<const L: usize>(a: [&[f32]; L], b: [&[f32]; L]) -> [u64; L] {
    let mut h = [HASH_SEED; L];
    for part in [a, b] {
        let len = part[0].len();
        for p in 0..len / 2 {
            for l in 0..L {
                h[l] = hash_mix(h[l], hash_pair(part[l][2 * p], part[l][2 * p + 1]));
            }
        }
        for l in 0..L {
            if len % 2 == 1 {
                h[l] = hash_mix(h[l], u64::from(part[l][len - 1].to_bits()));
            }
            h[l] = hash_end_part(h[l], len);
        }
    }
    h
}

impl RawUnits {
    /// Reads the units of `module` from the adapters (the only place factors are materialised),
    /// widening straight into the pool's rows.
    pub fn load(set: &ModuleSet, module: &AlignedModule) -> Self {
        let n: usize = module.sources.iter().map(|s| set.source(*s).rank).sum();
        let (d_in, d_out) = (module.d_in, module.d_out);
        let mut a = vec![0f32; n * d_in];
        let mut b = vec![0f32; n * d_out];
        let mut staged = Vec::new();
        let mut source = Vec::with_capacity(n);
        let mut row = 0;
        for (si, s) in module.sources.iter().enumerate() {
            let m = set.source(*s);
            let r = m.rank;
            m.a.write_f32(&mut a[row * d_in..(row + r) * d_in]);
            // B is stored d_out × r; its columns are our rows.
            staged.resize(d_out * r, 0f32);
            m.b.write_f32(&mut staged);
            transpose_into(&staged, d_out, r, &mut b[row * d_out..(row + r) * d_out]);
            // The factors now live in f32 here; the mapped bytes need not stay resident.
            m.a.release_pages();
            m.b.release_pages();
            source.extend(std::iter::repeat_n(si, r));
            row += r;
        }
        RawUnits {
            a: Array2::from_shape_vec((n, d_in), a).unwrap_or_else(|_| Array2::zeros((n, d_in))),
            b: Array2::from_shape_vec((n, d_out), b).unwrap_or_else(|_| Array2::zeros((n, d_out))),
            source,
        }
    }

    /// [`unit_hash`] of every unit, four at a time.
    pub fn hashes(&self) -> Vec<u64> {
        let (n, d_in, d_out) = (self.a.nrows(), self.a.ncols(), self.b.ncols());
        let (Some(a), Some(b)) = (self.a.as_slice(), self.b.as_slice()) else {
            let rows = |m: &Array2<f32>| m.rows().into_iter().map(|r| r.to_vec()).collect();
            let (a, b): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (rows(&self.a), rows(&self.b));
            return a.iter().zip(&b).map(|(a, b)| unit_hash(a, b)).collect();
        };
        let row_a = |t: usize| &a[t * d_in..(t + 1) * d_in];
        let row_b = |t: usize| &b[t * d_out..(t + 1) * d_out];
        let mut out = Vec::with_capacity(n);
        for t in (0..n - n % 4).step_by(4) {
            let idx = [t, t + 1, t + 2, t + 3];
            out.extend(unit_hashes(idx.map(row_a), idx.map(row_b)));
        }
        out.extend((n - n % 4..n).map(|t| unit_hash(row_a(t), row_b(t))));
        out
    }
}

/// What the folding needs to know about each raw unit.
#[derive(Debug, Clone, Copy)]
pub struct RawUnitInfo<'a> {
    /// Index in the module's sources.
    pub source: &'a [usize],
    /// ‖A_raw row‖².
    pub a_sq: &'a [f64],
    /// ‖B_raw column‖².
    pub b_sq: &'a [f64],
    /// [`unit_hash`], for the canonical order; `None` keeps the raw order.
    pub hash: Option<&'a [u64]>,
}

/// How each raw unit enters the pool: which units are kept (weight ≠ 0) and the factors that
/// multiply their a and b halves.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitScaling {
    /// Raw unit indices kept, in order.
    pub keep: Vec<usize>,
    /// Per kept unit: `a = a_scale · A_raw`.
    pub a_scale: Array1<f64>,
    /// Per kept unit: `b = b_scale · B_raw`.
    pub b_scale: Array1<f64>,
    /// Per kept unit: the index in `module.sources`.
    pub source: Vec<usize>,
}

impl UnitScaling {
    /// Folds `√|w_j s_j|` into both halves and `sign(w_j s_j)` into b; `balanced` also rescales
    /// each unit so ‖a‖ = ‖b‖ (from the raw squared norms `a_sq`, `b_sq`). Units of sources with
    /// weight 0 are left out: they contribute nothing and would only dilute centroids.
    ///
    /// With hashes, kept units are put in a canonical order (by content hash, then folding
    /// factors), so the merge is exactly — bit for bit — independent of the order of units and
    /// adapters; without, they stay in raw order.
    pub fn new(
        set: &ModuleSet,
        module: &AlignedModule,
        raw: &RawUnitInfo,
        weight: impl Fn(usize) -> f64,
        space: FeatureSpace,
    ) -> Self {
        let RawUnitInfo {
            source: raw_source,
            a_sq,
            b_sq,
            hash,
        } = raw;
        let mut entries = Vec::new();
        for (i, &si) in raw_source.iter().enumerate() {
            let (ai, _) = module.sources[si];
            let c = weight(ai) * set.source(module.sources[si]).scale;
            if c == 0.0 {
                continue;
            }
            let root = c.abs().sqrt();
            let t = if space == FeatureSpace::Balanced && a_sq[i] > 0.0 && b_sq[i] > 0.0 {
                (b_sq[i].sqrt() / a_sq[i].sqrt()).sqrt()
            } else {
                1.0
            };
            let (a_scale, b_scale) = (root * t, c.signum() * root / t);
            entries.push((
                hash.map_or(0, |h| h[i]),
                a_scale.to_bits(),
                b_scale.to_bits(),
                i,
                a_scale,
                b_scale,
                si,
            ));
        }
        if hash.is_some() {
            entries.sort_unstable_by_key(|e| (e.0, e.1, e.2, e.3));
        }
        UnitScaling {
            keep: entries.iter().map(|e| e.3).collect(),
            a_scale: entries.iter().map(|e| e.4).collect(),
            b_scale: entries.iter().map(|e| e.5).collect(),
            source: entries.iter().map(|e| e.6).collect(),
        }
    }

    /// Number of units in the pool.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// True when no unit is kept.
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// The folded pool `(A_units n × d_in, B_units n × d_out)` from the raw units.
    pub fn pool(&self, raw: &RawUnits) -> (Array2<f32>, Array2<f32>) {
        let mut a = raw.a.select(Axis(0), &self.keep);
        let mut b = raw.b.select(Axis(0), &self.keep);
        for (i, mut row) in a.rows_mut().into_iter().enumerate() {
            row *= self.a_scale[i] as f32;
        }
        for (i, mut row) in b.rows_mut().into_iter().enumerate() {
            row *= self.b_scale[i] as f32;
        }
        (a, b)
    }

    /// Max-abs of each folded unit `[a; b]` from its raw halves' max-abs `a_max`, `b_max`:
    /// scaling by `|f32(factor)|` rounds monotonically, so this is exactly the max-abs of the
    /// folded row [`UnitScaling::pool`] builds, without building it.
    pub fn linf_norms(&self, a_max: &[f32], b_max: &[f32]) -> Vec<f64> {
        self.keep
            .iter()
            .enumerate()
            .map(|(t, &r)| {
                let a = a_max[r] * (self.a_scale[t] as f32).abs();
                let b = b_max[r] * (self.b_scale[t] as f32).abs();
                f64::from(a.max(b))
            })
            .collect()
    }

    /// `D G_raw[keep, keep] D` for a raw Gram matrix and per-unit scale `d`. Each entry is
    /// scaled by the product `d_p·d_q`, so the result is exactly symmetric.
    pub fn scale_gram(&self, raw: &Array2<f32>, d: &Array1<f64>) -> Array2<f64> {
        let keep = &self.keep;
        Array2::from_shape_fn((keep.len(), keep.len()), |(p, q)| {
            f64::from(raw[[keep[p], keep[q]]]) * (d[p] * d[q])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash as first written, one unit at a time: what canonical orders were built on.
    fn reference_hash(a: &[f32], b: &[f32]) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [a, b] {
            let pairs = part.chunks_exact(2);
            let rest = pairs.remainder();
            for p in pairs {
                let w = u64::from(p[0].to_bits()) | (u64::from(p[1].to_bits()) << 32);
                h = (h.rotate_left(23) ^ w).wrapping_mul(K);
            }
            for v in rest {
                h = (h.rotate_left(23) ^ u64::from(v.to_bits())).wrapping_mul(K);
            }
            h = (h ^ part.len() as u64).wrapping_mul(K);
        }
        h
    }

    #[test]
    fn interleaved_hashes_equal_the_one_at_a_time_hash() {
        for (n, d_in, d_out) in [(1, 1, 1), (4, 6, 5), (7, 5, 8), (13, 32, 3)] {
            let value = |t: usize, j: usize| ((t * 31 + j * 7) % 19) as f32 * 0.25 - 2.0;
            let raw = RawUnits {
                a: Array2::from_shape_fn((n, d_in), |(t, j)| value(t, j)),
                b: Array2::from_shape_fn((n, d_out), |(t, j)| value(t + 100, j)),
                source: vec![0; n],
            };
            let expect: Vec<u64> = (0..n)
                .map(|t| reference_hash(&raw.a.row(t).to_vec(), &raw.b.row(t).to_vec()))
                .collect();
            assert_eq!(raw.hashes(), expect, "n {n}, d_in {d_in}, d_out {d_out}");
        }
    }
}
