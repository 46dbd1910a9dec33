//! The `pcitrack` binary: parse the command line, run, and turn errors into a message on
//! stderr and a non-zero exit (a closed standard output into a quiet one).

use std::process::ExitCode;

use clap::Parser;
use pcitrack::cli::StdoutClosed;

/// glibc, and huge-page-advised mappings for the one-shot commands' blocks of 2 MiB and more
/// (`pcitrack::large_pages`).
#[global_allocator]
static ALLOCATOR: pcitrack::large_pages::LargePages = pcitrack::large_pages::LargePages::new();

fn main() -> ExitCode {
    let cli = pcitrack::cli::Cli::parse();
    pcitrack::cli::init_logging(&cli);
    match pcitrack::cli::run(cli) {
        Ok(code) => code,
        // The reader of our output has gone (`pcitrack devices | head`): stop quietly, as a
        // Unix tool killed by SIGPIPE does (see `cli::output`).
        Err(e) if e.chain().any(|c| c.is::<StdoutClosed>()) => {
            ExitCode::from(StdoutClosed::EXIT_STATUS)
        }
        Err(e) => {
            eprintln!("pcitrack: error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the line already
/// carries (library errors often include their source in their own message).
fn message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
