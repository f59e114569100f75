//! `lora-lego sweep` as a user runs it, with a fake scorer: results, resume, parallel
//! scorers, the best recipe, and the [eval] / [sweep] recipe tables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use lora_lego::recipe::Recipe;
use lora_lego::sweep::{read_results, SweepSpec};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora-lego"))
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).unwrap();
    p
}

/// The fake scorer, logging each call to `log` first.
fn logging_scorer(dir: &Path, log: &Path) -> String {
    let s = script(
        dir,
        "logging.sh",
        &format!(
            "echo \"$1\" >> '{}'\nexec '{}' \"$@\"",
            log.display(),
            fixture("eval/fake_scorer.sh").display()
        ),
    );
    format!("{} {{dir}} {{split}}", s.display())
}

fn sweep(args: &[&str], eval: &str, results: &Path) -> Output {
    let o = bin()
        .arg("sweep")
        .args(tiny_adapters())
        .args(["--eval", eval, "--out"])
        .arg(results)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn calls(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_grid_is_scored_recorded_and_its_best_written_as_a_replayable_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("calls.log");
    let eval = logging_scorer(tmp.path(), &log);
    let results = tmp.path().join("res");
    let out = tmp.path().join("best");
    let o = bin()
        .arg("sweep")
        .args(tiny_adapters())
        .args(["--eval", &eval, "--methods", "lego,cat", "-k", "2,3,5"])
        .args(["--set", "space=plain,balanced", "--out"])
        .arg(&results)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (records, notes) = read_results(&results.join("results.jsonl")).unwrap();
    assert!(notes.is_empty());
    assert_eq!(records.len(), 12, "2 methods × 3 k × 2 spaces");
    assert!(records.iter().all(|r| r.eval.is_some()), "{records:?}");
    // cat ignores k and space: its six candidates are one merge, scored once.
    let cat: Vec<_> = records.iter().filter(|r| r.method == "cat").collect();
    assert_eq!(cat.iter().filter(|r| r.same_as.is_none()).count(), 1);
    assert!(cat.iter().all(|r| r.eval == cat[0].eval));
    let scored = records.iter().filter(|r| r.same_as.is_none()).count();
    assert_eq!(calls(&log), scored);
    // Every candidate was scored on val, in a temporary folder that is gone now.
    let dirs = std::fs::read_to_string(&log).unwrap();
    assert!(dirs.lines().all(|d| !Path::new(d).exists()), "{dirs}");
    assert!(!results.join(".scoring").exists());
    assert!(records
        .iter()
        .all(|r| r.eval.as_ref().unwrap().split.as_deref() == Some("val")));

    let best = records
        .iter()
        .max_by(|a, b| a.mean().unwrap().total_cmp(&b.mean().unwrap()))
        .unwrap();
    let recipe = Recipe::read(&results.join("best.toml")).unwrap();
    assert_eq!(recipe.merge, best.settings);
    assert_eq!(recipe.eval.as_ref().unwrap().mean, best.mean().unwrap());
    let spec = recipe.sweep.as_ref().unwrap();
    assert_eq!(spec.methods, ["lego", "cat"]);
    assert_eq!(spec.grid["k"].len(), 3);
    // The export scores as the best candidate did: the same merge, the same bytes scored.
    let fake = fixture("eval/fake_scorer.sh");
    let rescored = Command::new(&fake).arg(&out).arg("val").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&rescored.stdout).unwrap();
    assert_eq!(v["mean"].as_f64().unwrap(), best.mean().unwrap());
    let side = Recipe::read(&out.join("lora_lego_recipe.toml")).unwrap();
    assert_eq!(side.eval, recipe.eval);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains(&format!("mean {:.4}", best.mean().unwrap())),
        "{card}"
    );
    // The table lists every candidate, best first.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("best: {}", best.id)), "{stdout}");
}

#[test]
fn a_rerun_skips_scored_candidates_and_scores_only_new_or_failed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("calls.log");
    let eval = logging_scorer(tmp.path(), &log);
    let results = tmp.path().join("res");
    sweep(&["-k", "2,3"], &eval, &results);
    assert_eq!(calls(&log), 2);
    sweep(&["-k", "2,3"], &eval, &results);
    assert_eq!(calls(&log), 2, "nothing new to score");
    sweep(&["-k", "2,3,4"], &eval, &results);
    assert_eq!(calls(&log), 3, "only k = 4 is new");
    let (records, _) = read_results(&results.join("results.jsonl")).unwrap();
    assert_eq!(records.len(), 3);

    // A scorer that fails until a flag file exists: failures are recorded, then retried.
    let flag = tmp.path().join("ready");
    let flaky = script(
        tmp.path(),
        "flaky.sh",
        &format!(
            "[ -f '{}' ] || {{ echo 'not ready' >&2; exit 1; }}\nexec '{}' \"$@\"",
            flag.display(),
            fixture("eval/fake_scorer.sh").display()
        ),
    );
    let flaky = format!("{} {{dir}}", flaky.display());
    let res2 = tmp.path().join("res2");
    let o = bin()
        .arg("sweep")
        .args(tiny_adapters())
        .args(["--eval", &flaky, "-k", "2", "--out"])
        .arg(&res2)
        .output()
        .unwrap();
    assert!(!o.status.success(), "no candidate scored is an error");
    let (records, _) = read_results(&res2.join("results.jsonl")).unwrap();
    assert!(records[0].error.as_deref().unwrap().contains("not ready"));
    std::fs::write(&flag, "").unwrap();
    sweep(&["-k", "2"], &flaky, &res2);
    let (records, _) = read_results(&res2.join("results.jsonl")).unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].eval.is_some() && records[0].error.is_none());
}

