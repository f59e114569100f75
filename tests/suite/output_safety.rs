//! Never lose a user's file: an output never replaces, enters or encloses an input (whatever
//! --force says), --force replaces only what lora-lego wrote, creation without it is exclusive,
//! a kohya file and its recipe go together, and nothing non-finite is written.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora-lego"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The three tiny adapters copied under `root/inputs` (a refused write must leave them as they
/// were, and a bug must not destroy the shared fixtures).
fn inputs(root: &Path) -> Vec<PathBuf> {
    tiny_adapters()
        .iter()
        .map(|p| {
            let to = root.join("inputs").join(p.file_name().unwrap());
            copy_dir(p, &to);
            to
        })
        .collect()
}

/// Every file under `dir` with its bytes, sorted, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.is_file() {
            out.push((d.clone(), std::fs::read(&d).unwrap()));
            continue;
        }
        for e in std::fs::read_dir(&d).unwrap() {
            stack.push(e.unwrap().path());
        }
    }
    out.sort();
    out
}

fn merge(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = bin();
    c.arg("merge");
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn refused(o: &Output, want: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert!(
        stderr(o).contains(want),
        "wanted `{want}` in: {}",
        stderr(o)
    );
}

#[test]
fn an_output_that_is_inside_or_contains_an_input_is_refused_even_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let before = snapshot(&tmp.path().join("inputs"));
    let (a, b, c) = (&ins[0], &ins[1], &ins[2]);
    // -o A --force: A is an input.
    let o = merge(&[a, b, c, &"-o", a, &"--force"]);
    refused(&o, "this output is the input");
    refused(&o, "choose another path");
    // Through a relative path with `..` and a symbolic link.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(a, &link).unwrap();
    let o = merge(&[a, b, c, &"-o", &link, &"--force"]);
    refused(&o, "this output is the input");
    let dotted = a.join("../reverse");
    let o = merge(&[a, b, c, &"-o", &dotted, &"--force"]);
    refused(&o, "this output is the input");
    // Inside an input, and a directory that contains the inputs.
    let o = merge(&[a, b, c, &"-o", &a.join("sub"), &"--force"]);
    refused(&o, "this output is inside the input");
    let o = merge(&[a, b, c, &"-o", &tmp.path().join("inputs"), &"--force"]);
    refused(&o, "this output contains the input");
    // --save-recipe pointed at an input's weights file.
    let weights = a.join("adapter_model.safetensors");
    let out = tmp.path().join("m");
    let o = merge(&[a, b, c, &"-o", &out, &"--save-recipe", &weights, &"--force"]);
    refused(&o, "adapter_model.safetensors: this output is the input");
    assert!(!out.exists());
    // A saved recipe inside the output would be swept away by the output's rename.
    let inside = out.join("r.toml");
    let o = merge(&[a, &"-o", &out, &"--save-recipe", &inside]);
    refused(&o, "the output");
    refused(&o, "would replace it; save the recipe elsewhere");
    assert!(!out.exists());
    assert!(
        snapshot(&tmp.path().join("inputs")) == before,
        "an input changed"
    );
    // An input that is a previous export of ours, which --force could otherwise replace.
    let ours = tmp.path().join("ours");
    let o = merge(&[a, b, &"--quiet", &"-o", &ours]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&ours);
    let o = merge(&[&ours, c, &"-o", &ours, &"--force"]);
    refused(&o, "ours: this output is the input");
    assert!(snapshot(&ours) == before, "the input changed");
}

