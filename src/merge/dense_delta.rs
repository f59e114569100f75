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
use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
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
    let mut scratch = Scratch::default();
    let dim = combine_dispatch(sources, prune, mix, sample_size, &mut scratch);
    Array2::from_shape_vec(dim, scratch.dense).unwrap_or_else(|_| Array2::zeros(dim))
}

/// Buffers that one thread's dense merges reuse from module to module.
///
/// Why: a fresh `d_out × d_in` matrix per module (180 MB for a 7B MLP projection) is mapped
/// fresh by the allocator and page-faulted in, zeroed by the kernel, every time; that was a
/// tenth of a ties_svd merge. The cost is that each thread keeps its largest module's buffers
/// until it exits.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The combination, row-major (only the first `d_out·d_in` entries are the current one).
    dense: Vec<f32>,
    /// One product panel per source.
    panels: Vec<Vec<f32>>,
    /// Per source, the entries inside its threshold bracket.
    inside: Vec<Vec<(u32, usize)>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Calls `f` with [`combine`]'s result (as `(d_out, d_in)` and row-major entries), formed in
/// this thread's reused [`Scratch`].
pub(crate) fn with_combined<R>(
    sources: &[SourceFactors],
    prune: Prune,
    mix: Mix,
    f: impl FnOnce((usize, usize), &[f32]) -> R,
) -> R {
    // Taken out, not borrowed: `f` may itself merge on this thread.
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let dim = combine_dispatch(sources, prune, mix, SAMPLE_SIZE, &mut scratch);
    let result = f(dim, &scratch.dense[..dim.0 * dim.1]);
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
    result
}

/// [`combine_panels`] on AVX2 when the CPU has it.
fn combine_dispatch(
    sources: &[SourceFactors],
    prune: Prune,
    mix: Mix,
    sample_size: usize,
    scratch: &mut Scratch,
) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { combine_avx2(sources, prune, mix, sample_size, scratch) };
        }
    }
    combine_panels(sources, prune, mix, sample_size, scratch)
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
    scratch: &mut Scratch,
) -> (usize, usize) {
    combine_panels(sources, prune, mix, sample_size, scratch)
}

/// Resizes `buffer` to `len` entries, keeping old contents (callers overwrite them all).
fn fit(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        // Cleared first so that growing copies nothing.
        buffer.clear();
        buffer.resize(len, 0.0);
    } else {
        buffer.truncate(len);
    }
}

