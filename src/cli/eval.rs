//! The evaluator flags shared by `merge`, `compare` and `sweep`.

use std::time::Duration;

use clap::Args;
use lora_lego::eval::Evaluator;

/// `--eval CMD`, `--split S`, `--eval-timeout SECS`.
#[derive(Debug, Clone, Default, Args)]
pub struct EvalArgs {
    /// Score with this shell command: `{dir}` is the adapter's path, `{split}` the split;
    /// it prints {"scores": {...}, "mean": x} (higher is better).
    #[arg(long = "eval", value_name = "CMD")]
    pub eval: Option<String>,
    /// The split the evaluator is asked for through `{split}` [default: val].
    #[arg(long, value_name = "SPLIT")]
    pub split: Option<String>,
    /// Kill the evaluator (and what it started) after SECS seconds [default: no limit].
    #[arg(long, value_name = "SECS")]
    pub eval_timeout: Option<f64>,
}

impl EvalArgs {
    /// The evaluator and split, if `--eval` was given; `fallback` is a command from a recipe.
    pub fn evaluator(
        &self,
        fallback: Option<&str>,
    ) -> anyhow::Result<Option<(Evaluator, Option<String>)>> {
        let Some(command) = self.eval.as_deref().or(fallback) else {
            if self.split.is_some() || self.eval_timeout.is_some() {
                crate::usage!("--split and --eval-timeout need --eval CMD");
            }
            return Ok(None);
        };
        let timeout = match self.eval_timeout {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(s) => {
                crate::usage!("--eval-timeout must be a positive number of seconds, got {s}")
            }
        };
        let evaluator = match Evaluator::new(command, timeout) {
            Ok(e) => e,
            Err(e) => crate::usage!("--eval: {e}"),
        };
        let split = evaluator
            .uses_split()
            .then(|| self.split.clone().unwrap_or_else(|| "val".into()));
        if self.split.is_some() && split.is_none() {
            crate::usage!(
                "--split {} given, but the evaluator command has no {{split}} placeholder",
                self.split.as_deref().unwrap_or("")
            );
        }
        Ok(Some((evaluator, split)))
    }
}
