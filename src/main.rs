//! The `inncopilot` binary: parse flags, run the command, print the error chain.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use inncopilot::cli::{self, Cli};

fn main() -> ExitCode {
    // A .env file in the working folder, read once; variables already set win.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log_filter()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
    if let Err(error) = dotenv
        && !error.not_found()
    {
        tracing::warn!("ignoring .env: {error}");
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(cli::EXIT_INPUT_ERROR)
        }
    }
}
