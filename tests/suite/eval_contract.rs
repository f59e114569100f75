//! The evaluator contract: a command prints {"scores": {...}, "mean": x}; everything else it
//! can do (bad output, a failure, hanging) comes back as a typed error naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use lora_lego::eval::{EvalError, Evaluator};

fn fake_scorer() -> PathBuf {
    fixture("eval/fake_scorer.sh")
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).unwrap();
    p
}

#[test]
fn good_json_gives_scores_mean_command_status_and_the_split_asked_for() {
    let adapter = &tiny_adapters()[0];
    let cmd = format!("{} {{dir}} {{split}}", fake_scorer().display());
    let e = Evaluator::new(&cmd, None).unwrap();
    let val = e.run(adapter, Some("val")).unwrap();
    let test = e.run(adapter, Some("test")).unwrap();
    assert_eq!(val.command, cmd);
    assert_eq!(val.split.as_deref(), Some("val"));
    assert_eq!(val.exit_status, 0);
    assert_eq!(val.scores.len(), 2);
    assert!((val.mean - (val.scores["a"] + val.scores["b"]) / 2.0).abs() < 1e-6);
    // The fake scorer adds 0.5 to task a on the test split: {split} reached it.
    assert!((test.scores["a"] - val.scores["a"] - 0.5).abs() < 1e-6);
    // Different adapters, different bytes, different scores.
    let other = e.run(&tiny_adapters()[1], Some("val")).unwrap();
    assert_ne!(other.scores, val.scores);
}

#[test]
fn a_path_with_spaces_and_quotes_reaches_the_scorer_as_one_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let odd = tmp.path().join("it's a $dir");
    std::fs::create_dir(&odd).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(tiny_adapters()[0].join(f), odd.join(f)).unwrap();
    }
    let cmd = format!("{} {{dir}}", fake_scorer().display());
    let e = Evaluator::new(&cmd, None).unwrap();
    let odd_score = e.run(&odd, None).unwrap();
    let plain = e.run(&tiny_adapters()[0], None).unwrap();
    assert_eq!(odd_score.scores, plain.scores);
}

#[test]
fn output_that_is_not_a_score_object_is_bad_output_naming_the_command() {
    let e = Evaluator::new("echo 'accuracy: 0.9' # {dir}", None).unwrap();
    match e.run(Path::new("/x"), None) {
        Err(EvalError::BadOutput {
            command, stdout, ..
        }) => {
            assert!(command.starts_with("echo"));
            assert!(stdout.contains("accuracy: 0.9"), "{stdout}");
        }
        other => panic!("expected BadOutput, got {other:?}"),
    }
    let e = Evaluator::new(r#"echo '{"scores": {"a": "x"}, "mean": 1}' # {dir}"#, None).unwrap();
    let err = e.run(Path::new("/x"), None).unwrap_err();
    assert!(matches!(err, EvalError::BadOutput { .. }), "{err}");
    assert!(err.to_string().contains("scores.a"), "{err}");
}

#[test]
fn a_non_zero_exit_is_a_failure_with_its_status_and_stderr() {
    let e = Evaluator::new(
        r#"echo '{"scores": {"a": 1}, "mean": 1}'; echo 'CUDA out of memory' >&2; exit 3 # {dir}"#,
        None,
    )
    .unwrap();
    match e.run(Path::new("/x"), None) {
        Err(EvalError::Failed { status, stderr, .. }) => {
            assert_eq!(status, "exit status 3");
            assert!(stderr.contains("CUDA out of memory"));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn a_missing_scorer_is_a_failure_not_a_panic() {
    let e = Evaluator::new("/no/such/scorer {dir}", None).unwrap();
    let err = e.run(Path::new("/x"), None).unwrap_err();
    assert!(err.to_string().contains("/no/such/scorer"), "{err}");
}

#[test]
fn a_hanging_scorer_is_killed_with_everything_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("child.pid");
    // The scorer starts a grandchild and waits for it: the timeout must kill both.
    let s = script(
        tmp.path(),
        "hang.sh",
        &format!("sleep 300 &\necho $! > '{}'\nwait", pidfile.display()),
    );
    let e = Evaluator::new(
        &format!("{} {{dir}}", s.display()),
        Some(Duration::from_millis(500)),
    )
    .unwrap();
    let err = e.run(tmp.path(), None).unwrap_err();
    assert!(matches!(err, EvalError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("hang.sh"), "{err}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered asynchronously: wait (boundedly) for the grandchild to be gone or
    // a zombie; a live `sleep 300` after that means it was never signalled.
    let running = || {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        state
            .split(") ")
            .nth(1)
            .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
    };
    let mut tries = 0;
    while running() && tries < 500 {
        std::thread::sleep(Duration::from_millis(20));
        tries += 1;
    }
    let running = running();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!running, "the grandchild {pid} still runs: {state}");
}

#[test]
fn a_scorer_that_leaves_a_background_process_does_not_hang_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script(
        tmp.path(),
        "leaky.sh",
        r#"sleep 300 &
echo '{"scores": {"a": 0.5}, "mean": 0.5}'"#,
    );
    let e = Evaluator::new(&format!("{} {{dir}}", s.display()), None).unwrap();
    let r = e.run(tmp.path(), None).unwrap();
    assert_eq!(r.mean, 0.5);
}
