//! Every unsupported or malformed input names what is wrong.

use crate::common::*;
use lora_lego::align::ModuleSet;
use lora_lego::io::write::{write_adapter, AdapterOut};
use lora_lego::io::{load_adapter, LoadOptions};

fn load_err(p: &std::path::Path) -> String {
    load_adapter(p, &LoadOptions::default())
        .unwrap_err()
        .to_string()
}

fn dir_with(
    tmp: &tempfile::TempDir,
    name: &str,
    config: &str,
    tensors: &[RawTensor],
) -> std::path::PathBuf {
    let d = tmp.path().join(name);
    write_peft_dir(&d, config, tensors);
    d
}

fn cfg() -> String {
    peft_config(serde_json::json!({}))
}

#[test]
fn unsupported_adapter_kinds_name_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("base_model.model.m.q_proj.lora_magnitude_vector", "DoRA"),
        ("base_model.model.m.q_proj.lora_B.bias", "lora_bias=True"),
        ("base_model.model.m.q_proj.hada_w1_a", "LoHa"),
        ("base_model.model.m.q_proj.lokr_w1", "LoKr"),
        (
            "base_model.model.m.q_proj.lora_A.default.weight",
            "unknown LoRA key layout",
        ),
    ];
    for (i, (key, what)) in cases.iter().enumerate() {
        let mut t = lora_pair("m.q_proj", 4, 8, 8, 1);
        t.push(RawTensor::f32_pattern(key, &[8], 3));
        let d = dir_with(&tmp, &format!("u{i}"), &cfg(), &t);
        let e = load_err(&d);
        assert!(
            e.contains(&format!("tensor `{key}`")) && e.contains(what),
            "{e}"
        );
    }
}

#[test]
fn dora_in_config_and_non_lora_peft_types_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = lora_pair("m.q_proj", 4, 8, 8, 1);
    let e = load_err(&dir_with(
        &tmp,
        "dora",
        &peft_config(serde_json::json!({"use_dora": true})),
        &t,
    ));
    assert!(
        e.contains("use_dora is true: DoRA adapters are not supported"),
        "{e}"
    );
    let e = load_err(&dir_with(
        &tmp,
        "ia3",
        &peft_config(serde_json::json!({"peft_type": "IA3"})),
        &t,
    ));
    assert!(
        e.contains("peft_type is \"IA3\"; only LoRA adapters"),
        "{e}"
    );
    assert!(e.contains("adapter_config.json"), "names the file: {e}");
}

#[test]
fn a_factor_without_its_partner_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let t = vec![RawTensor::f32_pattern(
        "base_model.model.m.q_proj.lora_A.weight",
        &[4, 8],
        1,
    )];
    let e = load_err(&dir_with(&tmp, "half", &cfg(), &t));
    assert!(
        e.contains(
            "tensor `base_model.model.m.q_proj.lora_A.weight`: has no matching lora_B tensor"
        ),
        "{e}"
    );
}

#[test]
fn shapes_that_do_not_fit_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let t = vec![
        RawTensor::f32_pattern("base_model.model.m.q_proj.lora_A.weight", &[4, 8], 1),
        RawTensor::f32_pattern("base_model.model.m.q_proj.lora_B.weight", &[8, 3], 2),
    ];
    let e = load_err(&dir_with(&tmp, "shape", &cfg(), &t));
    assert!(
        e.contains("lora_B.weight`: shape [8, 3] has 3 rank columns but lora_A [4, 8] has rank 4"),
        "{e}"
    );
}

#[test]
fn config_r_disagreeing_with_the_tensors_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = load_err(&dir_with(
        &tmp,
        "r",
        &peft_config(serde_json::json!({"r": 16})),
        &lora_pair("m.q_proj", 4, 8, 8, 1),
    ));
    assert!(e.contains("r = 16 for module `m.q_proj`, but its lora_A `base_model.model.m.q_proj.lora_A.weight` has 4 rows"), "{e}");
}

#[test]
fn invalid_json_config_and_missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_with(
        &tmp,
        "badjson",
        "{not json",
        &lora_pair("m.q_proj", 4, 8, 8, 1),
    );
    let e = load_err(&d);
    assert!(e.contains("adapter_config.json: invalid JSON"), "{e}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(load_err(&empty).contains("no adapter_model.safetensors in this directory"));
    let nothing = tmp.path().join("nope");
    assert!(load_err(&nothing).contains("No such file or directory"));
    let bare = tmp.path().join("bare.safetensors");
    std::fs::write(
        &bare,
        safetensors_bytes(&lora_pair("m.q_proj", 4, 8, 8, 1), None),
    )
    .unwrap();
    assert!(load_err(&bare).contains("PEFT-style tensors but no config"));
}

