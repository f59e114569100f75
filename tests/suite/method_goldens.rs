//! The data-free methods and LoRA-LEGO's core-space options against the reference outputs in
//! `fixtures/method-goldens` (methods.md), plus the exact identities between them.

use std::collections::BTreeMap;

use crate::common::*;
use lora_lego::adapter::Adapter;
use lora_lego::align::ModuleSet;
use lora_lego::engine::Engine;
use lora_lego::io::{load_adapter, LoadOptions};
use lora_lego::merge::core_space::{CoreSpace, CoreTask};
use lora_lego::merge::data_free::{CoreMethod, DataFreeMethod};
use lora_lego::merge::knots::{Dare, Knots};
use lora_lego::merge::lego_core::{CoreUnits, LegoCore, Partition};
use lora_lego::merge::lego_params::ClusterParams;
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
    let mut s = MergeSettings::preset(name.parse::<MergeMethod>().unwrap());
    if name == "task_arithmetic" {
        // The golden and the identities are the plain sum (λ = 1); our default is 0.4.
        s.scale = Some(1.0);
    }
    s
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
            let m = ad
                .modules
                .iter()
                .find(|m| m.key.as_str() == module)
                .unwrap();
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
    let bytes = std::fs::read(fixture(
        "method-goldens/knots_dare_ties/dare_keep_masks.safetensors",
    ))
    .unwrap();
    let masks = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let spec = &manifest("method-goldens/MANIFEST.json")["goldens"]["knots_dare_ties"]["params"];
    let drop = spec["dare_p"].as_f64().unwrap();
    assert_eq!(1.0 - drop, knots_dare_ties().default_density().unwrap());
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
            lambda: knots_dare_ties().default_scale(),
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
    // methods.md's preset has kc 6 (ours: 8, chosen on bench-quality val). k = 32 ≥ 18
    // units: nothing is clustered, fully deterministic, through the engine.
    let engine = engine_of(tiny_inputs());
    let golden = deltas(&load("method-goldens/lego_preset"));
    let preset = MergeSettings {
        kc: 6,
        ..method("lego-tsv")
    };
    assert_close(
        "lego_preset",
        &merged_deltas(&engine, &preset),
        &golden,
        1e-5,
    );
    // k = 14 clusters: steps 3–8 from the reference's partition.
    let inputs = tiny_inputs();
    let golden = deltas(&load("method-goldens/lego_preset_k14"));
    let spec = &manifest("method-goldens/MANIFEST.json")["goldens"]["lego_preset_k14"];
    let partitions = find_partitions(spec);
    let lego = LegoCore {
        units: preset.units,
        kc: 6,
        k: 14,
        param: preset.param_reweight,
        output: preset.output_reweight,
        output_scale: 1.0,
        post: preset.post,
        alpha: 1.0,
        cluster: ClusterParams {
            n_init: 10,
            max_iter: 300,
            tol: 1e-6,
            seed: 0,
            space: FeatureSpace::SignAware,
        },
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

fn planted(dir: &str) -> Vec<Adapter> {
    ["p0", "p1", "p2"]
        .iter()
        .map(|n| load(&format!("method-goldens/lego-planted/{dir}/{n}")))
        .collect()
}

const PLANTED_SETTINGS: [(&str, ParamReweight, OutputReweight); 6] = [
    (
        "param-linf_output-mean",
        ParamReweight::Linf,
        OutputReweight::Mean,
    ),
    (
        "param-linf_output-off",
        ParamReweight::Linf,
        OutputReweight::Off,
    ),
    (
        "param-l2_output-mean",
        ParamReweight::L2,
        OutputReweight::Mean,
    ),
    (
        "param-l2_output-off",
        ParamReweight::L2,
        OutputReweight::Off,
    ),
    (
        "param-off_output-mean",
        ParamReweight::Off,
        OutputReweight::Mean,
    ),
    (
        "param-off_output-off",
        ParamReweight::Off,
        OutputReweight::Off,
    ),
];

#[test]
fn lego_with_k_below_n_matches_the_planted_goldens_in_every_reweighting_and_space() {
    let plain = engine_of(planted("adapters"));
    let flipped = engine_of(planted("adapters-flipped"));
    for (name, param, output) in PLANTED_SETTINGS {
        let settings = MergeSettings {
            k: 4,
            param_reweight: param,
            output_reweight: output,
            ..MergeSettings::default()
        };
        let golden = deltas(&load(&format!("method-goldens/lego-planted/plain_{name}")));
        assert_close(name, &merged_deltas(&plain, &settings), &golden, 1e-5);
        // Negated units are the same update: the sign-aware space must undo the flips.
        let sign = MergeSettings {
            space: FeatureSpace::SignAware,
            ..settings
        };
        let golden = deltas(&load(&format!("method-goldens/lego-planted/sign_{name}")));
        assert_close(name, &merged_deltas(&flipped, &sign), &golden, 1e-5);
    }
}

#[test]
fn core_space_lego_with_raw_units_matches_the_planted_goldens() {
    let inputs = planted("adapters");
    for (name, param, output) in PLANTED_SETTINGS {
        let lego = LegoCore {
            units: UnitBasis::Raw,
            kc: 6,
            k: 4,
            param,
            output,
            output_scale: 1.0,
            post: PostStep::None,
            alpha: 1.0,
            cluster: ClusterParams {
                n_init: 10,
                max_iter: 300,
                tol: 1e-6,
                seed: 0,
                space: FeatureSpace::Plain,
            },
            ensemble: 3,
        };
        let golden = deltas(&load(&format!("method-goldens/lego-planted/plain_{name}")));
        let mut ours = BTreeMap::new();
        for key in golden.keys() {
            let core = CoreSpace::new(&tasks_in_order(&inputs, key)).unwrap();
            let merged = lego.run(&core, None).unwrap();
            ours.insert(key.clone(), dense(&core.lift(merged.core.view()).unwrap()));
        }
        assert_close(name, &ours, &golden, 1e-5);
    }
}

/// LEGO with core-space options at settings where methods.md §9 proves it equals another
/// method exactly.
fn lego_variant(units: UnitBasis, post: PostStep, k: usize) -> MergeSettings {
    MergeSettings {
        method: MergeMethod::Lego,
        units,
        post,
        k,
        kc: 2,
        space: FeatureSpace::SignAware,
        param_reweight: ParamReweight::Off,
        output_reweight: OutputReweight::Off,
        ..MergeSettings::default()
    }
}

#[test]
fn lego_options_reduce_exactly_to_the_methods_they_generalise() {
    let engine = engine_of(tiny_inputs());
    let cases = [
        (
            "raw, post iso",
            lego_variant(UnitBasis::Raw, PostStep::Iso, 100),
            method("iso_c"),
        ),
        (
            "svd, post tsv",
            lego_variant(UnitBasis::Svd, PostStep::Tsv, 100),
            method("tsv"),
        ),
        (
            "centred kc 2, k = T·kc",
            lego_variant(UnitBasis::Centred, PostStep::None, 6),
            MergeSettings {
                // ⌈0.1 · 20⌉ = 2 = kc.
                rank_fraction: Some(0.1),
                ..method("cart")
            },
        ),
        (
            "raw, 2 seeds, k = N",
            MergeSettings {
                ensemble: 2,
                ..lego_variant(UnitBasis::Raw, PostStep::None, 100)
            },
            method("task_arithmetic"),
        ),
    ];
    for (what, lego, other) in cases {
        let worst = assert_close(
            what,
            &merged_deltas(&engine, &lego),
            &merged_deltas(&engine, &other),
            // Both sides are written as f32 factors.
            1e-6,
        );
        println!("{what:<24} {worst:.2e}");
    }
}

/// Dense full-space versions of the methods whose core and full forms are equal (methods.md
/// §10), computed from the d_out × d_in deltas.
fn dense_reference(name: &str, tasks: &[Array2<f64>]) -> Array2<f64> {
    use lora_lego::linalg::{polar, svd};
    let sum = tasks
        .iter()
        .fold(Array2::zeros(tasks[0].dim()), |acc, t| acc + t);
    match name {
        "task_arithmetic" => sum,
        "iso_c" => {
            let d = svd(sum.view()).unwrap();
            let r = d.rank(1e-9);
            let mean = d.s.iter().take(r).sum::<f64>() / r as f64;
            d.u.slice(ndarray::s![.., ..r])
                .dot(&d.v.slice(ndarray::s![.., ..r]).t())
                * mean
        }
        "tsv" => {
            let (mut us, mut vs, mut ss) = (Vec::new(), Vec::new(), Vec::new());
            for t in tasks {
                let d = svd(t.view()).unwrap();
                let r = d.rank(1e-9);
                us.push(d.u.slice(ndarray::s![.., ..r]).to_owned());
                vs.push(d.v.slice(ndarray::s![.., ..r]).to_owned());
                ss.extend(d.s.iter().take(r).copied());
            }
            let cat = |p: &[Array2<f64>]| {
                ndarray::concatenate(
                    ndarray::Axis(1),
                    &p.iter().map(|x| x.view()).collect::<Vec<_>>(),
                )
                .unwrap()
            };
            let pu = polar(cat(&us).view(), 1e-9).unwrap();
            let pv = polar(cat(&vs).view(), 1e-9).unwrap();
            (&pu * &ndarray::Array1::from(ss).insert_axis(ndarray::Axis(0))).dot(&pv.t())
        }
        _ => unreachable!("{name}"),
    }
}

#[test]
fn core_space_equals_the_dense_full_space_method() {
    let inputs = tiny_inputs();
    let engine = engine_of(tiny_inputs());
    for name in ["task_arithmetic", "iso_c", "tsv"] {
        let ours = merged_deltas(&engine, &method(name));
        let mut theirs = BTreeMap::new();
        for key in ours.keys() {
            let tasks: Vec<Array2<f64>> = inputs
                .iter()
                .map(|ad| dense_delta(ad.modules.iter().find(|m| m.key.as_str() == key).unwrap()))
                .collect();
            theirs.insert(key.clone(), dense_reference(name, &tasks));
        }
        assert_close(name, &ours, &theirs, 1e-6);
    }
}

#[test]
fn permuting_adapters_changes_no_byte_of_any_method() {
    let forward = engine_of(tiny_inputs());
    let mut reversed_inputs = tiny_inputs();
    reversed_inputs.reverse();
    let reversed = engine_of(reversed_inputs);
    for m in DataFreeMethod::all()
        .map(MergeMethod::DataFree)
        .chain([MergeMethod::LegoTsv])
    {
        let mut settings = MergeSettings::preset(m);
        settings.k = 10;
        let a = forward.merge_all(&settings).unwrap();
        let b = reversed.merge_all(&settings).unwrap();
        for (x, y) in a.modules.iter().zip(&b.modules) {
            assert_eq!(x.a, y.a, "{m}: A of module {}", x.module);
            assert_eq!(x.b, y.b, "{m}: B of module {}", x.module);
        }
    }
}

#[test]
fn one_adapter_in_is_that_adapter_out_where_the_method_promises_it() {
    let single = engine_of(vec![load("peft-tiny/adapters/sort")]);
    let original = deltas(&load("peft-tiny/adapters/sort"));
    for name in ["task_arithmetic", "tsv", "cart"] {
        assert_close(
            name,
            &merged_deltas(&single, &method(name)),
            &original,
            1e-6,
        );
    }
}

#[test]
fn the_global_scale_multiplies_every_method_exactly_where_it_is_the_coefficient() {
    let engine = engine_of(tiny_inputs());
    for name in ["task_arithmetic", "tsv", "iso_c", "ties_svd", "lego"] {
        let base = merged_deltas(&engine, &method(name));
        let m: MergeMethod = name.parse().unwrap();
        let settings = method(name);
        let current = settings.scale.unwrap_or(match m {
            MergeMethod::DataFree(d) => d.default_scale(),
            _ => 1.0,
        });
        let scaled = MergeSettings {
            scale: Some(0.25 * current),
            ..settings
        };
        let expected: BTreeMap<_, _> = base.iter().map(|(k, d)| (k.clone(), d * 0.25)).collect();
        assert_close(name, &merged_deltas(&engine, &scaled), &expected, 1e-6);
    }
}

#[test]
fn a_hand_written_preset_recipe_takes_the_preset_for_fields_left_out() {
    let text = "version = 1\n[[adapters]]\npath = \"a\"\nsha256 = \"0\"\n\
                [merge]\nmethod = \"lego-tsv\"\nk = 10\nensemble = 2\n";
    let r = lora_lego::recipe::Recipe::parse(std::path::Path::new("r.toml"), text).unwrap();
    let preset = MergeSettings::preset(MergeMethod::LegoTsv);
    assert_eq!((r.merge.k, r.merge.ensemble), (10, 2));
    assert_eq!(r.merge.units, UnitBasis::Centred);
    assert_eq!(r.merge.post, PostStep::Tsv);
    assert_eq!(r.merge.space, FeatureSpace::SignAware);
    assert_eq!(r.merge.output_reweight, OutputReweight::Off);
    assert_eq!(
        MergeSettings {
            k: 10,
            ensemble: 2,
            ..preset
        },
        r.merge
    );
}

/// The registered KnOTS-DARE-TIES, found by its name.
fn knots_dare_ties() -> DataFreeMethod {
    "knots_dare_ties"
        .parse()
        .expect("knots_dare_ties is registered")
}
