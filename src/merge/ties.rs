//! TIES-merging of same-shape arrays (Yadav et al., NeurIPS 2023, arXiv 2306.01708): trim each
//! task to its largest entries, elect a sign per coordinate, average the agreeing entries.
//! The building block of core TIES and KnOTS (methods.md §2.1).

use ndarray::{Array2, ArrayView2};

/// `λ · disjoint_mean(elect(trim(x_j, keep)))` over the tasks `xs` (all of one shape).
pub fn ties(xs: &[ArrayView2<f64>], keep: f64, lambda: f64) -> Array2<f64> {
    let Some(first) = xs.first() else {
        return Array2::zeros((0, 0));
    };
    let shape = first.dim();
    let trimmed: Vec<Vec<f64>> = xs
        .iter()
        .map(|x| trim(x.iter().copied().collect(), keep))
        .collect();
    let len = shape.0 * shape.1;
    let mut gamma: Vec<f64> = (0..len)
        .map(|d| sign(trimmed.iter().map(|t| t[d]).sum()))
        .collect();
    // The global majority fills coordinates whose sum is exactly zero, computed before filling.
    let majority = sign(gamma.iter().sum());
    gamma
        .iter_mut()
        .filter(|g| **g == 0.0)
        .for_each(|g| *g = majority);
    let out: Vec<f64> = (0..len)
        .map(|d| {
            let positive = gamma[d] > 0.0;
            let (sum, count) = trimmed
                .iter()
                .map(|t| t[d])
                .filter(|&v| if positive { v > 0.0 } else { v < 0.0 })
                .fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
            lambda * sum / count.max(1) as f64
        })
        .collect();
    Array2::from_shape_vec(shape, out).unwrap_or_else(|_| Array2::zeros(shape))
}

/// Keeps the entries with |x| at least the q-th smallest |x|, q = D − ⌊D·keep⌋ (≥ 1); ties at
/// the threshold are all kept.
fn trim(mut values: Vec<f64>, keep: f64) -> Vec<f64> {
    if keep >= 1.0 || values.is_empty() {
        return values;
    }
    let d = values.len();
    let q = (d - ((d as f64) * keep).floor() as usize).max(1);
    let mut mags: Vec<f64> = values.iter().map(|v| v.abs()).collect();
    let (_, threshold, _) = mags.select_nth_unstable_by(q - 1, f64::total_cmp);
    let threshold = *threshold;
    values
        .iter_mut()
        .filter(|v| v.abs() < threshold)
        .for_each(|v| *v = 0.0);
    values
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn hand_computed_case() {
        // Task 1 keeps |x| ≥ its 2nd smallest of 4 (keep 0.5 → q = 2): [3, 0, -2, 0] (1 < 2).
        // Task 2: [-1, 4, 0, -5] trimmed at its 2nd smallest |x| = 1... q = 2 → threshold 1.
        let x1 = array![[3.0, 1.0, -2.0, 0.5]];
        let x2 = array![[-1.0, 4.0, 0.0, -5.0]];
        let out = ties(&[x1.view(), x2.view()], 0.5, 2.0);
        // x1 trimmed: |.| = [3,1,2,.5], q = 2 → t = 1 → [3, 1, -2, 0].
        // x2 trimmed: |.| = [1,4,0,5], 2nd smallest = 1 → [-1, 4, 0, -5].
        // sums: [2, 5, -2, -5] → γ = [+, +, -, -].
        // selected: d0 {3} → 3; d1 {1, 4} → 2.5; d2 {-2} → -2; d3 {-5} → -5; × λ = 2.
        assert_eq!(out, array![[6.0, 5.0, -4.0, -10.0]]);
    }

    #[test]
    fn zero_sum_coordinates_take_the_global_majority() {
        let x1 = array![[1.0, 2.0, 3.0]];
        let x2 = array![[-1.0, 1.0, 1.0]];
        // γ = [0, +, +] → majority + fills d0: the positive entry 1.0 alone.
        let out = ties(&[x1.view(), x2.view()], 1.0, 1.0);
        assert_eq!(out, array![[1.0, 1.5, 2.0]]);
    }
}
