//! Files as the rest of the ecosystem reads and writes them: a classifier adapter PEFT can load,
//! kohya names and metadata sd-scripts / ComfyUI recognise, diffusers' own LoRA files.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora-lego"))
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = bin();
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    err
}

/// The JSON header of a safetensors file, parsed by hand (not by the library).
fn header(file: &Path) -> serde_json::Value {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

/// The tensor names of a safetensors file (without `__metadata__`).
fn tensor_names(file: &Path) -> Vec<String> {
    let h = header(file);
    let mut names: Vec<String> = h
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    names.sort();
    names
}

/// The raw bytes of tensor `name` in a safetensors file.
fn tensor_bytes(file: &Path, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h = header(file);
    let off = &h[name]["data_offsets"];
    let (s, e) = (
        off[0].as_u64().unwrap() as usize,
        off[1].as_u64().unwrap() as usize,
    );
    bytes[8 + n + s..8 + n + e].to_vec()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn a_classifier_adapter_loads_in_peft_with_or_without_its_head() {
    let tmp = tempfile::tempdir().unwrap();
    let toxic = fixture("real/distilbert-base-uncased/toxic");
    let src_weights = toxic.join("adapter_model.safetensors");
    let lora_keys: Vec<String> = tensor_names(&src_weights)
        .into_iter()
        .filter(|k| k.contains(".lora_"))
        .collect();
    // Without the head: PeftModel (no task class) must not look for one.
    let dropped = tmp.path().join("dropped");
    let err = ok(&run(&[&"merge", &toxic, &"-k", &"8", &"-o", &dropped]));
    assert!(err.contains("task_type `SEQ_CLS` written as null"), "{err}");
    let cfg = read_config(&dropped);
    assert_eq!(cfg["task_type"], serde_json::Value::Null);
    assert_eq!(cfg["modules_to_save"], serde_json::Value::Null);
    let keys = tensor_names(&dropped.join("adapter_model.safetensors"));
    assert_eq!(
        keys, lora_keys,
        "only LoRA factors, under the source's names"
    );
    // With it: PeftModelForSequenceClassification finds `classifier` in modules_to_save and its
    // weights under `base_model.model.classifier.*`, bit for bit the trained ones.
    let kept = tmp.path().join("kept");
    ok(&run(&[
        &"merge",
        &toxic,
        &"-k",
        &"8",
        &"--keep-heads",
        &"toxic",
        &"-o",
        &kept,
    ]));
    let cfg = read_config(&kept);
    assert_eq!(cfg["task_type"], "SEQ_CLS");
    assert_eq!(
        cfg["modules_to_save"],
        serde_json::json!(["classifier", "score"])
    );
    assert_eq!(cfg["target_modules"], serde_json::json!(["q_lin", "v_lin"]));
    let weights = kept.join("adapter_model.safetensors");
    let keys = tensor_names(&weights);
    for head in [
        "base_model.model.classifier.weight",
        "base_model.model.classifier.bias",
    ] {
        assert!(keys.iter().any(|k| k == head), "{head} missing: {keys:?}");
        assert_eq!(
            tensor_bytes(&weights, head),
            tensor_bytes(&src_weights, head)
        );
    }
    for k in &lora_keys {
        assert!(keys.contains(k), "{k}");
    }
    // Every LoRA key names a module PEFT targets (q_lin / v_lin).
    assert!(lora_keys
        .iter()
        .all(|k| k.contains(".q_lin.lora_") || k.contains(".v_lin.lora_")));
}

/// A PEFT adapter on a diffusers UNet: one attention projection and one 3×3 convolution.
fn unet_adapter(dir: &Path) {
    let q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
    let conv = "down_blocks.0.resnets.0.conv1";
    let mut t = lora_pair(q, 4, 8, 8, 3);
    t.push(RawTensor::f32_pattern(
        &format!("base_model.model.{conv}.lora_A.weight"),
        &[2, 3, 3, 3],
        5,
    ));
    t.push(RawTensor::f32_pattern(
        &format!("base_model.model.{conv}.lora_B.weight"),
        &[6, 2, 1, 1],
        6,
    ));
    let config = peft_config(serde_json::json!({
        "r": 4, "lora_alpha": 4, "rank_pattern": {conv: 2}, "alpha_pattern": {conv: 2},
        "target_modules": ["to_q", "conv1"], "task_type": null,
        "base_model_name_or_path": "stable-diffusion-v1-5/stable-diffusion-v1-5"
    }));
    write_peft_dir(dir, &config, &t);
}

#[test]
fn a_unet_adapter_exported_as_kohya_gets_lora_unet_keys_and_locon_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("unet_lora");
    unet_adapter(&src);
    let out = tmp.path().join("k.safetensors");
    ok(&run(&[
        &"merge",
        &src,
        &"--method",
        &"cat",
        &"--format",
        &"kohya",
        &"--dtype",
        &"fp16",
        &"-o",
        &out,
    ]));
    let names = tensor_names(&out);
    assert_eq!(names.len(), 6);
    assert!(
        names.iter().all(|k| k.starts_with("lora_unet_")),
        "{names:?}"
    );
    assert!(names.contains(&"lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight".to_string()));
    let h = header(&out);
    for k in names.iter().filter(|k| k.ends_with(".alpha")) {
        assert_eq!(h[k]["dtype"], "F16", "{k}: .alpha in the save dtype");
        assert_eq!(h[k]["shape"], serde_json::json!([]));
    }
    let meta = &h["__metadata__"];
    let args: serde_json::Value =
        serde_json::from_str(meta["ss_network_args"].as_str().unwrap()).unwrap();
    // cat keeps every unit: the conv module keeps rank 2, written with scale 1 (alpha = rank).
    assert_eq!(args["conv_dim"], "2");
    assert_eq!(args["conv_alpha"], "2.0");
    assert_eq!(meta["ss_network_dim"], "4");
    // An override puts every module under the prefix asked for.
    let te = tmp.path().join("te.safetensors");
    ok(&run(&[
        &"merge",
        &src,
        &"--format",
        &"kohya",
        &"--kohya-prefix",
        &"te1",
        &"-o",
        &te,
    ]));
    assert!(tensor_names(&te).iter().all(|k| k.starts_with("lora_te1_")));
}

/// A kohya file by hand: one text-encoder module, with the given header metadata.
fn kohya_file(path: &Path, metadata: serde_json::Value, seed: u32) {
    let stem = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
    let t = vec![
        RawTensor::f32_pattern(&format!("{stem}.lora_down.weight"), &[4, 8], seed),
        RawTensor::f32_pattern(&format!("{stem}.lora_up.weight"), &[8, 4], seed + 1),
        RawTensor::f32(&format!("{stem}.alpha"), &[], &[4.0]),
    ];
    let meta = serde_json::to_string(&metadata).unwrap();
    std::fs::write(path, safetensors_bytes(&t, Some(&meta))).unwrap();
}

#[test]
fn kohya_metadata_is_carried_where_the_sources_agree_and_file_hashes_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (
        tmp.path().join("a.safetensors"),
        tmp.path().join("b.safetensors"),
    );
    kohya_file(
        &a,
        serde_json::json!({"ss_base_model_version": "sd_v1", "ss_v2": "False",
            "ss_sd_model_name": "v1-5-pruned.safetensors", "sshs_model_hash": "aaaa",
            "modelspec.architecture": "stable-diffusion-v1/lora", "modelspec.hash_sha256": "0xaa"}),
        1,
    );
    kohya_file(
        &b,
        serde_json::json!({"ss_base_model_version": "sd_v1", "ss_v2": "False",
            "ss_sd_model_name": "other.ckpt", "sshs_model_hash": "bbbb",
            "modelspec.architecture": "stable-diffusion-v1/lora", "modelspec.hash_sha256": "0xbb"}),
        7,
    );
    let out = tmp.path().join("m.safetensors");
    let err = ok(&run(&[
        &"merge",
        &a,
        &b,
        &"--format",
        &"kohya",
        &"-o",
        &out,
    ]));
    assert!(
        err.contains("sources differ on it: ss_sd_model_name"),
        "{err}"
    );
    let h = header(&out);
    let meta = h["__metadata__"].as_object().unwrap();
    assert_eq!(meta["ss_base_model_version"], "sd_v1");
    assert_eq!(meta["ss_v2"], "False");
    assert_eq!(meta["modelspec.architecture"], "stable-diffusion-v1/lora");
    for gone in [
        "ss_sd_model_name",
        "sshs_model_hash",
        "modelspec.hash_sha256",
    ] {
        assert!(!meta.contains_key(gone), "{gone} must not be carried");
    }
    assert!(tensor_names(&out).iter().all(|k| k.starts_with("lora_te_")));
}

