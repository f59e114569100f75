//! The explorer's sweep view rendered into a `TestBackend`: candidates best first, per-task
//! bars, the mean-vs-knob plot, loading and exporting a candidate, following a growing file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lora_lego::eval::{EvalRecord, Evaluator};
use lora_lego::recipe::{MergeMethod, MergeSettings};
use lora_lego::sweep::{write_results, ResultRecord};
use lora_lego::tui::app::{Overlay, Status};
use lora_lego::tui::session::{find, rows, Session};
use lora_lego::tui::Extras;
use ratatui::crossterm::event::KeyCode;

fn pair() -> Vec<PathBuf> {
    crate::common::tiny_pair()
}

fn record(id: &str, method: &str, k: usize, mean: Option<f64>) -> ResultRecord {
    let settings = MergeSettings {
        method: method.parse::<MergeMethod>().unwrap(),
        k,
        ..MergeSettings::default()
    };
    let mut knobs = BTreeMap::new();
    knobs.insert("method".to_string(), serde_json::json!(method));
    knobs.insert("k".to_string(), serde_json::json!(k));
    let eval = mean.map(|m| EvalRecord {
        command: "score {dir}".into(),
        split: Some("val".into()),
        mean: m,
        scores: [
            ("alpha".to_string(), m + 0.1),
            ("beta".to_string(), m - 0.1),
        ]
        .into_iter()
        .collect(),
        wall_secs: 1.0,
        exit_status: 0,
    });
    ResultRecord {
        id: id.into(),
        method: method.into(),
        knobs,
        settings,
        merge_sha: None,
        merge_secs: 0.1,
        error: eval
            .is_none()
            .then(|| "evaluator `score {dir}` failed".into()),
        eval,
        same_as: None,
    }
}

fn records() -> Vec<ResultRecord> {
    vec![
        record("lego-k2", "lego", 2, Some(0.5)),
        record("lego-k4", "lego", 4, Some(0.7)),
        record("lego-k6", "lego", 6, Some(0.6)),
        record("cat-k4", "cat", 4, Some(0.65)),
        record("broken", "lego", 3, None),
    ]
}

fn open(dir: &Path) -> Session {
    write_results(&dir.join("results.jsonl"), &records()).unwrap();
    let extras = Extras {
        sweep: Some(dir.to_path_buf()),
        ..Extras::default()
    };
    let mut s = Session::open_with(&pair(), MergeSettings::default(), 160, 48, extras).unwrap();
    s.key(KeyCode::Char('w'));
    assert!(matches!(s.app.overlay, Some(Overlay::Sweep(_))));
    s
}

fn text(s: &Session) -> String {
    rows(&s.render()).join("\n")
}

#[test]
fn candidates_are_listed_best_first_with_the_selected_ones_task_bars_and_a_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let b = s.render();
    let t = rows(&b).join("\n");
    assert!(t.contains("5 candidate(s)"), "{t}");
    let order: Vec<u16> = ["lego-k4", "cat-k4", "lego-k6", "lego-k2", "broken"]
        .iter()
        .map(|id| {
            find(&b, &format!("│{id} "))
                .unwrap_or_else(|| panic!("{id}:\n{t}"))
                .1
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "best first: {order:?}\n{t}"
    );
    let broken = rows(&b)
        .into_iter()
        .find(|r| r.contains("broken "))
        .unwrap();
    assert!(broken.contains("failed"), "{broken}");
    // The selected (best) candidate's tasks as bars with their values.
    for (task, v) in [("alpha", 0.8), ("beta", 0.6)] {
        let row = rows(&b)
            .into_iter()
            .find(|r| r.contains(&format!("{task} ")) && r.contains('█'))
            .unwrap_or_else(|| panic!("bar of {task}:\n{t}"));
        assert!(row.contains(&format!("{v:.3}")), "{row}");
    }
    // Mean against k, one line per method, drawn in braille.
    assert!(
        t.contains("mean vs k:") && t.contains("■ cat") && t.contains("■ lego"),
        "{t}"
    );
    let braille = rows(&b)
        .iter()
        .flat_map(|r| r.chars())
        .filter(|c| ('\u{2801}'..='\u{28FF}').contains(c))
        .count();
    assert!(braille > 3, "the plot draws lines:\n{t}");
    // The current settings (the defaults) are none of the candidates: the scores say so.
    assert!(t.contains("not the settings shown"), "{t}");
}

