//! The `merge` command timed as a user runs it: a child process, hashing and export included,
//! with the child's own peak resident memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{LegoError, Result};

/// One run of the child `merge`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChildRun {
    /// Wall time from spawn to exit.
    pub wall_ms: f64,
    /// The child's peak resident set (ru_maxrss).
    pub peak_rss_bytes: u64,
}

/// Runs `exe merge PATHS -o OUT --force --quiet ARGS…` once.
pub fn run_merge(exe: &Path, paths: &[PathBuf], out: &Path, args: &[String]) -> Result<ChildRun> {
    // A file, not a pipe: a chatty child must not block on a full pipe while we wait.
    let err_path = out.with_extension("stderr.txt");
    let err_file = std::fs::File::create(&err_path).map_err(|e| LegoError::io(&err_path, e))?;
    let t = Instant::now();
    let child = Command::new(exe)
        .arg("merge")
        .args(paths)
        .arg("-o")
        .arg(out)
        .args(["--force", "--quiet"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_file))
        .spawn()
        .map_err(|e| LegoError::io(exe, e))?;
    let (status, peak_rss_bytes) = wait_with_rusage(child.id())?;
    let wall_ms = t.elapsed().as_secs_f64() * 1e3;
    if status != 0 {
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        return Err(LegoError::Invalid(format!(
            "the timed `merge {}` failed (status {status}): {err}",
            args.join(" ")
        )));
    }
    Ok(ChildRun {
        wall_ms,
        peak_rss_bytes,
    })
}

/// Waits for `pid` and returns its exit status and peak RSS. `wait4` is the one call that
/// reports a single child's high-water mark (`getrusage(RUSAGE_CHILDREN)` is the maximum over
/// every child so far); std's `Child::wait` discards it.
fn wait_with_rusage(pid: u32) -> Result<(i32, u64)> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| LegoError::Invalid(format!("child pid {pid} out of range")))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data that wait4 fills in; both pointers are to live locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        return Err(LegoError::Invalid(format!(
            "waiting for the timed merge: {}",
            std::io::Error::last_os_error()
        )));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // Linux reports ru_maxrss in KiB.
    let rss = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Ok((code, rss))
}

/// The median of `runs` by wall time, with the largest peak RSS among them.
pub fn median_run(runs: &[ChildRun]) -> Option<ChildRun> {
    let mut walls: Vec<f64> = runs.iter().map(|r| r.wall_ms).collect();
    walls.sort_by(f64::total_cmp);
    let wall_ms = *walls.get(walls.len() / 2)?;
    let peak_rss_bytes = runs.iter().map(|r| r.peak_rss_bytes).max()?;
    Some(ChildRun {
        wall_ms,
        peak_rss_bytes,
    })
}