/// Hand-built diffusers file: a UNet module (r 4, α 8) and a text-encoder module (r 2, α 1).
struct DiffusersFile {
    a_unet: Vec<f32>,
    b_unet: Vec<f32>,
    a_te: Vec<f32>,
    b_te: Vec<f32>,
}

const UNET_Q: &str = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
const TE_Q: &str = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj";

fn diffusers_file(path: &Path, with_metadata: bool) -> DiffusersFile {
    let pattern = |n: usize, seed: u32| -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32 * 2654435761 + seed * 40503) >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    let f = DiffusersFile {
        a_unet: pattern(4 * 6, 1),
        b_unet: pattern(5 * 4, 2),
        a_te: pattern(2 * 3, 3),
        b_te: pattern(3 * 2, 4),
    };
    let t = vec![
        RawTensor::f32(&format!("{UNET_Q}.lora_A.weight"), &[4, 6], &f.a_unet),
        RawTensor::f32(&format!("{UNET_Q}.lora_B.weight"), &[5, 4], &f.b_unet),
        RawTensor::f32(&format!("{TE_Q}.lora_A.weight"), &[2, 3], &f.a_te),
        RawTensor::f32(&format!("{TE_Q}.lora_B.weight"), &[3, 2], &f.b_te),
    ];
    let meta = if with_metadata {
        let inner = serde_json::json!({
            "unet.r": 4, "unet.lora_alpha": 8, "unet.target_modules": ["to_q"],
            "text_encoder.r": 2, "text_encoder.lora_alpha": 1,
            "text_encoder.target_modules": ["q_proj"],
        })
        .to_string();
        serde_json::json!({"format": "pt", "lora_adapter_metadata": inner}).to_string()
    } else {
        r#"{"format":"pt"}"#.to_string()
    };
    std::fs::write(path, safetensors_bytes(&t, Some(&meta))).unwrap();
    f
}

