//! PEFT's goldens reproduced end to end: engine → export → read back, compared as ΔW.

use crate::common::*;
use lora_lego::align::ModuleSet;
use lora_lego::engine::Engine;
use lora_lego::export::export;
use lora_lego::io::{load_adapter, LoadOptions};
use lora_lego::recipe::{MergeMethod, MergeSettings, OutputReweight, ParamReweight};

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("peft-tiny/MANIFEST.json")).unwrap())
        .unwrap()
}

#[test]
fn every_golden_is_reproduced_through_the_engine_and_the_exporter() {
    let m = manifest();
    let opts = LoadOptions::default();
    let tmp = tempfile::tempdir().unwrap();
    for (name, g) in m["goldens"].as_object().unwrap() {
        let inputs: Vec<_> = g["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                load_adapter(
                    &fixture(&format!("peft-tiny/adapters/{}", n.as_str().unwrap())),
                    &opts,
                )
                .unwrap()
            })
            .collect();
        let p = &g["peft_parameters"];
        let settings = MergeSettings {
            method: g["method"].as_str().unwrap().parse().unwrap(),
            weights: g["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_f64().unwrap())
                .collect(),
            svd_rank: p["svd_rank"].as_u64().map(|r| r as usize),
            density: Some(p["density"].as_f64().unwrap_or(1.0)),
            ..MergeSettings::default()
        };
        let engine = Engine::new(ModuleSet::new(inputs).unwrap());
        let out = engine.merge_all(&settings).unwrap();
        let target = tmp.path().join(name);
        export(&engine, &out, &settings, &target, false).unwrap();
        let ours = load_adapter(&target, &opts).unwrap();
        let golden = load_adapter(
            &fixture(&format!("peft-tiny/{}", g["path"].as_str().unwrap())),
            &opts,
        )
        .unwrap();
        let tol = if name.contains("svd") { 1e-4 } else { 1e-5 };
        assert_eq!(ours.modules.len(), golden.modules.len());
        for (a, b) in ours.modules.iter().zip(&golden.modules) {
            assert_eq!(a.key, b.key);
            let rel = rel_diff(&dense_delta(a), &dense_delta(b));
            assert!(rel <= tol, "{name} {}: rel {rel:e}", a.key);
        }
        let cfg: serde_json::Value = read_config(&target);
        assert_eq!(cfg["r"], g["r"], "{name}");
        assert_eq!(cfg["lora_alpha"], g["lora_alpha"], "{name}");
    }
}

#[test]
fn cat_with_unit_weights_equals_lego_with_k_n_and_no_reweighting() {
    let opts = LoadOptions::default();
    let engine = Engine::new(
        ModuleSet::new(
            tiny_adapters()
                .iter()
                .map(|p| load_adapter(p, &opts).unwrap())
                .collect(),
        )
        .unwrap(),
    );
    let cat = engine
        .merge_all(&MergeSettings {
            method: MergeMethod::Baseline("cat".parse().unwrap()),
            ..MergeSettings::default()
        })
        .unwrap();
    let lego = engine
        .merge_all(&MergeSettings {
            k: 1000,
            param_reweight: ParamReweight::Off,
            output_reweight: OutputReweight::Off,
            ..MergeSettings::default()
        })
        .unwrap();
    for (c, l) in cat.modules.iter().zip(&lego.modules) {
        let dc = c.b.mapv(f64::from).dot(&c.a.mapv(f64::from));
        let dl = l.b.mapv(f64::from).dot(&l.a.mapv(f64::from));
        assert!(rel_diff(&dl, &dc) < 1e-6);
        assert!(c.metrics.error_vs_sum < 1e-5 && l.metrics.error_vs_sum < 1e-5);
    }
}
