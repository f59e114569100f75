//! The data-free methods and LoRA-LEGO's core-space options against the reference outputs in
//! `fixtures/method-goldens` (methods.md), plus the exact identities between them.

mod common;

use std::collections::BTreeMap;

use common::*;
use lora_lego::adapter::Adapter;
use lora_lego::align::ModuleSet;
use lora_lego::engine::Engine;
use lora_lego::io::{load_adapter, LoadOptions};
use lora_lego::merge::core_space::{CoreSpace, CoreTask};
use lora_lego::merge::data_free::{CoreMethod, DataFreeMethod};
use lora_lego::merge::knots::{Dare, Knots};
use lora_lego::merge::lego_core::{CoreUnits, LegoCore, Partition};
use lora_lego::recipe::{
    FeatureSpace, MergeMethod, MergeSettings, OutputReweight, ParamReweight, PostStep, UnitBasis,
};
use ndarray::Array2;
use serde_json::Value;

const ORDER: [&str; 3] = ["reverse", "sort", "increment"];

fn load(rel: &str) -> Adapter {
    load_adapter(&fixture(rel), &LoadOptions::default()).unwrap()
}

fn tiny_inputs() -> Vec<Adapter> {
    ORDER
        .iter()
        .map(|n| load(&format!("peft-tiny/adapters/{n}")))
        .collect()
}

fn manifest(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

/// Per module: the dense ΔW of an adapter on disk.
fn deltas(adapter: &Adapter) -> BTreeMap<String, Array2<f64>> {
    adapter
        .modules
        .iter()
        .map(|m| (m.key.as_str().to_string(), dense_delta(m)))
        .collect()
}

/// Per module: the dense ΔW of an engine merge.
fn merged_deltas(engine: &Engine, settings: &MergeSettings) -> BTreeMap<String, Array2<f64>> {
    let out = engine.merge_all(settings).unwrap();
    out.modules
        .iter()
        .map(|m| {
            (
                engine.set.modules[m.module].key.as_str().to_string(),
                m.b.mapv(f64::from).dot(&m.a.mapv(f64::from)),
            )
        })
        .collect()
}

fn engine_of(adapters: Vec<Adapter>) -> Engine {
    Engine::new(ModuleSet::new(adapters).unwrap())
}

/// The largest relative error over modules; panics past `tol`, naming the module.
fn assert_close(
    what: &str,
    ours: &BTreeMap<String, Array2<f64>>,
    theirs: &BTreeMap<String, Array2<f64>>,
    tol: f64,
) -> f64 {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{what}: modules"
    );
    let mut worst = 0.0f64;
    for (key, d) in ours {
        let rel = rel_diff(d, &theirs[key]);
        assert!(rel <= tol, "{what} {key}: relative error {rel:e}");
        worst = worst.max(rel);
    }
    worst
}

fn method(name: &str) -> MergeSettings {
    MergeSettings::preset(name.parse::<MergeMethod>().unwrap())
}

#[test]
fn every_data_free_method_at_its_defaults_matches_its_golden() {
    let engine = engine_of(tiny_inputs());
    for name in [
        "task_arithmetic",
        "core_ties",
        "knots_ties",
        "tsv",
        "iso_c",
        "iso_cts",
        "cart",
    ] {
        let golden = deltas(&load(&format!("method-goldens/{name}")));
        let worst = assert_close(name, &merged_deltas(&engine, &method(name)), &golden, 1e-5);
        println!("{name:<16} worst relative error {worst:.2e}");
    }
}

/// Tasks of `module` in the given adapter order (the goldens' task order).
fn tasks_in_order(adapters: &[Adapter], module: &str) -> Vec<CoreTask> {
    adapters
        .iter()
        .map(|ad| {
            let m = ad.modules.iter().find(|m| m.key.as_str() == module).unwrap();
            CoreTask {
                a: m.a_matrix().mapv(f64::from),
                b: m.b_matrix().t().mapv(f64::from),
                scale: m.scale,
            }
        })
        .collect()
}

