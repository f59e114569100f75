//! `TensorRef::value_stats` reads bit patterns; checked against the widened values.

use lora_lego::tensor::{DType, TensorRef};

#[test]
fn value_stats_on_bits_equal_counts_on_the_widened_values() {
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -2.5,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX, // rounds to infinity in BF16 and F16
        70_000.0, // infinite in F16 only
        1e-40,    // subnormal in f32, zero in F16
        -1e-45,
        f32::MIN_POSITIVE,
        3e38, // largest finite exponents: one step below infinity's
        -1e38,
        60_000.0,
    ];
    let cases: Vec<Vec<f32>> = vec![
        specials.to_vec(),
        vec![0.0, -0.0, 0.0],
        vec![-0.0; 5],
        vec![1e-40, 0.0],
        vec![65_504.0, -65_504.0],
        (0..1000).map(|i| (i as f32 - 500.0) * 0.37).collect(),
    ];
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for values in &cases {
            let t = TensorRef::from_f32(values, vec![values.len()], dtype);
            let widened = t.to_f32_vec();
            let stats = t.value_stats();
            assert_eq!(
                stats.nonfinite,
                widened.iter().filter(|v| !v.is_finite()).count(),
                "{dtype:?} {values:?}"
            );
            assert_eq!(
                stats.all_zero,
                widened.iter().all(|v| *v == 0.0),
                "{dtype:?} {values:?}"
            );
        }
    }
}

#[test]
fn bf16_widening_is_exact_for_every_bit_pattern() {
    // Every bf16 is the top half of an f32: these round-trip through BF16 unchanged.
    let values: Vec<f32> = (0..=u16::MAX)
        .map(|h| f32::from_bits(u32::from(h) << 16))
        .collect();
    let t = TensorRef::from_f32(&values, vec![values.len()], DType::BF16);
    for (h, (w, v)) in t.to_f32_vec().iter().zip(&values).enumerate() {
        match v.is_nan() {
            true => assert!(w.is_nan(), "pattern {h:#06x}"),
            false => assert_eq!(w.to_bits(), v.to_bits(), "pattern {h:#06x}"),
        }
    }
}

#[test]
fn value_stats_count_every_nonfinite_value_of_a_long_tensor() {
    // Longer than the 16-bit counters' chunks: the count must carry across them.
    let n = 200_003;
    let values: Vec<f32> = (0..n)
        .map(|i| match i % 3 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            _ => 0.0,
        })
        .collect();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let stats = TensorRef::from_f32(&values, vec![n], dtype).value_stats();
        assert_eq!(stats.nonfinite, n - n / 3, "{dtype:?}");
        assert!(!stats.all_zero);
    }
}

#[test]
fn bf16_encoding_rounds_as_half_does() {
    // A stride through every f32 bit pattern, plus the rounding boundaries of a few values.
    let mut patterns: Vec<u32> = (0..=u32::MAX).step_by(7919).collect();
    for base in [
        0x3F80_0000u32,
        0xBF80_0000,
        0x7F7F_0000,
        0x0000_0000,
        0x8001_0000,
    ] {
        for low in [0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1_7FFF, 0x1_8000, 0x1_8001] {
            patterns.push(base.wrapping_add(low));
        }
    }
    patterns.extend([
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0x7F80_0001,
        0xFFFF_FFFF,
    ]);
    let values: Vec<f32> = patterns.iter().map(|&b| f32::from_bits(b)).collect();
    let t = TensorRef::from_f32(&values, vec![values.len()], DType::BF16);
    for (c, v) in t.bytes().chunks_exact(2).zip(&values) {
        let ours = u16::from_le_bytes([c[0], c[1]]);
        assert_eq!(
            ours,
            half::bf16::from_f32(*v).to_bits(),
            "{:#010x}",
            v.to_bits()
        );
    }
}
