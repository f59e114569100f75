//! The randomized truncated SVD that large dense `*_svd` merges take, against an independent
//! exact SVD (one-sided Jacobi) on the PEFT golden's combined matrices and on pruned sums.

use crate::peft_reference::{golden_inputs, jacobi_svd, manifest, module_sources};
use lora_lego::merge::baselines::{
    dense_combination, prune_magnitude, BaselineMethod, BaselineParams, MajoritySign,
};
use lora_lego::merge::lowrank_svd::{randomized_svd_truncate, TruncatedSvd, POWER_ITERATIONS};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Compares the randomized route on `m` with the exact SVD: the top-`rank` singular values
/// (relative to σ₁) and the rank-`rank` reconstruction error (relative to the optimum's).
/// Returns `(max σ error, excess reconstruction error)`.
fn against_exact(m: &Array2<f32>, rank: usize, power: usize) -> (f64, f64) {
    let ours: TruncatedSvd =
        randomized_svd_truncate(m.view(), rank, power, None).expect("randomized");
    let m64 = m.mapv(f64::from);
    let (sigma, best) = jacobi_svd(&m64, rank);
    let sigma_err = (0..rank)
        .map(|i| (ours.singular_values[i] - sigma[i]).abs() / sigma[0])
        .fold(0.0, f64::max);
    let ours_delta = ours.u_s.mapv(f64::from).dot(&ours.vt.mapv(f64::from));
    let fro = |x: &Array2<f64>| x.iter().map(|v| v * v).sum::<f64>().sqrt();
    let optimum = fro(&(&m64 - &best));
    let achieved = fro(&(&m64 - &ours_delta));
    (sigma_err, (achieved - optimum) / fro(&m64))
}

#[test]
fn randomized_route_equals_exact_on_the_ties_svd_golden() {
    let spec = &manifest()["goldens"]["ties_svd"];
    let (inputs, weights) = golden_inputs(spec);
    let peft = &spec["peft_parameters"];
    let rank = peft["svd_rank"].as_u64().expect("svd_rank") as usize;
    let params = BaselineParams {
        svd_rank: Some(rank),
        svd_clamp: None,
        density: peft["density"].as_f64().expect("density"),
        majority_sign: MajoritySign::Total,
        seed: 0,
    };
    let modules: Vec<&String> = inputs[0].modules.keys().collect();
    assert!(!modules.is_empty());
    let mut worst_bare = 0.0f64;
    for module in modules {
        let sources = module_sources(&inputs, &weights, module);
        let combined = dense_combination(BaselineMethod::TiesSvd, &sources, &params);
        // The route must really truncate here: fewer vectors than the matrix's smaller side.
        assert!(
            combined.nrows().min(combined.ncols()) > 2 * rank,
            "{module}: too small"
        );
        let (sigma_err, excess) = against_exact(&combined, rank, POWER_ITERATIONS);
        println!("{module}: σ error {sigma_err:.2e}, reconstruction excess {excess:.2e}");
        // PEFT's goldens are checked to 1e-4 (relative Frobenius) for the SVD methods.
        assert!(sigma_err < 1e-4, "{module}: σ error {sigma_err:e}");
        assert!(excess < 1e-4, "{module}: reconstruction excess {excess:e}");
        // The check has teeth: the bare range finder (no power iteration) fails it.
        let (bare_sigma, bare_excess) = against_exact(&combined, rank, 0);
        worst_bare = worst_bare.max(bare_sigma.max(bare_excess));
    }
    assert!(
        worst_bare > 1e-4,
        "no power iteration: worst error {worst_bare:e}"
    );
}

#[test]
fn randomized_route_is_near_optimal_on_a_pruned_sum_with_a_flat_tail() {
    // What TIES does to 7B modules, in small: a sum of pruned low-rank deltas has a few large
    // directions over a flat, full-rank tail — the case where iterating to convergence stalled.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(15);
    let (d_out, d_in, r) = (160, 200, 16);
    let mut total = Array2::<f32>::zeros((d_out, d_in));
    for _ in 0..4 {
        let b = Array2::from_shape_simple_fn((d_out, r), || rng.gen_range(-1.0f32..1.0));
        let a = Array2::from_shape_simple_fn((r, d_in), || rng.gen_range(-1.0f32..1.0));
        total = total + prune_magnitude(b.dot(&a).view(), 0.3);
    }
    let (sigma_err, excess) = against_exact(&total, r, POWER_ITERATIONS);
    println!("flat tail: σ error {sigma_err:.2e}, reconstruction excess {excess:.2e}");
    // Within 0.2% of ‖ΔW‖ of the optimal rank-r error, singular values within 1% of σ₁.
    assert!(sigma_err < 1e-2, "σ error {sigma_err:e}");
    assert!(excess < 2e-3, "reconstruction excess {excess:e}");
    let (_, bare_excess) = against_exact(&total, r, 0);
    assert!(
        bare_excess > 2e-3,
        "no power iteration: excess {bare_excess:e}"
    );
}
