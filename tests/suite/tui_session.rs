//! Scripted sessions: keys in, files out. An export made in the explorer must equal, byte for
//! byte, what `lora-lego merge` writes with the command line the explorer shows. Also the
//! worker thread, the quit confirmation and the history file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lora_lego::align::ModuleSet;
use lora_lego::engine::Engine;
use lora_lego::io::{load_all, LoadOptions};
use lora_lego::recipe::MergeSettings;
use lora_lego::tui::app::{App, Effect, Event, Overlay};
use lora_lego::tui::command_line;
use lora_lego::tui::export_dialog::Phase;
use lora_lego::tui::history::{self, History};
use lora_lego::tui::session::{rows, Session};
use lora_lego::tui::worker::{Job, Reply, Worker};
use ratatui::crossterm::event::{KeyCode, KeyModifiers};

fn demo() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    ["question", "sentiment", "topic"]
        .iter()
        .map(|n| dir.join(n))
        .collect()
}

fn pair() -> Vec<PathBuf> {
    crate::common::tiny_pair()
}

/// Every file under `p` (or `p` itself) as (relative name, bytes), sorted.
fn files(p: &Path) -> Vec<(String, Vec<u8>)> {
    if p.is_file() {
        return vec![(String::new(), std::fs::read(p).expect("read"))];
    }
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(p)
        .expect("dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    v.sort();
    v
}

/// A safetensors file's header (parsed) and its data bytes.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).expect("json header");
    (header, bytes[8 + n..].to_vec())
}

/// Opens the export dialog, replaces the path with `out`, applies `extra` keys, presses Enter.
fn export_to(s: &mut Session, out: &Path, extra: &[KeyCode]) {
    s.key(KeyCode::Char('e'));
    s.key_with(KeyCode::Char('u'), KeyModifiers::CONTROL);
    s.type_text(&out.display().to_string());
    for k in extra {
        s.key(*k);
    }
    s.key(KeyCode::Enter);
}

fn summary(s: &Session) -> lora_lego::tui::worker::ExportSummary {
    match &s.app.overlay {
        Some(Overlay::Export(d)) => match &d.phase {
            Phase::Done(sum) => (**sum).clone(),
            other => panic!("export not done: {other:?}"),
        },
        other => panic!("no export dialog: {other:?}"),
    }
}

#[test]
fn a_scripted_session_exports_what_the_cli_writes_byte_for_byte() {
    let tmp = tempfile::Builder::new()
        .prefix("tui session ")
        .tempdir()
        .expect("tmp");
    let mut s = Session::open(&demo(), MergeSettings::default(), 160, 48).expect("demo");
    // k 8 → 10, this module's k → 11, colour by source, the third module gets k 6.
    s.key(KeyCode::Char('+'));
    s.key(KeyCode::Char('+'));
    s.key(KeyCode::Char(']'));
    s.key(KeyCode::Char('c'));
    s.key(KeyCode::Down);
    s.key(KeyCode::Down);
    for _ in 0..4 {
        s.key(KeyCode::Char('['));
    }
    // Coloured by source: the scatter's legend names the adapters, not the clusters.
    let text = rows(&s.render()).join("\n");
    assert!(
        text.contains("● question") && !text.contains("● c0("),
        "{text}"
    );
    assert_eq!(s.app.settings.k, 10);
    assert_eq!(s.app.settings.k_overrides.len(), 2);
    let out = tmp.path().join("from tui");
    export_to(&mut s, &out, &[]);
    let sum = summary(&s);
    assert!(out.join("adapter_model.safetensors").is_file());
    assert_eq!(sum.ranks.len(), 36);
    assert_eq!(sum.ranks[0].1, 11);
    assert_eq!(sum.ranks[2].1, 6);
    assert!(sum.ranks[3..].iter().all(|(_, r)| *r == 10));
    assert!(sum.command.contains("-k 10"));
    assert!(sum
        .command
        .contains("--k-for encoder.layer.0.attention.output.dense=11"));
    assert!(
        sum.command.contains("'"),
        "the path with a space is quoted: {}",
        sum.command
    );
    // The summary is on screen: path, ranks, size and the command.
    let text = rows(&s.render()).join("\n");
    assert!(text.contains("reproduce with:"), "{text}");
    assert!(text.contains("rank 10 × 34 modules"));
    assert!(!s.app.unexported());

    // Run the shown command through a shell (quoting included) into another directory.
    let cli_out = tmp.path().join("from cli");
    let line = command_line::render(&sum.settings, &s.app.adapter_paths, &cli_out);
    let bin = env!("CARGO_BIN_EXE_lora-lego");
    let line = line.replacen("lora-lego", &command_line::quote(bin), 1);
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("{line} --quiet"))
        .status()
        .expect("sh");
    assert!(st.success(), "{line}");
    let a = files(&out);
    let b = files(&cli_out);
    // The weights and the config, and whatever else the writer puts beside them (a recipe).
    let names: Vec<&str> = a.iter().map(|f| f.0.as_str()).collect();
    assert!(names.contains(&"adapter_model.safetensors") && names.contains(&"adapter_config.json"));
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs between the explorer and the CLI");
    }

    // The recipe written beside the export replays to the same bytes too.
    assert_eq!(sum.recipe, out.join("lora_lego_recipe.toml"));
    assert!(
        text.contains("or replay the recipe written beside it:"),
        "{text}"
    );
    let replay = tmp.path().join("replayed");
    let st = Command::new(env!("CARGO_BIN_EXE_lora-lego"))
        .args(["merge", "--quiet", "--recipe"])
        .arg(&sum.recipe)
        .arg("-o")
        .arg(&replay)
        .status()
        .expect("replay");
    assert!(st.success());
    for ((name, x), (_, y)) in a.iter().zip(&files(&replay)) {
        assert!(
            x == y,
            "{name} differs between the explorer and the replayed recipe"
        );
    }
}