#[test]
fn a_kohya_input_file_is_never_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let k = tmp.path().join("k.safetensors");
    let o = merge(&[
        &ins[0],
        &ins[1],
        &"--format",
        &"kohya",
        &"--quiet",
        &"-o",
        &k,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(&k).unwrap();
    let o = merge(&[&k, &ins[1], &"--format", &"kohya", &"-o", &k, &"--force"]);
    refused(&o, "k.safetensors: this output is the input");
    assert_eq!(std::fs::read(&k).unwrap(), before);
}

#[test]
fn replaying_a_recipe_never_writes_over_its_inputs_or_the_recipe_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let out = tmp.path().join("out");
    let o = merge(&[&ins[0], &ins[1], &"--quiet", &"-o", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recipe = out.join("lora_lego_recipe.toml");
    let before = snapshot(tmp.path());
    let o = merge(&[&"--recipe", &recipe, &"-o", &ins[0], &"--force"]);
    refused(&o, "this output is the input");
    // The output directory holds the recipe being replayed.
    let o = merge(&[&"--recipe", &recipe, &"-k", &"3", &"-o", &out, &"--force"]);
    refused(&o, "this output contains the input");
    let o = merge(&[&"--recipe", &recipe, &"--save-recipe", &recipe, &"--force"]);
    refused(&o, "lora_lego_recipe.toml: this output is the input");
    assert!(snapshot(tmp.path()) == before, "an input changed");
    // Elsewhere is fine.
    let o = merge(&[
        &"--recipe",
        &recipe,
        &"--quiet",
        &"-o",
        &tmp.path().join("again"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn force_replaces_our_exports_and_adapter_files_but_never_an_unrelated_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let stuff = tmp.path().join("stuff");
    std::fs::create_dir(&stuff).unwrap();
    std::fs::write(stuff.join("thesis.tex"), "years of work").unwrap();
    std::fs::write(stuff.join("adapter_config.json"), "{}").unwrap();
    let o = merge(&[&ins[0], &ins[1], &"-o", &stuff]);
    refused(&o, "stuff: already exists; pass --force to replace it");
    let o = merge(&[&ins[0], &ins[1], &"-o", &stuff, &"--force"]);
    refused(
        &o,
        "refusing to replace it: it is a directory holding 1 entry lora-lego does not write (thesis.tex)",
    );
    assert_eq!(
        std::fs::read_to_string(stuff.join("thesis.tex")).unwrap(),
        "years of work"
    );
    // A file that is not an adapter is not replaced by a kohya export.
    let notes = tmp.path().join("notes.safetensors");
    std::fs::write(&notes, "plain text").unwrap();
    let o = merge(&[&ins[0], &"--format", &"kohya", &"-o", &notes, &"--force"]);
    refused(&o, "it is a file but not a safetensors adapter");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "plain text");
    // A --save-recipe target that is not a recipe of ours.
    let o = merge(&[&ins[0], &"--save-recipe", &notes, &"--force"]);
    refused(&o, "it is not a lora-lego recipe");
    // Our own export and a single adapter file are replaced.
    let out = tmp.path().join("out");
    for k in ["2", "3"] {
        let o = merge(&[
            &ins[0], &ins[1], &"-k", &k, &"--quiet", &"-o", &out, &"--force",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(read_config(&out)["r"], 3);
    let single = tmp.path().join("single.safetensors");
    std::fs::copy(ins[2].join("adapter_model.safetensors"), &single).unwrap();
    let o = merge(&[
        &ins[0],
        &"--format",
        &"kohya",
        &"--quiet",
        &"-o",
        &single,
        &"--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn of_two_racing_exports_without_force_exactly_one_wins() {
    use lora_lego::io::write::{atomic_dir, atomic_file, write_text, Replaceable};
    use std::sync::{Arc, Barrier};
    let tmp = tempfile::tempdir().unwrap();
    for dir in [false, true] {
        let target = tmp.path().join(if dir { "d" } else { "f" });
        // Both are past the existence check before either renames: only the rename can decide.
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (target, barrier) = (target.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let text = format!("writer {i}");
                    if dir {
                        atomic_dir(&target, false, |t| {
                            barrier.wait();
                            write_text(&t.join("x"), &text)
                        })
                    } else {
                        atomic_file(&target, false, Replaceable::Recipe, |t| {
                            barrier.wait();
                            write_text(t, &text)
                        })
                    }
                    .map_err(|e| e.to_string())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(loser.ends_with(": already exists"), "{loser}");
        let litter = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("tmp")
            })
            .count();
        assert_eq!(litter, 0);
    }
}

#[test]
fn racing_cli_exports_to_one_target_leave_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    for round in 0..3 {
        let out = tmp.path().join(format!("race{round}"));
        let kids: Vec<_> = (0..2)
            .map(|_| {
                bin()
                    .arg("merge")
                    .args(&ins)
                    .args(["--quiet", "-o"])
                    .arg(&out)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<Output> = kids
            .into_iter()
            .map(|k| k.wait_with_output().unwrap())
            .collect();
        assert_eq!(outs.iter().filter(|o| o.status.success()).count(), 1);
        let lost = outs.iter().find(|o| !o.status.success()).unwrap();
        assert!(stderr(lost).contains("already exists; pass --force"));
        lora_lego::io::load_adapter(&out, &Default::default()).unwrap();
    }
}

fn kohya_recipe_in_metadata(file: &Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"]["lora_lego_recipe"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_kohya_side_file_is_never_overwritten_without_force_and_goes_with_its_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let k = tmp.path().join("x.safetensors");
    let side = tmp.path().join("x.lora_lego_recipe.toml");
    std::fs::write(&side, "my notes").unwrap();
    let o = merge(&[&ins[0], &"--format", &"kohya", &"-o", &k]);
    refused(
        &o,
        "x.lora_lego_recipe.toml: already exists; pass --force to replace it",
    );
    assert!(!k.exists(), "the weights were written without their recipe");
    assert_eq!(std::fs::read_to_string(&side).unwrap(), "my notes");
    let o = merge(&[&ins[0], &"--format", &"kohya", &"-o", &k, &"--force"]);
    refused(&o, "it is not a lora-lego recipe");
    std::fs::remove_file(&side).unwrap();
    for k_value in ["2", "3"] {
        let o = merge(&[
            &ins[0],
            &ins[1],
            &"--format",
            &"kohya",
            &"-k",
            &k_value,
            &"--quiet",
            &"-o",
            &k,
            &"--force",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let recipe = std::fs::read_to_string(&side).unwrap();
        assert_eq!(recipe, kohya_recipe_in_metadata(&k));
        assert!(recipe.contains(&format!("k = {k_value}")), "{recipe}");
    }
}

/// A PEFT directory with one 64-wide module whose factors hold values of about `magnitude`.
fn loud_adapter(dir: &Path, magnitude: f32, seed: u32) {
    let mut t = lora_pair("model.layers.0.self_attn.q_proj", 4, 64, 64, seed);
    for raw in &mut t {
        let values: Vec<f32> = raw
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) * magnitude + magnitude)
            .collect();
        raw.data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    write_peft_dir(dir, &peft_config(serde_json::json!({"lora_alpha": 4})), &t);
}

#[test]
fn a_value_that_overflows_the_output_dtype_is_an_error_naming_tensor_and_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    loud_adapter(&a, 1e5, 1);
    let out = tmp.path().join("out");
    let o = merge(&[&a, &"--method", &"cat", &"--dtype", &"f16", &"-o", &out]);
    refused(
        &o,
        "tensor `model.layers.0.self_attn.q_proj (lora_A)`: 216 value(s) are not finite in F16 (largest magnitude 1.49",
    );
    refused(&o, "nothing was written");
    assert!(!out.exists());
    // --output-scale is bounded up front.
    let o = merge(&[&a, &"--output-scale", &"1e39", &"-o", &out]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a flag out of range is a usage error"
    );
    assert!(stderr(&o).contains("output_scale must be a positive number up to 1000, got 1e39"));
    assert!(!out.exists());
}

#[test]
fn svd_outputs_split_sigma_so_a_large_merge_stays_finite_in_f16() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // ΔW entries of ~4·300² ⇒ σ₁ ≈ 2·10⁷: σ in B alone would be ~3·10⁶ per entry (Inf in F16).
    loud_adapter(&a, 300.0, 1);
    loud_adapter(&b, 300.0, 7);
    for method in ["svd", "ties_svd"] {
        let out = tmp.path().join(method);
        let o = merge(&[
            &a,
            &b,
            &"--method",
            &method,
            &"--dtype",
            &"f16",
            &"--quiet",
            &"-o",
            &out,
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let merged = lora_lego::io::load_adapter(&out, &Default::default()).unwrap();
        let m = &merged.modules[0];
        let max = |v: Vec<f32>| v.iter().fold(0f32, |x, y| x.max(y.abs()));
        let (ma, mb) = (max(m.a.to_f32_vec()), max(m.b.to_f32_vec()));
        assert!(ma < 65504.0 && mb < 65504.0, "{method}: {ma} {mb}");
        // Both factors carry √σ: their largest entries are of one order.
        assert!(ma / mb < 10.0 && mb / ma < 10.0, "{method}: {ma} {mb}");
    }
    // ΔW is the weighted sum (svd of rank ≥ the sum's rank is exact up to F16 rounding).
    let merged = lora_lego::io::load_adapter(&tmp.path().join("svd"), &Default::default()).unwrap();
    let sum = dense_delta(
        &lora_lego::io::load_adapter(&a, &Default::default())
            .unwrap()
            .modules[0],
    ) + dense_delta(
        &lora_lego::io::load_adapter(&b, &Default::default())
            .unwrap()
            .modules[0],
    );
    let got = dense_delta(&merged.modules[0]);
    assert!(rel_diff(&got, &sum) < 0.2, "{}", rel_diff(&got, &sum));
}

#[test]
fn a_merge_where_every_weight_is_zero_is_an_error_not_an_empty_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let out = tmp.path().join("out");
    for method in ["lego", "cat", "svd"] {
        let o = merge(&[
            &ins[0],
            &ins[1],
            &"--method",
            &method,
            &"--weights",
            &"0,0",
            &"-o",
            &out,
        ]);
        refused(
            &o,
            "the merge leaves no module to write (every adapter has weight 0",
        );
        refused(&o, "nothing was written");
        assert!(!out.exists());
    }
}

#[test]
fn the_recipe_hash_covers_the_config_beside_a_bare_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let bare = tmp.path().join("bare.safetensors");
    std::fs::copy(ins[0].join("adapter_model.safetensors"), &bare).unwrap();
    let config = tmp.path().join("bare.json");
    std::fs::copy(ins[0].join("adapter_config.json"), &config).unwrap();
    let recipe = tmp.path().join("r.toml");
    let o = merge(&[&bare, &ins[1], &"--save-recipe", &recipe]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&config).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["lora_alpha"] = serde_json::json!(cfg["lora_alpha"].as_f64().unwrap() * 2.0);
    std::fs::write(&config, cfg.to_string()).unwrap();
    let o = merge(&[&"--recipe", &recipe, &"-o", &tmp.path().join("out")]);
    refused(
        &o,
        "bare.safetensors: this adapter changed since the recipe was written",
    );
}

#[test]
fn the_explorer_export_dialog_refuses_an_input_as_output_even_with_overwrite() {
    use lora_lego::tui::app::Overlay;
    use lora_lego::tui::export_dialog::Phase;
    use lora_lego::tui::session::Session;
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(tmp.path());
    let before = snapshot(tmp.path());
    let mut s = Session::open(&ins[..2], Default::default(), 160, 48).unwrap();
    s.key(KeyCode::Char('e'));
    s.key_with(KeyCode::Char('u'), KeyModifiers::CONTROL);
    s.type_text(&ins[0].display().to_string());
    for _ in 0..4 {
        s.key(KeyCode::Tab);
    }
    s.key(KeyCode::Char(' '));
    s.key(KeyCode::Enter);
    match &s.app.overlay {
        Some(Overlay::Export(d)) => {
            assert!(d.force, "overwrite was not switched on");
            match &d.phase {
                Phase::Failed(msg) => assert!(msg.contains("this output is the input"), "{msg}"),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(snapshot(tmp.path()) == before, "an input changed");
}
