//! The instrument proves its own accuracy (issue #13): known disturbances are put between
//! loadgen and a real chat-server on loopback, and loadgen's report must show exactly
//! them — a delay added by a proxy, a server frozen for a second, a connection dropped.
//!
//! Bounds are generous *correctness* bounds, documented where they are asserted, not
//! performance assertions. Every test prints what it measured (`--nocapture` shows it);
//! the README's "How we know the numbers are right" quotes one run. The tests are
//! serialized among themselves (`.config/nextest.toml`, test group `accuracy`) so that
//! their timing does not disturb each other.

mod scratch;

#[path = "support/delay_proxy.rs"]
mod delay_proxy;

use scratch::TempDir;
use std::path::Path;
use std::time::{Duration, Instant};

use chat_server::{Config, Server, ServerHandle};
use delay_proxy::DelayProxy;
use loadgen::test_support::{Launch, ServerProcess};
use loadgen::{run, Completion, RunRequest, Scenario};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// A small steady broadcast: 20 users, 5 of them sending 23.5 msg/s in total (~450
/// deliveries/s), for 4 s.
///
/// The rate is chosen for two reasons. loadgen's senders wake on tokio's millisecond
/// timer, 1–2 ms after the intended send time (a lateness that is part of every latency
/// loadgen reports), and how late depends on where the intended time falls between two
/// timer ticks: with a whole number of ms between all send times (50 msg/s here) a whole
/// run shares one random phase, and its p50 moved by up to ~0.9 ms from run to run;
/// 212.766 ms per sender spreads the phases over the tick. And a send every 42.6 ms
/// (senders are offset) keeps a broadcast delayed by 20 ms from arriving while loadgen is
/// busy sending the next one, which biased the 20 ms run by ~0.3 ms at 47 msg/s.
const STEADY: &str = r#"
[users]
count = 20
connect_over = "200ms"

[[phase]]
duration = "4s"
rate = 23.5
senders = 5
"#;

/// Ten users, five sending 40 msg/s in total, for 5 s: the drop and discard tests.
///
/// The loss window (`deadline`) is 2 s rather than the default 1 s: a message is expected
/// of a session that stays up for 2 s after its send. These tests judge whether a drop is
/// told from loss, not latency, and a loaded CI machine that stalls the in-process server
/// or the proxy for over a second would otherwise turn messages held up past the default
/// window and then cut off by the drop into (correctly counted) loss — seen once in ~30
/// runs, on a machine busy with other builds.
const SMALL: &str = r#"
[users]
count = 10
connect_over = "100ms"

[[phase]]
duration = "5s"
rate = 40
senders = 5

[verify]
deadline = "2s"
"#;

/// A user that never sends (users 0–4 send): its connection is the one disturbed.
const RECEIVER: &str = "user7";

/// Runs the loadgen binary on `scenario` against `target`; returns its exit code and
/// summary.json.
async fn loadgen_run(tag: &str, scenario: &str, target: &str) -> (i32, serde_json::Value) {
    let dir = TempDir::new(tag);
    let file = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&file, scenario).unwrap();
    let out = dir.path().join("report");
    let output = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args(["run", file.to_str().unwrap(), "--quiet", "--target", target])
        .arg("--out")
        .arg(&out)
        .kill_on_drop(true)
        .output()
        .await
        .expect("loadgen runs");
    if !output.status.success() {
        eprintln!("--- loadgen ({tag}) exited {:?}", output.status.code());
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map(|text| serde_json::from_str(&text).expect("summary.json parses"))
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), summary)
}

async fn server() -> ServerHandle {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    })
    .await
    .expect("server starts")
}

fn total(summary: &serde_json::Value, field: &str) -> u64 {
    summary["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.{field} in {summary}"))
}