#[test]
fn jobs_run_scorers_at_the_same_time() {
    let tmp = tempfile::tempdir().unwrap();
    let peers = tmp.path().join("peers");
    std::fs::create_dir(&peers).unwrap();
    // Each scorer announces itself, then waits (up to 30 s) to see another one running: it
    // scores `peer` 1 only if two ran at once. Run one at a time, each would give 0.
    let s = script(
        tmp.path(),
        "peer.sh",
        &format!(
            r#"touch "{p}/$$"
i=0
while [ "$(ls '{p}' | wc -l)" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
n=$(ls '{p}' | wc -l)
[ "$n" -ge 2 ] && peer=1 || peer=0
echo "{{\"scores\": {{\"peer\": $peer}}, \"mean\": $peer}}""#,
            p = peers.display()
        ),
    );
    let results = tmp.path().join("res");
    sweep(
        &["-k", "2,3", "--jobs", "2"],
        &format!("{} {{dir}}", s.display()),
        &results,
    );
    let (records, _) = read_results(&results.join("results.jsonl")).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r.eval.as_ref().unwrap().scores["peer"], 1.0, "{r:?}");
    }
}

#[test]
fn random_search_draws_the_same_seeded_subset_of_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let eval = format!("{} {{dir}}", fixture("eval/fake_scorer.sh").display());
    let ids = |dir: &str, seed: &str| {
        let results = tmp.path().join(dir);
        sweep(
            &["-k", "1,2,3,4,5,6", "--random", "3", "--seed", seed],
            &eval,
            &results,
        );
        let (records, _) = read_results(&results.join("results.jsonl")).unwrap();
        records.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let a = ids("a", "1");
    assert_eq!(a.len(), 3);
    assert_eq!(a, ids("b", "1"));
}

#[test]
fn a_sweep_refuses_unknown_fields_and_bad_values_by_name() {
    let eval = format!("{} {{dir}}", fixture("eval/fake_scorer.sh").display());
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--set", "kk=1,2"], "kk"),
        (vec!["--set", "density=0.5,1.5"], "density"),
        (vec!["--methods", "lego,nope"], "nope"),
    ] {
        let o = bin()
            .arg("sweep")
            .args(tiny_adapters())
            .args(["--eval", &eval, "--out"])
            .arg(tmp.path().join("r"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!tmp.path().join("r/results.jsonl").exists());
}

#[test]
fn eval_and_sweep_tables_round_trip_through_a_recipe() {
    let text = r#"
version = 1
[[adapters]]
path = "a"
sha256 = "00"
[merge]
method = "ties_svd"
density = 0.3
[eval]
command = "python score.py {dir} --split {split}"
split = "val"
mean = 0.8
wall_secs = 12.5
exit_status = 0
[eval.scores]
sentiment = 0.7
topic = 0.9
[sweep]
methods = ["lego", "ties_svd"]
random = 10
seed = 3
eval = "python score.py {dir} --split {split}"
[sweep.grid]
k = [16, 32]
space = ["plain", "balanced"]
density = [0.3, 0.5]
"#;
    let path = Path::new("test.toml");
    let r = Recipe::parse(path, text).unwrap();
    let e = r.eval.as_ref().unwrap();
    assert_eq!(e.scores["topic"], 0.9);
    let s: &SweepSpec = r.sweep.as_ref().unwrap();
    assert_eq!(s.random, Some(10));
    assert_eq!(s.grid["space"][1].as_str(), Some("balanced"));
    let again = Recipe::parse(path, &r.to_toml().unwrap()).unwrap();
    assert_eq!(again, r);
    // Unknown fields inside the new tables are named, like everywhere else in a recipe.
    let bad = text.replace("exit_status = 0", "exit_status = 0\nexit_code = 0");
    let err = Recipe::parse(path, &bad).unwrap_err().to_string();
    assert!(err.contains("exit_code"), "{err}");
    // A recipe without them is still read, and written without them.
    let plain = text.split("[eval]").next().unwrap();
    let r = Recipe::parse(path, plain).unwrap();
    assert!(r.eval.is_none() && r.sweep.is_none());
    assert!(!r.to_toml().unwrap().contains("[eval]"));
}

#[test]
fn merge_eval_records_the_score_in_the_recipe_and_the_model_card_and_compare_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let eval = format!(
        "{} {{dir}} {{split}}",
        fixture("eval/fake_scorer.sh").display()
    );
    let o = bin()
        .arg("merge")
        .args(tiny_adapters())
        .args([
            "-k", "3", "--json", "--split", "test", "--eval", &eval, "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let recipe = Recipe::read(&out.join("lora_lego_recipe.toml")).unwrap();
    let e = recipe.eval.as_ref().unwrap();
    assert_eq!(e.split.as_deref(), Some("test"));
    assert_eq!(summary["eval"]["mean"].as_f64().unwrap(), e.mean);
    // The score is the export's: the scorer run on it again agrees.
    let again = Command::new(fixture("eval/fake_scorer.sh"))
        .arg(&out)
        .arg("test")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["mean"].as_f64().unwrap(), e.mean);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains(&e.summary()), "{card}");

    // compare scores each method on the same split; lego at -k 3 is the merge above.
    let o = bin()
        .arg("compare")
        .args(tiny_adapters())
        .args(["-k", "3", "--json", "--methods", "lego,cat"])
        .args(["--split", "test", "--eval", &eval])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows[0]["eval"]["mean"].as_f64().unwrap(), e.mean);
    assert!(rows[1]["eval"]["mean"].is_number());

    // A failing scorer is reported by name; the export it was given stays.
    let out2 = tmp.path().join("m2");
    let o = bin()
        .arg("merge")
        .args(tiny_adapters())
        .args(["-k", "3", "--quiet", "--eval", "exit 4 # {dir}", "-o"])
        .arg(&out2)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exit 4 # {dir}") && err.contains("exit status 4"),
        "{err}"
    );
    assert!(out2.join("adapter_model.safetensors").is_file());
}

