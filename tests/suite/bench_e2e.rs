//! The benchmark's end-to-end timing: `merge` runs as a child process, its wall time and its
//! own peak RSS come back, and a failing merge is reported, not timed.

use lora_lego::bench::e2e::{median_run, run_merge, ChildRun};
use lora_lego::bench::synth::{synthesize, SynthSpec};
use lora_lego::tensor::DType;

#[test]
fn a_child_merge_is_timed_with_its_peak_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        adapters: 3,
        rank: 4,
        layers: 1,
        hidden: 64,
        intermediate: 96,
        dtype: DType::BF16,
    };
    let paths = synthesize(&spec, tmp.path(), 3).unwrap();
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_lora-lego"));
    let out = tmp.path().join("out");
    let args = vec!["-k".to_string(), "4".to_string()];
    let run = run_merge(&exe, &paths, &out, &args).unwrap();
    assert!(run.wall_ms > 0.0);
    // Any process of ours maps more than a megabyte; 0 would mean wait4 reported nothing.
    assert!(run.peak_rss_bytes > 1 << 20, "{run:?}");
    assert!(out.join("adapter_model.safetensors").is_file());
    let bad = vec!["--method".to_string(), "no_such_method".to_string()];
    assert!(run_merge(&exe, &paths, &out, &bad).is_err());
}

#[test]
fn the_median_run_takes_the_middle_time_and_the_largest_memory() {
    let r = |wall_ms, peak_rss_bytes| ChildRun {
        wall_ms,
        peak_rss_bytes,
    };
    let m = median_run(&[r(5.0, 10), r(1.0, 30), r(3.0, 20)]).unwrap();
    assert_eq!(m, r(3.0, 30));
    assert_eq!(median_run(&[]), None);
}
