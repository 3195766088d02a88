//! Split runs end to end: `loadgen run --workers N`, `--segment I/N --start-at` by hand,
//! and `loadgen merge`, with the real binary against a real chat-server on loopback (with
//! a deliberate defect where a check must be shown to fail).
//!
//! The merged report must be the report one process would have written: the same sent
//! and expected counts, loss counted over every segment (a receiver in one segment expects
//! the messages of senders in all of them), latency histograms added, and a dead worker
//! or a missing segment said plainly.

mod launch;
mod page_check;
mod scratch;

use std::path::Path;
use std::time::Duration;

use chat_server::{Fault, ServerHandle};
use launch::{loadgen, server, total, LOADGEN};
use loadgen::test_support::histogram_from_text;
use scratch::TempDir;
use serde_json::Value;

/// The charts of a run's report.html, in page order.
const RUN_CHARTS: [&str; 5] = [
    "latency-over-time",
    "throughput-over-time",
    "users-over-time",
    "errors-over-time",
    "latency-spectrum",
];

/// 40 users, 8 of them sending 80 msg/s for 2 s, after an idle half second in which every
/// session settles: every message is expected by all 39 other users.
const STEADY: &str = r#"
[users]
count = 40
name_prefix = "u"
connect_over = "100ms"

[[phase]]
name = "settle"
duration = "500ms"

[[phase]]
name = "broadcast"
duration = "2s"
rate = 80
senders = 8

[thresholds]
min_delivery_ratio = 1.0
"#;

fn url(server: &ServerHandle) -> String {
    format!("ws://{}/", server.local_addr())
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// Runs `scenario` against `server` with extra arguments; returns the exit code and the
/// report folder.
async fn run(
    dir: &TempDir,
    tag: &str,
    scenario: &str,
    server: &ServerHandle,
    extra: &[&str],
) -> (i32, std::path::PathBuf) {
    let file = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&file, scenario).unwrap();
    let out = dir.path().join(tag);
    let target = url(server);
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--target",
        &target,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    let output = loadgen(&args).await;
    (output.status.code().unwrap_or(-1), out)
}

