//! `loadgen gate`: flags to a [`GateRequest`], a line per run, the comparison printed,
//! and the exit code: 0 no regression; 1 a regression or a correctness failure; 2 bad
//! usage; 3 the gate could not run (a server would not start, a run failed).

use std::path::Path;

use crate::calibration::Started;
use crate::commands::cli::GateArgs;
use crate::commands::exit::Exit;
use crate::gate::{self, GateRequest};
use crate::report;
use crate::scenario::Scenario;

/// Runs the gate; returns its exit code. Writes compare.md, compare.json and
/// compare.html.
pub async fn main(args: GateArgs) -> Exit {
    for (flag, command) in [("--base", &args.base), ("--candidate", &args.candidate)] {
        if !command.contains("{addr}") {
            eprintln!("loadgen gate: {flag} must contain {{addr}} where the listen address goes, e.g. \"target/release/chat-server --listen {{addr}}\"");
            return Exit::Usage;
        }
    }
    if !(args.tolerance > 0.0 && args.tolerance < 1.0) {
        eprintln!("loadgen gate: --tolerance must be between 0 and 1 (0.10 is 10%)");
        return Exit::Usage;
    }
    if !(args.counter_tolerance > 0.0 && args.counter_tolerance < 1.0) {
        eprintln!("loadgen gate: --counter-tolerance must be between 0 and 1 (0.02 is 2%)");
        return Exit::Usage;
    }
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("loadgen gate: {error}");
            return Exit::Usage;
        }
    };
    args.tls.apply(&mut scenario.users.tls);
    if let Err(error) = crate::tls::TlsClient::new(&scenario.users.tls) {
        eprintln!("loadgen gate: --ca-file: {error}");
        return Exit::Usage;
    }
    if let Err(error) = args.jwt.apply(&mut scenario.users) {
        eprintln!("loadgen gate: {error}");
        return Exit::Usage;
    }
    if let Err((field, reason)) = scenario.check_credentials() {
        eprintln!("loadgen gate: {field}: {reason}");
        return Exit::Usage;
    }
    for name in scenario.gate_tolerance.keys() {
        if gate::metric::metric(name).is_none() {
            let known: Vec<&str> = gate::metric::METRICS.iter().map(|m| m.name).collect();
            eprintln!(
                "loadgen gate: {}: gate_tolerance.{name}: no such metric (known: {})",
                args.scenario.display(),
                known.join(", ")
            );
            return Exit::Usage;
        }
    }
    let dir = args.out.clone().unwrap_or_else(|| {
        report::default_dir(Path::new("reports"), "gate", std::time::SystemTime::now())
    });
    let workers = args.workers.or(scenario.workers).unwrap_or(1);
    let calibration = match Started::measure(args.calibration.mode).await {
        Ok(started) => started,
        Err(error) => {
            eprintln!(
                "loadgen gate: machine calibration failed, the reports will not have one: {error}"
            );
            None
        }
    };
    let request = GateRequest {
        base: args.base.clone(),
        candidate: args.candidate.clone(),
        scenario: scenario.clone(),
        scenario_path: args.scenario.clone(),
        pairs: args.pairs,
        tolerance: args.tolerance,
        counter_tolerance: args.counter_tolerance,
        tolerances: scenario.gate_tolerance.clone(),
        workers,
        wss: args.wss,
        dir: dir.clone(),
    };
    let pairs = args.pairs;
    let quiet = args.quiet;
    let outcome = gate::run(&request, |run| {
        if !quiet {
            eprintln!(
                "pair {}/{pairs} {:<9} {:>9.0} deliveries/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:.4} CPU s/1000 deliveries{}",
                run.pair,
                format!("{:?}", run.side).to_lowercase(),
                run.deliveries_per_sec,
                run.p50_ms,
                run.p99_ms,
                run.cpu_per_1000,
                if run.correct { String::new() } else { format!("  INCORRECT: {}", run.problems.join("; ")) }
            );
        }
    })
    .await;
    let mut result = match outcome {
        Ok(result) => result,
        Err(error) => {
            eprintln!("loadgen gate: {error}");
            return Exit::CouldNotRun;
        }
    };
    if let Some(started) = calibration {
        result.calibration = Some(started.finish().await);
    }
    let markdown = gate::markdown(&result);
    if let Err(error) = gate::write(&dir, &result, &markdown) {
        eprintln!("loadgen gate: {error}");
        return Exit::CouldNotRun;
    }
    println!("{markdown}");
    println!("reports: {}", dir.display());
    if result.passed {
        Exit::Passed
    } else {
        Exit::Failed
    }
}