fn latency_us(summary: &serde_json::Value, field: &str) -> u64 {
    summary["latency_us"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("latency_us.{field} in {summary}"))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The value at quantile `q` of sorted `values`.
fn quantile(values: &[u64], q: f64) -> u64 {
    assert!(!values.is_empty(), "no values");
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// 1. A proxy that holds every server-to-client byte for D ms adds D to loadgen's p50.
///
/// Two runs side by side, at the same time, each against its own server through its own
/// proxy: one holding 0 ms, one holding D = 20 ms. Whatever else loads the machine loads
/// both alike, so the difference of their p50s is the proxy's hold: D plus the proxy's
/// own error (tens of µs of sleep overshoot plus any wait for a core, see
/// `support/delay_proxy.rs`; its measured holds are printed).
/// The bound, |Δp50 − D| ≤ 1.5 ms, fails if loadgen timed anything but receive time
/// minus intended send time (e.g. a send-side clock would see Δ = 0, a unit slip
/// Δ = 20 µs or 20 s), or lost time on the receive path under a delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_delay_of_20ms_adds_20ms_to_p50() {
    const D: Duration = Duration::from_millis(20);
    let (direct, delayed) = (server().await, server().await);
    let zero = DelayProxy::start(direct.local_addr(), Duration::ZERO);
    let held = DelayProxy::start(delayed.local_addr(), D);
    let (zero_url, held_url) = (zero.url(), held.url());
    let started = Instant::now();
    let ((code0, summary0), (code_d, summary_d)) = tokio::join!(
        loadgen_run("delay-0ms", STEADY, &zero_url),
        loadgen_run("delay-20ms", STEADY, &held_url),
    );
    let took = started.elapsed();
    assert_eq!((code0, code_d), (0, 0), "both runs pass their thresholds");
    for summary in [&summary0, &summary_d] {
        assert_eq!(summary["complete"], true);
        assert_eq!(total(summary, "lost"), 0);
        assert!(latency_us(summary, "count") > 1000, "{summary}");
    }
    let (p50_0, p50_d) = (latency_us(&summary0, "p50"), latency_us(&summary_d, "p50"));
    let difference_ms = ms(p50_d) - ms(p50_0);
    let (holds0, holds_d) = (zero.holds_us(), held.holds_us());
    let hold_line = |name: &str, holds: &[u64]| {
        format!(
            "proxy {name}: {} chunks held min {:.3} / median {:.3} / p99 {:.3} / max {:.3} ms",
            holds.len(),
            ms(holds[0]),
            ms(quantile(holds, 0.5)),
            ms(quantile(holds, 0.99)),
            ms(*holds.last().unwrap()),
        )
    };
    println!(
        "delay: p50 through the 0 ms proxy {:.3} ms, through the {} ms proxy {:.3} ms, \
         difference {difference_ms:.3} ms (deliveries timed: {} and {}; both runs {:.1} s)",
        ms(p50_0),
        D.as_millis(),
        ms(p50_d),
        latency_us(&summary0, "count"),
        latency_us(&summary_d, "count"),
        took.as_secs_f64(),
    );
    println!("delay: {}", hold_line("0 ms", &holds0));
    println!("delay: {}", hold_line("20 ms", &holds_d));
    // The proxy itself: a sleep never ends early, so no chunk is held less than D.
    assert!(
        holds_d[0] >= D.as_micros() as u64,
        "{}",
        hold_line("20 ms", &holds_d)
    );
    let error_ms = difference_ms - D.as_secs_f64() * 1000.0;
    assert!(
        error_ms.abs() <= 1.5,
        "p50 rose by {difference_ms:.3} ms through a {} ms delay (error {error_ms:+.3} ms); {}",
        D.as_millis(),
        hold_line("20 ms", &holds_d),
    );
}

/// Sends SIGSTOP to a process, and SIGCONT when dropped: a failing test never leaves a
/// stopped process behind.
struct Frozen(libc::pid_t);

impl Frozen {
    fn stop(pid: u32) -> Frozen {
        let pid = libc::pid_t::try_from(pid).expect("a pid");
        assert!(pid > 0, "a real pid");
        // SAFETY: kill(2) on the PID of a child we started and still hold.
        let sent = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(sent, 0, "SIGSTOP sent");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above; SIGCONT to a process that is not stopped does nothing.
        unsafe {
            libc::kill(self.0, libc::SIGCONT);
        }
    }
}

/// A steady 10 s run of 20 users, 5 senders at 50 msg/s in total.
const TEN_SECONDS: &str = r#"
[users]
count = 20
connect_over = "200ms"

[[phase]]
duration = "10s"
rate = 50
senders = 5
"#;

/// 2. A server frozen for 1 s mid-run (SIGSTOP, SIGCONT) shows in the report as what it
/// was: about 10% of the run's deliveries late by 0–1000 ms, so p99 ≈ 900 ms.
///
/// Every message intended during the freeze waits for the server, the first ones almost
/// the whole second, the last ones hardly at all: with latency measured from the intended
/// send time, 1 s in 10 s makes ~10% of the deliveries late, spread evenly over 0–1000 ms
/// (~9% over 100 ms), and the 99th percentile falls 9/10 of the way into that spread.
///
/// The bounds fail without the freeze (p99 of a few ms, nothing over 100 ms), and they
/// fail for a tool with coordinated omission: one that times from the actual send, behind
/// a sender that waits for the server, records one late sample per stalled sender (5
/// here, not ~900), so its p99 would stay at a few ms.
///
/// The server is a separate process (`loadgen serve`, chat-server in loadgen's embedded
/// launcher, started through the same [`ServerProcess`] loadgen uses for `--server`), so
/// that stopping it does not stop the test; loadgen runs in-process, and its report's
/// histogram is the one `summary.json` is computed from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_frozen_for_1s_shows_as_10_percent_late_deliveries() {
    let command = format!("'{LOADGEN}' serve --listen {{addr}}");
    let server = ServerProcess::start(&Launch::Command(command))
        .await
        .expect("the server starts");
    let scenario = Scenario::parse(Path::new("freeze.toml"), TEN_SECONDS).expect("valid");
    let request = RunRequest {
        scenario,
        scenario_path: "freeze.toml".into(),
        targets: vec![format!("ws://{}/", server.addr)],
        quiet: true,
        segment: None,
        source_addresses: Vec::new(),
        live: None,
    };
    let pid = server.pid();
    let freeze = async {
        // Mid-run: the ramp takes 0.2 s, the phase 10 s.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let frozen = Frozen::stop(pid);
        let at = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(frozen);
        at.elapsed()
    };
    let (done, frozen_for) = tokio::join!(run(request), freeze);
    server.stop(Duration::from_secs(5)).await;
    let (report, completion) = done.expect("the run starts");
    assert_eq!(completion, Completion::Complete);
    let totals = report.totals;
    assert_eq!(totals.lost, 0, "a freeze delays, it loses nothing");
    assert_eq!(totals.unexpected_disconnects, 0);
    let latency = &report.latency;
    let late = 1.0 - latency.quantile_below(100_000);
    let (p50, p99, max) = (
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max(),
    );
    println!(
        "freeze: server stopped for {:.3} s of a 10 s run; {} deliveries timed, \
         {:.2}% over 100 ms; p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        frozen_for.as_secs_f64(),
        latency.len(),
        late * 100.0,
        ms(p50),
        ms(p99),
        ms(max),
    );
    assert!(latency.len() > 5000, "{:?}", totals);
    assert!(
        (0.05..=0.15).contains(&late),
        "{:.2}% of deliveries over 100 ms, expected ~9%",
        late * 100.0
    );
    assert!(
        (700_000..=1_100_000).contains(&p99),
        "p99 {:.3} ms, expected ~900 ms",
        ms(p99)
    );
    let frozen_us = frozen_for.as_micros() as u64;
    assert!(
        max >= 900_000 && max <= frozen_us + 500_000,
        "max {:.3} ms, expected ~{:.0} ms",
        ms(max),
        ms(frozen_us)
    );
}

