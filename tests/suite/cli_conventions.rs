//! The command line as other tools' users expect it: value lists in help and completions,
//! dtype aliases, notes on ignored flags, dry runs, folders and globs, portable recipes and
//! the model card.

use crate::common::*;
use std::path::{Path, PathBuf};
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

fn ok(o: &Output) -> (String, String) {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    (String::from_utf8_lossy(&o.stdout).to_string(), err)
}

fn header(file: &Path) -> serde_json::Value {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn demo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/demo")
        .join(name)
}

#[test]
fn help_and_completions_list_the_values_of_every_enum_flag() {
    let (help, _) = ok(&run(&[&"merge", &"-h"]));
    for values in [
        "[possible values: peft, kohya, diffusers]",
        "[possible values: plain, sign-aware, balanced]",
        "[possible values: linf, l2, off]",
        "[possible values: source, f32, f16, bf16]",
        "[possible values: unet, te, te1, te2, transformer]",
    ] {
        assert!(help.contains(values), "{values} not in:\n{help}");
    }
    let (bash, _) = ok(&run(&[&"completions", &"bash"]));
    for value in [
        "sign-aware",
        "diffusers",
        "lego-tsv",
        "ties_svd",
        "bf16",
        "te2",
    ] {
        assert!(bash.contains(value), "bash completions lack {value}");
    }
}

#[test]
fn dtype_aliases_choose_the_written_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    for (alias, want) in [
        ("half", "F16"),
        ("fp16", "F16"),
        ("float", "F32"),
        ("bfloat16", "BF16"),
    ] {
        let out = tmp.path().join(alias);
        ok(&run(&[
            &"merge",
            &demo("sentiment"),
            &"--dtype",
            &alias,
            &"--quiet",
            &"-o",
            &out,
        ]));
        let h = header(&out.join("adapter_model.safetensors"));
        let dtypes: std::collections::BTreeSet<&str> = h
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(_, v)| v["dtype"].as_str().unwrap())
            .collect();
        assert_eq!(dtypes.into_iter().collect::<Vec<_>>(), [want], "{alias}");
    }
}

#[test]
fn flags_the_method_ignores_and_patterns_that_match_nothing_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let (_, err) = ok(&run(&[
        &"merge",
        &demo("sentiment"),
        &demo("topic"),
        &"--method",
        &"svd",
        &"-k",
        &"3",
        &"--space",
        &"balanced",
        &"-o",
        &out,
    ]));
    assert!(
        err.contains("method svd does not read -k, --space: ignored"),
        "{err}"
    );
    let out2 = tmp.path().join("o2");
    let (_, err) = ok(&run(&[
        &"merge",
        &demo("sentiment"),
        &"--k-for",
        &"decoder.*=2",
        &"--k-for",
        &"encoder.layer.0.*=2",
        &"-o",
        &out2,
    ]));
    assert!(
        err.contains("--k-for `decoder.*=2` matches no module"),
        "{err}"
    );
    assert!(
        !err.contains("encoder.layer.0.*=2` matches no module"),
        "{err}"
    );
}

#[test]
fn compare_reports_progress_on_stderr() {
    let (_, err) = ok(&run(&[
        &"compare",
        &demo("sentiment"),
        &demo("question"),
        &"--methods",
        &"lego,cat",
    ]));
    assert!(
        err.contains("lora-lego: lego done") && err.contains("lora-lego: cat done"),
        "{err}"
    );
}

#[test]
fn a_dry_run_shows_ranks_bytes_and_recipe_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never");
    let src = demo("sentiment");
    let (stdout, _) = ok(&run(&[
        &"merge",
        &src,
        &"-k",
        &"2",
        &"--dry-run",
        &"-o",
        &out,
    ]));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // The bytes the export would hold, from the source's shapes: k·(d_in + d_out) F32 values
    // per module (sentiment has rank 4 everywhere, so k = 2 is not clamped).
    let h = header(&src.join("adapter_model.safetensors"));
    let mut want = 0u64;
    let mut modules = 0;
    for (name, t) in h.as_object().unwrap() {
        if let Some(_stem) = name.strip_suffix(".lora_A.weight") {
            let shape = t["shape"].as_array().unwrap();
            let d_in = shape[1].as_u64().unwrap();
            let b = &h[name.replace("lora_A", "lora_B")]["shape"];
            let d_out = b[0].as_u64().unwrap();
            want += 2 * (d_in + d_out) * 4;
            modules += 1;
        }
    }
    assert!(
        stdout.contains(&format!("{modules} modules, {want} tensor bytes")),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("    2  ")).count(),
        modules,
        "{stdout}"
    );
    assert!(
        stdout.contains("[merge]") && stdout.contains("k = 2"),
        "{stdout}"
    );
}

