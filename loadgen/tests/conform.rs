//! End-to-end tests of `loadgen conform`: the real binary against chat-server started
//! here, and against servers with exactly one defect (chat-server's `Fault`s, or the
//! test doubles of `support/`), each of which must make exactly the matching check fail.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use chat_server::{Config, Fault, Server, ServerHandle};
use support::Defect;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Every MUST rule conform checks.
const MUST: [&str; 10] = ["S2", "S4", "S5", "S6", "S7", "M1", "M2", "M3", "M5", "M6"];

struct Run {
    code: i32,
    stdout: String,
    json: serde_json::Value,
    junit: String,
}

impl Run {
    /// MUST rules whose check failed.
    fn failed(&self) -> BTreeSet<String> {
        self.json["checks"]
            .as_array()
            .expect("checks array")
            .iter()
            .filter(|c| c["verdict"] == "fail")
            .map(|c| c["rule"].as_str().expect("rule").to_string())
            .collect()
    }

    fn seen(&self, rule: &str) -> String {
        self.json["checks"]
            .as_array()
            .expect("checks array")
            .iter()
            .find(|c| c["rule"] == rule)
            .map(|c| c["seen"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }
}

fn temp_file(tag: &str, ext: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    std::env::temp_dir().join(format!(
        "loadgen-conform-{tag}-{}-{nanos}.{ext}",
        std::process::id()
    ))
}

/// Runs `loadgen conform URL` with short deadlines, plus `extra` flags.
async fn conform(tag: &str, url: &str, extra: &[&str]) -> Run {
    let json_path = temp_file(tag, "json");
    let junit_path = temp_file(tag, "xml");
    let mut args = vec![
        "conform",
        url,
        "--close-deadline",
        "1s",
        "--slow-stall",
        "2s",
        "--json",
        json_path.to_str().expect("utf-8 path"),
        "--junit",
        junit_path.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let output = tokio::process::Command::new(LOADGEN)
        .args(&args)
        .output()
        .await
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "--- loadgen conform [{tag}] exited {:?}\n{stdout}",
        output.status.code()
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let json = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(serde_json::Value::Null);
    let junit = std::fs::read_to_string(&junit_path).unwrap_or_default();
    let _ = std::fs::remove_file(&json_path);
    let _ = std::fs::remove_file(&junit_path);
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout,
        json,
        junit,
    }
}

async fn chat_server(fault: Option<Fault>) -> ServerHandle {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        fault,
        ..Default::default()
    };
    Server::start(config).await.expect("server starts")
}

fn set(rules: &[&str]) -> BTreeSet<String> {
    rules.iter().map(|r| r.to_string()).collect()
}

/// Checks the JUnit document is well-formed XML (python3's parser when available, else a
/// tag-balance check) and returns (testcases, failures).
fn junit_counts(xml: &str) -> (usize, usize) {
    let path = temp_file("junit-check", "xml");
    std::fs::write(&path, xml).expect("write junit copy");
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); \
             print(len(d.getElementsByTagName('testcase')), len(d.getElementsByTagName('failure')))",
            path.to_str().expect("utf-8 path"),
        ])
        .output();
    let _ = std::fs::remove_file(&path);
    match parsed {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            let mut numbers = text
                .split_whitespace()
                .map(|n| n.parse::<usize>().expect("count"));
            (
                numbers.next().expect("testcases"),
                numbers.next().expect("failures"),
            )
        }
        Ok(output) => panic!(
            "JUnit output is not well-formed XML: {}\n{xml}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => {
            // No python3: a rough well-formedness check.
            assert_eq!(
                xml.matches("<testcase ").count(),
                xml.matches("</testcase>").count()
            );
            assert!(!xml.contains("& "), "unescaped ampersand");
            (
                xml.matches("<testcase ").count(),
                xml.matches("<failure ").count(),
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_server_passes_every_must_check() {
    let server = chat_server(None).await;
    let run = conform("clean", &format!("ws://{}/", server.local_addr()), &[]).await;
    assert_eq!(run.code, 0, "exit code");
    assert_eq!(run.failed(), set(&[]));
    let checks = run.json["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 14, "one row per check");
    for rule in MUST {
        let check = checks
            .iter()
            .find(|c| c["rule"] == rule)
            .expect("rule present");
        assert_eq!(check["verdict"], "pass", "{rule}: {}", check["seen"]);
        assert_eq!(check["must"], true);
    }
    assert!(
        run.seen("S4").contains("4001"),
        "says which eviction was seen"
    );
    assert!(
        run.seen("S2").contains("HTTP 400"),
        "says which refusal was seen"
    );
    assert!(run.stdout.contains("CONFORMS"));
    assert_eq!(junit_counts(&run.junit), (14, 0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_double_without_defect_passes() {
    let double = support::start(Defect::None).await;
    let run = conform("double", &double.url(), &[]).await;
    assert_eq!(run.failed(), set(&[]));
    assert_eq!(run.code, 0);
}

async fn assert_only_fails(tag: &str, url: &str, rules: &[&str]) -> Run {
    let run = conform(tag, url, &[]).await;
    assert_eq!(run.failed(), set(rules), "failed checks for {tag}");
    assert_eq!(run.code, 1, "exit code for {tag}");
    let (testcases, failures) = junit_counts(&run.junit);
    assert_eq!((testcases, failures), (14, rules.len()), "JUnit for {tag}");
    run
}

/// The demo's bug. It breaks S6 as well as S5, legitimately: an evicted session's teardown
/// deletes whatever entry holds the name, so a concurrent login that registers next finds
/// no predecessor to evict, and that predecessor's connection is never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_name_fails_s5_and_s6() {
    let server = chat_server(Some(Fault::DeleteByName)).await;
    let url = format!("ws://{}/", server.local_addr());
    let run = assert_only_fails("delete-by-name", &url, &["S5", "S6"]).await;
    assert!(run.seen("S5").contains("never reached the new session"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_pairs_fail_m3() {
    let server = chat_server(Some(Fault::SwapPairs)).await;
    let url = format!("ws://{}/", server.local_addr());
    let run = assert_only_fails("swap-pairs", &url, &["M3"]).await;
    assert!(run.seen("M3").contains("after #"), "{}", run.seen("M3"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_to_sender_fails_m2() {
    let double = support::start(Defect::EchoToSender).await;
    let run = assert_only_fails("echo", &double.url(), &["M2"]).await;
    assert!(run.junit.contains("its own"), "failure message in JUnit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_from_format_fails_m1() {
    let double = support::start(Defect::WrongFrom).await;
    let run = assert_only_fails("wrong-from", &double.url(), &["M1"]).await;
    assert!(run.seen("M1").contains(" - FROM "), "{}", run.seen("M1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_writes_fail_m6() {
    let double = support::start(Defect::SequentialWrites).await;
    assert_only_fails("sequential", &double.url(), &["M6"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_name_accepted_fails_s2() {
    let double = support::start(Defect::AcceptEmptyName).await;
    let run = assert_only_fails("empty-name", &double.url(), &["S2"]).await;
    assert!(run.seen("S2").contains("ACCEPTED"), "{}", run.seen("S2"));
}

/// A server that never closes the old connection breaks S4, and so necessarily S6 too
/// (concurrent logins are relogins that overlap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_eviction_fails_s4_and_s6() {
    let double = support::start(Defect::NoEviction).await;
    let run = assert_only_fails("no-eviction", &double.url(), &["S4", "S6"]).await;
    assert!(run.seen("S4").contains("still open"), "{}", run.seen("S4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racy_eviction_fails_s6() {
    let double = support::start(Defect::RacyEviction).await;
    assert_only_fails("racy-eviction", &double.url(), &["S6"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_close_fails_s7() {
    let double = support::start(Defect::IgnoreClientClose).await;
    assert_only_fails("ignore-close", &double.url(), &["S7"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_limits_fail_m5() {
    let double = support::start(Defect::NoLimits).await;
    let run = assert_only_fails("no-limits", &double.url(), &["M5"]).await;
    assert!(run.seen("M5").contains("broadcast"), "{}", run.seen("M5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_runs_the_named_rules() {
    let server = chat_server(None).await;
    let run = conform(
        "only",
        &format!("ws://{}/", server.local_addr()),
        &["--only", "s5,M3"],
    )
    .await;
    assert_eq!(run.code, 0);
    let rules: Vec<_> = run.json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["rule"].as_str().expect("rule").to_string())
        .collect();
    assert_eq!(rules, ["S5", "M3"]);
    assert_eq!(junit_counts(&run.junit), (2, 0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_rule_is_a_usage_error() {
    let run = conform("usage", "ws://127.0.0.1:9/", &["--only", "S5,X9"]).await;
    assert_eq!(run.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_exits_3() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let run = conform("unreachable", &format!("ws://127.0.0.1:{port}/"), &[]).await;
    assert_eq!(run.code, 3);
}
