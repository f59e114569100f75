//! The terminal explorer: `lora-lego [ADAPTER...]`.
//!
//! This module owns the terminal (raw mode, alternate screen, mouse capture — always restored,
//! also on a panic and on SIGTERM, SIGINT and SIGHUP) and the run loop; the state and its
//! logic live in [`app`], the engine runs on the [`worker`] thread. Each frame the app builds
//! a view model, `ui` draws it and returns the [`layout`] it drew, which the app keeps for the
//! mouse. Keys become [`action`]s through the [`keys`] table.

pub mod action;
pub mod app;
pub mod command_line;
pub mod export_dialog;
pub mod history;
pub mod keys;
pub mod layout;
pub(crate) mod panels;
pub mod session;
pub mod sweep_view;
pub mod theme;
pub(crate) mod ui;
pub(crate) mod view;
pub mod worker;

/// What each figure of the metrics panel is, as the help says it.
pub use panels::help::FIGURES;

use std::io::{stdout, Stdout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use anyhow::Context;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event as TermEvent,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;

use crate::recipe::MergeSettings;
use crate::session::Engine;
use crate::session::LoadOptions;

use app::{App, Effect, Event, Status};
use history::History;
use worker::{Job, Worker};

/// The thread that owns the terminal; a panic there restores the terminal before reporting.
static UI_THREAD: OnceLock<ThreadId> = OnceLock::new();
/// The report of a panic on another thread, printed after the terminal is restored.
static OTHER_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// True while the explorer owns the terminal.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Set by a fatal signal: the run loop stops and restores the terminal.
static STOP: AtomicBool = AtomicBool::new(false);

/// On SIGTERM, SIGINT or SIGHUP: ask the run loop to stop, give it a moment to restore the
/// terminal itself (it may be halfway through drawing a frame), then restore it regardless.
fn install_signal_handlers() -> std::io::Result<()> {
    crate::session::on_fatal_signals(|| {
        STOP.store(true, Ordering::SeqCst);
        for _ in 0..50 {
            if !TERMINAL_TAKEN.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        restore_terminal();
    })
}

/// Leaves raw mode, the alternate screen and mouse capture. Only the first call after taking
/// the terminal acts: leaving the alternate screen twice would move the cursor back over
/// whatever was printed in between (a panic message).
pub fn restore_terminal() {
    if !TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped, whatever way the run loop ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// A panic on the UI thread restores the terminal, then runs the previous hook (which prints
/// the message on the normal screen). Panics elsewhere are recorded quietly: printing them on
/// the alternate screen would garble it, and the worker turns them into a clean exit.
fn install_panic_hook() {
    let _ = UI_THREAD.set(std::thread::current().id());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if Some(std::thread::current().id()) == UI_THREAD.get().copied() {
            restore_terminal();
            previous(info);
        } else if let Ok(mut slot) = OTHER_PANIC.lock() {
            slot.get_or_insert_with(|| info.to_string());
        }
    }));
}

/// Loads the adapters and runs the explorer until the user quits.
pub fn run(paths: Vec<PathBuf>, load: &LoadOptions) -> anyhow::Result<()> {
    run_with(paths, load, Extras::default())
}

/// What the explorer can do besides exploring.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// The sweep the sweep view (`w`) reads.
    pub sweep: Option<PathBuf>,
    /// The evaluator `E` scores the current settings with, and its split.
    pub evaluator: Option<(crate::session::Evaluator, Option<String>)>,
}

