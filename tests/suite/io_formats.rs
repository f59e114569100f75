//! Layouts and dtypes beyond the fixtures, built by hand: half precision, embeddings, convs,
//! GPT-2's fan_in_fan_out, rank/alpha patterns, rsLoRA, bare safetensors beside a config.

use crate::common::*;
use lora_lego::adapter::{AdapterFormat, LoraKind};
use lora_lego::io::write::{write_adapter, AdapterOut};
use lora_lego::io::{load_adapter, LoadOptions};
use lora_lego::tensor::DType;

fn load(p: &std::path::Path) -> lora_lego::adapter::Adapter {
    load_adapter(p, &LoadOptions::default()).unwrap()
}

#[test]
fn half_precision_factors_decode_to_their_exact_values_and_write_back_unchanged() {
    // 1.5 = 0x3FC0 in bf16 and 0x3E00 in f16; -2.0 = 0xC000 in both; 0.25 = 0x3E80 (bf16), 0x3400 (f16).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("half");
    let a = RawTensor::u16_words(
        "base_model.model.m.q_proj.lora_A.weight",
        "BF16",
        &[2, 2],
        &[0x3FC0, 0xC000, 0x3E80, 0x0000],
    );
    let b = RawTensor::u16_words(
        "base_model.model.m.q_proj.lora_B.weight",
        "F16",
        &[3, 2],
        &[0x3E00, 0xC000, 0x3400, 0, 0x3C00, 0x3C00],
    );
    write_peft_dir(
        &dir,
        &peft_config(serde_json::json!({"r": 2, "lora_alpha": 4})),
        &[a, b],
    );
    let adapter = load(&dir);
    let m = &adapter.modules[0];
    assert_eq!((m.a.dtype(), m.b.dtype()), (DType::BF16, DType::F16));
    assert_eq!(adapter.dtype(), None, "mixed dtypes are reported as mixed");
    assert_eq!(m.a.to_f32_vec(), [1.5, -2.0, 0.25, 0.0]);
    assert_eq!(m.b.to_f32_vec(), [1.5, -2.0, 0.25, 0.0, 1.0, 1.0]);
    assert_eq!(m.scale, 2.0);
    let back = tmp.path().join("back");
    write_adapter(
        &AdapterOut::from_adapter(&adapter),
        AdapterFormat::Peft,
        &back,
        false,
    )
    .unwrap();
    let again = load(&back);
    assert_eq!(again.modules[0].a.dtype(), DType::BF16);
    assert_eq!(again.modules[0].b.bytes(), m.b.bytes());
}

