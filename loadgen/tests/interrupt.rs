//! Stopping a run by hand: Ctrl-C (SIGINT) or SIGTERM, mid-run or during the wind-down,
//! ends a real `loadgen run` promptly with every report written for what ran, marked
//! incomplete with the reason, and exit 3; a second signal exits at once with 130.

// Only `start` and `url` are used here.
#[allow(dead_code)]
#[path = "support/delay_proxy.rs"]
mod delay_proxy;
mod launch;
mod scratch;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use delay_proxy::DelayProxy;
use launch::{server, summary_in, LOADGEN};
use scratch::TempDir;

/// A run that would last a minute: 8 users, 2 senders.
const LONG_PHASE: &str = r#"
[users]
count = 8

[[phase]]
duration = "60s"
rate = 20
senders = 2
"#;

/// A one-second phase, then a wind-down that waits 30 s for stragglers.
const LONG_WIND_DOWN: &str = r#"
[users]
count = 8

[verify]
deadline = "30s"

[[phase]]
duration = "1s"
rate = 20
senders = 2
"#;

struct Running {
    child: tokio::process::Child,
    out: PathBuf,
    _dir: TempDir,
}

async fn start(tag: &str, scenario: &str, target: &str) -> Running {
    let dir = TempDir::new(tag);
    let file = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&file, scenario).unwrap();
    let out = dir.path().join("report");
    let child = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args(["run", file.to_str().unwrap(), "--quiet", "--target", target])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .spawn()
        .expect("loadgen starts");
    Running {
        child,
        out,
        _dir: dir,
    }
}

fn signal(running: &Running, signal: i32) {
    let pid = running.child.id().expect("running") as i32;
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Waits for the exit (at most 60 s: a run that ignored the signal would take longer).
async fn exit_code(running: &mut Running) -> (i32, Duration) {
    let since = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(60), running.child.wait())
        .await
        .expect("loadgen exits after the signal")
        .expect("waited");
    (status.code().unwrap_or(-1), since.elapsed())
}

fn assert_reports_of_an_incomplete_run(running: &Running, reason: &str) -> serde_json::Value {
    let summary = summary_in(&running.out);
    assert_eq!(summary["complete"], false, "{summary:#}");
    let why = summary["incomplete_reason"].as_str().unwrap_or_default();
    assert!(why.starts_with(reason), "{why}");
    for file in ["report.html", "latency.hlog", "timeseries.csv"] {
        assert!(running.out.join(file).is_file(), "{file} written");
    }
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_run_writes_the_reports_of_what_ran_and_exits_3() {
    let server = server(None).await;
    let target = format!("ws://{}/", server.local_addr());
    let mut running = start("sigint-mid-run", LONG_PHASE, &target).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&running, libc::SIGINT);
    let (code, took) = exit_code(&mut running).await;
    assert_eq!(code, 3);
    // The drain deadline (1 s), closing the connections (at most 2 s) and the reports.
    assert!(took < Duration::from_secs(20), "stopped in {took:?}");
    let summary = assert_reports_of_an_incomplete_run(&running, "interrupted (Ctrl-C)");
    let measured = summary["measured_s"].as_f64().unwrap_or_default();
    assert!(measured > 0.5 && measured < 30.0, "measured {measured} s");
    assert!(summary["totals"]["delivered"].as_u64().unwrap_or_default() > 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_wind_down_cuts_it_short() {
    let server = server(None).await;
    let target = format!("ws://{}/", server.local_addr());
    let mut running = start("sigterm-wind-down", LONG_WIND_DOWN, &target).await;
    // The ramp of 8 users and the 1 s phase are over well before this; the wind-down
    // would wait 30 s more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(&running, libc::SIGTERM);
    let (code, took) = exit_code(&mut running).await;
    assert_eq!(code, 3);
    assert!(took < Duration::from_secs(20), "stopped in {took:?}");
    assert_reports_of_an_incomplete_run(&running, "interrupted (SIGTERM) during the wind-down");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_exits_at_once_with_130() {
    // Behind a proxy that holds what the server sends for 1.5 s, the first Ctrl-C's
    // closing handshakes take that long: time for a second one.
    let server = server(None).await;
    let proxy = DelayProxy::start(server.local_addr(), Duration::from_millis(1500));
    let mut running = start("sigint-twice", LONG_WIND_DOWN, &proxy.url()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&running, libc::SIGINT);
    // Apart, so that the kernel does not merge them into one pending signal.
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&running, libc::SIGINT);
    let (code, _) = exit_code(&mut running).await;
    assert_eq!(code, 130);
    server.shutdown().await;
}
