//! Exports written while the merge runs (`SpillPolicy::Always`) hold exactly what an export
//! written afterwards holds — every tensor, the metadata, the side files — in every format,
//! are reproducible, and leave nothing behind when the export fails.

use crate::common::*;
use lora_lego::session::{self, AdapterFormat, ExportTarget, LoadOptions, SpillPolicy};
use lora_lego::settings::{MergeMethod, MergeSettings};
use lora_lego::tensor::TensorFile;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn export(engine: &session::Engine, settings: &MergeSettings, path: &Path, spill: SpillPolicy) {
    let target = ExportTarget {
        path: path.into(),
        force: false,
        extra_inputs: Vec::new(),
        spill,
    };
    session::export(
        engine,
        settings,
        &target,
        None,
        &|| {},
        &AtomicBool::new(false),
    )
    .unwrap();
}

/// The weights file of an export at `out`.
fn weights(out: &Path, format: AdapterFormat) -> PathBuf {
    match format {
        AdapterFormat::Peft => out.join("adapter_model.safetensors"),
        _ => out.to_path_buf(),
    }
}

/// Every file under `dir`, by name relative to it, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn engine() -> session::Engine {
    session::open(&tiny_adapters(), &LoadOptions::default()).unwrap()
}

#[test]
fn spilled_exports_hold_what_ordinary_exports_hold_in_every_format() {
    let engine = engine();
    for (format, method) in [
        (AdapterFormat::Peft, MergeMethod::Lego),
        (AdapterFormat::Kohya, MergeMethod::Lego),
        (AdapterFormat::Diffusers, MergeMethod::Lego),
        (AdapterFormat::Peft, "cat".parse().unwrap()),
    ] {
        let settings = MergeSettings {
            method,
            format,
            k: 6,
            ..MergeSettings::default()
        };
        let root = tempfile::tempdir().unwrap();
        let ext = if format.is_single_file() {
            ".safetensors"
        } else {
            ""
        };
        let (plain, spilled) = (root.path().join("plain"), root.path().join("spilled"));
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::create_dir_all(&spilled).unwrap();
        let (plain, spilled) = (
            plain.join(format!("out{ext}")),
            spilled.join(format!("out{ext}")),
        );
        export(&engine, &settings, &plain, SpillPolicy::Never);
        export(&engine, &settings, &spilled, SpillPolicy::Always);

        let a = TensorFile::open(&weights(&plain, format)).unwrap();
        let b = TensorFile::open(&weights(&spilled, format)).unwrap();
        let what = format!("{format:?} {method:?}");
        assert_eq!(a.metadata, b.metadata, "{what}");
        assert_eq!(
            a.tensors.keys().collect::<Vec<_>>(),
            b.tensors.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (name, t) in &a.tensors {
            let u = &b.tensors[name];
            assert_eq!(
                (t.dtype(), t.shape()),
                (u.dtype(), u.shape()),
                "{what} {name}"
            );
            assert_eq!(t.bytes(), u.bytes(), "{what} {name}");
        }
        // The side files (config, recipe, card) are the same files.
        let side = |p: &Path| match format {
            AdapterFormat::Peft => files(p)
                .into_iter()
                .filter(|(n, _)| n != "adapter_model.safetensors")
                .collect::<Vec<_>>(),
            _ => files(p.parent().unwrap())
                .into_iter()
                .filter(|(n, _)| n != "out.safetensors")
                .collect(),
        };
        assert_eq!(side(&plain), side(&spilled), "{what}");
        // The spilled file's header is padded with spaces, and nothing else is left beside it.
        let bytes = std::fs::read(weights(&spilled, format)).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let json_end = bytes[8..8 + n].iter().rposition(|&c| c == b'}').unwrap() + 9;
        assert!(bytes[json_end..8 + n].iter().all(|&c| c == b' '), "{what}");
        assert_eq!((8 + n) % 8, 0, "{what}: data starts aligned");
        let beside: Vec<String> = std::fs::read_dir(spilled.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.contains("lora-lego-tmp"))
            .collect();
        assert!(beside.is_empty(), "{what}: left {beside:?}");
    }
}

#[test]
fn spilled_exports_are_reproducible() {
    let engine = engine();
    let settings = MergeSettings {
        k: 5,
        ..MergeSettings::default()
    };
    let root = tempfile::tempdir().unwrap();
    let outs: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|d| {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
            root.path().join(d).join("out")
        })
        .collect();
    for out in &outs {
        export(&engine, &settings, out, SpillPolicy::Always);
    }
    assert_eq!(files(&outs[0]), files(&outs[1]));
}

#[test]
fn a_failed_spilled_export_leaves_nothing_behind() {
    let engine = engine();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let target = ExportTarget {
        path: out.clone(),
        force: false,
        extra_inputs: Vec::new(),
        spill: SpillPolicy::Always,
    };
    let cancelled = AtomicBool::new(true);
    let err = session::export(
        &engine,
        &MergeSettings::default(),
        &target,
        None,
        &|| {},
        &cancelled,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("cancel"), "{err:#}");
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_spilled_export_of_nothing_says_so_and_leaves_nothing_behind() {
    let engine = engine();
    let root = tempfile::tempdir().unwrap();
    let target = ExportTarget {
        path: root.path().join("out"),
        force: false,
        extra_inputs: Vec::new(),
        spill: SpillPolicy::Always,
    };
    let settings = MergeSettings {
        weights: vec![0.0; 3],
        ..MergeSettings::default()
    };
    let err = session::export(
        &engine,
        &settings,
        &target,
        None,
        &|| {},
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("nothing was written"),
        "{err:#}"
    );
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