#[test]
fn embedding_and_conv_loras_keep_their_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mixed_kinds");
    let tensors = vec![
        RawTensor::f32_pattern(
            "base_model.model.embed_tokens.lora_embedding_A",
            &[4, 100],
            1,
        ),
        RawTensor::f32_pattern(
            "base_model.model.embed_tokens.lora_embedding_B",
            &[16, 4],
            2,
        ),
        RawTensor::f32_pattern("base_model.model.conv1.lora_A.weight", &[4, 3, 3, 3], 3),
        RawTensor::f32_pattern("base_model.model.conv1.lora_B.weight", &[8, 4, 1, 1], 4),
    ];
    write_peft_dir(
        &dir,
        &peft_config(serde_json::json!({"target_modules": ["embed_tokens", "conv1"]})),
        &tensors,
    );
    let adapter = load(&dir);
    let conv = adapter
        .modules
        .iter()
        .find(|m| m.key.as_str() == "conv1")
        .unwrap();
    assert_eq!(
        conv.kind,
        LoraKind::Conv {
            a_tail: vec![3, 3, 3],
            b_tail: vec![1, 1]
        }
    );
    assert_eq!((conv.rank, conv.d_in, conv.d_out), (4, 27, 8));
    let emb = adapter
        .modules
        .iter()
        .find(|m| m.key.as_str() == "embed_tokens")
        .unwrap();
    assert_eq!(emb.kind, LoraKind::Embedding);
    assert_eq!((emb.rank, emb.d_in, emb.d_out), (4, 100, 16));
    for format in [AdapterFormat::Peft, AdapterFormat::Kohya] {
        let target = match format {
            AdapterFormat::Peft => tmp.path().join("out_peft"),
            AdapterFormat::Kohya | AdapterFormat::Diffusers => {
                tmp.path().join("out_kohya.safetensors")
            }
        };
        write_adapter(&AdapterOut::from_adapter(&adapter), format, &target, false).unwrap();
        let back = load(&target);
        for m in &adapter.modules {
            let n = back
                .modules
                .iter()
                .find(|x| x.key.flat().ends_with(&m.key.flat()))
                .unwrap();
            assert_eq!(n.a.shape(), m.a.shape());
            assert_eq!(n.b.shape(), m.b.shape());
            assert_eq!(n.a.bytes(), m.a.bytes());
        }
    }
    let st = std::fs::read(tmp.path().join("out_peft/adapter_model.safetensors")).unwrap();
    let header = String::from_utf8_lossy(&st[8..]);
    assert!(header.contains("base_model.model.embed_tokens.lora_embedding_A"));
    assert!(header.contains(r#""format":"pt""#));
}

#[test]
fn gpt2_fan_in_fan_out_factors_are_read_as_stored_not_transposed() {
    // PEFT stores A [r, in] and B [out, r] even for GPT-2's Conv1D; only the base weight is
    // [in, out]. c_attn: in 32, out 96.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gpt2");
    let cfg = peft_config(
        serde_json::json!({"fan_in_fan_out": true, "target_modules": ["c_attn"], "r": 2, "lora_alpha": 4}),
    );
    write_peft_dir(
        &dir,
        &cfg,
        &lora_pair("transformer.h.0.attn.c_attn", 2, 32, 96, 9),
    );
    let adapter = load(&dir);
    let m = &adapter.modules[0];
    assert_eq!((m.d_in, m.d_out), (32, 96));
    assert_eq!(m.a.shape(), [2, 32]);
    // ‖ΔW‖ from the factors equals the dense product's norm.
    let dense = dense_delta(m);
    let want = dense.mapv(|v| v * v).sum().sqrt();
    assert!((m.delta_norm() - want).abs() < 1e-9 * want);
    let out = tmp.path().join("out");
    write_adapter(
        &AdapterOut::from_adapter(&adapter),
        AdapterFormat::Peft,
        &out,
        false,
    )
    .unwrap();
    let cfg: serde_json::Value = read_config(&out);
    assert_eq!(cfg["fan_in_fan_out"], true);
    assert_eq!(load(&out).modules[0].a.shape(), [2, 32]);
}

#[test]
fn rank_and_alpha_patterns_follow_peft_suffix_rule_and_are_written_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("patterns");
    let mut tensors = lora_pair("model.layers.0.self_attn.q_proj", 2, 16, 16, 1);
    tensors.extend(lora_pair("model.layers.0.self_attn.v_proj", 4, 16, 16, 3));
    tensors.extend(lora_pair("model.layers.1.self_attn.v_proj", 4, 16, 16, 5));
    let cfg = peft_config(serde_json::json!({
        "r": 4, "lora_alpha": 8, "use_rslora": true,
        "rank_pattern": {"q_proj": 2},
        "alpha_pattern": {"layers.1.self_attn.v_proj": 32}
    }));
    write_peft_dir(&dir, &cfg, &tensors);
    let adapter = load(&dir);
    let by = |p: &str| {
        adapter
            .modules
            .iter()
            .find(|m| m.key.as_str() == p)
            .unwrap()
    };
    // rsLoRA: alpha / sqrt(r).
    assert_eq!(
        by("model.layers.0.self_attn.q_proj").scale,
        8.0 / 2f64.sqrt()
    );
    assert_eq!(by("model.layers.0.self_attn.v_proj").scale, 8.0 / 2.0);
    assert_eq!(by("model.layers.1.self_attn.v_proj").scale, 32.0 / 2.0);
    let out = tmp.path().join("out");
    write_adapter(
        &AdapterOut::from_adapter(&adapter),
        AdapterFormat::Peft,
        &out,
        false,
    )
    .unwrap();
    let back = load(&out);
    for (m0, m1) in adapter.modules.iter().zip(&back.modules) {
        assert_eq!(m0.scale, m1.scale, "{}", m0.key);
    }
    let cfg: serde_json::Value = read_config(&out);
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["rank_pattern"]["model.layers.0.self_attn.q_proj"], 2);
    assert_eq!(cfg["alpha_pattern"]["model.layers.1.self_attn.v_proj"], 32);
    assert_eq!(cfg["use_rslora"], true);
    assert_eq!(cfg["peft_type"], "LORA");
}

#[test]
fn bare_safetensors_is_read_with_the_config_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("my_lora.safetensors");
    std::fs::write(
        &file,
        safetensors_bytes(&lora_pair("model.q_proj", 4, 8, 8, 1), None),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("my_lora.json"),
        peft_config(serde_json::json!({"lora_alpha": 16})),
    )
    .unwrap();
    let adapter = load(&file);
    assert_eq!(adapter.name, "my_lora");
    assert_eq!(adapter.modules[0].scale, 4.0);
}

#[test]
fn missing_r_and_alpha_are_assumed_out_loud() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("noalpha");
    write_peft_dir(
        &dir,
        r#"{"peft_type": "LORA"}"#,
        &lora_pair("model.q_proj", 4, 8, 8, 1),
    );
    let adapter = load(&dir);
    assert_eq!(adapter.modules[0].scale, 2.0);
    let w = adapter.warnings.join("\n");
    assert!(
        w.contains("`lora_alpha` is missing; assuming PEFT's default of 8"),
        "{w}"
    );
    assert!(w.contains("`r` is missing"), "{w}");
}

#[test]
fn peft_output_has_save_pretrained_layout_and_sorted_config() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = load(&fixture("peft-tiny/adapters/sort"));
    let out = tmp.path().join("out");
    write_adapter(
        &AdapterOut::from_adapter(&adapter),
        AdapterFormat::Peft,
        &out,
        false,
    )
    .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert_eq!(names, ["adapter_config.json", "adapter_model.safetensors"]);
    // Same tensors in the same order and the same metadata as PEFT wrote: the files are equal.
    assert_eq!(
        std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(fixture("peft-tiny/adapters/sort/adapter_model.safetensors")).unwrap()
    );
    let text = std::fs::read_to_string(out.join("adapter_config.json")).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  \""))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}