#[test]
fn scale_and_a_recipes_sweep_table_plan_the_grid_and_its_command_is_not_run_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let eval = format!("{} {{dir}}", fixture("eval/fake_scorer.sh").display());
    let results = tmp.path().join("res");
    sweep(&["-k", "2", "--scale", "0.5,1"], &eval, &results);
    let (records, _) = read_results(&results.join("results.jsonl")).unwrap();
    let scales: Vec<Option<f64>> = records.iter().map(|r| r.settings.scale).collect();
    assert_eq!(scales, [Some(0.5), Some(1.0)]);
    assert!(records.iter().all(|r| r.knobs.contains_key("scale")));
    assert_ne!(
        records[0].eval, records[1].eval,
        "a different scale, a different merge"
    );

    // A recipe naming the adapters, a base and a [sweep] plan.
    let mut text = String::from("version = 1\n");
    for p in tiny_adapters() {
        let a = lora_lego::io::load_adapter(&p, &Default::default()).unwrap();
        text.push_str(&format!(
            "[[adapters]]\npath = \"{}\"\nsha256 = \"{}\"\n",
            p.display(),
            lora_lego::recipe::adapter_hash(&a).unwrap()
        ));
    }
    text.push_str(&format!(
        "[merge]\nspace = \"balanced\"\n[sweep]\nmethods = [\"lego\"]\neval = \"{}\"\n[sweep.grid]\nk = [2, 3, 4]\n",
        eval.replace('\\', "\\\\")
    ));
    let recipe = tmp.path().join("plan.toml");
    std::fs::write(&recipe, text).unwrap();
    let o = bin()
        .args(["sweep", "--recipe"])
        .arg(&recipe)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pass it with --eval") && err.contains("fake_scorer.sh"),
        "{err}"
    );
    let res2 = tmp.path().join("res2");
    let o = bin()
        .args(["sweep", "--recipe"])
        .arg(&recipe)
        .args(["--eval", &eval, "--out"])
        .arg(&res2)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (records, _) = read_results(&res2.join("results.jsonl")).unwrap();
    // A recorded hash that no longer matches is refused, as for merge --recipe.
    let changed =
        std::fs::read_to_string(&recipe)
            .unwrap()
            .replacen("sha256 = \"", "sha256 = \"0", 1);
    std::fs::write(&recipe, changed).unwrap();
    let o = bin()
        .args(["sweep", "--recipe"])
        .arg(&recipe)
        .args(["--eval", &eval, "--out"])
        .arg(&res2)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-changed-inputs"));
    let ks: Vec<usize> = records.iter().map(|r| r.settings.k).collect();
    assert_eq!(ks, [2, 3, 4]);
    assert!(records
        .iter()
        .all(|r| r.settings.space == lora_lego::recipe::FeatureSpace::Balanced));
}
