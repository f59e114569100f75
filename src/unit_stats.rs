//! Per-unit content hashes and max-abs read straight from the stored factors, through small
//! widened blocks: what [`RawUnits`](crate::msu::RawUnits) gives, without its n × d pools
//! (allocating, faulting in and transposing those cost more than the Gram product's input).

use crate::align::{AlignedModule, ModuleSet};
use crate::msu::{hash_end_part, hash_mix, HASH_SEED};
use crate::tensor::{DType, TensorRef};

/// Rows of B widened at a time (an even number, so hash pairs never straddle two blocks).
const B_BLOCK_ROWS: usize = 64;

/// What the canonical order and L∞ reweighting need of every raw unit, in raw order.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitStats {
    /// [`unit_hash`](crate::msu::unit_hash) of each unit.
    pub hash: Vec<u64>,
    /// Max-abs of each unit's a half (NaN ignored).
    pub a_max: Vec<f32>,
    /// Max-abs of each unit's b half (NaN ignored).
    pub b_max: Vec<f32>,
}

/// `max(acc, |v|)` on the bit patterns, NaN ignored as `f32::max` ignores it.
#[inline(always)]
fn max_bits(acc: u32, v: f32) -> u32 {
    let b = v.to_bits() & 0x7FFF_FFFF;
    acc.max(if b > 0x7F80_0000 { 0 } else { b })
}

/// The units of `module` (every source's ranks, in source order).
pub fn unit_stats(set: &ModuleSet, module: &AlignedModule) -> UnitStats {
    let n: usize = module.sources.iter().map(|s| set.source(*s).rank).sum();
    let mut out = UnitStats {
        hash: Vec::with_capacity(n),
        a_max: Vec::with_capacity(n),
        b_max: Vec::with_capacity(n),
    };
    let mut buf = Vec::new();
    for s in &module.sources {
        let m = set.source(*s);
        let (r, d_in, d_out) = (m.rank, module.d_in, module.d_out);
        let mut h = match bf16_words(&m.a, r * d_in) {
            Some(w) => a_part_bf16(w, r, d_in, &mut out.a_max),
            None => a_part(&m.a, r, d_in, &mut buf, &mut out.a_max),
        };
        match bf16_words(&m.b, r * d_out) {
            Some(w) => b_part_bf16(w, r, d_out, &mut h, &mut out.b_max),
            None => b_part(&m.b, r, d_out, &mut buf, &mut h, &mut out.b_max),
        }
        out.hash.extend(h);
    }
    out
}

/// The `len` values of a BF16 tensor as bit patterns, when its bytes are aligned (they are in
/// files we map: safetensors pads its header to 8 bytes). Reading them as such skips widening:
/// a bf16's f32 bits are its own shifted up by 16.
fn bf16_words(t: &TensorRef, len: usize) -> Option<&[u16]> {
    if t.dtype() != DType::BF16 {
        return None;
    }
    #[cfg(target_endian = "little")]
    {
        // SAFETY: every bit pattern is a valid u16, and align_to only hands out the aligned
        // middle part.
        let (pre, mid, post) = unsafe { t.bytes().align_to::<u16>() };
        if pre.is_empty() && post.is_empty() && mid.len() == len {
            return Some(mid);
        }
    }
    None
}

/// The f32 bits of a bf16.
#[inline(always)]
fn bits(w: u16) -> u32 {
    u32::from(w) << 16
}

/// [`max_bits`] on a bf16's bits.
#[inline(always)]
fn max_half(acc: u16, w: u16) -> u16 {
    let m = w & 0x7FFF;
    acc.max(if m > 0x7F80 { 0 } else { m })
}

/// [`a_part`] on BF16 bit patterns, eight rows' chains at a time.
fn a_part_bf16(w: &[u16], rank: usize, d: usize, max: &mut Vec<f32>) -> Vec<u64> {
    const L: usize = 8;
    if d == 0 {
        max.extend(std::iter::repeat_n(0.0, rank));
        return vec![hash_end_part(HASH_SEED, 0); rank];
    }
    crate::simd::wide(|| {
        for row in w.chunks_exact(d) {
            max.push(f32::from_bits(bits(
                row.iter().fold(0, |acc, &v| max_half(acc, v)),
            )));
        }
    });
    let mut states = Vec::with_capacity(rank);
    for block in w.chunks(L * d) {
        hash_rows::<u16, L>(block, d, bits, &mut states);
    }
    states
}

