//! The command line: one file per subcommand, and [`cli`] (the flags) and [`exit`] (the
//! exit codes) beside them. These are the only modules that parse flags, print to the
//! terminal and turn outcomes into exit codes; the engines below them (run, fleet, gate,
//! capacity, conform, report) return typed results and report progress through a sink.
//!
//! Each subcommand's `main` reads its flags, calls its engine, prints what happened and
//! says which [`exit::Exit`] it earned.

pub mod calibrate;
pub mod capacity;
pub mod cli;
pub mod client;
pub mod conform;
pub mod exit;
pub mod flags;
pub mod gate;
pub mod live_outputs;
pub mod merge;
pub mod run;
pub mod serve;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use exit::Exit;

/// The `loadgen` binary's whole work: parse the command line, run the subcommand on a
/// tokio runtime, and give its exit code.
pub fn run_command_line() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOADGEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Local workers (`run --workers N`) share this machine's cores: each takes its share,
    // and a share of one core is a single-threaded runtime. Measured at 10,000 users, 2
    // workers on 2 cores (scripts/bench-workers.sh, 5 pairs): 1.11x the CPU per delivery
    // of one process; 1.17x with one thread of a multi-thread runtime; 1.34x with a thread
    // per core each. The price: when one worker must read a broadcast to 16,000 users,
    // its own timers wait behind those reads (loadgen_lag says so).
    let threads = match &cli.command {
        Command::Run(args) if args.coordinated => args.segment.map(|segment| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / segment.count.max(1) as usize).max(1)
        }),
        _ => None,
    };
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the tokio runtime: {error}");
            return Exit::CouldNotRun.into();
        }
    };
    let exit = match cli.command {
        Command::Run(args) => runtime.block_on(run::main(args)),
        Command::Gate(args) => runtime.block_on(gate::main(args)),
        Command::Capacity(args) => runtime.block_on(capacity::main(args)),
        Command::Conform(args) => runtime.block_on(conform::main(args)),
        Command::Client(args) => runtime.block_on(client::main(args)),
        Command::Merge(args) => merge::main(args),
        Command::Calibrate(args) => runtime.block_on(calibrate::main(args.mode, args.json)),
        Command::Serve(args) => runtime.block_on(serve::main(args)),
    };
    // A task blocked reading stdin (a worker listening to its coordinator) must not keep
    // the process alive once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    exit.into()
}
