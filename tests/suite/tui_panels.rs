//! Every panel and popup of the explorer rendered into a `TestBackend`, checking text and
//! colours of known inputs: the peft-tiny pair `reverse` (r 4) + `sort` (r 8), 14 modules.

use std::path::PathBuf;

use lora_lego::recipe::{MergeMethod, MergeSettings};
use lora_lego::tui::app::{Effect, Event, Focus, Overlay, Status};
use lora_lego::tui::export_dialog::Phase;
use lora_lego::tui::keys::{self, Context};
use lora_lego::tui::session::{find, rows, Session};
use lora_lego::tui::theme::Theme;
use lora_lego::tui::worker::Reply;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyModifiers;
use ratatui::crossterm::event::{KeyCode, MouseButton, MouseEvent, MouseEventKind};
use ratatui::style::{Color, Modifier};

fn pair() -> Vec<PathBuf> {
    crate::common::tiny_pair()
}

fn session() -> Session {
    Session::open(&pair(), MergeSettings::default(), 160, 48).expect("fixture loads")
}

fn screen(s: &Session) -> (Buffer, String) {
    let b = s.render();
    let text = rows(&b).join("\n");
    (b, text)
}

fn at(b: &Buffer, needle: &str) -> (u16, u16) {
    find(b, needle).unwrap_or_else(|| panic!("`{needle}` not on screen:\n{}", rows(b).join("\n")))
}

/// The panel with the focus, as the status bar's hint for ↑↓ names what they move.
fn focused(s: &Session) -> Focus {
    let last = rows(&s.render()).last().cloned().unwrap_or_default();
    if last.contains("↑↓ module") {
        Focus::Modules
    } else if last.contains("↑↓ adapter") {
        Focus::Adapters
    } else if last.contains("↑↓ control") {
        Focus::Controls
    } else {
        panic!("no focus hint in `{last}`")
    }
}

fn fg(b: &Buffer, (x, y): (u16, u16)) -> Color {
    b[(x, y)].fg
}

/// The colours of every cell inside `rect` holding one of `symbols`.
fn colours_of(b: &Buffer, rect: ratatui::layout::Rect, symbols: &[&str]) -> Vec<Color> {
    let mut out = Vec::new();
    for y in rect.y + 1..rect.y + rect.height - 1 {
        for x in rect.x + 1..rect.x + rect.width - 1 {
            if symbols.contains(&b[(x, y)].symbol()) {
                out.push(b[(x, y)].fg);
            }
        }
    }
    out.sort_by_key(|c| format!("{c:?}"));
    out.dedup();
    out
}

/// Where the last frame drew the panels.
fn areas(s: &Session) -> lora_lego::tui::layout::Areas {
    s.areas().expect("big enough")
}

