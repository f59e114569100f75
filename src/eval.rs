//! The evaluator contract: any command that takes an adapter and prints
//! `{"scores": {"task": value, ...}, "mean": value}` (higher is better) on stdout.
//!
//! The command is a shell command line (`sh -c`): people's scorers live behind venvs, `cd`s,
//! environment variables and pipes, and a shell line is what they already have. `{dir}` (the
//! adapter's path) and `{split}` are substituted *shell-quoted*, so a path with spaces, quotes
//! or `$` reaches the scorer as one literal argument and is never interpreted. The command runs
//! in its own process group so a timeout kills the scorer and everything it started.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The placeholder for the adapter's path.
pub const DIR_PLACEHOLDER: &str = "{dir}";
/// The placeholder for the split name.
pub const SPLIT_PLACEHOLDER: &str = "{split}";

/// How much of the scorer's stderr an error quotes.
const STDERR_TAIL: usize = 2000;

/// Why an evaluation gave no score; every variant names the command that was run.
#[derive(Debug, thiserror::Error)]
// Variant fields are the values the `#[error]` message names; documenting each would repeat it.
#[allow(missing_docs)]
pub enum EvalError {
    /// The command line cannot be used as it is.
    #[error("evaluator `{command}`: {reason}")]
    Command { command: String, reason: String },
    /// The shell could not be started.
    #[error("evaluator `{command}`: could not start it: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran longer than allowed and was killed (with its whole process group).
    #[error(
        "evaluator `{command}`: no result after {secs:.1} s; killed it (raise --eval-timeout)"
    )]
    Timeout { command: String, secs: f64 },
    /// It exited with a non-zero status (or was killed by a signal).
    #[error("evaluator `{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    /// It exited cleanly but its output does not follow the contract.
    #[error("evaluator `{command}`: {reason}; expected one JSON object {{\"scores\": {{\"task\": number, ...}}, \"mean\": number}} on stdout, got: {stdout}")]
    BadOutput {
        command: String,
        reason: String,
        stdout: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with:\n{}", stderr.trim_end())
    }
}

/// An evaluator: the command line (with placeholders) and how long it may run.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluator {
    /// The command line as the user gave it, placeholders included.
    pub command: String,
    /// Killed after this long (`None`: no limit).
    pub timeout: Option<Duration>,
}

/// What one evaluation returned, as recorded in recipes, model cards and sweep results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRecord {
    /// The command line as given (placeholders not substituted: the adapter's temporary path
    /// means nothing afterwards).
    pub command: String,
    /// The split asked for (`{split}`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// The mean the scorer reported (or the mean of `scores` when it reported none).
    pub mean: f64,
    /// Per task, as the scorer named them.
    pub scores: BTreeMap<String, f64>,
    /// Wall time of the command in seconds.
    pub wall_secs: f64,
    /// Its exit status (0: a record exists only for clean runs).
    pub exit_status: i32,
}

impl EvalRecord {
    /// The per-task scores, without a `mean` entry some scorers repeat inside `scores`.
    pub fn tasks(&self) -> impl Iterator<Item = (&String, &f64)> {
        self.scores.iter().filter(|(k, _)| k.as_str() != "mean")
    }

    /// One line for a model card or a log: the mean and every task.
    pub fn summary(&self) -> String {
        let tasks: Vec<String> = self.tasks().map(|(k, v)| format!("{k} {v:.4}")).collect();
        let split = self
            .split
            .as_deref()
            .map(|s| format!(" on split `{s}`"))
            .unwrap_or_default();
        format!(
            "mean {:.4}{split} ({}) by `{}` in {:.1} s, exit status {}",
            self.mean,
            tasks.join(", "),
            self.command,
            self.wall_secs,
            self.exit_status
        )
    }
}

