//! Killing an export at any moment leaves the target absent, the old version, or complete —
//! never partial — and the next run sweeps the dead process's temporary files; for an export
//! written after its merge and for one written while it merges (a set over the spill size).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use lora_lego::bench::synth::{synthesize, SynthSpec};
use lora_lego::tensor::DType;

fn spec() -> SynthSpec {
    SynthSpec {
        adapters: 4,
        rank: 16,
        layers: 4,
        hidden: 512,
        intermediate: 1024,
        dtype: DType::F32,
    }
}

/// A set of 36 MB: over the size from which an export writes its weights while it merges.
fn spilling_spec() -> SynthSpec {
    SynthSpec {
        layers: 8,
        hidden: 1024,
        intermediate: 2048,
        ..spec()
    }
}

/// The target is absent or a complete adapter of `modules` modules, every one at rank `k`.
fn absent_or_complete(target: &Path, modules: usize, k: usize) -> bool {
    if !target.exists() {
        return true;
    }
    match lora_lego::io::load_adapter(target, &Default::default()) {
        Ok(a) => {
            a.modules.len() == modules
                && a.modules.iter().all(|m| m.rank == k)
                && target.join("lora_lego_recipe.toml").is_file()
        }
        Err(_) => false,
    }
}

fn merge(paths: &[std::path::PathBuf], out: &Path, k: usize, force: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lora-lego"));
    c.arg("merge")
        .args(paths)
        .args(["-k", &k.to_string(), "--quiet", "-o"])
        .arg(out);
    if force {
        c.arg("--force");
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

#[test]
fn killed_exports_leave_no_partial_output() {
    kills_leave_no_partial_output(&spec(), false);
}

#[test]
fn killed_exports_written_while_merging_leave_no_partial_output() {
    kills_leave_no_partial_output(&spilling_spec(), true);
}

/// Header padding past the 8-byte alignment of an ordinary file: a spilled export's room.
fn header_padding(weights: &Path) -> usize {
    let bytes = std::fs::read(weights).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json_end = bytes[8..8 + n].iter().rposition(|&c| c == b'}').unwrap() + 1;
    n - json_end
}

fn kills_leave_no_partial_output(spec: &SynthSpec, spills: bool) {
    let modules = spec.layers * 7;
    let tmp = tempfile::tempdir().unwrap();
    let paths = synthesize(spec, &tmp.path().join("in"), 3).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    // How long an uninterrupted export takes, to spread the kills over it.
    let t = Instant::now();
    assert!(merge(&paths, &out_dir.join("probe"), 48, false)
        .status()
        .unwrap()
        .success());
    let full = t.elapsed();
    let padding = header_padding(&out_dir.join("probe/adapter_model.safetensors"));
    assert_eq!(padding >= 8, spills, "header padding {padding}");
    let mut killed_midway = 0;
    for step in 0..12u32 {
        let delay = full * step / 10;
        for (signal, force) in [(libc::SIGKILL, false), (libc::SIGINT, true)] {
            let target = out_dir.join(format!("t{step}_{signal}"));
            if force {
                // An old, complete output at k = 32 that --force replaces with k = 48.
                assert!(merge(&paths, &target, 32, false)
                    .status()
                    .unwrap()
                    .success());
            }
            let mut child = merge(&paths, &target, 48, force).spawn().unwrap();
            std::thread::sleep(delay);
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            let status = child.wait().unwrap();
            killed_midway += usize::from(!status.success());
            if force {
                let ok = lora_lego::io::load_adapter(&target, &Default::default())
                    .map(|a| {
                        a.modules.iter().all(|m| m.rank == 32)
                            || a.modules.iter().all(|m| m.rank == 48)
                    })
                    .unwrap_or(false);
                assert!(
                    ok,
                    "step {step}: --force output is neither the old nor the new adapter"
                );
            } else {
                assert!(
                    absent_or_complete(&target, modules, 48),
                    "step {step}: partial output after SIGKILL"
                );
            }
        }
    }
    assert!(
        killed_midway > 0,
        "no run was interrupted: the test proved nothing"
    );
    // A fresh export sweeps the temporary siblings the killed processes left behind.
    for step in 0..12u32 {
        for signal in [libc::SIGKILL, libc::SIGINT] {
            let target = out_dir.join(format!("t{step}_{signal}"));
            assert!(merge(&paths, &target, 48, true).status().unwrap().success());
        }
    }
    let litter: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("lora-lego-tmp"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
}

/// What a kohya target of `modules` modules and its recipe side file hold: `None` when both are
/// absent, else the weights' rank and whether the side file is there. An error when the pair is
/// inconsistent: partial weights, a side file without weights, or a side file that is not the
/// weights' recipe.
fn kohya_state(file: &Path, modules: usize) -> Result<Option<(usize, bool)>, String> {
    let side = lora_lego::io::write::side_file_path(
        file,
        lora_lego::adapter::AdapterFormat::Kohya,
        "lora_lego_recipe.toml",
    );
    if !file.exists() {
        return match side.exists() {
            false => Ok(None),
            true => Err("a side file without its weights".into()),
        };
    }
    let a = lora_lego::io::load_adapter(file, &Default::default()).map_err(|e| e.to_string())?;
    let rank = a.modules[0].rank;
    if a.modules.len() != modules || a.modules.iter().any(|m| m.rank != rank) {
        return Err("incomplete weights".into());
    }
    let embedded = a
        .metadata
        .get("lora_lego_recipe")
        .cloned()
        .unwrap_or_default();
    if side.exists() {
        let text = std::fs::read_to_string(&side).map_err(|e| e.to_string())?;
        if text != embedded {
            return Err(format!(
                "rank-{rank} weights beside another export's recipe"
            ));
        }
    }
    Ok(Some((rank, side.exists())))
}

fn merge_kohya(paths: &[std::path::PathBuf], out: &Path, k: usize, force: bool) -> Command {
    let mut c = merge(paths, out, k, force);
    c.args(["--format", "kohya"]);
    c
}

#[test]
fn killed_kohya_exports_never_split_the_weights_from_their_recipe() {
    kohya_kills_never_split_weights_from_recipe(&spec(), false);
}

#[test]
fn killed_kohya_exports_written_while_merging_never_split_the_weights_from_their_recipe() {
    kohya_kills_never_split_weights_from_recipe(&spilling_spec(), true);
}

fn kohya_kills_never_split_weights_from_recipe(spec: &SynthSpec, spills: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let paths = synthesize(spec, &tmp.path().join("in"), 3).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let t = Instant::now();
    assert!(
        merge_kohya(&paths, &out_dir.join("probe.safetensors"), 48, false)
            .status()
            .unwrap()
            .success()
    );
    let full = t.elapsed();
    let padding = header_padding(&out_dir.join("probe.safetensors"));
    assert_eq!(padding >= 8, spills, "header padding {padding}");
    let (mut killed_midway, mut without_side) = (0, 0);
    let mut targets = Vec::new();
    for step in 0..12u32 {
        let delay = full * step / 10;
        for (signal, force) in [
            (libc::SIGKILL, false),
            (libc::SIGKILL, true),
            (libc::SIGINT, true),
            (libc::SIGTERM, false),
        ] {
            let target = out_dir.join(format!("t{step}_{signal}_{force}.safetensors"));
            targets.push(target.clone());
            if force {
                assert!(merge_kohya(&paths, &target, 32, false)
                    .status()
                    .unwrap()
                    .success());
            }
            let mut child = merge_kohya(&paths, &target, 48, force).spawn().unwrap();
            std::thread::sleep(delay);
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            let status = child.wait().unwrap();
            killed_midway += usize::from(!status.success());
            let state = kohya_state(&target, spec.layers * 7)
                .unwrap_or_else(|e| panic!("step {step}, signal {signal}: {e}"));
            match state {
                None => assert!(!force, "step {step}: the old export vanished"),
                Some((rank, side)) => {
                    assert!(
                        rank == 48 || (force && rank == 32),
                        "step {step}: rank {rank}"
                    );
                    if !side {
                        // Only a hard kill between the two renames can do this.
                        assert_eq!(
                            signal,
                            libc::SIGKILL,
                            "step {step}: a signal split the pair"
                        );
                        without_side += 1;
                    }
                }
            }
        }
    }
    assert!(
        killed_midway > 0,
        "no run was interrupted: the test proved nothing"
    );
    println!("{killed_midway} runs interrupted, {without_side} left weights without a side file");
    // The next export to each target succeeds and leaves nothing temporary behind.
    for p in targets {
        {
            assert!(merge_kohya(&paths, &p, 48, true)
                .status()
                .unwrap()
                .success());
            assert_eq!(kohya_state(&p, spec.layers * 7), Ok(Some((48, true))));
        }
    }
    let litter: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("lora-lego-tmp"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
}
