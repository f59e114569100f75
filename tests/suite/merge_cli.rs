//! The `merge` and `inspect` commands as a user runs them.

use crate::common::*;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora-lego"))
}

fn tiny_args() -> Vec<String> {
    tiny_adapters()
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// The weights `merge INPUTS ARGS -o …` writes under `tmp` at 1, 2 and again 2 threads.
fn weights_at_thread_counts(
    tmp: &std::path::Path,
    inputs: &[impl AsRef<std::ffi::OsStr>],
    args: &[&str],
) -> Vec<Vec<u8>> {
    let mut outputs = Vec::new();
    for threads in ["1", "2", "2"] {
        let out = tmp.join(format!("out{}", outputs.len()));
        let st = bin()
            .arg("merge")
            .args(inputs)
            .args(args)
            .args(["--quiet", "-o"])
            .arg(&out)
            .env("RAYON_NUM_THREADS", threads)
            .status()
            .unwrap();
        assert!(st.success());
        outputs.push(std::fs::read(out.join("adapter_model.safetensors")).unwrap());
    }
    outputs
}

#[test]
fn same_seed_gives_byte_identical_exports_whatever_the_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let outputs = weights_at_thread_counts(tmp.path(), &tiny_args(), &["-k", "5", "--seed", "7"]);
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[1], outputs[2]);
}

#[test]
fn exports_written_while_merging_are_byte_identical_whatever_the_thread_count() {
    use lora_lego::bench::synth::{synthesize, SynthSpec};
    // 36 MB of factors: over the size from which the weights are written while merging.
    let spec = SynthSpec {
        adapters: 4,
        rank: 16,
        layers: 8,
        hidden: 1024,
        intermediate: 2048,
        dtype: lora_lego::tensor::DType::F32,
    };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = synthesize(&spec, &tmp.path().join("in"), 5).unwrap();
    let outputs = weights_at_thread_counts(tmp.path(), &inputs, &["-k", "12", "--seed", "3"]);
    // The header fills room left for it: these were written while merging.
    let n = u64::from_le_bytes(outputs[0][..8].try_into().unwrap()) as usize;
    assert!(outputs[0][8 + n - 64..8 + n].iter().all(|&c| c == b' '));
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[1], outputs[2]);
}

#[test]
fn merge_writes_a_peft_adapter_with_scaling_one_and_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let o = bin()
        .arg("merge")
        .args(tiny_args())
        .args([
            "-k",
            "6",
            "--json",
            "--k-for",
            "model.layers.0.mlp.*=3",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["modules"].as_array().unwrap().len(), 14);
    let cfg: serde_json::Value = read_config(&out);
    assert_eq!(cfg["r"], 6);
    assert_eq!(cfg["lora_alpha"], 6);
    assert_eq!(cfg["rank_pattern"]["model.layers.0.mlp.up_proj"], 3);
    assert_eq!(cfg["alpha_pattern"]["model.layers.0.mlp.up_proj"], 3);
    assert_eq!(
        cfg["use_rslora"], false,
        "the first source (reverse) is not rsLoRA, and ours never is"
    );
    let back = lora_lego::io::load_adapter(&out, &Default::default()).unwrap();
    assert!(back.modules.iter().all(|m| m.scale == 1.0));
}

#[test]
fn rslora_first_source_does_not_leak_into_the_merged_config() {
    // PEFT copies the first adapter's config, so an rsLoRA first input makes its merge scale by
    // r'/√r'. We always write use_rslora false.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let st = bin()
        .arg("merge")
        .arg(fixture("peft-tiny/adapters/increment"))
        .arg(fixture("peft-tiny/adapters/sort"))
        .args(["-k", "4", "--quiet", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let cfg: serde_json::Value = read_config(&out);
    assert_eq!(cfg["use_rslora"], false);
}

#[test]
fn heads_are_dropped_with_a_note_or_kept_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let toxic = fixture("real/distilbert-base-uncased/toxic");
    let out = tmp.path().join("dropped");
    let o = bin()
        .args(["merge", "-k", "4", "-o"])
        .arg(&out)
        .arg(&toxic)
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("4 non-LoRA tensor(s) not merged and left out")
            && err.contains("--keep-heads toxic"),
        "{err}"
    );
    assert_eq!(
        lora_lego::io::load_adapter(&out, &Default::default())
            .unwrap()
            .extras
            .len(),
        0
    );
    let kept = tmp.path().join("kept");
    let o = bin()
        .args(["merge", "-k", "4", "--keep-heads", "toxic", "-o"])
        .arg(&kept)
        .arg(&toxic)
        .output()
        .unwrap();
    assert!(o.status.success());
    let back = lora_lego::io::load_adapter(&kept, &Default::default()).unwrap();
    assert_eq!(back.extras.len(), 4);
    let cfg: serde_json::Value = read_config(&kept);
    assert_eq!(
        cfg["modules_to_save"],
        serde_json::json!(["classifier", "score"])
    );
}