impl Evaluator {
    /// An evaluator for `command`; it must name the adapter with `{dir}`.
    pub fn new(command: &str, timeout: Option<Duration>) -> Result<Self, EvalError> {
        if !command.contains(DIR_PLACEHOLDER) {
            return Err(EvalError::Command {
                command: command.into(),
                reason: format!(
                    "the command must contain {DIR_PLACEHOLDER}, where the adapter's path goes"
                ),
            });
        }
        Ok(Evaluator {
            command: command.into(),
            timeout,
        })
    }

    /// Whether the command asks for a split.
    pub fn uses_split(&self) -> bool {
        self.command.contains(SPLIT_PLACEHOLDER)
    }

    /// The shell line for `dir` and `split`, both shell-quoted.
    pub fn command_line(&self, dir: &Path, split: Option<&str>) -> Result<String, EvalError> {
        let path = dir.to_str().ok_or_else(|| EvalError::Command {
            command: self.command.clone(),
            reason: format!("the path {} is not valid UTF-8", dir.display()),
        })?;
        let mut line = self.command.replace(DIR_PLACEHOLDER, &shell_quote(path));
        if self.uses_split() {
            let split = split.ok_or_else(|| EvalError::Command {
                command: self.command.clone(),
                reason: format!("the command has {SPLIT_PLACEHOLDER} but no split was given"),
            })?;
            line = line.replace(SPLIT_PLACEHOLDER, &shell_quote(split));
        }
        Ok(line)
    }

