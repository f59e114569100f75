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
