//! The benchmark's pieces at a toy size: the synthetic set loads as real adapters with shared
//! structure, and the measuring run reports every figure.

use lora_lego::bench::run::run;
use lora_lego::bench::synth::{synthesize, SynthSpec};
use lora_lego::tensor::DType;

fn toy() -> SynthSpec {
    SynthSpec {
        adapters: 3,
        rank: 4,
        layers: 2,
        hidden: 64,
        intermediate: 96,
        dtype: DType::BF16,
    }
}

#[test]
fn synthetic_adapters_load_with_the_promised_shapes_and_share_directions() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = toy();
    let paths = synthesize(&spec, tmp.path(), 7).unwrap();
    assert_eq!(paths.len(), 3);
    let on_disk: u64 = paths
        .iter()
        .map(|p| {
            std::fs::metadata(p.join("adapter_model.safetensors"))
                .unwrap()
                .len()
        })
        .sum();
    assert!(
        on_disk as usize >= spec.bytes(),
        "{on_disk} < {}",
        spec.bytes()
    );
    let adapters = lora_lego::io::load_all(&paths, &Default::default()).unwrap();
    let down = adapters[0]
        .modules
        .iter()
        .find(|m| m.key.as_str() == "model.layers.1.mlp.down_proj")
        .unwrap();
    assert_eq!((down.rank, down.d_in, down.d_out), (4, 96, 64));
    assert_eq!(down.a.dtype(), DType::BF16);
    let engine =
        lora_lego::engine::Engine::new(lora_lego::align::ModuleSet::new(adapters).unwrap());
    assert_eq!(engine.set.modules.len(), spec.layers * 7);
    // Shared directions make units of different adapters line up far more than chance: at
    // d = 64, random unit pairs have |cosine| around 0.1 and hardly ever above 0.6.
    let mut aligned = 0;
    for i in 0..engine.set.modules.len() {
        let g = &engine.raw_gram(i).ga;
        let n = g.nrows();
        let best = (0..n)
            .flat_map(|p| (0..n).map(move |q| (p, q)))
            .filter(|(p, q)| engine.raw_gram(i).source[*p] != engine.raw_gram(i).source[*q])
            .map(|(p, q)| f64::from(g[[p, q]].abs() / (g[[p, p]] * g[[q, q]]).sqrt()))
            .fold(0.0, f64::max);
        aligned += usize::from(best > 0.6);
    }
    assert!(
        aligned >= 5,
        "only {aligned} of 14 modules have units shared across adapters"
    );
}

#[test]
fn the_measuring_run_reports_every_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = synthesize(&toy(), tmp.path(), 1).unwrap();
    let r = run(&paths, tmp.path(), &["lego".to_string()]).unwrap();
    assert_eq!((r.adapters, r.modules), (3, 14));
    assert_eq!(r.per_module.len(), 1);
    assert_eq!(r.per_module[0].modules_timed, 14);
    assert!(r.input_bytes > 0 && r.peak_rss_bytes > 0);
    for v in [
        r.load_ms,
        r.gram_ms,
        r.kmeans_all_ms,
        r.merge_export_ms,
        r.svd_module_ms,
        r.gemm_peak_gflops,
    ] {
        assert!(v.is_finite() && v > 0.0, "{r:?}");
    }
    assert!(r.recluster_one_ms[0] <= r.recluster_one_ms[1]);
    assert!(tmp
        .path()
        .join("merged/adapter_model.safetensors")
        .is_file());
}
