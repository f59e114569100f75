//! The README's exit-code contract: every usage error it lists exits with status 2, says
//! `error: …` and writes nothing.

use std::path::Path;
use std::process::Command;

/// The commands in the fenced block that follows the README's "## Exit codes" heading.
fn documented_usage_errors() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("the README has an Exit codes section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the section lists the usage errors in a code block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("lora-lego"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_documented_usage_error_exits_2_and_writes_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let adapter = root.join("assets/demo/sentiment");
    // A recipe that names no output: saved without -o.
    let recipe = tmp.path().join("plan.toml");
    let st = Command::new(env!("CARGO_BIN_EXE_lora-lego"))
        .args(["merge", "--quiet", "--save-recipe"])
        .arg(&recipe)
        .arg(&adapter)
        .status()
        .unwrap();
    assert!(st.success());
    let commands = documented_usage_errors();
    assert!(commands.len() >= 10, "{commands:?}");
    for line in &commands {
        let args: Vec<String> = line
            .split_whitespace()
            .skip(1)
            .map(|w| match w {
                "ADAPTER" => adapter.display().to_string(),
                "OUT" => out.display().to_string(),
                "RECIPE" => recipe.display().to_string(),
                w => w.to_string(),
            })
            .collect();
        let o = Command::new(env!("CARGO_BIN_EXE_lora-lego"))
            .args(&args)
            .current_dir(root)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "`{line}`: {err}");
        assert!(err.starts_with("error: "), "`{line}`: {err}");
        assert!(!out.exists(), "`{line}` wrote its output");
    }
}
