//! Progress for long headless runs: a bar on a terminal, plain log lines when stderr is piped,
//! nothing with --quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
pub struct Progress {
    quiet: bool,
    tty: bool,
}

impl Progress {
    /// Decides from `--quiet` and whether stderr is a terminal.
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A plain log line (only when not quiet and not on a terminal, where the bar speaks).
    pub fn log(&self, line: &str) {
        if !self.quiet && !self.tty {
            eprintln!("lora-lego: {line}");
        }
    }

    /// A bar of `len` steps, hidden unless on a terminal and not quiet.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet || !self.tty {
            self.log(what);
            return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    }
}
