//! Command-line interface: subcommands and their flags. `main.rs` only dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Load and conformance harness for the chat protocol.
///
/// Exit codes: 0 every threshold met; 1 a threshold failed (each failure is named);
/// 2 bad usage or scenario (file, field and reason are printed); 3 the run could not be
/// carried out (target unreachable, server died mid-run, interrupted) — reports written so
/// far are marked incomplete.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario: simulated users, open-model traffic, delivery and eviction checks,
    /// reports in reports/<scenario>-<UTC time>/.
    ///
    /// With no `target` in the scenario and no --target, loadgen starts chat-server itself
    /// (as a child process on 127.0.0.1, a free port) and stops it at the end.
    ///
    /// Example: loadgen run scenarios/relogin.toml
    Run(RunArgs),
    /// Run the chat server for an embedded run (used by `run`; prints `listening ADDR`,
    /// stops when stdin closes).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML; see scenarios/README.md).
    pub scenario: PathBuf,
    /// Server URL, overriding the scenario's `target` (repeat to spread users over
    /// several). Example: --target ws://127.0.0.1:6789/
    #[arg(long = "target", value_name = "URL")]
    pub targets: Vec<String>,
    /// Report directory (default: reports/<scenario>-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No live progress; only the final summary.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}