fn dense(f: &lora_lego::merge::core_space::LoraFactors) -> Array2<f64> {
    f.b.mapv(f64::from).dot(&f.a.mapv(f64::from))
}

#[test]
fn knots_dare_ties_with_the_reference_masks_matches_its_golden() {
    let inputs = tiny_inputs();
    let golden = deltas(&load("method-goldens/knots_dare_ties"));
    let bytes = std::fs::read(fixture("method-goldens/knots_dare_ties/dare_keep_masks.safetensors"))
        .unwrap();
    let masks = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let spec = &manifest("method-goldens/MANIFEST.json")["goldens"]["knots_dare_ties"]["params"];
    let drop = spec["dare_p"].as_f64().unwrap();
    assert_eq!(1.0 - drop, DataFreeMethod::KnotsDareTies.default_density().unwrap());
    let mut ours = BTreeMap::new();
    for key in golden.keys() {
        let keep: Vec<Array2<bool>> = (0..3)
            .map(|j| {
                let t = masks.tensor(&format!("{key}.task{j}")).unwrap();
                let shape = (t.shape()[0], t.shape()[1]);
                Array2::from_shape_vec(shape, t.data().iter().map(|&b| b == 1).collect()).unwrap()
            })
            .collect();
        let knots = Knots {
            keep: 1.0,
            lambda: DataFreeMethod::KnotsDareTies.default_scale(),
            dare: Some(Dare::Masks { drop, keep }),
        };
        let core = CoreSpace::new(&tasks_in_order(&inputs, key)).unwrap();
        let factors = knots.merge(&core, 0).unwrap().into_factors(&core).unwrap();
        ours.insert(key.clone(), dense(&factors));
    }
    assert_close("knots_dare_ties", &ours, &golden, 1e-5);
}

#[test]
fn lego_tsv_preset_matches_its_goldens() {
    // k = 32 ≥ 18 units: nothing is clustered, fully deterministic, through the engine.
    let engine = engine_of(tiny_inputs());
    let golden = deltas(&load("method-goldens/lego_preset"));
    assert_close(
        "lego_preset",
        &merged_deltas(&engine, &method("lego-tsv")),
        &golden,
        1e-5,
    );
    // k = 14 clusters: steps 3–8 from the reference's partition.
    let inputs = tiny_inputs();
    let golden = deltas(&load("method-goldens/lego_preset_k14"));
    let spec = &manifest("method-goldens/MANIFEST.json")["goldens"]["lego_preset_k14"];
    let partitions = find_partitions(spec);
    let preset = method("lego-tsv");
    let lego = LegoCore {
        units: preset.units,
        kc: preset.kc,
        k: 14,
        sign_aware: true,
        param: preset.param_reweight,
        output: preset.output_reweight,
        output_scale: 1.0,
        post: preset.post,
        alpha: 1.0,
        seed: 0,
        n_init: 10,
        max_iter: 300,
        tol: 1e-6,
        ensemble: 1,
    };
    let mut ours = BTreeMap::new();
    for key in golden.keys() {
        let core = CoreSpace::new(&tasks_in_order(&inputs, key)).unwrap();
        let units = CoreUnits::build(&core, UnitBasis::Centred, 6).unwrap();
        let partition = Partition::from_labels(partitions[key].clone(), &units);
        let merged = lego.run(&core, Some(&partition)).unwrap();
        ours.insert(key.clone(), dense(&core.lift(merged.core.view()).unwrap()));
    }
    assert_close("lego_preset_k14", &ours, &golden, 1e-5);
}

/// The manifest's per-module cluster labels, wherever the golden keeps them.
fn find_partitions(spec: &Value) -> BTreeMap<String, Vec<usize>> {
    let table = ["partition", "labels", "cluster_labels", "partitions"]
        .iter()
        .find_map(|k| spec.get(*k))
        .unwrap_or_else(|| panic!("no partition in {}", spec));
    table
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let labels = v.get("labels").unwrap_or(v);
            (
                k.clone(),
                labels
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect()
}
