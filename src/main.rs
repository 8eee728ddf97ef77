//! The `inferguard` binary: parse the command line, start logging, run.

use std::process::ExitCode;

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