#[test]
fn a_kohya_f16_export_with_weights_matches_the_cli_too() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut s = Session::open(&pair(), MergeSettings::default(), 160, 48).expect("pair");
    // Adapters panel: weight of `reverse` 1.0 → 0.8; method stays lego; space balanced.
    s.key(KeyCode::BackTab);
    s.key(KeyCode::Left);
    s.key(KeyCode::Left);
    s.key(KeyCode::Char('s'));
    s.key(KeyCode::Char('s'));
    assert_eq!(s.app.settings.weights, vec![0.8, 1.0]);
    let out = tmp.path().join("merged.safetensors");
    // Tab → format (kohya), Tab → dtype (F32 → F16 is two steps from "as the sources").
    export_to(
        &mut s,
        &out,
        &[
            KeyCode::Tab,
            KeyCode::Right,
            KeyCode::Tab,
            KeyCode::Right,
            KeyCode::Right,
        ],
    );
    let sum = summary(&s);
    assert!(out.is_file());
    assert!(sum.command.contains("--format=kohya --dtype=f16"));
    assert!(sum.command.contains("--weights=0.8,1"));
    assert!(sum.command.contains("--space=balanced"));
    let cli_out = tmp.path().join("cli.safetensors");
    let args = command_line::merge_args(&sum.settings, &s.app.adapter_paths, &cli_out);
    let st = Command::new(env!("CARGO_BIN_EXE_lora-lego"))
        .args(&args)
        .arg("--quiet")
        .status()
        .expect("run");
    assert!(st.success(), "{args:?}");
    // On this branch the safetensors header's metadata map is written in hash order (fixed on
    // the main branch), so compare the header as JSON and the tensor bytes exactly.
    let (ha, da) = split_safetensors(&std::fs::read(&out).expect("tui"));
    let (hb, db) = split_safetensors(&std::fs::read(&cli_out).expect("cli"));
    assert_eq!(ha, hb);
    assert!(da == db, "tensor data differs");
    // Exporting again to the same path is refused with a message, not a panic.
    s.key(KeyCode::Enter);
    export_to(&mut s, &out, &[]);
    match &s.app.overlay {
        Some(Overlay::Export(d)) => match &d.phase {
            Phase::Failed(msg) => {
                assert!(msg.contains("exists") || msg.contains("already"), "{msg}")
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn quitting_asks_first_until_the_merge_was_exported() {
    let mut s = Session::open(&pair(), MergeSettings::default(), 160, 48).expect("pair");
    let effects = s.event(Event::Key(lora_lego::tui::session::press(
        KeyCode::Char('q'),
        KeyModifiers::NONE,
    )));
    assert!(effects.is_empty());
    assert!(matches!(s.app.overlay, Some(Overlay::ConfirmQuit)));
    assert!(rows(&s.render())
        .join("\n")
        .contains("The current merge was never exported."));
    s.key(KeyCode::Char('n'));
    assert!(s.app.overlay.is_none() && !s.app.quit);
    s.key(KeyCode::Char('q'));
    let effects = s.event(Event::Key(lora_lego::tui::session::press(
        KeyCode::Char('y'),
        KeyModifiers::NONE,
    )));
    assert!(s.app.quit);
    assert!(matches!(
        effects.as_slice(),
        [Effect::SaveHistory, Effect::Quit]
    ));
}

fn engine(paths: &[PathBuf]) -> Arc<Engine> {
    Arc::new(Engine::new(
        ModuleSet::new(load_all(paths, &LoadOptions::default()).expect("load")).expect("align"),
    ))
}

#[test]
fn the_worker_thread_answers_the_newest_generation_and_the_app_drops_stale_replies() {
    let engine = engine(&pair());
    let worker = Worker::spawn(Arc::clone(&engine)).expect("thread");
    let mut app = App::new(Arc::clone(&engine), pair(), MergeSettings::default());
    for e in app.start() {
        if let Effect::Job(j) = e {
            worker.send(j);
        }
    }
    // A change right away: generation 2, selected module first.
    let effects = app.handle(Event::Key(lora_lego::tui::session::press(
        KeyCode::Char('+'),
        KeyModifiers::NONE,
    )));
    for e in effects {
        if let Effect::Job(j) = e {
            worker.send(j);
        }
    }
    assert_eq!(app.generation, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first_of_gen2: Option<String> = None;
    while app.progress().0 < 14 || app.curve_is_stale() || app.view_is_stale() {
        assert!(Instant::now() < deadline, "worker too slow");
        if let Ok(r) = worker.rx.recv_timeout(Duration::from_millis(100)) {
            if first_of_gen2.is_none() {
                first_of_gen2 = match &r {
                    Reply::View { generation: 2, .. } => Some("view".into()),
                    Reply::Summary { generation: 2, .. } => Some("summary".into()),
                    _ => None,
                };
            }
            app.handle(Event::Reply(Box::new(r)));
        }
    }
    assert_eq!(
        first_of_gen2.as_deref(),
        Some("view"),
        "the selected module comes first"
    );
    let fresh = app.summaries.iter().flatten().all(|s| s.generation == 2);
    assert!(fresh);
    match &app.summaries[1].as_ref().expect("summary").value {
        Ok(Some(s)) => assert_eq!(s.rank, 9),
        other => panic!("{other:?}"),
    }
    // A late reply of generation 1 changes nothing.
    let before = format!("{:?}", app.summaries[0].as_ref().map(|s| s.generation));
    app.handle(Event::Reply(Box::new(lora_lego::tui::worker::summary(
        &engine,
        1,
        &MergeSettings::default(),
        0,
    ))));
    assert_eq!(
        before,
        format!("{:?}", app.summaries[0].as_ref().map(|s| s.generation))
    );
}

#[test]
fn a_panic_on_the_worker_becomes_a_clean_fatal_error() {
    let engine = engine(&pair());
    let worker = Worker::spawn(Arc::clone(&engine)).expect("thread");
    // Module 999 does not exist: the engine indexes out of bounds and panics.
    worker.send(Job::Recompute {
        generation: 1,
        settings: Arc::new(MergeSettings::default()),
        first: 999,
    });
    let reply = worker
        .rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a reply");
    let Reply::Panicked(msg) = reply else {
        panic!("expected a panic report, got {reply:?}");
    };
    assert!(msg.contains("index out of bounds"), "{msg}");
    let mut app = App::new(engine, pair(), MergeSettings::default());
    let effects = app.handle(Event::Reply(Box::new(Reply::Panicked(msg))));
    assert!(app.quit);
    assert!(matches!(effects.as_slice(), [Effect::Quit]));
    assert!(app.fatal.as_deref().unwrap_or("").contains("panicked"));
}

#[test]
fn history_restores_settings_and_ignores_a_corrupt_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("sub/history.json");
    let (h, note) = History::load(&path);
    assert!(
        h.sets.is_empty() && note.is_none(),
        "a missing file is an empty history"
    );
    let key = history::key(&pair());
    assert!(key.iter().all(|p| p.is_absolute()));
    let settings = MergeSettings {
        k: 5,
        weights: vec![0.5, 1.5],
        seed: 3,
        ..Default::default()
    };
    let mut h = History::default();
    h.remember(&key, &settings);
    h.remember(&history::key(&demo()), &MergeSettings::default());
    h.save(&path).expect("save");
    let (h, note) = History::load(&path);
    assert!(note.is_none());
    assert_eq!(h.sets.len(), 2);
    assert_eq!(h.lookup(&key).expect("entry").expect("valid"), settings);
    // The same set, given by other spellings of its paths, finds the entry.
    let other: Vec<PathBuf> = pair()
        .iter()
        .map(|p| p.join("..").join(p.file_name().expect("name")))
        .collect();
    assert_eq!(
        h.lookup(&history::key(&other))
            .expect("entry")
            .expect("valid")
            .k,
        5
    );
    // Settings that do not fit the set (3 weights for 2 adapters) are ignored with a note.
    let mut bad = History::default();
    bad.remember(
        &key,
        &MergeSettings {
            weights: vec![1.0; 3],
            ..Default::default()
        },
    );
    let err = bad.lookup(&key).expect("entry").expect_err("invalid");
    assert!(err.contains("ignored"), "{err}");
    // A corrupt file: empty history and a note, no error.
    std::fs::write(&path, "{ not json").expect("write");
    let (h, note) = History::load(&path);
    assert!(h.sets.is_empty());
    assert!(note.expect("a note").contains("corrupt"));
}