    /// Scores the adapter at `dir`. Never panics: whatever the command does comes back as an
    /// [`EvalError`] naming it.
    pub fn run(&self, dir: &Path, split: Option<&str>) -> Result<EvalRecord, EvalError> {
        let line = self.command_line(dir, split)?;
        let command = self.command.clone();
        let start = Instant::now();
        let mut cmd = shell(&line);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(|source| EvalError::Spawn {
            command: command.clone(),
            source,
        })?;
        // Drained on threads: a scorer that fills a pipe would otherwise block forever.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = loop {
            match exited(&mut child) {
                Ok(true) => {
                    // The shell is done (not yet reaped, so its pid names only our group):
                    // whatever it left running in the group would hold the pipes open.
                    kill_stragglers(&child);
                    match child.wait() {
                        Ok(status) => break status,
                        Err(source) => return Err(EvalError::Spawn { command, source }),
                    }
                }
                Ok(false) => {}
                Err(source) => {
                    kill_group(&mut child);
                    return Err(EvalError::Spawn { command, source });
                }
            }
            if let Some(limit) = self.timeout {
                if start.elapsed() >= limit {
                    kill_group(&mut child);
                    return Err(EvalError::Timeout {
                        command,
                        secs: limit.as_secs_f64(),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall_secs = start.elapsed().as_secs_f64();
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        if !status.success() {
            return Err(EvalError::Failed {
                command,
                status: describe_status(&status),
                stderr: tail(&String::from_utf8_lossy(&err), STDERR_TAIL),
            });
        }
        let text = String::from_utf8_lossy(&out);
        let (scores, mean) = parse_output(&text).map_err(|reason| EvalError::BadOutput {
            command: command.clone(),
            reason,
            stdout: quote_output(&text),
        })?;
        Ok(EvalRecord {
            command,
            split: split.filter(|_| self.uses_split()).map(str::to_string),
            mean,
            scores,
            wall_secs,
            exit_status: status.code().unwrap_or(0),
        })
    }
}

#[cfg(unix)]
fn shell(line: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(line);
    c
}

#[cfg(not(unix))]
fn shell(line: &str) -> Command {
    let mut c = Command::new("cmd");
    c.arg("/C").arg(line);
    c
}

/// Whether the child has exited, without reaping it (its pid stays reserved until `wait`).
#[cfg(unix)]
fn exited(child: &mut std::process::Child) -> std::io::Result<bool> {
    let pid = child.id() as libc::id_t;
    // SAFETY: waitid writes only into `info`, which lives for the call.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: si_pid is set (non-zero) by waitid exactly when a child changed state.
    Ok(unsafe { info.si_pid() } != 0)
}

#[cfg(not(unix))]
fn exited(child: &mut std::process::Child) -> std::io::Result<bool> {
    child.try_wait().map(|s| s.is_some())
}

/// SIGKILL to the child's process group (while the child is unreaped, so the id is ours).
fn kill_stragglers(child: &std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the group created for this child; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// Kills the child's whole process group (the shell and whatever it started), then reaps it.
fn kill_group(child: &mut std::process::Child) {
    kill_stragglers(child);
    let _ = child.kill();
    let _ = child.wait();
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

fn describe_status(status: &std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    "no exit status".into()
}

/// `s` in single quotes for `sh`, a `'` inside written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn tail(s: &str, max: usize) -> String {
    let start = s.len().saturating_sub(max);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].to_string()
}

fn quote_output(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        return "nothing".into();
    }
    let head: String = t.chars().take(300).collect();
    if head.len() < t.len() {
        format!("`{head}…`")
    } else {
        format!("`{head}`")
    }
}

#[derive(Deserialize)]
struct RawOutput {
    scores: serde_json::Map<String, serde_json::Value>,
    mean: Option<serde_json::Value>,
}

/// Parses a scorer's stdout: the whole of it as one JSON object, or else its last line that
/// is one (scorers often log before they report).
pub fn parse_output(text: &str) -> Result<(BTreeMap<String, f64>, f64), String> {
    let whole = serde_json::from_str::<RawOutput>(text.trim());
    let raw = match whole {
        Ok(r) => r,
        Err(e) => {
            let last = text
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('{'));
            match last.map(serde_json::from_str::<RawOutput>) {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Err(format!("not a score object: {e}")),
                None => return Err(format!("no JSON object: {e}")),
            }
        }
    };
    let number = |what: &str, v: &serde_json::Value| -> Result<f64, String> {
        v.as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{what} is {v}, not a finite number"))
    };
    let mut scores = BTreeMap::new();
    for (k, v) in &raw.scores {
        scores.insert(k.clone(), number(&format!("scores.{k}"), v)?);
    }
    let mean = match &raw.mean {
        Some(v) => number("mean", v)?,
        None => {
            let tasks: Vec<f64> = scores
                .iter()
                .filter(|(k, _)| k.as_str() != "mean")
                .map(|(_, v)| *v)
                .collect();
            if tasks.is_empty() {
                return Err("`scores` is empty and there is no `mean`".into());
            }
            tasks.iter().sum::<f64>() / tasks.len() as f64
        }
    };
    Ok((scores, mean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_spaces_quotes_and_dollars_literal() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn output_is_the_whole_text_or_its_last_json_line() {
        let (s, m) = parse_output(r#"{"scores": {"a": 0.5, "b": 1}, "mean": 0.75}"#).unwrap();
        assert_eq!(s["b"], 1.0);
        assert_eq!(m, 0.75);
        let (_, m) = parse_output("loading…\n{\"scores\": {\"a\": 0.2, \"b\": 0.4}}\n").unwrap();
        assert!((m - 0.3).abs() < 1e-12);
        assert!(parse_output(r#"{"scores": {"a": "high"}, "mean": 1}"#)
            .unwrap_err()
            .contains("scores.a"));
        assert!(parse_output("{\"mean\": 1}").is_err());
        assert!(parse_output("").is_err());
    }

    #[test]
    fn a_command_without_the_dir_placeholder_is_refused() {
        assert!(matches!(
            Evaluator::new("score.py", None),
            Err(EvalError::Command { .. })
        ));
    }

    #[test]
    fn a_split_placeholder_without_a_split_is_an_error() {
        let e = Evaluator::new("x {dir} --split {split}", None).unwrap();
        assert!(e.command_line(Path::new("/a"), None).is_err());
        assert_eq!(
            e.command_line(Path::new("/a b"), Some("val")).unwrap(),
            "x '/a b' --split 'val'"
        );
    }
}
