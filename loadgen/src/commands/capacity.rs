//! `loadgen capacity`: read the file and the flags, resolve where the server comes from,
//! check the largest step fits this machine, run the search ([`conduct`]) with a line per
//! step, then write the report and say the exit code. `--compare A B` compares two
//! reports instead.
//!
//! Each step also leaves its own run reports (`steps/NN-…/`), so a surprising row can be
//! looked at in full, and the search writes `capacity.toml`, `knee.toml` and
//! `above-knee.toml`: plain scenarios that run the published capacity, the knee and 20%
//! above it with `loadgen run`. The machine is calibrated before the first step and after
//! the last ([`crate::calibration`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::capacity::conduct::{
    self, conduct, Conducted, SearchEvent, SearchRequest, Stop, ABOVE_KNEE_TOML, CAPACITY_TOML,
    KNEE_TOML,
};
use crate::capacity::spec::{self, CapacitySpec};
use crate::capacity::step::ServerSource;
use crate::capacity::StepRecord;
use crate::commands::cli::CapacityArgs;
use crate::commands::exit::Exit;
use crate::report;
use crate::resources;
use crate::server_process::Launch;
use crate::target::{self, Target};

pub async fn main(args: CapacityArgs) -> Exit {
    if let Some(pair) = &args.compare {
        return compare(pair, args.tolerance);
    }
    match search_and_write(&args).await {
        Ok(exit) | Err(exit) => exit,
    }
}

/// The search's steps in order; `Err` is an early exit (what went wrong is printed).
async fn search_and_write(args: &CapacityArgs) -> Result<Exit, Exit> {
    let (file, spec) = read_spec(args)?;
    let source = resolve_source(args, &spec).await?;
    let workers = args.workers.unwrap_or(1);
    check_limits(&spec, workers)?;
    let started_at = SystemTime::now();
    let dir = args.out.clone().unwrap_or_else(|| {
        let name = if spec.name() == "capacity" {
            "capacity".to_string()
        } else {
            format!("capacity-{}", spec.name())
        };
        report::default_dir(Path::new("reports"), &name, started_at)
    });
    let request = SearchRequest {
        spec: &spec,
        file: &file,
        source,
        workers,
        dir: dir.clone(),
        calibration: args.calibration.mode,
        started_at,
    };
    let conducted = search(request, args.quiet).await?;
    Ok(write(args, &file, &spec, &dir, workers, conducted))
}

/// The capacity file with the flags that change it applied, checked.
fn read_spec(args: &CapacityArgs) -> Result<(PathBuf, CapacitySpec), Exit> {
    let Some(file) = args.file.clone() else {
        eprintln!("loadgen: capacity needs a capacity file (or --compare A B)");
        return Err(Exit::Usage);
    };
    let mut spec = match CapacitySpec::load(&file) {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return Err(Exit::Usage);
        }
    };
    if let Some(margin) = args.margin {
        spec.capacity.margin = margin;
    }
    if let Some(reproduce) = args.reproduce {
        spec.capacity.reproduce = reproduce;
    }
    if let Err(invalid) = spec.check() {
        let flag = match invalid.field.as_str() {
            "capacity.margin" => "--margin",
            "capacity.reproduce" => "--reproduce",
            other => other,
        };
        eprintln!("loadgen: {flag}: {}", invalid.reason);
        return Err(Exit::Usage);
    }
    if let Err(error) = target::check_all(&args.targets) {
        eprintln!("loadgen: --target {error}");
        return Err(Exit::Usage);
    }
    if !args.targets.is_empty() {
        spec.target = crate::scenario::Targets::Many(args.targets.clone());
    }
    if args.wss && args.server.is_none() {
        eprintln!("loadgen: --wss is for a server started by --server (a URL says wss:// itself)");
        return Err(Exit::Usage);
    }
    args.tls.apply(&mut spec.tls);
    let mut logins = crate::scenario::Users::nobody();
    if let Err(error) = args.jwt.apply(&mut logins) {
        eprintln!("loadgen: {error}");
        return Err(Exit::Usage);
    }
    if let Err(error) = logins.credentials() {
        eprintln!("loadgen: {error}");
        return Err(Exit::Usage);
    }
    spec.jwt = logins.jwt;
    spec.token_in = logins.token_in;
    if let Err(error) = crate::tls::TlsClient::new(&spec.tls) {
        eprintln!("loadgen: --ca-file: {error}");
        return Err(Exit::Usage);
    }
    Ok((file, spec))
}

/// Where every step's server comes from: the embedded server, a command, or a running
/// server (`--target` or the file's).
async fn resolve_source(args: &CapacityArgs, spec: &CapacitySpec) -> Result<ServerSource, Exit> {
    let urls = spec.target.urls();
    let source = match (&args.server, urls.is_empty()) {
        (Some(_), false) => {
            eprintln!("loadgen: --server starts the server itself; leave out --target and the file's `target`");
            return Err(Exit::Usage);
        }
        (Some(command), true) if !command.contains("{addr}") => {
            eprintln!("loadgen: --server needs {{addr}} where the listen address goes");
            return Err(Exit::Usage);
        }
        (Some(command), true) => ServerSource::Fresh(Launch::Command(command.clone()), args.wss),
        (None, true) => {
            if args.server_pid.is_some() {
                eprintln!("loadgen: --server-pid is for a server given by --target or `target`");
                return Err(Exit::Usage);
            }
            ServerSource::Fresh(Launch::Embedded(spec.jwt.clone()), false)
        }
        (None, false) => {
            let addr = match resolve(&urls[0]).await {
                Some(addr) => addr,
                None => {
                    eprintln!("loadgen: cannot resolve {}", urls[0]);
                    return Err(Exit::CouldNotRun);
                }
            };
            if let Some(pid) = args.server_pid {
                if resources::process(pid).is_none() {
                    eprintln!("loadgen: --server-pid {pid}: no such process in /proc");
                    return Err(Exit::Usage);
                }
            }
            ServerSource::External {
                urls,
                addr,
                pid: args.server_pid,
            }
        }
    };
    Ok(source)
}

