//! The `lora-lego` binary: parses arguments, runs, and reports errors as `error: …`.

mod cli;

use clap::Parser;

/// Keeps freed blocks of up to 32 MB (glibc's ceiling) in the heap for reuse. Why: each module
/// allocates and frees n × d buffers; by default those above 128 KB to a few MB are fresh
/// mappings every time, whose page faults and unmapping took a fifth of a core-space merge's
/// CPU time (the system time of `merge --method tsv` halved, measured).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_freed_memory();
    let parsed = cli::Cli::parse();
    if let Err(e) = cli::run(parsed) {
        match cli::hints::flag_hint(&e) {
            Some(hint) => eprintln!("error: {e:#}; {hint}"),
            None => eprintln!("error: {e:#}"),
        }
        std::process::exit(cli::exit_status(&e));
    }
}