#[test]
fn non_finite_values_are_refused_unless_allowed_and_zero_b_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let t = vec![
        RawTensor::f32(
            "base_model.model.m.q_proj.lora_A.weight",
            &[1, 2],
            &[f32::NAN, 1.0],
        ),
        RawTensor::f32(
            "base_model.model.m.q_proj.lora_B.weight",
            &[2, 1],
            &[0.0, 0.0],
        ),
    ];
    let d = dir_with(&tmp, "nan", &peft_config(serde_json::json!({"r": 1})), &t);
    let e = load_err(&d);
    assert!(
        e.contains("tensor `base_model.model.m.q_proj.lora_A.weight` holds 1 non-finite value(s)"),
        "{e}"
    );
    // The library names the problem; the command line names its way past it.
    assert!(!e.contains("--allow-nonfinite"), "{e}");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_lora-lego"))
        .arg("merge")
        .arg(&d)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success());
    assert!(
        stderr.contains("non-finite") && stderr.contains("pass --allow-nonfinite"),
        "{stderr}"
    );
    let a = load_adapter(
        &d,
        &LoadOptions {
            allow_nonfinite: true,
        },
    )
    .unwrap();
    let w = a.warnings.join("\n");
    assert!(w.contains("all zeros: this module is untrained"), "{w}");
}

#[test]
fn conflicting_shapes_across_adapters_name_the_module_and_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = dir_with(&tmp, "a", &cfg(), &lora_pair("m.q_proj", 4, 8, 8, 1));
    let b = dir_with(&tmp, "b", &cfg(), &lora_pair("m.q_proj", 4, 16, 8, 1));
    let opts = LoadOptions::default();
    let set = ModuleSet::new(vec![
        load_adapter(&a, &opts).unwrap(),
        load_adapter(&b, &opts).unwrap(),
    ]);
    let e = set.unwrap_err().to_string();
    assert!(
        e.contains("module `m.q_proj`") && e.contains("[4, 8]") && e.contains("[4, 16]"),
        "{e}"
    );
}

#[test]
fn no_module_in_common_and_different_base_models_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = LoadOptions::default();
    let a = dir_with(&tmp, "a", &cfg(), &lora_pair("m.q_proj", 4, 8, 8, 1));
    let b = dir_with(&tmp, "b", &cfg(), &lora_pair("m.k_proj", 4, 8, 8, 1));
    let e = ModuleSet::new(vec![
        load_adapter(&a, &opts).unwrap(),
        load_adapter(&b, &opts).unwrap(),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("have no module in common"), "{e}");
    let c = dir_with(
        &tmp,
        "c",
        &peft_config(serde_json::json!({"base_model_name_or_path": "other"})),
        &lora_pair("m.q_proj", 4, 8, 8, 1),
    );
    let set = ModuleSet::new(vec![
        load_adapter(&a, &opts).unwrap(),
        load_adapter(&c, &opts).unwrap(),
    ])
    .unwrap();
    assert!(
        set.warnings
            .join("")
            .contains("trained on base model `other` but `a` on `toy`"),
        "{:?}",
        set.warnings
    );
}

#[test]
fn malformed_safetensors_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let good = safetensors_bytes(&lora_pair("m.q_proj", 4, 8, 8, 1), None);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "tiny",
            vec![1, 2, 3],
            "shorter than the 8-byte header length",
        ),
        (
            "truncated",
            good[..good.len() - 10].to_vec(),
            "truncated or corrupt",
        ),
        (
            "hugeheader",
            {
                let mut v = good.clone();
                v[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
                v
            },
            "header length 1099511627776 is larger than the",
        ),
        (
            "notjson",
            {
                let mut v = 8u64.to_le_bytes().to_vec();
                v.extend(b"not json");
                v
            },
            "header is not valid JSON",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = tmp.path().join(format!("{name}.safetensors"));
        std::fs::write(&p, bytes).unwrap();
        let e = load_err(&p);
        assert!(
            e.contains(&format!("{name}.safetensors")) && e.contains(want),
            "{name}: {e}"
        );
    }
    let mut t = lora_pair("m.q_proj", 4, 8, 8, 1);
    t.push(RawTensor {
        name: "x".into(),
        dtype: "F64",
        shape: vec![1],
        data: vec![0; 8],
    });
    let p = tmp.path().join("f64.safetensors");
    std::fs::write(&p, safetensors_bytes(&t, None)).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("tensor `x` has dtype F64; only F32, F16 and BF16 are supported"),
        "{e}"
    );
}