/// When to disturb a run of [`SMALL`]: after its ramp, well before its end.
const MID_RUN: Duration = Duration::from_millis(2500);

/// Finds `user`'s connection in `proxy` and applies `act` to it, retrying for a few
/// seconds in case loadgen is slow to start (a bounded loop).
async fn disturb(proxy: &DelayProxy, user: &str, act: impl Fn(&DelayProxy, &str) -> bool) {
    tokio::time::sleep(MID_RUN).await;
    for _ in 0..50 {
        if act(proxy, user) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{user} never connected through the proxy");
}

/// Runs [`SMALL`] through a 0 ms proxy that drops `user`'s connection mid-run and checks
/// that the report counts one unexpected disconnect and no loss.
async fn drop_one_connection(user: &str) {
    let server = server().await;
    let proxy = DelayProxy::start(server.local_addr(), Duration::ZERO);
    let url = proxy.url();
    let ((code, summary), ()) = tokio::join!(
        loadgen_run("drop", SMALL, &url),
        disturb(&proxy, user, DelayProxy::drop_user),
    );
    println!(
        "drop: {user}'s connection closed by the proxy mid-run: \
         unexpected_disconnects {}, lost {}, expected {}, delivered {}, exit {code}",
        total(&summary, "unexpected_disconnects"),
        total(&summary, "lost"),
        total(&summary, "expected"),
        total(&summary, "delivered"),
    );
    assert_eq!(summary["complete"], true);
    assert_eq!(total(&summary, "unexpected_disconnects"), 1);
    assert_eq!(total(&summary, "lost"), 0, "{summary}");
    assert_eq!(summary["delivery_ratio"].as_f64(), Some(1.0));
    assert_eq!(total(&summary, "connect_errors"), 0);
    assert!(total(&summary, "expected") > 500, "{summary}");
    assert_eq!(code, 0, "a disconnect fails no threshold");
}

/// 3. One connection dropped mid-run (the proxy closes both of its sides) is counted as
/// one unexpected disconnect, and as no loss: the session's loss window ends when it
/// drops, so nothing after that is expected of it.
///
/// It fails if loadgen missed the drop (0 disconnects) or expected deliveries of a
/// session that no longer exists (lost > 0); the next test shows that the same setup
/// does count loss when bytes go missing on a connection that stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_a_disconnect_not_loss() {
    drop_one_connection(RECEIVER).await;
}

