//! The `lora-lego` binary: parses arguments, runs, and reports errors as `error: …`.

mod cli;

use clap::Parser;

fn main() {
    let parsed = cli::Cli::parse();
    if let Err(e) = cli::run(parsed) {
        match cli::hints::flag_hint(&e) {
            Some(hint) => eprintln!("error: {e:#}; {hint}"),
            None => eprintln!("error: {e:#}"),
        }
        std::process::exit(cli::exit_status(&e));
    }
}