/// `scale · B · A` from row-major values (test reference, no library code).
fn delta(b: &[f32], a: &[f32], d_out: usize, r: usize, d_in: usize, scale: f64) -> Vec<f64> {
    let mut out = vec![0f64; d_out * d_in];
    for i in 0..d_out {
        for j in 0..d_in {
            out[i * d_in + j] = scale
                * (0..r)
                    .map(|k| f64::from(b[i * r + k]) * f64::from(a[k * d_in + j]))
                    .sum::<f64>();
        }
    }
    out
}

/// Reads a diffusers file by hand and returns ΔW of `module` with scale `alpha / r`, α read
/// from its `lora_adapter_metadata`.
fn delta_from_file(file: &Path, module: &str, component: &str) -> Vec<f64> {
    let h = header(file);
    let a_key = format!("{module}.lora_A.weight");
    let b_key = format!("{module}.lora_B.weight");
    let sa: Vec<usize> = serde_json::from_value(h[&a_key]["shape"].clone()).unwrap();
    let sb: Vec<usize> = serde_json::from_value(h[&b_key]["shape"].clone()).unwrap();
    assert_eq!(h[&a_key]["dtype"], "F32");
    let meta: serde_json::Value =
        serde_json::from_str(h["__metadata__"]["lora_adapter_metadata"].as_str().unwrap()).unwrap();
    let r = sa[0];
    let alpha = meta[format!("{component}.alpha_pattern")]
        .get(module.split_once('.').unwrap().1)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| meta[format!("{component}.lora_alpha")].as_f64().unwrap());
    assert_eq!(meta[format!("{component}.use_rslora")], false);
    let a = f32s(&tensor_bytes(file, &a_key));
    let b = f32s(&tensor_bytes(file, &b_key));
    delta(&b, &a, sb[0], r, sa[1], alpha / r as f64)
}

fn max_rel(x: &[f64], y: &[f64]) -> f64 {
    let num: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = y.iter().map(|v| v * v).sum::<f64>().sqrt();
    num / den
}