/// The same drop, of a *sender's* connection: one disconnect, no loss. (It once found
/// loadgen counting ~190 lost here: the sender's schedule went on after its connection
/// had dropped and every other session expected the messages. Now a user without a live
/// session sends nothing, and what it wrote just before the cut is unjudged; see
/// `checks/delivery.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_senders_connection_is_a_disconnect_not_loss() {
    drop_one_connection("user2").await;
}

/// The counterpart of test 3, proving its `lost == 0` can fail: the proxy keeps the same
/// receiver's connection open but throws away everything the server sends it. Now the
/// session is online and stable, so its missing deliveries are loss, and there is no
/// disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_delivering_is_loss_not_a_disconnect() {
    let server = server().await;
    let proxy = DelayProxy::start(server.local_addr(), Duration::ZERO);
    let url = proxy.url();
    let ((code, summary), ()) = tokio::join!(
        loadgen_run("discard", SMALL, &url),
        disturb(&proxy, RECEIVER, DelayProxy::discard_user),
    );
    println!(
        "discard: the server's bytes to {RECEIVER} thrown away mid-run: \
         unexpected_disconnects {}, lost {}, expected {}, exit {code}",
        total(&summary, "unexpected_disconnects"),
        total(&summary, "lost"),
        total(&summary, "expected"),
    );
    assert_eq!(code, 1, "loss fails min_delivery_ratio");
    assert_eq!(total(&summary, "unexpected_disconnects"), 0);
    assert!(total(&summary, "lost") > 20, "{summary}");
}