#[test]
fn kohya_output_matches_peft_output() {
    let tmp = tempfile::tempdir().unwrap();
    let peft = tmp.path().join("p");
    let kohya = tmp.path().join("k.safetensors");
    for (target, format) in [(&peft, "peft"), (&kohya, "kohya")] {
        let st = bin()
            .arg("merge")
            .args(tiny_args())
            .args(["-k", "5", "--quiet", "--format", format, "-o"])
            .arg(target)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let opts = Default::default();
    let set = lora_lego::align::ModuleSet::new(vec![
        lora_lego::io::load_adapter(&peft, &opts).unwrap(),
        lora_lego::io::load_adapter(&kohya, &opts).unwrap(),
    ])
    .unwrap();
    for m in &set.modules {
        assert_eq!(m.sources.len(), 2);
        assert_eq!(
            rel_diff(
                &dense_delta(set.source(m.sources[1])),
                &dense_delta(set.source(m.sources[0]))
            ),
            0.0
        );
    }
}

#[test]
fn user_errors_exit_1_with_a_message_and_usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["merge".into(), "-k".into(), "0".into()],
            2,
            "k must be at least 1",
        ),
        (
            vec!["merge".into(), "--weights".into(), "1,2".into()],
            2,
            "2 weights given for 3 adapters",
        ),
        (
            vec!["merge".into(), "--weights".into(), "1,NaN,1".into()],
            2,
            "weight 2 is NaN",
        ),
        (
            vec!["merge".into(), "--method".into(), "avg".into()],
            2,
            "invalid value 'avg' for '--method",
        ),
        (
            vec!["merge".into(), "--method".into(), "linear".into()],
            1,
            "same rank",
        ),
    ];
    for (args, code, want) in cases {
        let mut full = args.clone();
        full.extend(tiny_args());
        full.push("-o".into());
        full.push(out.display().to_string());
        let o = bin().args(&full).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        if code == 1 {
            assert!(
                err.lines().last().unwrap_or("").starts_with("error: "),
                "{err}"
            );
        }
        assert!(!out.exists(), "nothing is written on error");
    }
    std::fs::create_dir(&out).unwrap();
    let o = bin()
        .arg("merge")
        .args(tiny_args())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists; pass --force"));
}

#[test]
fn inspect_json_lists_modules_with_norms() {
    let o = bin()
        .args(["inspect", "--json"])
        .arg(fixture("peft-tiny/adapters/increment"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &v[0]["modules"][0];
    assert_eq!(v[0]["use_rslora"], true);
    assert_eq!(m["module"], "model.layers.0.mlp.down_proj");
    assert!((m["scaling"].as_f64().unwrap() - 16.0 / 8f64.sqrt()).abs() < 1e-12);
    assert!((m["delta_norm"].as_f64().unwrap() - 1.0718859201642357).abs() < 1e-5);
}

/// The binary, run as an unprivileged user when we are root (root ignores file permissions).
/// It runs from a copy in `dir` (world-readable), since the build directory may not be
/// reachable for that user.
fn unprivileged_bin(dir: &std::path::Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let copy = dir.join("lora-lego");
    if !copy.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_lora-lego"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = Command::new(copy);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

#[test]
fn unreadable_inputs_and_unwritable_outputs_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = tmp.path().join("locked.safetensors");
    std::fs::copy(fixture("peft-tiny/kohya/sort_kohya.safetensors"), &locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = unprivileged_bin(tmp.path())
        .arg("inspect")
        .arg(&locked)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("locked.safetensors") && e.contains("Permission denied"),
        "{e}"
    );

    // An output directory nobody may write into.
    let readable = tmp.path().join("in.safetensors");
    std::fs::copy(fixture("peft-tiny/kohya/sort_kohya.safetensors"), &readable).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let o = unprivileged_bin(tmp.path())
        .args(["merge", "-k", "2", "--format", "kohya", "-o"])
        .arg(ro.join("out.safetensors"))
        .arg(&readable)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("ro/") && e.contains("Permission denied"), "{e}");
    assert_eq!(
        std::fs::read_dir(&ro).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24k", "tmpfs"])
        .arg(&mnt)
        .status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let o = bin()
        .arg("merge")
        .args(tiny_args())
        .args(["-k", "8", "-o"])
        .arg(mnt.join("out"))
        .output()
        .unwrap();
    let listing: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = Command::new("umount").arg(&mnt).status();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("No space left on device"), "{e}");
    assert!(listing.is_empty(), "left behind: {listing:?}");
}