#[test]
fn enter_loads_the_selected_candidate_and_e_exports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    s.key(KeyCode::Down);
    s.key(KeyCode::Enter);
    assert!(s.app.overlay.is_none());
    let cat = &records()[3];
    assert_eq!(s.app.settings, cat.settings);
    assert!(matches!(&s.app.status, Some(Status::Info(m)) if m.contains("cat-k4")));
    // Reopened, the loaded candidate is marked as the one shown and stays selected... by row.
    s.key(KeyCode::Char('w'));
    let row = rows(&s.render())
        .into_iter()
        .find(|r| r.contains("cat-k4 "))
        .unwrap();
    assert!(row.contains("◀ shown"), "{row}");
    s.key(KeyCode::Char('e'));
    assert!(matches!(s.app.overlay, Some(Overlay::Export(_))));
    assert_eq!(
        s.app.settings,
        records()[1].settings,
        "e loads the best (selected) first"
    );
}

#[test]
fn the_view_follows_a_sweep_that_is_still_running() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    assert!(!text(&s).contains("late-k5"));
    let mut grown = records();
    grown.push(record("late-k5", "lego", 5, Some(0.9)));
    write_results(&tmp.path().join("results.jsonl"), &grown).unwrap();
    s.idle();
    let b = s.render();
    let t = rows(&b).join("\n");
    assert!(t.contains("6 candidate(s)"), "{t}");
    assert!(t.contains("late-k5 "), "{t}");
    let Some(Overlay::Sweep(v)) = &s.app.overlay else {
        panic!("the view closed")
    };
    assert_eq!(v.records[0].id, "late-k5", "the new best leads");
    assert_eq!(v.selected().unwrap().id, "lego-k4", "the selection stays");
}

#[test]
fn without_a_sweep_folder_w_says_how_to_get_one() {
    let mut s = Session::open(&pair(), MergeSettings::default(), 160, 48).unwrap();
    s.key(KeyCode::Char('w'));
    assert!(s.app.overlay.is_none());
    assert!(matches!(&s.app.status, Some(Status::Info(m)) if m.contains("--sweep")));
}

#[test]
fn a_loaded_candidates_score_leads_the_metrics_and_goes_stale_when_settings_change() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    s.key(KeyCode::Enter);
    let t = text(&s);
    assert!(
        t.contains("score 0.7000 on val (sweep candidate lego-k4)"),
        "{t}"
    );
    s.key(KeyCode::Char('+'));
    let t = text(&s);
    assert!(!t.contains("score 0.7000 on val"), "{t}");
    assert!(
        t.contains("⟳ stale score 0.7000 (sweep candidate lego-k4)"),
        "{t}"
    );
}

#[test]
fn e_scores_the_current_settings_with_the_explorers_evaluator() {
    let mut s = Session::open(&pair(), MergeSettings::default(), 160, 48).unwrap();
    s.key(KeyCode::Char('E'));
    assert!(matches!(&s.app.status, Some(Status::Info(m)) if m.contains("--eval")));
    let scorer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/fake_scorer.sh");
    let ev = Evaluator::new(&format!("{} {{dir}} {{split}}", scorer.display()), None).unwrap();
    let with = |evaluator: Evaluator, split: Option<&str>| {
        let extras = Extras {
            evaluator: Some((evaluator, split.map(String::from))),
            ..Extras::default()
        };
        Session::open_with(&pair(), MergeSettings::default(), 160, 48, extras).unwrap()
    };
    let mut s = with(ev.clone(), Some("val"));
    s.key(KeyCode::Char('E'));
    let (settings, label, e) = s.app.score.clone().expect("scored");
    assert_eq!(settings, s.app.settings);
    assert_eq!(label, "scored here");
    // The same merge scored by the CLI path gives the same number.
    let want = lora_lego::sweep::score_once(&s.app.engine, &settings, &ev, Some("val")).unwrap();
    assert_eq!(e.mean, want.mean);
    let t = text(&s);
    assert!(
        t.contains(&format!("score {:.4} on val (scored here)", e.mean)),
        "{t}"
    );
    // A failing evaluator is a status-bar error, and the explorer goes on.
    let mut s = with(Evaluator::new("exit 9 # {dir}", None).unwrap(), None);
    s.key(KeyCode::Char('+'));
    s.key(KeyCode::Char('E'));
    assert!(matches!(&s.app.status, Some(Status::Error(m)) if m.contains("exit status 9")));
    assert!(!s.app.quit);
}
