//! Reading and writing the real fixtures: round trips, PEFT's own norms, kohya vs PEFT.

use crate::common::*;
use lora_lego::adapter::AdapterFormat;
use lora_lego::align::ModuleSet;
use lora_lego::io::write::{write_adapter, AdapterOut};
use lora_lego::io::{load_adapter, LoadOptions};

fn all_fixture_adapters() -> Vec<std::path::PathBuf> {
    let mut v = tiny_adapters();
    for g in [
        "cat",
        "linear",
        "magnitude_prune",
        "svd",
        "ties",
        "ties_svd",
    ] {
        v.push(fixture(&format!("peft-tiny/golden/{g}")));
    }
    v.push(fixture("peft-tiny/kohya/sort_kohya.safetensors"));
    v.push(fixture("real/distilbert-base-uncased/toxic"));
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    for n in ["sentiment", "topic", "question"] {
        v.push(demo.join(n));
    }
    v
}

#[test]
fn every_fixture_round_trips_bit_for_bit_in_its_own_format_and_in_the_other() {
    let opts = LoadOptions::default();
    let tmp = tempfile::tempdir().unwrap();
    for (i, path) in all_fixture_adapters().iter().enumerate() {
        let original = load_adapter(path, &opts).unwrap();
        let out = AdapterOut::from_adapter(&original);
        let mut formats = vec![AdapterFormat::Kohya];
        if original.format == AdapterFormat::Peft {
            formats.push(AdapterFormat::Peft);
        }
        for format in formats {
            let target = match format {
                AdapterFormat::Peft => tmp.path().join(format!("rt{i}")),
                AdapterFormat::Kohya | AdapterFormat::Diffusers => {
                    tmp.path().join(format!("rt{i}.safetensors"))
                }
            };
            write_adapter(&out, format, &target, false).unwrap();
            let back = load_adapter(&target, &opts).unwrap();
            assert_eq!(
                back.modules.len(),
                original.modules.len(),
                "{}",
                path.display()
            );
            assert_eq!(back.extras.len(), original.extras.len());
            for (m0, m1) in original.modules.iter().zip(&back.modules) {
                if format == original.format {
                    assert_eq!(m0.key, m1.key);
                }
                assert_eq!(m0.a.bytes(), m1.a.bytes(), "{} {}", path.display(), m0.key);
                assert_eq!(m0.b.bytes(), m1.b.bytes(), "{} {}", path.display(), m0.key);
                assert_eq!(m0.a.shape(), m1.a.shape());
                assert_eq!(m0.a.dtype(), m1.a.dtype());
                let tol = if format == original.format {
                    0.0
                } else {
                    1e-6 * m0.scale
                };
                assert!(
                    (m0.scale - m1.scale).abs() <= tol,
                    "{} {}: scaling {} became {} ({format})",
                    path.display(),
                    m0.key,
                    m0.scale,
                    m1.scale
                );
            }
        }
    }
}

#[test]
fn delta_norms_match_the_ones_peft_computed() {
    let text = std::fs::read_to_string(fixture("peft-tiny/delta_norms.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for group in ["adapters", "goldens"] {
        for (name, entry) in json[group].as_object().unwrap() {
            let dir = fixture(&format!(
                "peft-tiny/{}/{name}",
                if group == "adapters" {
                    "adapters"
                } else {
                    "golden"
                }
            ));
            let adapter = load_adapter(&dir, &LoadOptions::default()).unwrap();
            let expected_scaling = entry["scaling"].as_f64().unwrap();
            for (module, norm) in entry["modules"].as_object().unwrap() {
                let path = module.strip_prefix("base_model.model.").unwrap();
                let m = adapter
                    .modules
                    .iter()
                    .find(|m| m.key.as_str() == path)
                    .unwrap_or_else(|| panic!("{name}: no module {path}"));
                assert!(
                    (m.scale - expected_scaling).abs() < 1e-12,
                    "{name} scaling {}",
                    m.scale
                );
                let want = norm.as_f64().unwrap();
                let rel = (m.delta_norm() - want).abs() / want;
                assert!(
                    rel < 1e-5,
                    "{name} {path}: {} vs {want} (rel {rel:e})",
                    m.delta_norm()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 9 * 14);
}

#[test]
fn distilbert_toxic_applies_alpha_32_and_reports_its_heads_without_merging_them() {
    let a = load_adapter(
        &fixture("real/distilbert-base-uncased/toxic"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(a.modules.len(), 12);
    assert!(a
        .modules
        .iter()
        .all(|m| m.alpha == 32.0 && m.scale == 4.0 && m.rank == 8));
    let mut heads: Vec<&str> = a.extras.iter().map(|e| e.name.as_str()).collect();
    heads.sort();
    assert_eq!(
        heads,
        [
            "base_model.model.classifier.bias",
            "base_model.model.classifier.weight",
            "base_model.model.pre_classifier.bias",
            "base_model.model.pre_classifier.weight"
        ]
    );
    let report = lora_lego::inspect::report(&a);
    let text = lora_lego::inspect::render_text(&[report]);
    assert!(text.contains("non-LoRA tensors (not merged"), "{text}");
    assert!(
        text.contains("base_model.model.classifier.weight [9, 768]"),
        "{text}"
    );
}

#[test]
fn kohya_file_and_its_peft_source_give_the_same_delta_per_module() {
    let opts = LoadOptions::default();
    let peft = load_adapter(&fixture("peft-tiny/adapters/sort"), &opts).unwrap();
    let kohya = load_adapter(&fixture("peft-tiny/kohya/sort_kohya.safetensors"), &opts).unwrap();
    assert_eq!(kohya.format, AdapterFormat::Kohya);
    let set = ModuleSet::new(vec![peft, kohya]).unwrap();
    assert_eq!(set.modules.len(), 14);
    for m in &set.modules {
        assert_eq!(m.sources.len(), 2, "{} not aligned", m.key);
        assert!(m.names.kohya.starts_with("lora_te_model_layers_"));
        let d0 = dense_delta(set.source(m.sources[0]));
        let d1 = dense_delta(set.source(m.sources[1]));
        assert_eq!(rel_diff(&d1, &d0), 0.0, "{}", m.key);
    }
}

#[test]
fn mixed_ranks_across_adapters_align_and_missing_modules_contribute_nothing() {
    let opts = LoadOptions::default();
    let tmp = tempfile::tempdir().unwrap();
    let partial = tmp.path().join("partial");
    write_peft_dir(
        &partial,
        &peft_config(serde_json::json!({"r": 2, "lora_alpha": 2})),
        &lora_pair("model.layers.0.self_attn.q_proj", 2, 64, 64, 7),
    );
    let mut adapters = vec![load_adapter(&partial, &opts).unwrap()];
    adapters.extend(
        tiny_adapters()
            .iter()
            .map(|p| load_adapter(p, &opts).unwrap()),
    );
    let set = ModuleSet::new(adapters).unwrap();
    assert_eq!(set.modules.len(), 14);
    let q = set
        .modules
        .iter()
        .find(|m| m.key.as_str() == "model.layers.0.self_attn.q_proj")
        .unwrap();
    assert_eq!(
        q.sources.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let v = set
        .modules
        .iter()
        .find(|m| m.key.as_str() == "model.layers.0.self_attn.v_proj")
        .unwrap();
    assert_eq!(v.sources.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
}
