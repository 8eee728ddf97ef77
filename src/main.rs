//! The `inferguard` binary: parse the command line, start logging, run.

use std::process::ExitCode;

/// The Check path allocates small, short-lived buffers per request; mimalloc cut its
/// instructions per Check by about a fifth against the system allocator (bench/README.md).
/// Built with `no_thp`: otherwise mimalloc asks for transparent huge pages on its arena, and
/// each 2 MiB region it touches becomes resident whole (about 14 MiB of a 38 MiB idle RSS was
/// such untouched huge-page memory).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use inferguard::{app, cli, telemetry};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let serving = matches!(cli.command, cli::Command::Serve);
    telemetry::init_logging(if serving { "info" } else { "warn" });
    match app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inferguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