/// The latency samples in a `latency.hlog` (every interval's histogram, added).
fn hlog_count(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"') && !l.trim().is_empty())
        .map(|l| {
            let encoded = l.rsplit(',').next().unwrap();
            histogram_from_text(encoded)
                .expect("an interval histogram")
                .len()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn four_workers_send_and_expect_what_one_process_does_and_add_histograms_exactly() {
    let dir = TempDir::new("segments-same");
    let one = server(None).await;
    let (code, out) = run(&dir, "one", STEADY, &one, &[]).await;
    assert_eq!(code, 0);
    let single = json(&out.join("summary.json"));

    let four = server(None).await;
    let (code, out) = run(&dir, "four", STEADY, &four, &["--workers", "4"]).await;
    assert_eq!(code, 0);
    let merged = json(&out.join("summary.json"));

    // The schedule is the scenario's, whoever plays it: 8 senders x 10 msg/s x 2 s.
    assert_eq!(total(&single, "sent"), 160);
    assert_eq!(total(&merged, "sent"), total(&single, "sent"));
    assert_eq!(total(&single, "expected"), 160 * 39);
    assert_eq!(total(&merged, "expected"), total(&single, "expected"));
    assert_eq!(total(&merged, "lost"), 0);
    // Every delivery the server wrote was received, and counted once.
    assert_eq!(
        Some(total(&merged, "delivered")),
        merged["server_deliveries_out"].as_u64()
    );
    assert_eq!(four.metrics().deliveries_out, total(&merged, "delivered"));
    assert_eq!(merged["segments"]["kind"], "merged");
    assert_eq!(merged["segments"]["count"], 4);
    assert_eq!(
        merged["segments"]["merged"],
        serde_json::json!([0, 1, 2, 3])
    );
    assert!(merged["segments"]["clock_offset_worst_ms"]
        .as_f64()
        .is_some());

    // The merged interval log decodes to the merged count ...
    let count = merged["latency_us"]["count"].as_u64().unwrap();
    assert_eq!(count, 160 * 39);
    assert_eq!(hlog_count(&out.join("latency.hlog")), count);
    // ... and its percentiles are those of the segments' histograms added.
    let mut added = loadgen::test_support::new_histogram();
    for i in 0..4 {
        let segment = json(
            &out.join("segments")
                .join(i.to_string())
                .join("segment.json"),
        );
        let h = histogram_from_text(segment["latency"].as_str().unwrap()).unwrap();
        added.add(&h).unwrap();
    }
    assert_eq!(added.len(), count);
    for (field, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        let expected = if q == 1.0 {
            added.max()
        } else {
            added.value_at_quantile(q)
        };
        assert_eq!(
            merged["latency_us"][field].as_u64(),
            Some(expected),
            "{field}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loss_only_one_segment_sees_is_counted_exactly_over_all_senders() {
    let dir = TempDir::new("segments-loss");
    // Users u1, u11, u21, u31 (all odd: segment 1 of 2) lose every 3rd delivery.
    let lossy = server(Some(Fault::DropEveryTo {
        every: 3,
        name_suffix: b'1',
    }))
    .await;
    let (code, out) = run(&dir, "lossy", STEADY, &lossy, &["--workers", "2"]).await;
    assert_eq!(code, 1, "min_delivery_ratio must fail");
    let merged = json(&out.join("summary.json"));
    let sent = total(&merged, "sent");
    let dropped = sent * 39 - lossy.metrics().deliveries_out;
    assert!(dropped > 0);
    assert_eq!(
        total(&merged, "lost"),
        dropped,
        "every dropped delivery, no more"
    );
    assert_eq!(total(&merged, "expected"), sent * 39);
    // Each segment alone sees only part of it: segment 0 none, segment 1 only what its
    // own senders sent. The merge finds the rest.
    let part = |i: u32| {
        json(
            &out.join("segments")
                .join(i.to_string())
                .join("summary.json"),
        )
    };
    assert_eq!(total(&part(0), "lost"), 0);
    let own = total(&part(1), "lost");
    assert!(
        own > 0 && own < dropped,
        "segment 1 alone: {own} of {dropped}"
    );
    assert_eq!(part(1)["segments"]["kind"], "part");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_eviction_is_found_as_zombies_by_whichever_segment_relogs() {
    let dir = TempDir::new("segments-zombie");
    let broken = server(Some(Fault::DeleteByName)).await;
    let scenario = r#"
[users]
count = 20
connect_over = "100ms"

[[phase]]
duration = "2s"
rate = 20
senders = 4
relogin_rate = 4

[thresholds]
max_eviction_failures = 0
"#;
    let (code, out) = run(&dir, "zombie", scenario, &broken, &["--workers", "2"]).await;
    assert_eq!(code, 1, "the eviction threshold must fail");
    let merged = json(&out.join("summary.json"));
    assert_eq!(total(&merged, "relogins"), 8);
    let mut zombies = 0;
    for i in 0..2 {
        let part = json(
            &out.join("segments")
                .join(i.to_string())
                .join("summary.json"),
        );
        assert_eq!(
            total(&part, "relogins"),
            4,
            "segment {i} plays every other relogin"
        );
        assert!(
            total(&part, "evictions_zombie") > 0,
            "segment {i} finds zombies"
        );
        zombies += total(&part, "evictions_zombie");
    }
    assert_eq!(total(&merged, "evictions_zombie"), zombies);
}

/// The pids of `parent`'s children whose command line contains `needle`.
fn children_with(parent: u32, needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 4 (after the parenthesised name) is the parent pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if ppid == Some(parent) && cmdline.contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_dies_mid_run_is_named_and_the_run_is_incomplete() {
    let dir = TempDir::new("segments-dead");
    let target = server(None).await;
    let file = dir.path().join("long.toml");
    std::fs::write(
        &file,
        STEADY.replace("duration = \"2s\"", "duration = \"6s\""),
    )
    .unwrap();
    let out = dir.path().join("report");
    let url = url(&target);
    let mut child = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args([
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--workers",
            "2",
            "--target",
            &url,
            "--out",
            out.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let coordinator = child.id().unwrap();
    // Kill segment 1's worker once the measured phases run (users online, traffic).
    let mut killed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if target.metrics().deliveries_out < 500 {
            continue;
        }
        for pid in children_with(coordinator, "1/2") {
            // SAFETY: kill(2) on a process of ours (a worker child of the loadgen we ran).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        break;
    }
    assert!(killed, "found the worker of segment 1/2");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("loadgen ends by itself")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "a dead worker makes the run incomplete"
    );
    let merged = json(&out.join("summary.json"));
    assert_eq!(merged["complete"], false);
    let why = merged["incomplete_reason"].as_str().unwrap();
    assert!(why.contains("segment 1/2 died mid-run"), "{why}");
    assert_eq!(merged["segments"]["merged"], serde_json::json!([0]));
    assert_eq!(merged["segments"]["incomplete"][0]["index"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_segments_started_by_hand_merge_into_one_report() {
    let dir = TempDir::new("segments-hand");
    let target = server(None).await;
    let file = dir.path().join("steady.toml");
    std::fs::write(&file, STEADY).unwrap();
    let url = url(&target);
    // One absolute start for both, as on two hosts.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_secs(3);
    let start_at = format!("@{:.3}", start.as_secs_f64());
    let segment = |i: u32| {
        let out = dir.path().join(format!("seg{i}"));
        let args: Vec<String> = [
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--target",
            &url,
            "--segment",
            &format!("{i}/2"),
            "--start-at",
            &start_at,
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            loadgen(&args).await.status.code()
        }
    };
    let (a, b) = tokio::join!(segment(0), segment(1));
    assert_eq!((a, b), (Some(0), Some(0)), "each segment ran to its end");
    let (seg0, seg1, merged) = (
        dir.path().join("seg0"),
        dir.path().join("seg1"),
        dir.path().join("merged"),
    );
    let output = loadgen(&[
        "merge",
        seg0.to_str().unwrap(),
        seg1.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let summary = json(&merged.join("summary.json"));
    assert_eq!(total(&summary, "sent"), 160);
    assert_eq!(total(&summary, "expected"), 160 * 39);
    assert_eq!(total(&summary, "lost"), 0);
    assert_eq!(
        target.metrics().deliveries_out,
        total(&summary, "delivered")
    );
    assert_eq!(summary["segments"]["count"], 2);
    for file in ["timeseries.csv", "latency.hlog", "latency.hgrm"] {
        assert!(merged.join(file).exists(), "{file}");
    }
    // The merged run's page: the run page, judged on the merge.
    let html = std::fs::read_to_string(merged.join("report.html")).unwrap();
    page_check::assert_self_contained(&html);
    let doc = page_check::parse(&html);
    assert_eq!(page_check::chart_ids(&doc), RUN_CHARTS);
    let (class, text) = page_check::headline(&doc);
    assert_eq!(
        (class.as_str(), &text[..4]),
        ("headline pass", "PASS"),
        "{text}"
    );
    assert!(page_check::text_of(doc.root_element()).contains("2 of 2 segments merged"));
    // A segment's own page says it is judged by the merge.
    let part = std::fs::read_to_string(seg0.join("report.html")).unwrap();
    let (_, text) = page_check::headline(&page_check::parse(&part));
    assert!(text.starts_with("Segment 0/2 of a split run"), "{text}");

    // One segment alone: written, but incomplete, and says which one is missing.
    let alone = dir.path().join("alone");
    let output = loadgen(&[
        "merge",
        seg0.to_str().unwrap(),
        "--out",
        alone.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(3));
    let summary = json(&alone.join("summary.json"));
    let why = summary["incomplete_reason"].as_str().unwrap();
    assert!(why.contains("segment 1/2 missing"), "{why}");
    // The same segment twice, or a folder that is no segment: refused.
    let output = loadgen(&["merge", seg0.to_str().unwrap(), seg0.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("appears twice"));
    let output = loadgen(&["merge", merged.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("segment.json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_flags_are_checked_before_anything_runs() {
    let dir = TempDir::new("segments-flags");
    let file = dir.path().join("steady.toml");
    std::fs::write(&file, STEADY).unwrap();
    let scenario = file.to_str().unwrap();
    for (args, says) in [
        (vec!["--segment", "2/2", "--start-at", "+5s"], "below 2"),
        (vec!["--segment", "0/2"], "needs --start-at"),
        (
            vec![
                "--segment",
                "0/2",
                "--start-at",
                "soon",
                "--target",
                "ws://127.0.0.1:9/",
            ],
            "not a start time",
        ),
        (
            vec!["--segment", "0/2", "--start-at", "+5s"],
            "needs a target",
        ),
        (vec!["--workers", "0"], "at least 1"),
        (
            vec!["--workers", "2", "--segment", "0/2"],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["run", scenario];
        all.extend(&args);
        let output = loadgen(&all).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