/// Forms the combination into `scratch.dense`; returns its `(d_out, d_in)`.
#[inline(always)]
fn combine_panels(
    sources: &[SourceFactors],
    prune: Prune,
    mix: Mix,
    sample_size: usize,
    scratch: &mut Scratch,
) -> (usize, usize) {
    let Some(first) = sources.first() else {
        scratch.dense.clear();
        return (0, 0);
    };
    let (d_out, d_in) = (first.b.nrows(), first.a.ncols());
    // Every entry is overwritten below (both mixes write their whole output).
    fit(&mut scratch.dense, d_out * d_in);
    if d_out == 0 || d_in == 0 {
        return (d_out, d_in);
    }
    let panels = Panels::new(d_out, d_in);
    scratch.panels.resize_with(sources.len(), Vec::new);
    for buffer in &mut scratch.panels {
        fit(buffer, panels.rows * d_in);
    }
    let cuts: Vec<Cut> = match prune {
        Prune::Magnitude(density) => {
            magnitude_cuts(sources, &panels, density, sample_size, scratch)
        }
        _ => vec![Cut::All; sources.len()],
    };
    let mut rngs: Vec<Xoshiro256PlusPlus> = match prune {
        Prune::Random { seed, .. } => (0..sources.len() as u64)
            .map(|j| stream_rng(seed, j))
            .collect(),
        _ => Vec::new(),
    };
    let weights: Vec<f32> = sources.iter().map(|s| s.weight).collect();
    let buffers = &mut scratch.panels;
    let out_values = &mut scratch.dense[..];
    for (rows, out_panel) in panels.iter().zip(out_values.chunks_mut(panels.rows * d_in)) {
        let base = rows.start * d_in;
        for (j, (source, buffer)) in sources.iter().zip(buffers.iter_mut()).enumerate() {
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
    (d_out, d_in)
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
    scratch: &mut Scratch,
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
        let counts = count_pass(sources, panels, &brackets, scratch);
        for (j, count) in counts.into_iter().enumerate() {
            if let Some(mut count) = count {
                cuts[j] = select_cut(&mut count, keep);
                brackets[j] = None;
                // The list's memory is kept for the next pass or module.
                scratch.inside.push(count.inside);
            }
        }
        let missed: Vec<usize> = (0..sources.len()).filter(|&j| cuts[j].is_none()).collect();
        if missed.is_empty() {
            break;
        }
        let wider: Vec<Bracket> = match attempt {
            0 => histogram_brackets(sources, panels, &missed, keep, &mut scratch.panels[0]),
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
    let (d_out, d_in, r) = (source.b.nrows(), source.a.ncols(), source.a.nrows());
    // Why transposed and contiguous: sampled columns of A are strided by d_in, and reading
    // them (and ndarray's strided row iterators) cost more than the whole sample's arithmetic.
    let a_t = source.a.t().as_standard_layout().into_owned();
    let b = source.b.as_standard_layout();
    let (Some(a_t), Some(b)) = (a_t.as_slice(), b.as_slice()) else {
        return Bracket {
            lo: 0,
            hi: u32::MAX,
        };
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SAMPLE_SEED);
    // Samplers built once: `gen_range` redoes its rejection-zone setup (a division) per draw.
    let (rows, cols) = (Uniform::new(0, d_out), Uniform::new(0, d_in));
    let mut sample: Vec<u32> = (0..size)
        .map(|_| {
            // Row and column drawn apart: uniform over entries, without a division.
            let (row, col) = (rows.sample(&mut rng), cols.sample(&mut rng));
            let v = dot(&b[row * r..(row + 1) * r], &a_t[col * r..(col + 1) * r]);
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

/// `x·y` in eight interleaved sums, so it vectorises (the order is free here, see above).
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (xs, ys) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xs.zip(ys) {
        for i in 0..LANES {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Counts every source that has a bracket (the others get `None`) in one pass over the panels.
#[inline(always)]
fn count_pass(
    sources: &[SourceFactors],
    panels: &Panels,
    brackets: &[Option<Bracket>],
    scratch: &mut Scratch,
) -> Vec<Option<Count>> {
    let mut counts: Vec<Option<Count>> = brackets
        .iter()
        .map(|b| {
            b.map(|_| {
                let mut inside = scratch.inside.pop().unwrap_or_default();
                inside.clear();
                Count { above: 0, inside }
            })
        })
        .collect();
    let panel = &mut scratch.panels[0];
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
    // Magnitude bits never exceed i32::MAX (NaN's included), so clamping changes no answer.
    let bracket = (
        lo.min(i32::MAX as u32) as i32,
        hi.min(i32::MAX as u32) as i32,
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { count_block_avx2(values, scale, base, bracket, inside) };
        }
    }
    count_block_portable(values, scale, base, bracket, inside)
}

/// [`count_block`] in plain Rust.
#[inline(always)]
fn count_block_portable(
    values: &[f32],
    scale: f32,
    base: usize,
    (lo, hi): (i32, i32),
    inside: &mut Vec<(u32, usize)>,
) -> usize {
    // Why blocks of 16 with a branch-free test and a hit mask: about 1 % of entries fall
    // inside, so the test vectorises and the scalar work is per hit, not per entry.
    const BLOCK: usize = 16;
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

/// [`count_block`] with AVX2 intrinsics. Why: LLVM built the portable version's hit mask by
/// shifts and a horizontal OR per block, which cost more than the test; `movemask` is one
/// instruction, and the counts above stay in vector lanes until the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn count_block_avx2(
    values: &[f32],
    scale: f32,
    base: usize,
    (lo, hi): (i32, i32),
    inside: &mut Vec<(u32, usize)>,
) -> usize {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    let scale_v = _mm256_set1_ps(scale);
    let magnitude = _mm256_set1_epi32(0x7fff_ffff);
    let hi_v = _mm256_set1_epi32(hi);
    // `m ≥ lo` as `m > lo − 1`: AVX2 has only the strict signed compare (lo ≥ 0, no overflow).
    let below_lo = _mm256_set1_epi32(lo - 1);
    // Why groups: a push can call the allocator, and with a call in the loop the counts
    // were spilled to the stack every block; masks are collected call-free, then visited.
    const GROUP: usize = 64;
    let mut up = _mm256_setzero_si256();
    let mut masks = [0u8; GROUP];
    let groups = values.chunks_exact(LANES * GROUP);
    let rest = groups.remainder();
    for (g, group) in groups.enumerate() {
        for (mask, block) in masks.iter_mut().zip(group.chunks_exact(LANES)) {
            // SAFETY: `block` holds exactly LANES f32s; the load is unaligned.
            let v = unsafe { _mm256_loadu_ps(block.as_ptr()) };
            let m = _mm256_and_si256(_mm256_castps_si256(_mm256_mul_ps(v, scale_v)), magnitude);
            let over = _mm256_cmpgt_epi32(m, hi_v);
            // Lanes of `over` are −1 where true.
            up = _mm256_sub_epi32(up, over);
            let within = _mm256_andnot_si256(over, _mm256_cmpgt_epi32(m, below_lo));
            *mask = _mm256_movemask_ps(_mm256_castsi256_ps(within)) as u8;
        }
        let group_base = g * LANES * GROUP;
        // Eight masks read as one word: bit p of word w is entry 64·w + p of the group.
        for (w, bytes) in masks.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            let mut hits = u64::from_le_bytes(word);
            while hits != 0 {
                let i = w * 64 + hits.trailing_zeros() as usize;
                hits &= hits - 1;
                let m = signed_bits(group[i] * scale) as u32;
                inside.push((m, base + group_base + i));
            }
        }
    }
    let tail = rest;
    let mut lanes = [0i32; LANES];
    // SAFETY: `lanes` holds exactly LANES i32s; the store is unaligned.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), up) };
    let tail_base = base + values.len() - tail.len();
    let tail_above = count_block_portable(tail, scale, tail_base, (lo, hi), inside);
    lanes.iter().map(|&c| c as usize).sum::<usize>() + tail_above
}

/// The cut keeping the `keep` largest entries, or `None` when the bracket missed it.
fn select_cut(count: &mut Count, keep: usize) -> Option<Cut> {
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
    panel: &mut [f32],
) -> Vec<Bracket> {
    let mut histograms = vec![vec![0usize; 1 << 16]; missed.len()];
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn count_block_counts_above_and_lists_inside() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        // Not a multiple of the block sizes: the tails count too.
        let values: Vec<f32> = (0..1003).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let brackets = [
            (magnitude_bits(0.5), magnitude_bits(0.9)),
            (0, magnitude_bits(0.3)),
            (magnitude_bits(1.2), u32::MAX),
        ];
        for (lo, hi) in brackets {
            let mut inside = Vec::new();
            let above = count_block(&values, 1.5, 7, (lo, hi), &mut inside);
            let clamped = (
                lo.min(i32::MAX as u32) as i32,
                hi.min(i32::MAX as u32) as i32,
            );
            let mut portable = Vec::new();
            let portable_above = count_block_portable(&values, 1.5, 7, clamped, &mut portable);
            assert_eq!((portable_above, &portable), (above, &inside));
            let mut expected = Vec::new();
            let mut expected_above = 0;
            for (i, &v) in values.iter().enumerate() {
                let m = magnitude_bits(v * 1.5);
                expected_above += usize::from(m > hi);
                if (lo..=hi).contains(&m) {
                    expected.push((m, 7 + i));
                }
            }
            assert_eq!(above, expected_above);
            assert_eq!(inside, expected);
        }
    }
}
