//! Gram matrices of rank-1 units read straight from their stored BF16 bytes.
//!
//! With AVX-512 BF16, `vdpbf16ps` does 32 bf16 products into 16 f32 lanes per instruction:
//! on this project's EPYC it issues at the same rate as an f32 FMA, so twice the flops. The
//! product of two bf16 values is exact in f32, so the result keeps f32-GEMM precision, and the
//! f32 widening of the factors is skipped as well. Other CPUs widen to f32 and use [`syrk`].

use ndarray::Array2;

use super::syrk;

/// One source's factor as stored: little-endian BF16 bytes (any alignment), row-major.
#[derive(Debug, Clone, Copy)]
pub struct Bf16Part<'a> {
    /// `rows · cols` values, two bytes each.
    pub bytes: &'a [u8],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

/// Gram matrix of the rows of the parts stacked on top of each other (all with `cols = d`).
///
/// n × n f32 with n = Σ rows, both triangles filled and exactly symmetric. Inputs are treated
/// as the kernel treats them on every CPU: bf16 subnormals count as zero (`vdpbf16ps` flushes
/// them, and products below f32's normal range too; trained factors hold none in practice).
///
/// # Panics
/// If a part's byte length is not `2 · rows · cols`, or the parts' `cols` differ.
pub fn gram_bf16_rows(parts: &[Bf16Part]) -> Array2<f32> {
    gram(&Units::new(parts, Axis::Rows))
}

/// Gram matrix of the columns of the parts placed side by side (all with `rows = d`).
///
/// n × n f32 with n = Σ cols: entry (t, u) = Σ_o X\[o, t\]·X\[o, u\]; otherwise as
/// [`gram_bf16_rows`].
///
/// # Panics
/// If a part's byte length is not `2 · rows · cols`, or the parts' `rows` differ.
pub fn gram_bf16_cols(parts: &[Bf16Part]) -> Array2<f32> {
    gram(&Units::new(parts, Axis::Cols))
}

/// Whether the AVX-512 BF16 kernel runs on this CPU (otherwise: widen to f32 and [`syrk`]).
pub fn bf16_kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn gram(units: &Units) -> Array2<f32> {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: avx512f and avx512bf16 were just detected on this CPU.
        let (lower, ld) = unsafe { avx512::lower_gram(units) };
        return symmetric_from_lower(lower, ld, units.n);
    }
    widened_gram(units)
}

/// Which axis of each part runs over the units; the other one is the reduction axis `o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    Rows,
    Cols,
}

/// The parts, checked, with n (total units) and d (reduction length).
struct Units<'p, 'a> {
    parts: &'p [Bf16Part<'a>],
    axis: Axis,
    n: usize,
    d: usize,
}

impl<'p, 'a> Units<'p, 'a> {
    fn new(parts: &'p [Bf16Part<'a>], axis: Axis) -> Self {
        let count = |p: &Bf16Part| match axis {
            Axis::Rows => p.rows,
            Axis::Cols => p.cols,
        };
        let reduction = |p: &Bf16Part| match axis {
            Axis::Rows => p.cols,
            Axis::Cols => p.rows,
        };
        for p in parts {
            let len = p.rows.checked_mul(p.cols).and_then(|v| v.checked_mul(2));
            assert!(
                len == Some(p.bytes.len()),
                "a {} × {} bf16 part needs {} bytes, got {}",
                p.rows,
                p.cols,
                2 * p.rows as u128 * p.cols as u128,
                p.bytes.len()
            );
        }
        // A part without units has no say in d.
        let mut with_units = parts.iter().filter(|p| count(p) > 0);
        let d = with_units.next().map_or(0, reduction);
        assert!(
            with_units.all(|p| reduction(p) == d),
            "the parts' reduction lengths differ ({axis:?} are the units)"
        );
        Units {
            parts,
            axis,
            n: parts.iter().map(count).sum(),
            d,
        }
    }

    /// The parts with units, each with the index of its first unit.
    fn with_offsets(&self) -> impl Iterator<Item = (usize, &Bf16Part<'a>)> {
        let axis = self.axis;
        self.parts
            .iter()
            .scan(0, move |start, p| {
                let first = *start;
                *start += match axis {
                    Axis::Rows => p.rows,
                    Axis::Cols => p.cols,
                };
                Some((first, p))
            })
            .filter(|(_, p)| p.rows > 0 && p.cols > 0)
    }
}

