//! Input hashes in recipes: written as BLAKE3, checked on replay; a recipe from before (sha256)
//! still replays, and a changed input is refused under either algorithm.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora-lego"))
}

#[test]
fn recipes_record_blake3_and_replay_sha256_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("plan.toml");
    let o = bin()
        .args(["merge", "-k", "4", "--quiet", "--save-recipe"])
        .arg(&recipe)
        .args(crate::common::tiny_adapters())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert_eq!(text.matches("blake3 = \"").count(), 3, "{text}");
    assert!(!text.contains("sha256"), "{text}");
    let replay = |path: &std::path::Path| {
        bin()
            .args(["merge", "--quiet", "--recipe"])
            .arg(path)
            .arg("-o")
            .arg(tmp.path().join("out"))
            .arg("--force")
            .output()
            .unwrap()
    };
    let o = replay(&recipe);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // One recorded hash altered: refused, naming the algorithm.
    let changed = tmp.path().join("changed.toml");
    std::fs::write(&changed, text.replacen("blake3 = \"", "blake3 = \"0", 1)).unwrap();
    let o = replay(&changed);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("changed since"),
        "{err}"
    );
    assert!(err.contains("blake3"), "{err}");

    // The same recipe as an earlier version wrote it: sha256 of the same bytes.
    let mut old = String::from("version = 1\n");
    for p in crate::common::tiny_adapters() {
        let a = lora_lego::io::load_adapter(&p, &Default::default()).unwrap();
        old.push_str(&format!(
            "[[adapters]]\npath = \"{}\"\nsha256 = \"{}\"\n",
            p.display(),
            lora_lego::recipe::adapter_hash(&a).unwrap()
        ));
    }
    old.push_str("[merge]\nk = 4\n");
    let old_path = tmp.path().join("old.toml");
    std::fs::write(&old_path, &old).unwrap();
    let o = replay(&old_path);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&old_path, old.replacen("sha256 = \"", "sha256 = \"0", 1)).unwrap();
    let o = replay(&old_path);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("sha256"), "{err}");

    // A recipe naming an adapter without any hash is a recipe error, not a silent pass.
    let unhashed = tmp.path().join("unhashed.toml");
    let p = crate::common::tiny_adapters().remove(0);
    std::fs::write(
        &unhashed,
        format!(
            "version = 1\n[[adapters]]\npath = \"{}\"\n[merge]\nk = 2\n",
            p.display()
        ),
    )
    .unwrap();
    let o = replay(&unhashed);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no `blake3`"), "{err}");
}
