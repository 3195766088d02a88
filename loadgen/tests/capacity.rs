//! `loadgen capacity` end to end, against real servers on loopback: a search that holds to
//! its limit writes every file (the HTML well-formed, with its three charts); a server
//! that loses messages misses the objective at the first step and fails
//! `--expect-at-least`; a running server is measured through its `/metrics`; bad usage
//! exits 2 and an unreachable server 3. The knee search itself is tested against a
//! simulated system of known capacity in `capacity/search.rs`.

mod page_check;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Users grow 4, 8, 12 at 20 msg/s: light enough to hold everywhere.
const SMALL: &str = r#"
description = "tiny search for the tests"
[capacity]
grow = "users"
users = { start = 4, step = 4, limit = 12 }
warmup = "1s"
measure = "1s"
bisections = 1
confirm = 1
pause = "0s"
[load]
rate = 20
senders = 3
message_size = 100
[verify]
deadline = "500ms"
[thresholds]
p99 = "2s"
"#;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "loadgen-capacity-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn capacity(args: &[&str]) -> Output {
    let output = Command::new(LOADGEN)
        .arg("capacity")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("loadgen runs");
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_search_that_holds_to_its_limit_writes_every_file() {
    let dir = temp_dir("held");
    let file = write(&dir, "small.toml", SMALL);
    let out = dir.join("out");
    let output = capacity(&[&file, "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("the limit of the search"), "{stdout}");

    let report = json(&out.join("capacity.json"));
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "4, 8, 12 users, then 12 again to confirm");
    assert_eq!(steps[3]["stage"], "confirm");
    assert_eq!(report["outcome"]["kind"], "held-to-limit");
    assert_eq!(report["outcome"]["good"], 12.0);
    for step in steps {
        assert_eq!(step["met"], true, "{step}");
        assert_eq!(step["lost"], 0);
        assert!(step["achieved_deliveries_per_sec"].as_f64().unwrap() > 0.0);
        // The embedded server is a local process: its CPU and memory are read from /proc.
        assert!(
            step["server"]["rss_bytes"].as_u64().unwrap() > 1 << 20,
            "{step}"
        );
        assert!(step["server"]["cpu_percent"].as_f64().is_some(), "{step}");
        assert!(step["loadgen"]["cpu_percent"].as_f64().is_some(), "{step}");
    }
    assert_eq!(report["server_usage_source"], "proc");

    // capacity.csv: a header and a row per step.
    let mut csv = csv::Reader::from_path(out.join("capacity.csv")).unwrap();
    assert_eq!(csv.records().count(), 4);

    // report.html: well-formed XML, three charts, no fetches.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let doc = page_check::parse(&html);
    assert_eq!(
        page_check::chart_ids(&doc),
        ["latency-chart", "throughput-chart", "resources-chart"]
    );
    page_check::assert_self_contained(&html);
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("the limit of the search"));

    // knee.toml reproduces the knee with a plain run.
    let knee = out.join("knee.toml");
    let run = Command::new(LOADGEN)
        .args(["run", knee.to_str().unwrap(), "--quiet", "--out"])
        .arg(dir.join("knee-run"))
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = json(&dir.join("knee-run/summary.json"));
    assert_eq!(summary["scenario"]["users"]["count"], 12);
    assert!(out.join("above-knee.toml").exists());
    // Each step's own run reports.
    let step_dirs = std::fs::read_dir(out.join("steps")).unwrap().count();
    assert_eq!(step_dirs, 4);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_search_with_workers_splits_every_step_and_its_knee_says_so() {
    let dir = temp_dir("workers");
    let file = write(&dir, "small.toml", SMALL);
    let out = dir.join("out");
    let output = capacity(&[&file, "--workers", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&out.join("capacity.json"));
    let steps = report["steps"].as_array().unwrap();
    assert!(!steps.is_empty());
    for step in steps {
        assert_eq!(step["met"], true, "{step}");
        assert!(step["lost"].as_u64() == Some(0), "{step}");
    }
    // Every step ran as two workers; their CPU counts as loadgen's.
    let first = std::fs::read_dir(out.join("steps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .unwrap();
    for i in 0..2 {
        assert!(first
            .join("segments")
            .join(i.to_string())
            .join("segment.json")
            .exists());
    }
    let summary = json(&first.join("summary.json"));
    assert_eq!(summary["segments"]["count"], 2);
    let knee = std::fs::read_to_string(out.join("knee.toml")).unwrap();
    assert!(knee.contains("workers = 2"), "{knee}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_lossy_server_misses_the_objective_at_the_first_step() {
    let dir = temp_dir("lossy");
    let file = write(&dir, "small.toml", SMALL);
    let out = dir.join("out");
    let server = format!("{LOADGEN} serve --listen {{addr}} --fault drop-every-7");
    let output = capacity(&[
        &file,
        "--server",
        &server,
        "--expect-at-least",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "capacity below the expectation"
    );
    let report = json(&out.join("capacity.json"));
    assert_eq!(report["outcome"]["kind"], "failed-at-start");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["met"], false);
    assert!(steps[0]["lost"].as_u64().unwrap() > 0);
    let failures = steps[0]["failures"].to_string();
    assert!(failures.contains("min_delivery_ratio"), "{failures}");
    let headline = report["conclusion"]["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("Misses the objective already"),
        "{headline}"
    );
    assert!(
        !out.join("knee.toml").exists(),
        "no knee, nothing to reproduce"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_running_server_is_measured_through_its_metrics() {
    let dir = temp_dir("metrics");
    let file = write(
        &dir,
        "small.toml",
        &SMALL.replace("limit = 12", "limit = 4"),
    );
    let mut server = Command::new(LOADGEN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    let out = dir.join("out");
    let output = capacity(&[
        &file,
        "--target",
        &format!("ws://{addr}/"),
        "--out",
        out.to_str().unwrap(),
    ]);
    drop(server.stdin.take());
    let _ = server.wait();
    assert_eq!(output.status.code(), Some(0));
    let report = json(&out.join("capacity.json"));
    assert_eq!(report["server_usage_source"], "metrics");
    let step = &report["steps"][0];
    assert!(
        step["server"]["rss_bytes"].as_u64().unwrap() > 1 << 20,
        "{step}"
    );
    assert!(step["server"]["cpu_percent"].as_f64().is_some(), "{step}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_usage_exits_2_and_an_unreachable_server_3() {
    let dir = temp_dir("usage");
    let file = write(&dir, "small.toml", SMALL);
    let bad = write(
        &dir,
        "bad.toml",
        "[capacity]\ngrow = \"users\"\n[load]\nrate = 5\n",
    );
    let out = dir.join("out");
    let out = out.to_str().unwrap();

    let output = capacity(&[&bad, "--out", out]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("capacity.users"));

    assert_eq!(capacity(&["no/such.toml"]).status.code(), Some(2));
    let no_addr = capacity(&[&file, "--server", "chat-server", "--out", out]);
    assert_eq!(no_addr.status.code(), Some(2));
    let pid_alone = capacity(&[&file, "--server-pid", "1", "--out", out]);
    assert_eq!(pid_alone.status.code(), Some(2));
    let huge = write(
        &dir,
        "huge.toml",
        &SMALL.replace("limit = 12", "limit = 100000"),
    );
    let too_many = capacity(&[&huge, "--out", out]);
    assert_eq!(too_many.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("may open only"));

    // Nothing listens on port 9 of loopback.
    let unreachable = capacity(&[&file, "--target", "ws://127.0.0.1:9/", "--out", out]);
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(
        Path::new(out).join("capacity.json").exists(),
        "the report is still written"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ctrl_c_stops_the_search_and_still_writes_the_report() {
    use std::io::BufRead;
    let dir = temp_dir("interrupt");
    let file = write(
        &dir,
        "small.toml",
        &SMALL.replace("limit = 12", "limit = 400"),
    );
    let out = dir.join("out");
    let mut child = Command::new(LOADGEN)
        .args(["capacity", &file, "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first step's row, then interrupt the second step.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first_step = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.ends_with(" met"));
    assert!(first_step.is_some(), "a step ran");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{rest:?}");
    let report = json(&out.join("capacity.json"));
    let why = report["incomplete"].as_str().unwrap_or_default();
    assert!(why.contains("interrupted"), "{report}");
    let headline = report["conclusion"]["headline"].as_str().unwrap();
    assert!(headline.contains("cut short"), "{headline}");
    let _ = std::fs::remove_dir_all(dir);
}
