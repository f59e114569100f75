//! The dense `d_out × d_in` matrix the `*_svd` methods decompose, formed by row panels.
//!
//! Why panels: holding every source's `D_j = s_j·B_j·A_j` and a pruned copy of each took
//! `2n` dense matrices per module (5.5 GB for eight 7B adapters, two modules in flight), and
//! the passes over them were bound by memory, not arithmetic. Here a pass forms `h` rows of
//! every `D_j` at a time from the factors (`2r` flops an entry, cheap next to the SVD's
//! products) and works on them while they are in cache; only the merged matrix is held.
//!
//! Magnitude pruning needs each `D_j`'s global threshold before it can prune a panel. One
//! counting pass finds it exactly: a sample of entries brackets the threshold, the pass counts
//! the entries above the bracket and keeps those inside it (about 1 %) with their row-major
//! index, and a selection among them gives the cut, ties going to lower indices as in
//! [`prune_magnitude`](super::baselines::prune_magnitude). When the sample misses, a histogram
//! pass of the top 16 bits of `|v|` narrows the bracket to one bucket and the count is redone.

use ndarray::{s, Array2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::linalg::matmul_f32_into;
use crate::merge::baselines::{
    descend, disjoint_merge_into, magnitude_bits, prune_random_in_place, stream_rng,
    weighted_sum_into, MajoritySign, SourceFactors,
};

/// Entries per panel of one source (rows × `d_in`): a few panels stay in L2/L3 together.
const PANEL_ENTRIES: usize = 1 << 17;
/// Panels hold at least this many rows, so the factor product runs on full kernel tiles.
const MIN_PANEL_ROWS: usize = 8;
/// Sampled entries per source for the threshold bracket.
const SAMPLE_SIZE: usize = 1 << 17;
/// Half-width of the bracket in standard errors of the sample quantile.
const BRACKET_SIGMAS: f64 = 5.0;
/// Fixed seed of the sample positions, so a module's passes are reproducible.
const SAMPLE_SEED: u64 = 0x7a11_5eed_0dd5_cafe;

/// How each source's dense delta is sparsified before mixing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Prune {
    /// Unchanged.
    Keep,
    /// PEFT's `magnitude_based_pruning` with this density.
    Magnitude(f64),
    /// PEFT's `random_pruning` (rescaled); source `j` draws from `stream_rng(seed, j)`.
    Random {
        /// Fraction kept.
        density: f64,
        /// Seed of the DARE streams.
        seed: u64,
    },
}

/// How the sparsified deltas are mixed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mix {
    /// `Σ_j w_j X_j`.
    Sum,
    /// TIES' sign election and disjoint mean.
    Disjoint(MajoritySign),
}

/// PEFT's combination of the sources' `D_j = s_j·B_j·A_j` (weights `w_j`), panel by panel.
pub(crate) fn combine(sources: &[SourceFactors], prune: Prune, mix: Mix) -> Array2<f32> {
    combine_with_sample(sources, prune, mix, SAMPLE_SIZE)
}

/// [`combine`] with the threshold sample's size as a parameter (0: no sample, histogram first).
pub(crate) fn combine_with_sample(
    sources: &[SourceFactors],
    prune: Prune,
    mix: Mix,
    sample_size: usize,
) -> Array2<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { combine_avx2(sources, prune, mix, sample_size) };
        }
    }
    combine_panels(sources, prune, mix, sample_size)
}

/// [`combine_panels`] compiled for AVX2. Why: the build targets baseline x86-64 (SSE2), and
/// the per-entry passes are half the work; wider vectors change no result (Rust never
/// contracts `a * b + c` into an FMA). Everything it calls per entry is `inline(always)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn combine_avx2(
    sources: &[SourceFactors],
    prune: Prune,
    mix: Mix,
    sample_size: usize,
) -> Array2<f32> {
    combine_panels(sources, prune, mix, sample_size)
}

