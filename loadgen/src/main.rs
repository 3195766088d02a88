//! `loadgen`: argument parsing and dispatch. Each subcommand lives in its own module.

mod capacity;
mod checks;
mod churn;
mod cli;
mod client;
mod conform;
mod connection;
mod duration;
mod embedded;
mod gate;
mod nofile;
mod progress;
mod record;
mod report;
mod resources;
mod run;
mod scenario;
mod scrape;
mod stamp;
mod target;
mod thresholds;
mod user;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, RunArgs};
use crate::run::{Completion, RunError, RunRequest};
use crate::scenario::Scenario;

/// Documented exit codes.
mod exit {
    pub const PASSED: u8 = 0;
    pub const THRESHOLD_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const COULD_NOT_RUN: u8 = 3;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOADGEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the tokio runtime: {error}");
            return ExitCode::from(exit::COULD_NOT_RUN);
        }
    };
    let code = match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Gate(args) => runtime.block_on(gate::command(args)),
        Command::Capacity(args) => runtime.block_on(capacity::command::main(args)),
        Command::Conform(args) => runtime.block_on(conform::command::main(args)),
        Command::Client(args) => runtime.block_on(client::main(args)),
        Command::Serve(args) => {
            let config = chat_server::Config {
                listen: args.listen,
                fault: args.fault,
                ..Default::default()
            };
            match runtime.block_on(embedded::serve(config)) {
                Ok(()) => exit::PASSED,
                Err(error) => {
                    eprintln!("loadgen serve: {error:#}");
                    exit::COULD_NOT_RUN
                }
            }
        }
    };
    ExitCode::from(code)
}

async fn run(args: RunArgs) -> u8 {
    let scenario = match Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return exit::USAGE;
        }
    };
    for url in &args.targets {
        if let Err(error) = url.parse::<target::Target>() {
            eprintln!("loadgen: --target {error}");
            return exit::USAGE;
        }
    }
    let request = RunRequest {
        scenario,
        scenario_path: args.scenario.display().to_string(),
        targets: args.targets,
        quiet: args.quiet,
    };
    let (report, completion) = match run::run(request).await {
        Ok(done) => done,
        Err(RunError::Limits(error)) => {
            eprintln!("loadgen: {error}");
            return exit::USAGE;
        }
        Err(error @ RunError::Unreachable(_)) => {
            eprintln!("loadgen: {error}");
            return exit::COULD_NOT_RUN;
        }
    };
    let verdicts = report.verdicts();
    let dir = args.out.unwrap_or_else(|| {
        report::default_dir(
            std::path::Path::new("reports"),
            &report.scenario_name,
            report.started_at,
        )
    });
    let written = report::write_all(&dir, &report, &verdicts);
    println!("{}", report::summary_table(&report, &verdicts));
    match written {
        Ok(()) => println!("reports: {}", dir.display()),
        Err(error) => {
            eprintln!("loadgen: {error}");
            return exit::COULD_NOT_RUN;
        }
    }
    if let Completion::Incomplete(why) = completion {
        eprintln!("loadgen: run incomplete: {why}");
        return exit::COULD_NOT_RUN;
    }
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
    if failed.is_empty() {
        exit::PASSED
    } else {
        for verdict in failed {
            eprintln!(
                "loadgen: threshold {} failed: {} {} against a limit of {} {}",
                verdict.name, verdict.actual, verdict.unit, verdict.limit, verdict.unit
            );
        }
        exit::THRESHOLD_FAILED
    }
}