#[test]
fn existing_output_is_refused_without_force_and_force_replaces_only_our_exports() {
    use lora_lego::adapter::AdapterFormat::Peft;
    let tmp = tempfile::tempdir().unwrap();
    let adapter = load_adapter(
        &fixture("peft-tiny/adapters/reverse"),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut out = AdapterOut::from_adapter(&adapter);
    let target = tmp.path().join("out");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "precious").unwrap();
    let e = write_adapter(&out, Peft, &target, false)
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("out: already exists"), "{e}");
    // --force does not delete a directory lora-lego did not write, and says what it found.
    let e = write_adapter(&out, Peft, &target, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refusing to replace it: it is a directory holding 1 entry lora-lego does not write (keep.txt)"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("keep.txt")).unwrap(),
        "precious"
    );
    // An adapter directory someone else wrote (no recipe of ours) is not replaced either.
    let theirs = tmp.path().join("theirs");
    write_adapter(&out, Peft, &theirs, false).unwrap();
    let e = write_adapter(&out, Peft, &theirs, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a directory without a lora-lego recipe"), "{e}");
    // A previous export of ours is replaced whole.
    out.side_files.push((
        "lora_lego_recipe.toml".into(),
        "# lora-lego merge recipe\n".into(),
    ));
    let ours = tmp.path().join("ours");
    write_adapter(&out, Peft, &ours, false).unwrap();
    std::fs::write(ours.join("adapter_config.json"), "{}").unwrap();
    write_adapter(&out, Peft, &ours, true).unwrap();
    assert!(std::fs::read_to_string(ours.join("adapter_config.json"))
        .unwrap()
        .contains("LORA"));
    // Nothing temporary is left beside the targets.
    let mut leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    leftovers.sort();
    assert_eq!(leftovers, ["ours", "out", "theirs"]);
}

#[test]
fn integer_and_fp8_tensors_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (dtype, bytes) in [("I8", 1usize), ("F8_E4M3", 1), ("F64", 8)] {
        let mut t = lora_pair("m.q_proj", 4, 8, 8, 1);
        t.push(RawTensor {
            name: "scale_inv".into(),
            dtype,
            shape: vec![2],
            data: vec![0; 2 * bytes],
        });
        let p = tmp.path().join(format!("{dtype}.safetensors"));
        std::fs::write(&p, safetensors_bytes(&t, None)).unwrap();
        let e = load_err(&p);
        assert!(
            e.contains(&format!(
                "tensor `scale_inv` has dtype {dtype}; only F32, F16 and BF16 are supported"
            )),
            "{e}"
        );
    }
}

#[test]
fn overlapping_or_out_of_range_offsets_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    // Two tensors claiming the same bytes.
    let header = r#"{"x.lora_down.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"x.lora_up.weight":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 8]);
    let p = tmp.path().join("overlap.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("overlap.safetensors") && e.contains("out of range or overlap"),
        "{e}"
    );
    // Offsets past the end of the data.
    let header = r#"{"x.lora_down.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"x.lora_up.weight":{"dtype":"F32","shape":[2,1],"data_offsets":[8,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 12]);
    let p = tmp.path().join("past.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("past.safetensors")
            && (e.contains("out of range") || e.contains("does not cover")),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_an_adapter_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("notes.txt");
    std::fs::write(&p, "hello").unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("notes.txt: not an adapter: expected a PEFT directory or a .safetensors file"),
        "{e}"
    );
    let fake = tmp.path().join("fake.safetensors");
    std::fs::write(&fake, "this is text, not tensors").unwrap();
    let e = load_err(&fake);
    assert!(
        e.contains("fake.safetensors: not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn inputs_that_are_not_regular_files_are_refused_by_name_without_hanging() {
    use std::ffi::CString;
    let tmp = tempfile::tempdir().unwrap();
    let fifo = |p: &std::path::Path| {
        let c = CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    };
    let bare = tmp.path().join("x.safetensors");
    fifo(&bare);
    let e = load_err(&bare);
    assert!(e.contains("x.safetensors: is a FIFO (named pipe)"), "{e}");
    let dir = tmp.path().join("adapter");
    std::fs::create_dir(&dir).unwrap();
    fifo(&dir.join("adapter_model.safetensors"));
    std::fs::write(
        dir.join("adapter_config.json"),
        peft_config(serde_json::json!({})),
    )
    .unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("adapter_model.safetensors: is a FIFO (named pipe), not a regular file"),
        "{e}"
    );
    let dir2 = tmp.path().join("adapter2");
    write_peft_dir(&dir2, "{}", &lora_pair("m.q_proj", 2, 4, 4, 1));
    std::fs::remove_file(dir2.join("adapter_config.json")).unwrap();
    fifo(&dir2.join("adapter_config.json"));
    let e = load_err(&dir2);
    assert!(e.contains("adapter_config.json: is a FIFO"), "{e}");
    let recipe = tmp.path().join("r.toml");
    fifo(&recipe);
    let e = lora_lego::recipe::Recipe::read(&recipe)
        .unwrap_err()
        .to_string();
    assert!(e.contains("r.toml: is a FIFO"), "{e}");
}

