//! Every PEFT golden, every module: the merged delta matches PEFT 0.21.2's.

use crate::peft_reference::{
    delta, golden_inputs, load_adapter, manifest, module_sources, rel_frobenius,
};
use lora_lego::merge::baselines::{
    merge_module, BaselineMethod, BaselineParams, MajoritySign, SourceFactors,
};

fn tolerance(method: BaselineMethod) -> f64 {
    match method {
        BaselineMethod::Cat => 1e-6,
        BaselineMethod::Svd | BaselineMethod::TiesSvd => 1e-4,
        _ => 1e-5,
    }
}

fn params_of(peft: &serde_json::Value) -> BaselineParams {
    BaselineParams {
        svd_rank: peft["svd_rank"].as_u64().map(|r| r as usize),
        svd_clamp: peft["svd_clamp"].as_f64(),
        density: peft["density"].as_f64().unwrap_or(1.0),
        majority_sign: peft["majority_sign_method"]
            .as_str()
            .map(|s| s.parse().expect("known sign method"))
            .unwrap_or(MajoritySign::Total),
        seed: 0,
    }
}

/// Returns the largest relative error over the golden's modules.
fn check_golden(name: &str, spec: &serde_json::Value) -> f64 {
    let method: BaselineMethod = spec["method"]
        .as_str()
        .expect("method")
        .parse()
        .expect("known method");
    let (inputs, weights) = golden_inputs(spec);
    let params = params_of(&spec["peft_parameters"]);
    let golden = load_adapter(spec["path"].as_str().expect("path"));
    let expected_rank = spec["r"].as_u64().expect("r") as usize;
    assert_eq!(golden.modules.len(), 14, "{name}: module count");
    let mut worst = 0.0f64;
    for (module, (ga, gb)) in &golden.modules {
        let sources = module_sources(&inputs, &weights, module);
        let merged = merge_module(method, &sources, &params).expect("merge succeeds");
        assert_eq!(merged.rank(), expected_rank, "{name} {module}: rank");
        assert_eq!(
            merged.b.ncols(),
            expected_rank,
            "{name} {module}: B columns"
        );
        let ours = delta(&merged.a, &merged.b, 1.0);
        let theirs = delta(ga, gb, f64::from(golden.scaling));
        let err = rel_frobenius(&ours, &theirs);
        assert!(
            err <= tolerance(method),
            "{name} {module}: relative error {err:e}"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn every_golden_matches_peft() {
    let manifest = manifest();
    let goldens = manifest["goldens"].as_object().expect("goldens");
    assert_eq!(goldens.len(), 6);
    for (name, spec) in goldens {
        let worst = check_golden(name, spec);
        println!("golden {name:<16} max relative Frobenius error {worst:.3e}");
    }
}

#[test]
fn cat_factors_equal_golden_factors() {
    let spec = &manifest()["goldens"]["cat"];
    let golden = load_adapter(spec["path"].as_str().expect("path"));
    let inputs: Vec<_> = ["reverse", "sort", "increment"]
        .iter()
        .map(|n| load_adapter(&format!("adapters/{n}")))
        .collect();
    for (module, (ga, gb)) in &golden.modules {
        let sources: Vec<SourceFactors> = inputs
            .iter()
            .map(|ad| {
                let (a, b) = &ad.modules[module];
                SourceFactors {
                    a: a.view(),
                    b: b.view(),
                    scale: ad.scaling,
                    weight: 1.0,
                }
            })
            .collect();
        let merged = merge_module(BaselineMethod::Cat, &sources, &BaselineParams::default())
            .expect("cat merges");
        assert!(rel_frobenius(&merged.a, ga) <= 1e-6, "{module}: A");
        assert!(rel_frobenius(&merged.b, gb) <= 1e-6, "{module}: B");
    }
}
