//! Recipes: written beside every export, replayed bit for bit, and refused with a clear
//! message when malformed.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora-lego"))
}

fn run(args: &[&str], threads: &str) -> Output {
    bin()
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_method_replays_from_its_recipe_byte_for_byte_on_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let sort = fixture("peft-tiny/adapters/sort").display().to_string();
    let inc = fixture("peft-tiny/adapters/increment")
        .display()
        .to_string();
    for method in lora_lego::recipe::MergeMethod::all() {
        let m = method.to_string();
        let a = tmp.path().join(format!("{m}_a"));
        let o = run(
            &[
                "merge",
                &sort,
                &inc,
                "--method",
                &m,
                "-k",
                "6",
                "--weights",
                "0.7,1.2",
                "--seed",
                "3",
                "--svd-rank",
                "4",
                "--quiet",
                "-o",
                a.to_str().unwrap(),
            ],
            "2",
        );
        assert!(
            o.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let recipe = a.join("lora_lego_recipe.toml");
        let text = std::fs::read_to_string(&recipe).unwrap();
        assert!(
            text.contains(&format!("method = \"{m}\"")) && text.contains("blake3 = "),
            "{text}"
        );
        let st = std::fs::read(a.join("adapter_model.safetensors")).unwrap();
        assert!(
            String::from_utf8_lossy(&st).contains("lora_lego_recipe"),
            "recipe in the metadata"
        );
        for threads in ["1", "2"] {
            let b = tmp.path().join(format!("{m}_b{threads}"));
            let o = run(
                &[
                    "merge",
                    "--recipe",
                    recipe.to_str().unwrap(),
                    "--quiet",
                    "-o",
                    b.to_str().unwrap(),
                ],
                threads,
            );
            assert!(
                o.status.success(),
                "{m}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let (fa, fb) = (files(&a), files(&b));
            assert_eq!(fa.len(), fb.len());
            for ((na, da), (nb, db)) in fa.iter().zip(&fb) {
                assert_eq!(na, nb);
                assert!(da == db, "{m} with {threads} thread(s): {na} differs");
            }
        }
    }
}

#[test]
fn flags_override_recipe_fields_and_save_recipe_writes_one_without_merging() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("plan.toml");
    let mut args: Vec<String> = vec!["merge".into()];
    args.extend(tiny_adapters().iter().map(|p| p.display().to_string()));
    args.extend([
        "-k".into(),
        "3".into(),
        "--save-recipe".into(),
        recipe.display().to_string(),
    ]);
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&recipe).unwrap().contains("k = 3"));
    let out = tmp.path().join("out");
    let o = bin()
        .args([
            "merge",
            "--recipe",
            recipe.to_str().unwrap(),
            "-k",
            "2",
            "--quiet",
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = std::fs::read_to_string(out.join("lora_lego_recipe.toml")).unwrap();
    assert!(written.contains("k = 2"), "{written}");
    let cfg: serde_json::Value = read_config(&out);
    assert_eq!(cfg["r"], 2);
}

fn recipe_error(text: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("r.toml");
    std::fs::write(&p, text).unwrap();
    let o = bin()
        .args([
            "merge",
            "--recipe",
            p.to_str().unwrap(),
            "-o",
            tmp.path().join("o").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn valid_recipe() -> String {
    let mut s = String::from("version = 1\n");
    for p in tiny_adapters() {
        let a = lora_lego::io::load_adapter(&p, &Default::default()).unwrap();
        s.push_str(&format!(
            "[[adapters]]\npath = \"{}\"\nsha256 = \"{}\"\n",
            p.display(),
            lora_lego::recipe::adapter_hash(&a).unwrap()
        ));
    }
    s.push_str("[merge]\nk = 4\n");
    s
}

#[test]
fn malformed_recipes_name_the_line_and_field() {
    let ok = valid_recipe();
    let lines = ok.lines().count();
    let e = recipe_error(&format!("{ok}colour = \"red\"\n"));
    assert!(
        e.contains(&format!("r.toml: line {}", lines + 1)) && e.contains("unknown field `colour`"),
        "{e}"
    );
    let e = recipe_error(&ok.replace("k = 4", "k = \"four\""));
    assert!(
        e.contains(&format!("line {lines}"))
            && e.contains("invalid type: string \"four\", expected usize"),
        "{e}"
    );
    let e = recipe_error(&ok.replace("k = 4", "k = 4\ndensity = 1.5"));
    assert!(
        e.contains(&format!(
            "line {}: `density`: density must be in (0, 1], got 1.5",
            lines + 1
        )),
        "{e}"
    );
    let e = recipe_error(&ok.replace("k = 4", "k = 4\nweights = [1.0, 2.0]"));
    assert!(
        e.contains("`weights`: 2 weights given for 3 adapters"),
        "{e}"
    );
    let e = recipe_error(&ok.replace("version = 1", "version = 2"));
    assert!(
        e.contains("line 1: `version`: unsupported recipe version 2"),
        "{e}"
    );
    let e = recipe_error("version = 1\n[merge]\nk = 4\n");
    assert!(
        e.contains("missing field `adapters`") || e.contains("names no adapter"),
        "{e}"
    );
    let e = recipe_error(&ok.replace("k = 4", "k = 4\noutput_reweight = -3"));
    assert!(e.contains("invalid output reweighting `-3`"), "{e}");
    let e = recipe_error(&ok.replace("[merge]", "[merge]\nmethod = \"average\""));
    assert!(e.contains("unknown method `average`"), "{e}");
}

#[test]
fn a_changed_input_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("reverse");
    std::fs::create_dir(&copy).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixture("peft-tiny/adapters/reverse").join(f), copy.join(f)).unwrap();
    }
    let sort = fixture("peft-tiny/adapters/sort");
    let recipe = tmp.path().join("r.toml");
    let o = bin()
        .arg("merge")
        .arg(&copy)
        .arg(&sort)
        .args(["--save-recipe", recipe.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    // Change the copy's config: a different alpha changes what the adapter means.
    let cfg = std::fs::read_to_string(copy.join("adapter_config.json")).unwrap();
    std::fs::write(
        copy.join("adapter_config.json"),
        cfg.replace("\"lora_alpha\": 8", "\"lora_alpha\": 9"),
    )
    .unwrap();
    let out = tmp.path().join("o");
    let o = bin()
        .args([
            "merge",
            "--recipe",
            recipe.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        e.contains(&format!(
            "{}: this adapter changed since the recipe was written",
            copy.display()
        )) && e.contains("--allow-changed-inputs"),
        "{e}"
    );
    assert!(!out.exists());
    let o = bin()
        .args([
            "merge",
            "--recipe",
            recipe.to_str().unwrap(),
            "--allow-changed-inputs",
            "--quiet",
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn completions_are_generated() {
    let o = bin().args(["completions", "bash"]).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("--param-reweight"));
}

#[test]
fn piped_stderr_gets_plain_progress_lines_and_quiet_silences_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let o = bin()
        .arg("merge")
        .args(tiny_adapters())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("lora-lego: loading 3 adapter(s)") && e.contains("lora-lego: merging modules"),
        "{e}"
    );
    let out2 = tmp.path().join("o2");
    let o = bin()
        .arg("merge")
        .args(tiny_adapters())
        .args(["--quiet", "-o"])
        .arg(&out2)
        .output()
        .unwrap();
    assert!(o.stderr.is_empty() && o.stdout.is_empty());
}

#[test]
fn hand_written_recipes_may_use_relative_paths_and_bare_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    for n in ["sort", "increment"] {
        let dst = tmp.path().join(n);
        std::fs::create_dir(&dst).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(
                fixture(&format!("peft-tiny/adapters/{n}")).join(f),
                dst.join(f),
            )
            .unwrap();
        }
    }
    let recipe = tmp.path().join("plan.toml");
    let mut text = String::from("version = 1\n");
    for n in ["sort", "increment"] {
        let a = lora_lego::io::load_adapter(&tmp.path().join(n), &Default::default()).unwrap();
        text.push_str(&format!(
            "[[adapters]]\npath = \"{n}\"\nsha256 = \"{}\"\n",
            lora_lego::recipe::adapter_hash(&a).unwrap()
        ));
    }
    text.push_str(
        "[merge]\nk = 3\noutput_reweight = 12\nk_overrides = [{ pattern = \"*.mlp.*\", k = 5 }]\n",
    );
    std::fs::write(&recipe, text).unwrap();
    let out = tmp.path().join("out");
    let o = bin()
        .args(["merge", "--quiet", "--recipe"])
        .arg(&recipe)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = std::fs::read_to_string(out.join("lora_lego_recipe.toml")).unwrap();
    assert!(written.contains("output_reweight = \"12\""), "{written}");
    let cfg: serde_json::Value = read_config(&out);
    assert_eq!(cfg["r"], 3);
    assert_eq!(cfg["rank_pattern"]["model.layers.0.mlp.up_proj"], 5);
}