/// [`run`] with a sweep view and/or an evaluator.
pub fn run_with(paths: Vec<PathBuf>, load: &LoadOptions, extras: Extras) -> anyhow::Result<()> {
    let engine = Arc::new(crate::session::open(&paths, load)?);
    let history_path = history::default_path();
    let key = history::key(&paths);
    let mut notes: Vec<String> = Vec::new();
    let mut hist = History::default();
    if let Some(p) = &history_path {
        let (h, note) = History::load(p);
        hist = h;
        notes.extend(note);
    }
    let settings = match hist.lookup(&key) {
        Some(Ok(s)) => {
            notes.push("restored the last settings of this adapter set".into());
            s
        }
        Some(Err(note)) => {
            notes.push(note);
            MergeSettings::default()
        }
        None => MergeSettings::default(),
    };
    let mut app = App::new(Arc::clone(&engine), paths, settings);
    app.theme = theme::Theme::from_env();
    app.sweep_dir = extras.sweep;
    app.evaluator = extras.evaluator;
    let warnings = engine.set.warnings.len()
        + engine
            .set
            .adapters
            .iter()
            .map(|a| a.warnings.len())
            .sum::<usize>();
    if warnings > 0 {
        notes.push(format!(
            "{warnings} loading warning(s); `lora-lego inspect` lists them"
        ));
    }
    if !notes.is_empty() {
        app.status = Some(Status::Info(notes.join(" · ")));
    }
    let worker = Worker::spawn(Arc::clone(&engine)).context("starting the worker thread")?;

    install_panic_hook();
    install_signal_handlers().context("installing the signal handlers")?;
    let result = (|| -> anyhow::Result<()> {
        enable_raw_mode().context("switching the terminal to raw mode")?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let _guard = TerminalGuard;
        execute!(stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        terminal.clear()?;
        event_loop(&mut terminal, &mut app, &worker)
    })();
    restore_terminal();
    if STOP.load(Ordering::SeqCst) {
        // The signal thread ends the process; nothing more is drawn or saved.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    // Back to the default hook: the terminal is ours no more.
    let _ = std::panic::take_hook();

    if let Some(p) = &history_path {
        let mut hist = History::load(p).0;
        hist.remember(&key, &app.settings);
        if let Err(e) = hist.save(p) {
            eprintln!("note: could not save the history to {}: {e}", p.display());
        }
    }
    result?;
    if let Some(fatal) = app.fatal {
        let detail = OTHER_PANIC.lock().ok().and_then(|s| s.clone());
        match detail {
            Some(d) => anyhow::bail!("{fatal}\n{d}"),
            None => anyhow::bail!("{fatal}"),
        }
    }
    Ok(())
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    worker: &Worker,
) -> anyhow::Result<()> {
    let (score_tx, score_rx) = std::sync::mpsc::channel::<Event>();
    let effects = app.start();
    apply(effects, app, worker, &score_tx);
    while !app.quit {
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        let mut screen = layout::Screen::Undrawn;
        terminal.draw(|f| screen = ui::render(&app.view(), f))?;
        app.drawn(screen);
        // Fresh results first, so what is drawn next is as current as possible.
        loop {
            match worker.rx.try_recv() {
                Ok(reply) => {
                    let effects = app.handle(Event::Reply(Box::new(reply)));
                    apply(effects, app, worker, &score_tx);
                    if app.quit {
                        break;
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    app.fatal
                        .get_or_insert_with(|| "the worker thread stopped".into());
                    app.quit = true;
                    break;
                }
            }
        }
        if app.quit {
            break;
        }
        while let Ok(ev) = score_rx.try_recv() {
            let effects = app.handle(ev);
            apply(effects, app, worker, &score_tx);
        }
        app.refresh_sweep();
        if event::poll(Duration::from_millis(40))? {
            let ev = match event::read()? {
                TermEvent::Key(k) => Some(Event::Key(k)),
                TermEvent::Mouse(m) => Some(Event::Mouse(m)),
                TermEvent::Resize(w, h) => Some(Event::Resize(w, h)),
                _ => None,
            };
            if let Some(ev) = ev {
                let effects = app.handle(ev);
                apply(effects, app, worker, &score_tx);
            }
        }
    }
    Ok(())
}

/// Carries out effects that need the worker; saving the history happens once, on exit.
fn apply(
    effects: Vec<Effect>,
    app: &mut App,
    worker: &Worker,
    scores: &std::sync::mpsc::Sender<Event>,
) {
    for e in effects {
        match e {
            Effect::Score(settings) => {
                let Some((evaluator, split)) = app.evaluator.clone() else {
                    continue;
                };
                let engine = Arc::clone(&app.engine);
                let tx = scores.clone();
                // Its own thread: a scorer may run for minutes, the worker must stay free.
                let spawned = std::thread::Builder::new()
                    .name("lora-lego-score".into())
                    .spawn(move || {
                        let result = crate::session::score_once(
                            &engine,
                            &settings,
                            &evaluator,
                            split.as_deref(),
                        );
                        let _ = tx.send(Event::Scored { settings, result });
                    });
                if let Err(e) = spawned {
                    app.scoring = false;
                    app.status = Some(Status::Error(format!("could not start scoring: {e}")));
                }
            }
            Effect::Job(job) => {
                if !worker.send(job) {
                    app.fatal = Some("the worker thread stopped".into());
                    app.quit = true;
                }
            }
            Effect::SaveHistory | Effect::Quit => {}
        }
    }
}

/// Runs `job` synchronously, passing every reply to `emit`: for tests and scripted sessions
/// that drive the app without threads.
pub fn run_job_sync(engine: &Engine, job: Job, emit: &mut dyn FnMut(worker::Reply)) {
    match job {
        Job::Recompute {
            generation,
            settings,
            first,
        } => worker::recompute_sync(engine, generation, &settings, first, emit),
        Job::Detail {
            generation,
            settings,
            module,
        } => worker::detail(engine, generation, &settings, module, emit),
        Job::Shutdown => {}
        Job::Compare {
            generation,
            settings,
            module,
        } => emit(worker::Reply::Compare {
            generation,
            result: Box::new(worker::comparison(engine, &settings, module)),
        }),
        Job::Export(job) => {
            let replies = Mutex::new(Vec::new());
            let done = worker::export(engine, &job, &|r| {
                if let Ok(mut v) = replies.lock() {
                    v.push(r);
                }
            });
            for r in replies.into_inner().unwrap_or_default() {
                emit(r);
            }
            emit(done);
        }
    }
}