#[test]
fn a_file_that_shrinks_while_mapped_is_an_error_not_a_sigbus() {
    use lora_lego::align::ModuleSet;
    use lora_lego::engine::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    // 1 MiB of factors, so the truncation cuts through mapped pages.
    write_peft_dir(
        &dir,
        &peft_config(serde_json::json!({"r": 8})),
        &lora_pair("model.layers.0.mlp.up_proj", 8, 16384, 16384, 3),
    );
    let weights = dir.join("adapter_model.safetensors");
    let adapter = load_adapter(&dir, &LoadOptions::default()).unwrap();
    let was = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let m = &adapter.modules[0];
    // Reading past the new end sees zeros instead of killing the process.
    let values = m.b.to_f32_vec();
    assert!(values[values.len() - 1] == 0.0);
    let e = m.b.check_intact().unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "adapter_model.safetensors: the file changed size while it was being read ({was} bytes, now 4096)"
        )),
        "{e}"
    );
    // An export of a merge over it writes nothing.
    let engine = Engine::new(ModuleSet::new(vec![adapter]).unwrap());
    let settings = lora_lego::recipe::MergeSettings {
        method: "cat".parse().unwrap(),
        ..Default::default()
    };
    let output = engine.merge_all_with(&settings, &|| {}).unwrap();
    let out = tmp.path().join("out");
    let e = lora_lego::export::export(&engine, &output, &settings, &out, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("changed size while it was being read"), "{e}");
    assert!(!out.exists());
}

/// A safetensors image from a hand-written header and data.
fn raw_image(header: &str, data: &[u8]) -> Vec<u8> {
    let mut head = header.as_bytes().to_vec();
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend(head);
    out.extend(data);
    out
}

#[test]
fn structural_header_errors_name_the_field_and_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("x.safetensors");
    let cases = [
        (
            r#"{"__metadata__":{"a":1},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            r#"`__metadata__` must map names to strings, got {"a":1}"#,
        ),
        (
            r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
            "tensor `x`: `data_offsets` must be two non-negative integers [begin, end], got [0]",
        ),
        (
            r#"{"x":{"dtype":5,"shape":[1],"data_offsets":[0,4]}}"#,
            r#"tensor `x`: `dtype` must be a safetensors dtype name such as "F32", got 5"#,
        ),
        (
            r#"{"x":{"dtype":"F32","shape":"one","data_offsets":[0,4]}}"#,
            r#"tensor `x`: `shape` must be a list of non-negative integers, got "one""#,
        ),
        (
            r#"{"x":{"dtype":"F32","data_offsets":[0,4]}}"#,
            "tensor `x`: `shape` is missing",
        ),
    ];
    for (header, want) in cases {
        std::fs::write(&p, raw_image(header, &[0; 4])).unwrap();
        let e = load_err(&p);
        assert!(
            e.contains("x.safetensors: not a valid safetensors file: "),
            "{e}"
        );
        assert!(e.contains(want), "{header}: {e}");
    }
}

#[test]
fn a_recipe_field_of_the_wrong_type_is_named() {
    let text = "version = 1\n\n[[adapters]]\npath = \"/x\"\nsha256 = \"ab\"\n\n[merge]\nmethod = \"lego\"\nk = \"four\"\n";
    let e = lora_lego::recipe::Recipe::parse(std::path::Path::new("r.toml"), text)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "r.toml: line 9: `merge.k`: invalid type: string \"four\", expected usize"
    );
}

#[test]
fn an_io_error_prints_its_cause_once() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lora-lego"))
        .args(["merge", "/nonexistent/adapter", "-o", "/nonexistent/out"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("error: /nonexistent/adapter: No such file or directory (os error 2)\n"),
        "{err}"
    );
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}