#[test]
fn adapters_panel_lists_name_rank_alpha_dtype_weight_in_the_adapter_colour() {
    let s = session();
    let (b, text) = screen(&s);
    assert!(text.contains("Adapters (2)"));
    let row = rows(&b)
        .into_iter()
        .find(|r| r.contains("reverse"))
        .expect("reverse row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    // ● reverse 4 8 F32 1.0 — then the next panel's border.
    assert_eq!(
        &cells[0..6],
        &["│●", "reverse", "4", "8", "F32", "1.0"],
        "{row}"
    );
    let sort = rows(&b)
        .into_iter()
        .find(|r| r.contains("sort "))
        .expect("sort row");
    assert!(
        sort.contains("sort") && sort.contains(" 8 ") && sort.contains("16"),
        "{sort}"
    );
    assert_eq!(fg(&b, at(&b, "reverse")), Color::Cyan);
    assert_eq!(fg(&b, at(&b, "sort")), Color::Magenta);
}

#[test]
fn modules_panel_shows_every_module_with_its_distance_to_the_sum_uncoloured_and_filters() {
    let mut s = session();
    let (b, text) = screen(&s);
    assert!(text.contains("Modules 14/14"), "{text}");
    // The common prefix "model.layers." is left out; the first module is selected.
    let first = s.app.engine.set.modules[0].key.to_string();
    assert_eq!(first, "model.layers.0.mlp.down_proj");
    let summary = match &s.app.summaries[0].as_ref().expect("computed").value {
        Ok(Some(x)) => x.clone(),
        other => panic!("{other:?}"),
    };
    let figure = format!("dist {:.3}", summary.error_vs_sum);
    let row = rows(&b)
        .into_iter()
        .find(|r| r.contains("│0.mlp.down_proj"))
        .expect("row");
    assert!(row.contains(&figure) && row.contains("k8"), "{row}");
    let pos = at(&b, &figure);
    // Not green / red: a small distance to the sum is no sign of a good merge.
    assert_eq!(fg(&b, pos), Color::Reset);
    // Filter: "/" then text narrows the list to the MLP modules (3 per layer, 2 layers).
    s.key(KeyCode::Char('/'));
    s.type_text("mlp");
    s.key(KeyCode::Enter);
    let (_, text) = screen(&s);
    assert!(text.contains("Modules 6/14 /mlp"), "{text}");
    assert!(!text.contains("self_attn.q_proj"));
    s.key(KeyCode::Char('/'));
    s.key(KeyCode::Esc);
    assert!(screen(&s).1.contains("Modules 14/14"));
}

#[test]
fn scatter_colours_units_by_cluster_and_by_source_with_a_matching_legend() {
    let mut s = session();
    let view = match &s.app.view.as_ref().expect("view").1.value {
        Ok(Some(v)) => v.clone(),
        other => panic!("{other:?}"),
    };
    let k = view.projection.points.nrows();
    assert_eq!(k, 8);
    assert_eq!(view.labels.len(), 12);
    let (b, text) = screen(&s);
    assert!(text.contains("colour: cluster"));
    let t = Theme::default();
    for c in 0..k {
        let size = view.labels.iter().filter(|&&l| l == c).count();
        let pos = at(&b, &format!("● c{c}({size})"));
        assert_eq!(fg(&b, pos), t.cluster(c), "legend entry of cluster {c}");
    }
    assert!(text.contains("× centroid"));
    // The plot without the two legend rows at its bottom.
    let mut area = areas(&s).scatter;
    area.height -= 2;
    let mut want: Vec<Color> = view.labels.iter().map(|&l| t.cluster(l)).collect();
    want.sort_by_key(|c| format!("{c:?}"));
    want.dedup();
    // Every unit dot has its cluster's colour (a singleton's dot lies under its centroid).
    let dots = colours_of(&b, area, &["•"]);
    assert!(
        dots.len() >= 4 && dots.iter().all(|c| want.contains(c)),
        "{dots:?}"
    );
    // Centroids are "×" in their cluster's colour: all eight clusters are there.
    assert_eq!(colours_of(&b, area, &["×"]), want);

    s.key(KeyCode::Char('c'));
    let (b, text) = screen(&s);
    assert!(text.contains("colour: source"));
    assert_eq!(fg(&b, at(&b, "● reverse")), Color::Cyan);
    assert_eq!(fg(&b, at(&b, "● sort")), Color::Magenta);
    assert_eq!(
        colours_of(&b, area, &["•"]),
        vec![Color::Cyan, Color::Magenta]
    );
}

#[test]
fn controls_panel_shows_every_knob_and_follows_the_keys() {
    let mut s = session();
    let (b, text) = screen(&s);
    for label in [
        "method",
        "k (all modules)",
        "k (this module)",
        "param reweight",
        "output r_ref",
        "output multiplier",
        "feature space",
        "seed",
        "weight reverse",
        "weight sort",
    ] {
        assert!(text.contains(label), "{label}");
    }
    assert_eq!(fg(&b, at(&b, "weight sort")), Color::Magenta);
    let line = |text: &str, label: &str| -> String {
        text.lines()
            .find(|l| l.contains(label))
            .map(|l| {
                l.split(label)
                    .nth(1)
                    .unwrap_or("")
                    .split('│')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert_eq!(line(&text, "k (all modules)"), "8");
    assert_eq!(line(&text, "k (this module)"), "8 (global)");
    s.key(KeyCode::Char('+'));
    s.key(KeyCode::Char(']'));
    s.key(KeyCode::Char(']'));
    s.key(KeyCode::Char('p'));
    s.key(KeyCode::Char('o'));
    s.key(KeyCode::Char('s'));
    let text = screen(&s).1;
    assert_eq!(line(&text, "k (all modules)"), "9");
    assert_eq!(line(&text, "k (this module)"), "11 (override)");
    assert_eq!(line(&text, "param reweight"), "l2");
    assert_eq!(line(&text, "output r_ref"), "max");
    assert_eq!(line(&text, "feature space"), "sign-aware");
    // Focus the controls, go to "output multiplier" and step it up.
    s.key(KeyCode::Tab);
    assert_eq!(focused(&s), Focus::Controls);
    for _ in 0..5 {
        s.key(KeyCode::Char('j'));
    }
    s.key(KeyCode::Char('l'));
    s.key(KeyCode::Char('l'));
    let text = screen(&s).1;
    assert_eq!(line(&text, "output multiplier"), "‹ 1.2 ›");
    assert_eq!(s.app.settings.output_scale, 1.2);
}

#[test]
fn metrics_panel_shows_silhouette_inertia_mix_retention_and_interference() {
    let s = session();
    let (b, text) = screen(&s);
    let view = match &s.app.view.as_ref().expect("view").1.value {
        Ok(Some(v)) => v.clone(),
        other => panic!("{other:?}"),
    };
    let c = view.merged.clusters.clone().expect("lego clusters");
    assert!(
        text.contains(&format!("silhouette {:.3}", c.silhouette)),
        "{text}"
    );
    assert!(text.contains(&format!("inertia {:.4}", c.inertia)));
    assert!(text.contains(&format!(
        "distance to the exact sum {:.3}",
        view.merged.metrics.error_vs_sum
    )));
    assert_eq!(
        fg(&b, at(&b, "distance to the exact sum")),
        fg(&b, at(&b, "silhouette ")),
        "the distance is shown like every other figure, not as good or bad"
    );
    // The scale figures, one line per source, as the metrics compute them.
    let sources = &s.app.engine.set.modules[view.module].sources;
    let w: Vec<f64> = sources.iter().map(|x| s.app.settings.weight(x.0)).collect();
    let proj = view.merged.metrics.projection(&w);
    let norms = view.merged.metrics.norm_vs_source(&w);
    assert!(text.contains("scale per source"), "{text}");
    for (si, src) in sources.iter().enumerate() {
        let name = &s.app.engine.set.adapters[src.0].name;
        let row = rows(&b)
            .into_iter()
            .find(|r| r.contains(&format!("│{name} ")) && r.contains(" proj "))
            .unwrap_or_else(|| panic!("no scale row for {name}:\n{text}"));
        assert!(row.contains(&format!("{:.3}", proj[si])), "{row}");
        assert!(row.contains(&format!("{:.3}", norms[si])), "{row}");
    }
    // One line per cluster: "c0  ████ 2 (1+1)", the bar in the sources' colours.
    for (ci, mix) in c.source_mix.iter().enumerate() {
        let tail = format!(
            " {} ({})",
            c.cluster_sizes[ci],
            mix.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("+")
        );
        let row = rows(&b)
            .into_iter()
            .find(|r| r.contains(&format!("│c{ci:<3}")) && r.contains(&tail))
            .unwrap_or_else(|| panic!("cluster {ci} line with `{tail}`"));
        assert!(row.contains('█'));
    }
    let (x, y) = at(&b, "c0  ");
    let bar = b[(x + 4, y)].fg;
    assert!(bar == Color::Cyan || bar == Color::Magenta, "{bar:?}");
    for r in &view.merged.metrics.retention {
        assert!(text.contains(&format!("{r:.3}")), "retention {r}");
    }
    assert!(text.contains("interference"));
    let off = view.interference[[0, 1]];
    let row = rows(&b)
        .into_iter()
        .find(|r| r.contains("│reverse ") && r.contains("1.00"))
        .expect("interference row of reverse");
    assert!(row.contains(&format!("{off:.2}")), "{row}");
}

#[test]
fn curve_panel_marks_the_suggested_and_current_k() {
    let s = session();
    let (b, text) = screen(&s);
    let suggested = match &s.app.curve.as_ref().expect("curve").1.value {
        Ok((points, k)) => {
            assert_eq!(points.len(), 12);
            *k
        }
        Err(e) => panic!("{e}"),
    };
    assert!(text.contains("Inertia & silhouette vs k"));
    assert!(text.contains(&format!("suggested k={suggested}")), "{text}");
    let pos = at(&b, "current k=8");
    assert_eq!(fg(&b, pos), Color::White);
    assert_eq!(fg(&b, at(&b, "— inertia/max")), Color::LightCyan);
    assert_eq!(fg(&b, at(&b, "— silhouette")), Color::LightMagenta);
}

#[test]
fn status_bar_lists_the_keys_that_work_now_and_errors_in_red() {
    let mut s = session();
    let (b, text) = screen(&s);
    let last = text.lines().last().expect("status");
    for k in [
        "? help",
        "q quit",
        "e export",
        "v compare",
        "c colour",
        "↑↓ module",
    ] {
        assert!(last.contains(k), "`{k}` in {last}");
    }
    assert!(last.contains("lego · up to date"));
    assert_eq!(fg(&b, at(&b, "? help")), Color::LightGreen);
    s.key(KeyCode::Tab);
    assert!(screen(&s)
        .1
        .lines()
        .last()
        .unwrap_or("")
        .contains("↑↓ control"));
    // k never goes below 1.
    for _ in 0..10 {
        s.key(KeyCode::Char('-'));
    }
    assert_eq!(s.app.settings.k, 1, "k stops at 1");
    // Errors replace the keys, in red.
    s.app.status = Some(Status::Error("module `x`: boom".into()));
    let (b, text) = screen(&s);
    assert!(text
        .lines()
        .last()
        .unwrap_or("")
        .contains("module `x`: boom"));
    assert_eq!(fg(&b, at(&b, "module `x`: boom")), Color::LightRed);
}

#[test]
fn help_overlay_lists_every_key() {
    let mut s = session();
    s.key(KeyCode::Char('?'));
    assert!(matches!(s.app.overlay, Some(Overlay::Help)));
    let (b, text) = screen(&s);
    assert!(text.contains(" Keys and figures "));
    for (name, what) in lora_lego::tui::FIGURES {
        assert!(text.contains(name) && text.contains(what), "{what}");
    }
    // Every binding of the panels with its help; every popup's bindings with their labels.
    for b in keys::of(Context::Main).chain(keys::of(Context::Everywhere)) {
        let line = format!(" {:<18}{}", b.shown, b.help);
        assert!(text.contains(&line), "`{line}` in the help:\n{text}");
    }
    for c in [
        Context::Filter,
        Context::Export,
        Context::Sweep,
        Context::Compare,
        Context::Help,
        Context::ConfirmQuit,
    ] {
        for b in keys::of(c) {
            let entry = format!("{} {}", b.shown, b.label);
            assert!(
                text.contains(&entry),
                "`{entry}` ({c:?}) in the help:\n{text}"
            );
        }
    }
    assert_eq!(fg(&b, at(&b, "Ctrl-C")), Color::LightGreen);
    s.key(KeyCode::Esc);
    assert!(s.app.overlay.is_none());
    assert!(!screen(&s).1.contains(" Keys and figures "));
}

#[test]
fn comparison_overlay_shows_every_method_for_the_module_and_all_modules() {
    let mut s = session();
    s.key(KeyCode::Char('v'));
    let (_, text) = screen(&s);
    assert!(text.contains("Methods side by side"));
    assert!(text.contains("this module: model.layers.0.mlp.down_proj"));
    assert!(text.contains("all modules (means)"));
    for m in MergeMethod::all() {
        // One row per method: this module's figures, then the all-modules means with a time.
        let row = text
            .lines()
            .find(|l| l.contains(&format!("│{m} ")))
            .unwrap_or_else(|| panic!("{m} has a row:\n{text}"));
        assert!(row.matches('│').count() >= 3, "{m}: {row}");
    }
    let cmp = &s.app.comparison.as_ref().expect("computed").value;
    let cat = cmp
        .all_rows
        .iter()
        .find(|r| r.method.to_string() == "cat")
        .expect("cat");
    // cat keeps every unit: the exact sum, rank 4 + 8.
    assert_eq!(cat.max_rank, 12);
    assert!(cat.error_vs_sum < 1e-4);
    assert!(text.contains("12/12.0"));
}

#[test]
fn export_dialog_form_progress_and_summary() {
    let mut s = session();
    s.key(KeyCode::Char('e'));
    let (_, text) = screen(&s);
    for label in [
        "output path",
        "format",
        "PEFT directory",
        "dtype",
        "as the sources",
        "non-LoRA tensors",
        "overwrite",
    ] {
        assert!(text.contains(label), "{label}");
    }
    s.key(KeyCode::Tab);
    s.key(KeyCode::Right);
    s.key(KeyCode::Tab);
    s.key(KeyCode::Right);
    s.key(KeyCode::Right);
    let text = screen(&s).1;
    assert!(text.contains("kohya .safetensors file"));
    assert!(text.contains("‹ F16 ›"));
    assert!(
        text.contains("lora-lego-merged.safetensors"),
        "the suffix follows the format"
    );
    // Progress is drawn as a gauge.
    if let Some(Overlay::Export(d)) = &mut s.app.overlay {
        d.phase = Phase::Running { done: 3, total: 14 };
    }
    let text = screen(&s).1;
    assert!(text.contains("3/14 modules") && text.contains("merging"));
    // A failure is shown, never a panic.
    let effects = s.event(Event::Reply(Box::new(Reply::Exported(Err(
        "disk full".into()
    )))));
    assert!(effects.is_empty());
    let text = screen(&s).1;
    assert!(text.contains("The export failed:") && text.contains("disk full"));
}

#[test]
fn too_small_a_terminal_gets_a_message_instead_of_panels() {
    let mut s = session();
    s.event(Event::Resize(80, 20));
    let (_, text) = screen(&s);
    assert!(
        text.contains("The terminal is 80×20; the explorer needs at least 100×28."),
        "{text}"
    );
    assert!(!text.contains("Adapters"));
    // Back to a big size: the panels return.
    s.event(Event::Resize(120, 36));
    assert!(screen(&s).1.contains("Adapters (2)"));
}

#[test]
fn no_color_draws_without_any_colour_and_keeps_clusters_apart_by_symbol() {
    let mut s = session();
    s.set_theme(Theme::plain());
    let (b, text) = screen(&s);
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            assert_eq!(b[(x, y)].fg, Color::Reset, "fg at {x},{y}");
            assert_eq!(b[(x, y)].bg, Color::Reset, "bg at {x},{y}");
        }
    }
    // Legend entries are the clusters' symbols.
    assert!(text.contains("0 c0(") && text.contains("7 c7("), "{text}");
}

#[test]
fn stale_panels_are_marked_until_fresh_results_arrive() {
    let mut s = session();
    assert!(!screen(&s).1.contains("stale"));
    let effects = s.event(Event::Key(lora_lego::tui::session::press(
        KeyCode::Char('+'),
        KeyModifiers::NONE,
    )));
    let (_, text) = screen(&s);
    assert!(text.contains("⟳ stale"), "{text}");
    assert!(text.contains("computing 0/14"));
    // A reply for an older generation is dropped.
    assert!(matches!(effects.first(), Some(Effect::Job(_))));
    s.apply(effects);
    let text = screen(&s).1;
    assert!(!text.contains("stale"), "{text}");
    assert!(text.contains("k9"));
}

#[test]
fn mouse_click_and_wheel_select_in_lists() {
    let mut s = session();
    let a = areas(&s);
    // Row 3 of the list (inner rows start one below the border) is module 3.
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: a.modules.x + 3,
        row: a.modules.y + 1 + 3,
        modifiers: KeyModifiers::NONE,
    };
    let effects = s.event(Event::Mouse(click));
    s.apply(effects);
    let units_of =
        |s: &Session, m: usize| format!("Units of {} ·", s.app.engine.set.modules[m].key);
    assert!(screen(&s).1.contains(&units_of(&s, 3)));
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: a.modules.x + 3,
        row: a.modules.y + 2,
        modifiers: KeyModifiers::NONE,
    };
    let effects = s.event(Event::Mouse(wheel));
    s.apply(effects);
    assert!(screen(&s).1.contains(&units_of(&s, 4)));
    // A click on the second adapter row (below the header) moves the adapter cursor.
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: a.adapters.x + 3,
        row: a.adapters.y + 3,
        modifiers: KeyModifiers::NONE,
    };
    s.event(Event::Mouse(click));
    assert_eq!(focused(&s), Focus::Adapters);
    let b = s.render();
    let (x, y) = at(&b, "sort");
    assert!(
        b[(x, y)].modifier.contains(Modifier::REVERSED),
        "the second adapter row is highlighted"
    );
    let (x, y) = at(&b, "reverse");
    assert!(!b[(x, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn the_smallest_supported_size_still_shows_every_panel() {
    let mut s = session();
    s.event(Event::Resize(100, 28));
    let (_, text) = screen(&s);
    if std::env::var_os("TUI_PEEK").is_some() {
        println!("{text}");
    }
    for title in [
        "Adapters (2)",
        "Modules 14/14",
        "Units of",
        "Controls",
        "Metrics",
        "Inertia & silhouette vs k",
    ] {
        assert!(text.contains(title), "{title} at 100×28:\n{text}");
    }
    assert!(text.lines().last().unwrap_or("").contains("? help"));
}

#[test]
fn no_color_in_the_environment_turns_colours_off() {
    // The value is passed in: setting the variable would leak into the children other tests spawn.
    let value = |v: &str| Some(std::ffi::OsString::from(v));
    assert!(!Theme::for_no_color(value("1").as_deref()).color);
    assert!(
        Theme::for_no_color(value("").as_deref()).color,
        "an empty NO_COLOR does not count"
    );
    assert!(Theme::for_no_color(None).color);
    assert_eq!(Theme::plain().cluster(3), Color::Reset);
    assert_eq!(Theme::plain().adapter(0), Color::Reset);
}

#[test]
fn the_status_bar_drops_whole_key_hints_when_narrow() {
    let mut s = Session::open(&pair(), MergeSettings::default(), 110, 32).expect("fixture loads");
    s.event(Event::Resize(110, 32));
    let b = s.render();
    let last = rows(&b).last().cloned().unwrap_or_default();
    // Every hint shown is whole: the last one before the right-hand status ends in its word.
    let hints = [
        "help", "quit", "module", "k here", "filter", "k", "method", "colour", "compare", "export",
        "panel",
    ];
    let left = last.split("lego ·").next().unwrap_or("").trim_end();
    assert!(
        hints.iter().any(|h| left.ends_with(h)),
        "cut hint in `{last}`"
    );
    assert!(
        last.contains("? help") && last.contains("up to date"),
        "{last}"
    );
}

#[test]
fn the_method_key_reaches_the_lego_tsv_preset_and_every_data_free_method() {
    use lora_lego::recipe::{PostStep, UnitBasis};
    let mut s = session();
    s.key(KeyCode::Char('m'));
    assert_eq!(s.app.settings.method, MergeMethod::LegoTsv);
    // Choosing the preset sets its knobs; the screen shows the merge it makes.
    assert_eq!(
        (s.app.settings.k, s.app.settings.units, s.app.settings.post),
        (32, UnitBasis::Centred, PostStep::Tsv)
    );
    let text = screen(&s).1;
    assert!(text.contains("lego-tsv"), "{text}");
    // Leaving it restores LEGO's own defaults.
    s.key(KeyCode::Char('M'));
    assert_eq!(s.app.settings.method, MergeMethod::Lego);
    assert_eq!(
        (s.app.settings.k, s.app.settings.units),
        (8, UnitBasis::Raw)
    );
    let mut seen = Vec::new();
    for _ in 0..MergeMethod::all().len() {
        s.key(KeyCode::Char('m'));
        seen.push(s.app.settings.method);
        let _ = screen(&s);
    }
    for m in MergeMethod::all() {
        assert!(seen.contains(&m), "{m} reachable");
    }
}

/// A session on module 3 with its own k (9), so that every key of the panels has something
/// to change: up and down, jumps, the override and its removal.
fn prepared() -> Session {
    let mut s = session();
    for _ in 0..3 {
        s.key(KeyCode::Down);
    }
    s.key(KeyCode::Char(']'));
    s
}

#[test]
fn every_key_of_the_table_changes_what_is_shown_or_quits() {
    for b in keys::of(Context::Main).chain(keys::of(Context::Everywhere)) {
        for (key, _) in b.keys {
            let mut s = prepared();
            let before = s.render();
            s.press(key.event());
            let after = s.render();
            assert!(
                s.app.quit || after != before,
                "`{}` ({key:?}: {}) changed nothing on screen:\n{}",
                b.shown,
                b.help,
                rows(&after).join("\n")
            );
        }
    }
}

#[test]
fn the_status_bar_shows_the_table_hints_of_every_context() {
    let mut s = session();
    let check = |s: &Session, focus: Focus, context: Context| {
        let text = screen(s).1;
        let last = text.lines().last().unwrap_or("").to_string();
        for (k, label) in keys::hints(context, focus) {
            assert!(
                last.contains(&format!("{k} {label}")),
                "{context:?}: `{k} {label}` in `{last}`"
            );
        }
    };
    for focus in [Focus::Controls, Focus::Adapters, Focus::Modules] {
        s.key(KeyCode::Tab);
        assert_eq!(focused(&s), focus);
        check(&s, focus, Context::Main);
    }
    s.key(KeyCode::Char('/'));
    check(&s, Focus::Modules, Context::Filter);
    s.key(KeyCode::Esc);
    for (open, context) in [
        ('?', Context::Help),
        ('v', Context::Compare),
        ('e', Context::Export),
        ('q', Context::ConfirmQuit),
    ] {
        s.key(KeyCode::Char(open));
        check(&s, Focus::Modules, context);
        s.key(KeyCode::Esc);
        assert!(!screen(&s).1.contains("Keys and figures"));
    }
}

#[test]
fn no_binding_of_the_key_table_is_shadowed_by_another() {
    // Were a key bound twice in one context, the help would promise what the first binding
    // never lets happen.
    for b in keys::BINDINGS {
        for (key, does) in b.keys {
            let event = key.event();
            let got = keys::lookup(b.context, &event);
            let want = match does {
                keys::Does::Act(a) => *a,
                keys::Does::Typed(f) => f('x'),
            };
            assert_eq!(
                got,
                Some(want),
                "{:?} `{}` ({key:?}) is taken by another binding",
                b.context,
                b.shown
            );
        }
    }
}
