//! Inputs the loader's fuzzer (fuzz/, `cargo +nightly fuzz run loader`) found crashing, and
//! the seeds it starts from: each must now load or fail with an error, never panic.

#[test]
fn every_recorded_fuzz_input_is_handled_without_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| lora_lego::io::probe_untrusted(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
        seen += 1;
    }
    assert!(seen > 0, "no recorded inputs in {}", dir.display());
}

#[test]
fn a_file_shorter_than_the_header_length_is_an_error_not_a_panic() {
    let e = lora_lego::tensor::TensorFile::from_bytes(
        std::path::Path::new("x.safetensors"),
        vec![1, 2, 3],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("x.safetensors")
            && e.contains("3 bytes long, shorter than the 8-byte header length"),
        "{e}"
    );
}