/// [`b_part`] on BF16 bit patterns.
fn b_part_bf16(w: &[u16], rank: usize, d: usize, h: &mut [u64], max: &mut Vec<f32>) {
    let mut acc = vec![0u16; rank];
    if rank > 0 {
        crate::simd::wide(|| {
            for row in w.chunks_exact(rank) {
                for (m, &v) in acc.iter_mut().zip(row) {
                    *m = max_half(*m, v);
                }
            }
        });
        hash_cols(w, rank, bits, h);
    }
    for hu in h.iter_mut() {
        *hu = hash_end_part(*hu, d);
    }
    max.extend(acc.into_iter().map(|m| f32::from_bits(bits(m))));
}

/// Hash states after the a halves (rows of the `rank × d` tensor `a`); pushes their max-abs.
fn a_part(
    a: &TensorRef,
    rank: usize,
    d: usize,
    buf: &mut Vec<f32>,
    max: &mut Vec<f32>,
) -> Vec<u64> {
    if d == 0 {
        max.extend(std::iter::repeat_n(0.0, rank));
        return vec![hash_end_part(HASH_SEED, 0); rank];
    }
    let mut states = Vec::with_capacity(rank);
    buf.resize(4 * d, 0.0);
    for r0 in (0..rank).step_by(4) {
        let rows = 4.min(rank - r0);
        let block = &mut buf[..rows * d];
        a.write_f32_range(r0 * d, block);
        crate::simd::wide(|| {
            for row in block.chunks_exact(d) {
                max.push(f32::from_bits(
                    row.iter().fold(0, |acc, &v| max_bits(acc, v)),
                ));
            }
        });
        hash_rows::<f32, 4>(block, d, f32::to_bits, &mut states);
    }
    states
}

/// Finishes the hash states with the b halves (columns of the `d × rank` tensor `b`, read in
/// row blocks: the columns' chains advance side by side); pushes their max-abs.
fn b_part(
    b: &TensorRef,
    rank: usize,
    d: usize,
    buf: &mut Vec<f32>,
    h: &mut [u64],
    max: &mut Vec<f32>,
) {
    let mut acc = vec![0u32; rank];
    buf.resize(B_BLOCK_ROWS * rank, 0.0);
    for o0 in (0..d).step_by(B_BLOCK_ROWS) {
        let rows = B_BLOCK_ROWS.min(d - o0);
        let block = &mut buf[..rows * rank];
        b.write_f32_range(o0 * rank, block);
        crate::simd::wide(|| {
            for row in block.chunks_exact(rank.max(1)) {
                for (m, &v) in acc.iter_mut().zip(row) {
                    *m = max_bits(*m, v);
                }
            }
        });
        // Only the last block can have an odd height (B_BLOCK_ROWS is even).
        hash_cols(block, rank.max(1), f32::to_bits, h);
    }
    for hu in h.iter_mut() {
        *hu = hash_end_part(*hu, d);
    }
    max.extend(acc.into_iter().map(f32::from_bits));
}

/// Finishes the a-half hash states of the rows of `block` (at most `L` rows of `d` values,
/// row-major), their chains interleaved so each multiply's latency is hidden; `bits` gives a
/// value's f32 bit pattern.
#[inline(always)]
fn hash_rows<T: Copy, const L: usize>(
    block: &[T],
    d: usize,
    bits: impl Fn(T) -> u32,
    states: &mut Vec<u64>,
) {
    let rows = block.len() / d;
    let mut h = [HASH_SEED; L];
    for p in 0..d / 2 {
        for (l, hl) in h.iter_mut().enumerate().take(rows) {
            let (x, y) = (block[l * d + 2 * p], block[l * d + 2 * p + 1]);
            *hl = hash_mix(*hl, u64::from(bits(x)) | (u64::from(bits(y)) << 32));
        }
    }
    for (l, hl) in h.iter_mut().enumerate().take(rows) {
        if d % 2 == 1 {
            *hl = hash_mix(*hl, u64::from(bits(block[l * d + d - 1])));
        }
        states.push(hash_end_part(*hl, d));
    }
}

/// Advances the chains `h` (one per column) by the rows of `block` (`rank` wide, row-major),
/// two rows to a word; an odd last row mixes in alone (the end of the column).
#[inline(always)]
fn hash_cols<T: Copy>(block: &[T], rank: usize, bits: impl Fn(T) -> u32, h: &mut [u64]) {
    let pairs = block.chunks_exact(2 * rank);
    let last = pairs.remainder();
    for pair in pairs {
        let (x, y) = pair.split_at(rank);
        for ((hu, &xu), &yu) in h.iter_mut().zip(x).zip(y) {
            *hu = hash_mix(*hu, u64::from(bits(xu)) | (u64::from(bits(yu)) << 32));
        }
    }
    for (hu, &v) in h.iter_mut().zip(last) {
        *hu = hash_mix(*hu, u64::from(bits(v)));
    }
}