#[inline(always)]
fn combine_panels(
    sources: &[SourceFactors],
    prune: Prune,
    mix: Mix,
    sample_size: usize,
) -> Array2<f32> {
    let Some(first) = sources.first() else {
        return Array2::zeros((0, 0));
    };
    let (d_out, d_in) = (first.b.nrows(), first.a.ncols());
    let mut out = Array2::<f32>::zeros((d_out, d_in));
    if d_out == 0 || d_in == 0 {
        return out;
    }
    let panels = Panels::new(d_out, d_in);
    let cuts: Vec<Cut> = match prune {
        Prune::Magnitude(density) => magnitude_cuts(sources, &panels, density, sample_size),
        _ => vec![Cut::All; sources.len()],
    };
    let mut rngs: Vec<Xoshiro256PlusPlus> = match prune {
        Prune::Random { seed, .. } => (0..sources.len() as u64)
            .map(|j| stream_rng(seed, j))
            .collect(),
        _ => Vec::new(),
    };
    let weights: Vec<f32> = sources.iter().map(|s| s.weight).collect();
    let mut buffers = vec![vec![0.0f32; panels.rows * d_in]; sources.len()];
    let Some(out_values) = out.as_slice_mut() else {
        return out;
    };
    for (rows, out_panel) in panels.iter().zip(out_values.chunks_mut(panels.rows * d_in)) {
        let base = rows.start * d_in;
        for (j, (source, buffer)) in sources.iter().zip(&mut buffers).enumerate() {
            let panel = &mut buffer[..out_panel.len()];
            product_panel(source, rows.clone(), panel);
            // Keep and Random take the `Cut::All` route for the scale.
            let cut = match prune {
                Prune::Magnitude(_) => cuts[j],
                _ => Cut::All,
            };
            cut.apply(panel, base, source.scale);
            if let Prune::Random { density, .. } = prune {
                if density < 1.0 {
                    prune_random_in_place(panel, density, &mut rngs[j]);
                }
            }
        }
        let slices: Vec<&[f32]> = buffers.iter().map(|b| &b[..out_panel.len()]).collect();
        match mix {
            Mix::Sum => weighted_sum_into(&slices, &weights, out_panel),
            Mix::Disjoint(majority) => disjoint_merge_into(&slices, &weights, majority, out_panel),
        }
    }
    out
}

/// The row panels of a `d_out × d_in` matrix, in order (so row-major order across panels).
struct Panels {
    rows: usize,
    d_out: usize,
    d_in: usize,
}

impl Panels {
    fn new(d_out: usize, d_in: usize) -> Self {
        let rows = (PANEL_ENTRIES / d_in.max(1))
            .max(MIN_PANEL_ROWS)
            .min(d_out.max(1));
        Self { rows, d_out, d_in }
    }

    fn iter(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.d_out)
            .step_by(self.rows)
            .map(|start| start..(start + self.rows).min(self.d_out))
    }
}

/// `panel = B[rows]·A` (row-major). The scale is applied by each pass as it reads the panel,
/// after the product as in PEFT's `(B @ A) * s`: one pass over the panel fewer.
#[inline(always)]
fn product_panel(source: &SourceFactors, rows: std::ops::Range<usize>, panel: &mut [f32]) {
    matmul_f32_into(source.b.slice(s![rows, ..]), source.a, panel);
}

/// `magnitude_bits` as `i32`: never negative, and AVX2 compares signed lanes only.
#[inline(always)]
fn signed_bits(v: f32) -> i32 {
    magnitude_bits(v) as i32
}

/// Which entries of one `D_j` magnitude pruning keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// Every entry.
    All,
    /// No entry.
    Nothing,
    /// `|v| > bits`, or `|v| = bits` at a row-major index `≤ index` (ties to lower indices).
    At {
        /// `magnitude_bits` of the `keep`-th largest entry.
        bits: u32,
        /// Its row-major index.
        index: usize,
    },
}

impl Cut {
    /// Scales a product panel starting at row-major index `base` and zeroes dropped entries.
    #[inline(always)]
    fn apply(self, panel: &mut [f32], base: usize, scale: f32) {
        match self {
            Cut::All => {
                for v in panel.iter_mut() {
                    *v *= scale;
                }
            }
            Cut::Nothing => panel.fill(0.0),
            Cut::At { bits, index } => {
                // Ties are kept at panel offsets below `tie_end`, dropped from there on.
                let tie_end = (index + 1).saturating_sub(base).min(panel.len());
                let (with_ties, without) = panel.split_at_mut(tie_end);
                let bits = bits as i32;
                for v in with_ties.iter_mut() {
                    let x = *v * scale;
                    *v = keep_if(signed_bits(x) >= bits, x);
                }
                for v in without.iter_mut() {
                    let x = *v * scale;
                    *v = keep_if(signed_bits(x) > bits, x);
                }
            }
        }
    }
}

