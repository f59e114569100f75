//! SIGTERM, SIGINT and SIGHUP: run a cleanup (restore the terminal), wait until no output is
//! being renamed into place, then die of the signal as the default action would.
//!
//! Why signal-hook: it is already in the tree (crossterm uses it), its iterator runs our code on
//! an ordinary thread rather than in a signal handler (restoring the terminal is not
//! async-signal-safe), and `emulate_default_handler` keeps the exit status a shell expects.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Installs the handlers; `cleanup` runs once, on the first of these signals.
pub fn on_fatal_signals(cleanup: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("lora-lego-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                cleanup();
                // Held until the process is gone: a commit in progress finishes, none starts.
                let _commit = crate::io::write::commit_lock();
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}