#[test]
fn a_folder_of_adapters_is_listed_and_a_globbed_readme_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("checkpoints");
    copy_dir(&demo("sentiment"), &folder.join("a"));
    copy_dir(&demo("topic"), &folder.join("b"));
    std::fs::write(folder.join("README.md"), "# notes\n").unwrap();
    let o = run(&[&"merge", &folder, &"-o", &tmp.path().join("o")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("folder of 2 adapters"), "{err}");
    assert!(
        err.contains(&folder.join("a").display().to_string())
            && err.contains(&folder.join("b").display().to_string()),
        "{err}"
    );
    let (stdout, err) = ok(&run(&[&"inspect", &folder]));
    assert!(err.contains("holds 2 adapters"), "{err}");
    assert!(
        stdout.contains("a (peft") && stdout.contains("b (peft"),
        "{stdout}"
    );
    // `inspect checkpoints/*` also passes README.md.
    let (stdout, err) = ok(&run(&[
        &"inspect",
        &folder.join("README.md"),
        &folder.join("a"),
        &folder.join("b"),
    ]));
    assert!(
        err.contains("skipping") && err.contains("README.md"),
        "{err}"
    );
    assert!(
        stdout.contains("a (peft") && stdout.contains("b (peft"),
        "{stdout}"
    );
    // PEFT's layout for several adapters: one at the top, the others in subfolders.
    let multi = tmp.path().join("multi");
    copy_dir(&demo("sentiment"), &multi);
    copy_dir(&demo("topic"), &multi.join("topic"));
    let a = lora_lego::io::load_adapter(&multi, &Default::default()).unwrap();
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("also holds adapters in subfolders")),
        "{:?}",
        a.warnings
    );
}

#[test]
fn recipes_hold_relative_paths_and_replay_after_the_tree_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_dir(
        &fixture("peft-tiny/adapters/sort"),
        &tree.join("adapters/sort"),
    );
    copy_dir(
        &fixture("peft-tiny/adapters/increment"),
        &tree.join("adapters/increment"),
    );
    let out = tree.join("out");
    ok(&run(&[
        &"merge",
        &tree.join("adapters/sort"),
        &tree.join("adapters/increment"),
        &"-k",
        &"4",
        &"--quiet",
        &"-o",
        &out,
    ]));
    let side = std::fs::read_to_string(out.join("lora_lego_recipe.toml")).unwrap();
    assert!(side.contains("path = \"../adapters/sort\""), "{side}");
    assert!(side.contains("path = \"../adapters/increment\""), "{side}");
    let h = header(&out.join("adapter_model.safetensors"));
    let embedded = h["__metadata__"]["lora_lego_recipe"].as_str().unwrap();
    let tmp_root = tmp.path().canonicalize().unwrap().display().to_string();
    assert!(
        !embedded.contains(&tmp_root),
        "absolute path in metadata: {embedded}"
    );
    assert!(!embedded.contains("path = \"/"), "{embedded}");
    // The card says where the adapter came from, by hash.
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.starts_with("---\n") && card.contains("library_name: peft\n"),
        "{card}"
    );
    for line in side.lines().filter(|l| l.starts_with("sha256 = ")) {
        let sha = line.trim_start_matches("sha256 = ").trim_matches('"');
        assert!(card.contains(sha), "{sha} not in the card");
    }
    assert!(
        card.contains("method = \"lego\"") && card.contains("k = 4"),
        "{card}"
    );
    // Move the whole folder: the recipe still finds its inputs.
    let moved = tmp.path().join("moved");
    std::fs::rename(&tree, &moved).unwrap();
    let again = moved.join("again");
    ok(&run(&[
        &"merge",
        &"--recipe",
        &moved.join("out/lora_lego_recipe.toml"),
        &"--quiet",
        &"-o",
        &again,
    ]));
    assert_eq!(
        std::fs::read(again.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(moved.join("out/adapter_model.safetensors")).unwrap()
    );
}

#[test]
fn a_saved_recipe_remembers_its_output_for_a_replay_without_o() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.toml");
    let out = tmp.path().join("merged");
    ok(&run(&[
        &"merge",
        &demo("sentiment"),
        &"-k",
        &"3",
        &"--quiet",
        &"--save-recipe",
        &plan,
        &"-o",
        &out,
    ]));
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.contains("output = \"merged\""), "{text}");
    let first = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    ok(&run(&[&"merge", &"--recipe", &plan, &"--quiet"]));
    assert_eq!(
        std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
        first
    );
}