/// `v` when `keep`, else `+0.0`, by a bit mask so the loops vectorise.
#[inline(always)]
fn keep_if(keep: bool, v: f32) -> f32 {
    f32::from_bits(v.to_bits() & u32::from(keep).wrapping_neg())
}

/// An inclusive range of `magnitude_bits` believed to hold a source's threshold.
#[derive(Debug, Clone, Copy)]
struct Bracket {
    lo: u32,
    hi: u32,
}

/// One source's count against its bracket.
#[derive(Default)]
struct Count {
    /// Entries with `magnitude_bits > hi`.
    above: usize,
    /// `(magnitude_bits, row-major index)` of the entries inside the bracket.
    inside: Vec<(u32, usize)>,
}

/// Each source's magnitude cut for `density` (PEFT's `floor(density·numel)` largest kept).
#[inline(always)]
fn magnitude_cuts(
    sources: &[SourceFactors],
    panels: &Panels,
    density: f64,
    sample_size: usize,
) -> Vec<Cut> {
    let numel = panels.d_out * panels.d_in;
    // Python's int() truncates, like this cast for non-negative values.
    let keep = (density * numel as f64) as usize;
    if density >= 1.0 || keep >= numel {
        return vec![Cut::All; sources.len()];
    }
    if keep == 0 {
        return vec![Cut::Nothing; sources.len()];
    }
    // No sample (size 0) starts from the histogram; tests use it to check that route.
    let mut brackets: Vec<Option<Bracket>> = sources
        .iter()
        .map(|s| (sample_size > 0).then(|| sample_bracket(s, numel, keep, sample_size)))
        .collect();
    let mut cuts: Vec<Option<Cut>> = vec![None; sources.len()];
    // Sample bracket, then a one-bucket bracket from the histogram, then everything: the
    // second always holds the threshold, the third is a guard that cannot miss.
    for attempt in 0..3 {
        let counts = count_pass(sources, panels, &brackets);
        for (j, count) in counts.into_iter().enumerate() {
            if let Some(count) = count {
                cuts[j] = select_cut(count, keep);
                brackets[j] = None;
            }
        }
        let missed: Vec<usize> = (0..sources.len()).filter(|&j| cuts[j].is_none()).collect();
        if missed.is_empty() {
            break;
        }
        let wider: Vec<Bracket> = match attempt {
            0 => histogram_brackets(sources, panels, &missed, keep),
            _ => vec![
                Bracket {
                    lo: 0,
                    hi: u32::MAX
                };
                missed.len()
            ],
        };
        for (j, bracket) in missed.into_iter().zip(wider) {
            brackets[j] = Some(bracket);
        }
    }
    cuts.into_iter().map(|c| c.unwrap_or(Cut::All)).collect()
}

/// A bracket around the `keep`-th largest `|v|` from sampled entries (computed directly; they
/// need not round like the panels do, the count below is exact).
fn sample_bracket(source: &SourceFactors, numel: usize, keep: usize, size: usize) -> Bracket {
    let d_in = source.a.ncols();
    // Why transposed: sampled columns of A are strided by d_in, and reading them cost more
    // than the whole sample's arithmetic.
    let a_t = source.a.t().as_standard_layout().into_owned();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SAMPLE_SEED);
    let mut sample: Vec<u32> = (0..size)
        .map(|_| {
            let at = rng.gen_range(0..numel);
            let (row, col) = (at / d_in, at % d_in);
            let v: f32 = source
                .b
                .row(row)
                .iter()
                .zip(a_t.row(col))
                .map(|(&b, &a)| b * a)
                .sum();
            magnitude_bits(v * source.scale)
        })
        .collect();
    let n = sample.len();
    let fraction = keep as f64 / numel as f64;
    let spread = BRACKET_SIGMAS * (fraction * (1.0 - fraction) / n as f64).sqrt() + 2.0 / n as f64;
    let centre = fraction * n as f64;
    // Positions in the sample sorted descending.
    let upper = (centre - spread * n as f64).floor();
    let lower = (centre + spread * n as f64).ceil();
    let descending = |a: &u32, b: &u32| b.cmp(a);
    let lo = if lower >= n as f64 {
        0
    } else {
        *sample.select_nth_unstable_by(lower as usize, descending).1
    };
    let hi = if upper < 0.0 {
        u32::MAX
    } else {
        *sample.select_nth_unstable_by(upper as usize, descending).1
    };
    Bracket { lo, hi: hi.max(lo) }
}