/// The largest step must fit this process's open-file limit: said now, not after ten
/// minutes of steps.
fn check_limits(spec: &CapacitySpec, workers: u32) -> Result<(), Exit> {
    let largest = spec.scenario_at(spec.last_k());
    let largest_peak = if workers > 1 {
        let widest = crate::segment::Segment {
            index: 0,
            count: workers,
        };
        crate::run::segment_peak_connections(&largest, widest)
    } else {
        largest.peak_connections()
    };
    if let Err(error) = crate::nofile::ensure(largest_peak) {
        eprintln!(
            "loadgen: the limit of the search ({}) cannot run here: {error}",
            spec.describe(spec.point(spec.last_k()))
        );
        return Err(Exit::Usage);
    }
    Ok(())
}

/// Runs the search, printing a line per step (unless `quiet`).
async fn search(request: SearchRequest<'_>, quiet: bool) -> Result<Conducted, Exit> {
    let say = |line: String| {
        if !quiet {
            println!("{line}");
        }
    };
    conduct(request, |event| match event {
        SearchEvent::Began(line) | SearchEvent::Calibrated(line) => say(line),
        SearchEvent::CalibrationFailed(why) => {
            eprintln!("loadgen: machine calibration failed, the report will not have one: {why}")
        }
        SearchEvent::Step(record) => say(progress_line(record)),
    })
    .await
    .map_err(|error| {
        eprintln!("loadgen: {error}");
        Exit::CouldNotRun
    })
}

/// Writes the report and the scenarios to reproduce, prints the conclusion, and says the
/// exit code.
fn write(
    args: &CapacityArgs,
    file: &Path,
    spec: &CapacitySpec,
    dir: &Path,
    workers: u32,
    conducted: Conducted,
) -> Exit {
    let Conducted {
        report: capacity,
        capacity_point,
        knee_point,
        stopped,
    } = conducted;
    if let Err(error) = crate::capacity::report::write_all(dir, &capacity) {
        eprintln!("loadgen: {error}");
        return Exit::CouldNotRun;
    }
    if let Err(error) =
        conduct::write_reproductions(dir, file, spec, capacity_point, knee_point, workers)
    {
        eprintln!("loadgen: {error}");
        return Exit::CouldNotRun;
    }
    println!("{}", capacity.conclusion.headline);
    for line in &capacity.conclusion.details {
        println!("  {line}");
    }
    println!(
        "report: {}",
        dir.join(crate::capacity::report::REPORT_HTML).display()
    );
    if capacity_point.is_some() {
        println!(
            "plan with: loadgen run {}",
            dir.join(CAPACITY_TOML).display()
        );
    }
    if knee_point.is_some() {
        println!(
            "knee: loadgen run {} (and {})",
            dir.join(KNEE_TOML).display(),
            dir.join(ABOVE_KNEE_TOML).display()
        );
    }
    if let Some((why, stop)) = stopped {
        eprintln!("loadgen: capacity search incomplete: {why}");
        return match stop {
            Stop::Usage => Exit::Usage,
            Stop::CouldNotRun => Exit::CouldNotRun,
        };
    }
    if let Some(expected) = args.expect_at_least {
        let sustained = capacity.capacity.as_ref().map_or(0.0, |c| c.level);
        if sustained < expected {
            eprintln!(
                "loadgen: the published capacity {sustained} {} is below --expect-at-least {expected}",
                spec.level_unit()
            );
            return Exit::Failed;
        }
    }
    Exit::Passed
}

/// One line per step while the search runs.
fn progress_line(r: &StepRecord) -> String {
    let cpu = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}%"));
    format!(
        "{:>2} {:<14} {:>7} users {:>7} msg/s  deliveries/s {:>9.0} of {:>9.0}  p50 {:>7.2} ms  p99 {:>8.2} ms  lost {}  errors {}  CPU server {} loadgen {}  {}",
        r.number,
        r.stage,
        r.users,
        spec::trim_rate(r.rate),
        r.achieved_deliveries_per_sec,
        r.offered_deliveries_per_sec,
        r.p50_ms,
        r.p99_ms,
        r.lost,
        r.errors,
        cpu(r.server.cpu_percent),
        cpu(r.loadgen.cpu_percent),
        if r.met {
            "met".to_string()
        } else {
            format!("MISSED: {}", r.failures.join("; "))
        }
    )
}

async fn resolve(url: &str) -> Option<std::net::SocketAddr> {
    let target: Target = url.parse().ok()?;
    tokio::net::lookup_host(target.authority())
        .await
        .ok()?
        .next()
}

/// The command: prints the comparison and exits 0 (explained), 1 (not) or 2.
pub fn compare(pair: &[PathBuf], tolerance: f64) -> Exit {
    let [a_path, b_path] = pair else {
        eprintln!("loadgen: --compare takes two reports");
        return Exit::Usage;
    };
    if !(tolerance.is_finite() && (0.0..100.0).contains(&tolerance)) {
        eprintln!("loadgen: --tolerance {tolerance}: give a percentage from 0 to below 100");
        return Exit::Usage;
    }
    match crate::capacity::compare::compare_reports(a_path, b_path, tolerance) {
        Ok((text, explained)) => {
            println!("{text}");
            if explained {
                Exit::Passed
            } else {
                Exit::Failed
            }
        }
        Err(error) => {
            eprintln!("loadgen: --compare: {error}");
            Exit::Usage
        }
    }
}