#[test]
fn a_diffusers_file_round_trips_through_a_merge_with_the_same_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("pytorch_lora_weights.safetensors");
    let f = diffusers_file(&src, true);
    let opts = Default::default();
    let read = lora_lego::io::load_adapter(&src, &opts).unwrap();
    assert_eq!(read.format, lora_lego::adapter::AdapterFormat::Diffusers);
    let scales: Vec<(String, f64)> = read
        .modules
        .iter()
        .map(|m| (m.key.to_string(), m.scale))
        .collect();
    assert_eq!(
        scales,
        [(TE_Q.to_string(), 0.5), (UNET_Q.to_string(), 2.0)],
        "α from lora_adapter_metadata: 1/2 and 8/4"
    );
    // read → merge (cat keeps every unit: ΔW exact) → write diffusers → read.
    let out = tmp.path().join("merged.safetensors");
    ok(&run(&[
        &"merge",
        &src,
        &"--method",
        &"cat",
        &"--format",
        &"diffusers",
        &"-o",
        &out,
    ]));
    let names = tensor_names(&out);
    assert_eq!(
        names,
        [
            format!("{TE_Q}.lora_A.weight"),
            format!("{TE_Q}.lora_B.weight"),
            format!("{UNET_Q}.lora_A.weight"),
            format!("{UNET_Q}.lora_B.weight"),
        ]
    );
    let want_unet = delta(&f.b_unet, &f.a_unet, 5, 4, 6, 2.0);
    let want_te = delta(&f.b_te, &f.a_te, 3, 2, 3, 0.5);
    assert!(max_rel(&delta_from_file(&out, UNET_Q, "unet"), &want_unet) < 1e-6);
    assert!(max_rel(&delta_from_file(&out, TE_Q, "text_encoder"), &want_te) < 1e-6);
    // And the library reads its own output back to the same ΔW.
    let back = lora_lego::io::load_adapter(&out, &opts).unwrap();
    for m in &back.modules {
        let want = if m.key.as_str() == UNET_Q {
            &want_unet
        } else {
            &want_te
        };
        let got: Vec<f64> = dense_delta(m).iter().copied().collect();
        assert!(max_rel(&got, want) < 1e-6, "{}", m.key);
    }
    // A kohya export of the same file names the UNet and text-encoder modules apart.
    let k = tmp.path().join("k.safetensors");
    ok(&run(&[&"merge", &src, &"--format", &"kohya", &"-o", &k]));
    let kn = tensor_names(&k);
    assert!(kn.iter().any(|n| n.starts_with("lora_unet_down_blocks_0_")));
    assert!(kn
        .iter()
        .any(|n| n.starts_with("lora_te_text_model_encoder_")));
}

#[test]
fn a_diffusers_file_without_alphas_reads_alpha_as_rank_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bare.safetensors");
    diffusers_file(&src, false);
    let read = lora_lego::io::load_adapter(&src, &Default::default()).unwrap();
    assert!(read.modules.iter().all(|m| m.scale == 1.0));
    assert!(
        read.warnings.iter().any(|w| w.contains("alpha = rank")),
        "{:?}",
        read.warnings
    );
}

#[test]
fn a_cloneofsimo_file_is_refused_by_its_real_name() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("lora.safetensors");
    let t = vec![
        RawTensor::f32_pattern("unet:0:down", &[4, 8], 1),
        RawTensor::f32_pattern("unet:0:up", &[8, 4], 2),
    ];
    std::fs::write(&f, safetensors_bytes(&t, None)).unwrap();
    let e = lora_lego::io::load_adapter(&f, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cloneofsimo") && e.contains("unet:0:down"),
        "{e}"
    );
    assert!(!e.contains("no config"), "{e}");
}

#[test]
fn a_diffusers_file_and_a_kohya_file_of_the_same_network_merge_module_by_module() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("d.safetensors");
    diffusers_file(&src, true);
    let k = tmp.path().join("k.safetensors");
    ok(&run(&[
        &"merge",
        &src,
        &"--method",
        &"cat",
        &"--format",
        &"kohya",
        &"-o",
        &k,
    ]));
    let opts = Default::default();
    let set = lora_lego::align::ModuleSet::new(vec![
        lora_lego::io::load_adapter(&src, &opts).unwrap(),
        lora_lego::io::load_adapter(&k, &opts).unwrap(),
    ])
    .unwrap();
    assert_eq!(set.modules.len(), 2);
    for m in &set.modules {
        assert_eq!(m.sources.len(), 2, "{} not aligned", m.key);
        let d0: Vec<f64> = dense_delta(set.source(m.sources[0]))
            .iter()
            .copied()
            .collect();
        let d1: Vec<f64> = dense_delta(set.source(m.sources[1]))
            .iter()
            .copied()
            .collect();
        assert!(max_rel(&d1, &d0) < 1e-6, "{}", m.key);
    }
}
