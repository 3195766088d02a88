//! The body of `loadgen run`: read the scenario, run it, write the reports, print the
//! summary, and say which [`Exit`] the run earned.

use std::path::Path;

use super::{run, Completion, RunError, RunRequest};
use crate::cli::RunArgs;
use crate::exit::Exit;
use crate::report;
use crate::scenario::Scenario;
use crate::target;

pub async fn main(args: RunArgs) -> Exit {
    let scenario = match Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return Exit::Usage;
        }
    };
    if let Err(error) = target::check_all(&args.targets) {
        eprintln!("loadgen: --target {error}");
        return Exit::Usage;
    }
    let sources = &args.source_addresses;
    if let Some(twice) = sources
        .iter()
        .enumerate()
        .find_map(|(i, ip)| sources[..i].contains(ip).then_some(ip))
    {
        eprintln!("loadgen: --source-address {twice} is given twice");
        return Exit::Usage;
    }
    let request = RunRequest {
        scenario,
        scenario_path: args.scenario.display().to_string(),
        targets: args.targets,
        quiet: args.quiet,
        source_addresses: args.source_addresses,
    };
    let (report, completion) = match run(request).await {
        Ok(done) => done,
        Err(error @ (RunError::Limits(_) | RunError::Ports(_))) => {
            eprintln!("loadgen: {error}");
            return Exit::Usage;
        }
        Err(error @ RunError::Unreachable(_)) => {
            eprintln!("loadgen: {error}");
            return Exit::CouldNotRun;
        }
    };
    let verdicts = report.verdicts();
    let dir = args.out.unwrap_or_else(|| {
        report::default_dir(
            Path::new("reports"),
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
            return Exit::CouldNotRun;
        }
    }
    if let Completion::Incomplete(why) = completion {
        eprintln!("loadgen: run incomplete: {why}");
        return Exit::CouldNotRun;
    }
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
    if failed.is_empty() {
        return Exit::Passed;
    }
    for verdict in failed {
        eprintln!(
            "loadgen: threshold {} failed: {} {} against a limit of {} {}",
            verdict.name, verdict.actual, verdict.unit, verdict.limit, verdict.unit
        );
    }
    Exit::Failed
}