/// Counts every source that has a bracket (the others get `None`) in one pass over the panels.
#[inline(always)]
fn count_pass(
    sources: &[SourceFactors],
    panels: &Panels,
    brackets: &[Option<Bracket>],
) -> Vec<Option<Count>> {
    let mut counts: Vec<Option<Count>> = brackets
        .iter()
        .map(|b| b.map(|_| Count::default()))
        .collect();
    let mut panel = vec![0.0f32; panels.rows * panels.d_in];
    for rows in panels.iter() {
        let base = rows.start * panels.d_in;
        let len = rows.len() * panels.d_in;
        for ((source, bracket), count) in sources.iter().zip(brackets).zip(&mut counts) {
            let (Some(Bracket { lo, hi }), Some(count)) = (bracket, count.as_mut()) else {
                continue;
            };
            let panel = &mut panel[..len];
            product_panel(source, rows.clone(), panel);
            count.above += count_block(panel, source.scale, base, (*lo, *hi), &mut count.inside);
        }
    }
    counts
}

/// Entries of `scale·values` above the bracket; pushes those within it with their index.
#[inline(always)]
fn count_block(
    values: &[f32],
    scale: f32,
    base: usize,
    (lo, hi): (u32, u32),
    inside: &mut Vec<(u32, usize)>,
) -> usize {
    // Why blocks of 16 with a branch-free test and a hit mask: about 1 % of entries fall
    // inside, so the test vectorises and the scalar work is per hit, not per entry.
    const BLOCK: usize = 16;
    // Magnitude bits never exceed i32::MAX (NaN's included), so clamping changes no answer.
    let (lo, hi) = (
        lo.min(i32::MAX as u32) as i32,
        hi.min(i32::MAX as u32) as i32,
    );
    let mut above = 0usize;
    for (b, block) in values.chunks(BLOCK).enumerate() {
        let (mut up, mut hits) = (0u32, 0u32);
        for (i, &v) in block.iter().enumerate() {
            let m = signed_bits(v * scale);
            up += u32::from(m > hi);
            hits |= u32::from((m >= lo) & (m <= hi)) << i;
        }
        above += up as usize;
        // Only the hits are visited, through the bits of the mask.
        while hits != 0 {
            let i = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            inside.push((signed_bits(block[i] * scale) as u32, base + b * BLOCK + i));
        }
    }
    above
}

/// The cut keeping the `keep` largest entries, or `None` when the bracket missed it.
fn select_cut(mut count: Count, keep: usize) -> Option<Cut> {
    if count.above >= keep || count.above + count.inside.len() < keep {
        return None;
    }
    let need = keep - count.above;
    // Larger magnitude first, then lower index: `(bits, index)` pairs are distinct.
    let (_, &mut (bits, index), _) = count
        .inside
        .select_nth_unstable_by(need - 1, |x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    Some(Cut::At { bits, index })
}

/// For each missed source, the bucket of the top 16 bits of `|v|` holding the `keep`-th
/// largest entry, from one histogram pass.
#[inline(always)]
fn histogram_brackets(
    sources: &[SourceFactors],
    panels: &Panels,
    missed: &[usize],
    keep: usize,
) -> Vec<Bracket> {
    let mut histograms = vec![vec![0usize; 1 << 16]; missed.len()];
    let mut panel = vec![0.0f32; panels.rows * panels.d_in];
    for rows in panels.iter() {
        let panel = &mut panel[..rows.len() * panels.d_in];
        for (&j, histogram) in missed.iter().zip(&mut histograms) {
            product_panel(&sources[j], rows.clone(), panel);
            let scale = sources[j].scale;
            for &v in panel.iter() {
                histogram[(magnitude_bits(v * scale) >> 16) as usize] += 1;
            }
        }
    }
    histograms
        .iter()
        .map(|h| {
            let bucket = descend(h, keep).0 as u32;
            Bracket {
                lo: bucket << 16,
                hi: (bucket << 16) | 0xffff,
            }
        })
        .collect()
}