/// The bf16 value at byte offset `2 · i` as f32 (exact), subnormals as zero like the kernel.
fn bf16_at(bytes: &[u8], i: usize) -> f32 {
    let v = f32::from_bits(u32::from(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])) << 16);
    if v.is_subnormal() {
        0.0
    } else {
        v
    }
}

/// The portable route: the units as f32 rows, then the f32 triangular product.
fn widened_gram(units: &Units) -> Array2<f32> {
    let d = units.d;
    let mut x = Array2::<f32>::zeros((units.n, d));
    for (first, p) in units.with_offsets() {
        match units.axis {
            Axis::Rows => {
                for r in 0..p.rows {
                    for o in 0..d {
                        x[[first + r, o]] = bf16_at(p.bytes, r * d + o);
                    }
                }
            }
            Axis::Cols => {
                for o in 0..d {
                    for c in 0..p.cols {
                        x[[first + c, o]] = bf16_at(p.bytes, o * p.cols + c);
                    }
                }
            }
        }
    }
    syrk(x.view())
}

/// The n × n Gram matrix from the kernel's buffer, which holds the lower triangle column-major
/// with leading dimension `ld` — read row-major, that is the upper triangle. Each value below
/// the diagonal is copied from its mirror image, so the result is exactly symmetric; done in
/// place, as a second n² buffer costs as much in page faults as the copy itself.
#[cfg(target_arch = "x86_64")]
fn symmetric_from_lower(mut buf: Vec<f32>, ld: usize, n: usize) -> Array2<f32> {
    // In 32 × 32 blocks, so the transposed reads stay within a few cache lines.
    const B: usize = 32;
    for j0 in (0..n).step_by(B) {
        for i0 in (j0..n).step_by(B) {
            for i in i0..(i0 + B).min(n) {
                for j in j0..(j0 + B).min(i) {
                    buf[i * ld + j] = buf[j * ld + i];
                }
            }
        }
    }
    if ld != n {
        // Drop the padding: row r moves down to r · n, never over a row not yet moved.
        for r in 1..n {
            buf.copy_within(r * ld..r * ld + n, r * n);
        }
    }
    buf.truncate(n * n);
    Array2::from_shape_vec((n, n), buf).expect("n · n values for an n × n matrix")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __m512bh, _mm512_add_ps, _mm512_dpbf16_ps, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_set1_epi32, _mm512_storeu_ps, _mm_prefetch, _MM_HINT_T0,
    };

    use super::{Axis, Units};

    /// Units per row panel: one pair step of a panel is two zmm of pair words.
    const PANEL: usize = 32;
    /// Columns per tile: 8 × 2 accumulators leave registers for the operands.
    const TILE_COLS: usize = 8;
    /// Pairs per k-block: a panel is then 16 KiB and stays in L1 while the column tiles pass,
    /// and a packed block of 1 600 units (800 KiB) stays in L2 for all its tiles.
    const BLOCK: usize = 128;
    /// Rows ahead that the row packing prefetches.
    const AHEAD: usize = 4;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }

    /// The lower triangle of the Gram matrix, column-major with leading dimension `ld`
    /// (n rounded up to a panel), and `ld`.
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512bf16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn lower_gram(units: &Units) -> (Vec<f32>, usize) {
        let n = units.n;
        let ld = n.div_ceil(PANEL) * PANEL;
        let pairs = units.d.div_ceil(2);
        let mut lower = vec![0.0f32; ld * ld];
        let mut packed = vec![0u32; ld * BLOCK.min(pairs)];
        for p0 in (0..pairs).step_by(BLOCK) {
            let kb = BLOCK.min(pairs - p0);
            let packed = &mut packed[..ld * kb];
            pack(units, p0, kb, packed);
            let panel_len = PANEL * kb;
            for i in 0..ld / PANEL {
                let a = &packed[i * panel_len..(i + 1) * panel_len];
                // Column tiles on and left of the diagonal block; padded columns are skipped.
                for col in (0..(i + 1) * PANEL)
                    .step_by(TILE_COLS)
                    .take_while(|&c| c < n)
                {
                    let b = &packed[(col / PANEL) * panel_len + col % PANEL..];
                    if col >= i * PANEL + PANEL / 2 {
                        // Rows 0..16 of the panel are above the diagonal here: skip them.
                        let c = &mut lower[col * ld + i * PANEL + PANEL / 2..];
                        tile::<1>(&a[PANEL / 2..], b, kb, c, ld);
                    } else {
                        tile::<2>(a, b, kb, &mut lower[col * ld + i * PANEL..], ld);
                    }
                }
            }
        }
        (lower, ld)
    }

    /// Pair words of pairs `p0 .. p0 + kb` for every unit: unit t's word for pair q at
    /// `(t / PANEL) · PANEL · kb + q · PANEL + t % PANEL`; padded units and the missing half of
    /// an odd d are zero.
    fn pack(units: &Units, p0: usize, kb: usize, out: &mut [u32]) {
        let d = units.d;
        let panel_len = PANEL * kb;
        let slot = |t: usize, q: usize| (t / PANEL) * panel_len + q * PANEL + t % PANEL;
        // The last panel may hold padded units, which must read as zero.
        let last = (units.n / PANEL) * panel_len;
        out[last..].fill(0);
        for (first, part) in units.with_offsets() {
            let bytes = part.bytes;
            match units.axis {
                Axis::Rows => {
                    // A pair word is 4 consecutive bytes of a row: low half X[t, 2p].
                    let full = (d / 2).min(p0 + kb).saturating_sub(p0);
                    for r in 0..part.rows {
                        let t = first + r;
                        let row = &bytes[2 * r * d..2 * (r + 1) * d];
                        // Rows are d apart, too far for the hardware prefetcher: fetch this
                        // block's bytes of the row a few rows ahead.
                        let ahead = 2 * (r + AHEAD) * d;
                        if let Some(next) = bytes.get(ahead + 4 * p0..ahead + 4 * (p0 + full)) {
                            for line in next.chunks(64) {
                                // SAFETY: only a cache hint, for an address inside `bytes`.
                                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
                            }
                        }
                        let words = row[4 * p0..4 * (p0 + full)].chunks_exact(4);
                        for (q, w) in words.enumerate() {
                            out[slot(t, q)] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                        }
                        if full < kb {
                            // Odd d: the last pair is X[t, d − 1] and a zero.
                            out[slot(t, full)] =
                                u32::from(u16::from_le_bytes([row[2 * d - 2], row[2 * d - 1]]));
                        }
                    }
                }
                Axis::Cols => {
                    // A pair word interleaves rows 2p and 2p + 1 of the part; a panel's words
                    // for one pair are contiguous, so copy in runs that stay within a panel.
                    let width = 2 * part.cols;
                    for q in 0..kb {
                        let o = 2 * (p0 + q);
                        let lo = &bytes[o * width..(o + 1) * width];
                        let hi = if o + 1 < d {
                            &bytes[(o + 1) * width..(o + 2) * width]
                        } else {
                            &[]
                        };
                        let mut c = 0;
                        while c < part.cols {
                            let t = first + c;
                            let run = (PANEL - t % PANEL).min(part.cols - c);
                            let dst = &mut out[slot(t, q)..slot(t, q) + run];
                            let lo = lo[2 * c..2 * (c + run)].chunks_exact(2);
                            if hi.is_empty() {
                                for (w, l) in dst.iter_mut().zip(lo) {
                                    *w = u32::from(u16::from_le_bytes([l[0], l[1]]));
                                }
                            } else {
                                let hi = hi[2 * c..2 * (c + run)].chunks_exact(2);
                                for ((w, l), h) in dst.iter_mut().zip(lo).zip(hi) {
                                    *w = u32::from_le_bytes([l[0], l[1], h[0], h[1]]);
                                }
                            }
                            c += run;
                        }
                    }
                }
            }
        }
    }

    /// Adds the (16·H) × 8 block `A_panel · B_colsᵀ` over `kb` pairs into `c` (column-major,
    /// leading dimension `ld`): `a` starts at the block's first row inside a packed panel, `b`
    /// at the tile's first column inside its packed panel.
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn tile<const H: usize>(a: &[u32], b: &[u32], kb: usize, c: &mut [f32], ld: usize) {
        assert!(kb > 0 && H > 0 && 16 * H <= PANEL);
        assert!(a.len() >= PANEL * (kb - 1) + 16 * H && b.len() >= PANEL * (kb - 1) + TILE_COLS);
        assert!(c.len() >= (TILE_COLS - 1) * ld + 16 * H);
        // At n = 1 600 the C tiles (10 MiB) live in DRAM: fetch now, add at the end.
        for j in 0..TILE_COLS {
            for h in 0..H {
                // SAFETY: in bounds as for the stores below; a prefetch never faults anyway.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(c.as_ptr().add(j * ld + 16 * h).cast()) };
            }
        }
        // Fresh accumulators per k-block, added to `c` at the end: a sum in two levels.
        // Squares of bf16 values have structured low bits whose rounding does not average
        // out, so one running f32 sum over d = 4 096 drifts by 1e-5 on the diagonal.
        let mut acc = [[zero(); H]; TILE_COLS];
        for q in 0..kb {
            let mut rows = [bh(_mm512_set1_epi32(0)); H];
            for (h, v) in rows.iter_mut().enumerate() {
                // SAFETY: q·32 + 16h + 16 ≤ 32·(kb − 1) + 16·H ≤ a.len() (asserted above);
                // loadu has no alignment need.
                *v = bh(unsafe { _mm512_loadu_si512(a.as_ptr().add(q * PANEL + 16 * h).cast()) });
            }
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: q·32 + j < 32·(kb − 1) + 8 ≤ b.len() (asserted above).
                let w = unsafe { *b.get_unchecked(q * PANEL + j) };
                let bj = bh(_mm512_set1_epi32(w as i32));
                for (acc, v) in acc.iter_mut().zip(rows) {
                    *acc = _mm512_dpbf16_ps(*acc, v, bj);
                }
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            for (h, acc) in acc.iter().enumerate() {
                // SAFETY: j·ld + 16h + 16 ≤ 7·ld + 16·H ≤ c.len() (asserted above); no
                // alignment needed.
                unsafe {
                    let p = c.as_mut_ptr().add(j * ld + 16 * h);
                    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), *acc));
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    fn zero() -> __m512 {
        std::arch::x86_64::_mm512_setzero_ps()
    }

    /// 16 pair words seen as 32 bf16 lanes (element 2i is the word's low half).
    #[target_feature(enable = "avx512f")]
    fn bh(v: std::arch::x86_64::__m512i) -> __m512bh {
        // SAFETY: both are 512-bit plain vectors; every bit pattern is a valid value of each.
        unsafe { std::mem::transmute(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rows × cols bf16 matrix (row-major bits) from a small LCG: uniform in [−1, 1), or
    /// with exponents spread over 2^±30 when `wide` (products stay clear of f32 subnormals).
    fn sample(rows: usize, cols: usize, seed: u64, wide: bool) -> Vec<u16> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (rows * 1_000_003 + cols) as u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        (0..rows * cols)
            .map(|_| {
                let r = next();
                if wide {
                    let sign = (r & 1) << 15;
                    let exponent = 127 - 30 + (r >> 1) % 61;
                    (sign | exponent << 7 | (r >> 8) & 0x7F) as u16
                } else {
                    // Truncating the f32 keeps |v| < 1.
                    let v = (r >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
                    (v.to_bits() >> 16) as u16
                }
            })
            .collect()
    }

    fn value(h: u16) -> f64 {
        f64::from(f32::from_bits(u32::from(h) << 16))
    }

    /// Little-endian bytes behind `offset` junk bytes, so the slice can start at an odd address.
    fn stored(bits: &[u16], offset: usize) -> Vec<u8> {
        let mut v = vec![0xA5u8; offset];
        v.extend(bits.iter().flat_map(|h| h.to_le_bytes()));
        v
    }

    fn transpose(bits: &[u16], rows: usize, cols: usize) -> Vec<u16> {
        (0..cols * rows)
            .map(|i| bits[(i % rows) * cols + i / rows])
            .collect()
    }

    /// Checks `g` against the exact Gram of `units` (each a list of bf16 bits) and returns the
    /// largest error relative to Σ_o |x_o y_o|.
    fn check(g: &Array2<f32>, units: &[Vec<u16>], what: &str) -> f64 {
        let n = units.len();
        assert_eq!(g.dim(), (n, n), "{what}");
        let x: Vec<Vec<f64>> = units
            .iter()
            .map(|u| u.iter().map(|&h| value(h)).collect())
            .collect();
        let mut worst = 0.0f64;
        for i in 0..n {
            for j in 0..n {
                assert_eq!(g[[i, j]].to_bits(), g[[j, i]].to_bits(), "{what}: symmetry");
                let exact: f64 = x[i].iter().zip(&x[j]).map(|(a, b)| a * b).sum();
                let scale: f64 = x[i].iter().zip(&x[j]).map(|(a, b)| (a * b).abs()).sum();
                let err = (f64::from(g[[i, j]]) - exact).abs();
                assert!(
                    err <= 1e-5 * scale + 1e-30,
                    "{what}: ({i}, {j}) = {} vs {exact}",
                    g[[i, j]]
                );
                if scale > 0.0 {
                    worst = worst.max(err / scale);
                }
            }
        }
        worst
    }

    /// Every route on the parts `rows_i × d`, as rows and (transposed) as columns.
    /// Returns the largest relative errors of the default route and of the fallback.
    fn every_route(sizes: &[usize], d: usize, wide: bool) -> [f64; 2] {
        let mats: Vec<Vec<u16>> = (0..sizes.len())
            .map(|k| sample(sizes[k], d, k as u64 + 1, wide))
            .collect();
        let units: Vec<Vec<u16>> = mats
            .iter()
            .zip(sizes)
            .flat_map(|(m, &r)| (0..r).map(move |i| m[i * d..(i + 1) * d].to_vec()))
            .collect();
        // Odd offsets for odd parts: the kernel must not care about alignment.
        let row_bytes: Vec<Vec<u8>> = mats
            .iter()
            .enumerate()
            .map(|(k, m)| stored(m, k % 2 + 1))
            .collect();
        let col_bytes: Vec<Vec<u8>> = mats
            .iter()
            .zip(sizes)
            .enumerate()
            .map(|(k, (m, &r))| stored(&transpose(m, r, d), k % 2))
            .collect();
        let row_parts: Vec<Bf16Part> = row_bytes
            .iter()
            .zip(sizes)
            .enumerate()
            .map(|(k, (b, &rows))| Bf16Part {
                bytes: &b[k % 2 + 1..],
                rows,
                cols: d,
            })
            .collect();
        let col_parts: Vec<Bf16Part> = col_bytes
            .iter()
            .zip(sizes)
            .enumerate()
            .map(|(k, (b, &cols))| Bf16Part {
                bytes: &b[k % 2..],
                rows: d,
                cols,
            })
            .collect();
        let what = format!("sizes {sizes:?}, d = {d}, wide = {wide}");
        let by_rows = gram_bf16_rows(&row_parts);
        let by_cols = gram_bf16_cols(&col_parts);
        // The same pair words reach the same kernel: bit for bit the same.
        assert_eq!(by_rows, by_cols, "{what}: rows vs cols");
        let slow_rows = widened_gram(&Units::new(&row_parts, Axis::Rows));
        let slow_cols = widened_gram(&Units::new(&col_parts, Axis::Cols));
        assert_eq!(slow_rows, slow_cols, "{what}: fallback rows vs cols");
        [
            check(&by_rows, &units, &format!("{what}, default route")),
            check(&slow_rows, &units, &format!("{what}, fallback")),
        ]
    }

    fn worst(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
        [a[0].max(b[0]), a[1].max(b[1])]
    }

    #[test]
    fn matches_the_exact_gram_on_single_parts() {
        println!("AVX-512 BF16 kernel available: {}", bf16_kernel_available());
        let mut most = [0.0; 2];
        for (n, d) in [
            (0, 5),
            (3, 0),
            (1, 1),
            (1, 3),
            (31, 7),
            (32, 64),
            (33, 65),
            (70, 129),
            (45, 515),
            (128, 4096),
        ] {
            most = worst(most, every_route(&[n], d, false));
        }
        println!(
            "largest error / Σ|x y| (default route, fallback): {:e}, {:e}",
            most[0], most[1]
        );
    }

    #[test]
    fn matches_the_exact_gram_with_wide_magnitudes() {
        let mut most = [0.0; 2];
        for (n, d) in [(1, 2), (33, 65), (40, 301)] {
            most = worst(most, every_route(&[n], d, true));
        }
        println!(
            "largest error / Σ|x y|, wide magnitudes (default route, fallback): {:e}, {:e}",
            most[0], most[1]
        );
    }

    #[test]
    fn stacks_parts_of_unequal_sizes() {
        every_route(&[16, 0, 5, 33, 1], 300, false);
        every_route(&[3, 40], 1, false);
        every_route(&[0, 0], 7, false);
        every_route(&[], 7, false);
    }

    #[test]
    fn subnormal_inputs_count_as_zero_on_every_route() {
        // 0x0001 and 0x8040 are subnormal; against 2^60 (0x5D80) they would give G(0, 1)
        // ≈ 1e-22, far above the check's slack, unless they count as zero.
        let bits: Vec<u16> = vec![0x3F80, 0x0001, 0x8040, 0x4000, 0, 0x5D80, 0x5D80, 0];
        let flushed: Vec<u16> = bits
            .iter()
            .map(|&h| if h & 0x7F80 == 0 { 0 } else { h })
            .collect();
        let bytes = stored(&bits, 0);
        let parts = [Bf16Part {
            bytes: &bytes,
            rows: 2,
            cols: 4,
        }];
        let units = [flushed[..4].to_vec(), flushed[4..].to_vec()];
        check(&gram_bf16_rows(&parts), &units, "default route");
        check(
            &widened_gram(&Units::new(&parts, Axis::Rows)),
            &units,
            "fallback",
        );
    }

    #[test]
    fn zero_unit_parts_may_have_any_reduction_length() {
        let bits = sample(4, 6, 9, false);
        let bytes = stored(&bits, 0);
        let parts = [
            Bf16Part {
                bytes: &[],
                rows: 0,
                cols: 11,
            },
            Bf16Part {
                bytes: &bytes,
                rows: 4,
                cols: 6,
            },
        ];
        assert_eq!(gram_bf16_rows(&parts), gram_bf16_rows(&parts[1..]));
    }

    #[test]
    #[should_panic(expected = "needs 24 bytes")]
    fn a_short_byte_slice_is_refused() {
        let bytes = [0u8; 23];
        gram_bf16_rows(&[Bf16Part {
            bytes: &bytes,
            rows: 3,
            cols: 4,
        }]);
    }

    #[test]
    #[should_panic(expected = "reduction lengths differ")]
    fn parts_of_different_widths_are_refused() {
        let (a, b) = ([0u8; 8], [0u8; 10]);
        gram_bf16_rows(&[
            Bf16Part {
                bytes: &a,
                rows: 1,
                cols: 4,
            },
            Bf16Part {
                bytes: &b,
                rows: 1,
                cols: 5,
            },
        ]);
    }
}
