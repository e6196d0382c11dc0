//! The `ray-rs` command.

#![warn(clippy::undocumented_unsafe_blocks)]
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ray_cli::args::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings always reach stderr; a node daemon also logs what it does (to its log file when
    // daemonized). RUST_LOG overrides.
    let default = match &cli.command {
        Command::Start(_) => "warn,ray_cli=info,ray_net=info,ray_core=info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Start(args) => ray_cli::node::start(args),
        Command::Stop(args) => ray_cli::node::stop(args),
        Command::Status(args) => ray_cli::node::status(args),
        Command::List(args) => ray_cli::state::list(args),
        Command::Summary(args) => ray_cli::state::summary(args),
        Command::Timeline(args) => ray_cli::state::timeline(args),
        Command::Memory(args) => ray_cli::state::memory(args),
        Command::Logs(args) => ray_cli::logs::logs(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ray-rs: error: {e}");
            ExitCode::FAILURE
        }
    }
}
