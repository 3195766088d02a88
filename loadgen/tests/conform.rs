//! End-to-end tests of `loadgen conform`: the real binary against chat-server started
//! here, and against servers with exactly one defect (chat-server's `Fault`s, or the
//! test doubles of `support/`), each of which must make exactly the matching check fail
//! (for a MUST rule) or warn (for the informational robustness checks).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use chat_server::{Config, Fault, Server, ServerHandle};
use support::Defect;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Every MUST rule conform checks.
const MUST: [&str; 10] = ["S2", "S4", "S5", "S6", "S7", "M1", "M2", "M3", "M5", "M6"];

/// The informational checks of the robustness rules and of S3's amendment, by key (see
/// [`Run::warned`]).
const ROBUSTNESS: [&str; 8] = ["S3 format", "R1", "R2", "R3", "R4", "R5", "R6", "R7"];

/// Rows in a full run.
const CHECK_COUNT: usize = 22;

/// A row's key: its rule, or `S3 format` for S3's second check.
fn key(check: &serde_json::Value) -> String {
    let rule = check["rule"].as_str().expect("rule");
    if check["check"]
        .as_str()
        .is_some_and(|c| c.contains("format characters"))
    {
        format!("{rule} format")
    } else {
        rule.to_string()
    }
}

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

    /// Robustness checks (keys of [`ROBUSTNESS`]) that warned.
    fn warned(&self) -> BTreeSet<String> {
        self.json["checks"]
            .as_array()
            .expect("checks array")
            .iter()
            .filter(|c| c["verdict"] == "warn")
            .map(key)
            .filter(|k| ROBUSTNESS.contains(&k.as_str()))
            .collect()
    }

    /// What the row with `key` (a rule, or `S3 format`) saw.
    fn seen(&self, rule: &str) -> String {
        self.json["checks"]
            .as_array()
            .expect("checks array")
            .iter()
            .find(|c| key(c) == rule)
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
        // chat_server() and the doubles time request heads out after 1 s (R4).
        "--header-timeout",
        "1s",
        "--json",
        json_path.to_str().expect("utf-8 path"),
        "--junit",
        junit_path.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let output = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
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
    chat_server_with(Config {
        fault,
        ..Default::default()
    })
    .await
}

/// chat-server on 127.0.0.1 (a free port) with `config`, but a 1 s request-head timeout
/// (R4; conform() passes --header-timeout 1s).
async fn chat_server_with(config: Config) -> ServerHandle {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        header_timeout: std::time::Duration::from_secs(1),
        ..config
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
    assert_eq!(checks.len(), CHECK_COUNT, "one row per check");
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
    assert_eq!(junit_counts(&run.junit), (CHECK_COUNT, 0));
    // chat-server follows every robustness rule, so each of those checks says `info`.
    for rule in ROBUSTNESS {
        let check = checks
            .iter()
            .find(|c| key(c) == rule)
            .expect("rule present");
        assert_eq!(check["verdict"], "info", "{rule}: {}", check["seen"]);
        assert_eq!(check["must"], false);
    }
    assert!(
        run.seen("R3").contains("chat_throttled_total +"),
        "{}",
        run.seen("R3")
    );
    assert!(run.seen("R5").contains("not checked"), "{}", run.seen("R5"));
    assert!(run.seen("R7").contains("not checked"), "{}", run.seen("R7"));
    server.shutdown().await;
}

/// The double follows every robustness rule but R6 (it registers after the 101), so the
/// robustness checks say `info` on it, and each defect below makes exactly its own warn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_double_without_defect_passes() {
    let double = support::start(Defect::None).await;
    let max = support::MAX_SESSIONS.to_string();
    let run = conform("double", &double.url(), &["--max-sessions", &max]).await;
    assert_eq!(run.failed(), set(&[]));
    assert_eq!(run.code, 0);
    let mut warned = run.warned();
    warned.remove("R6");
    assert_eq!(warned, set(&[]), "robustness checks on the double");
    assert!(run.seen("R5").contains("503"), "{}", run.seen("R5"));
}

async fn assert_only_fails(tag: &str, url: &str, rules: &[&str]) -> Run {
    let run = conform(tag, url, &[]).await;
    assert_eq!(run.failed(), set(rules), "failed checks for {tag}");
    assert_eq!(run.code, 1, "exit code for {tag}");
    let (testcases, failures) = junit_counts(&run.junit);
    assert_eq!(
        (testcases, failures),
        (CHECK_COUNT, rules.len()),
        "JUnit for {tag}"
    );
    run
}

/// Runs conform with `extra` flags and checks that no MUST check failed and that of the
/// robustness checks exactly `key` warned (R6 aside on a double, which breaks it anyway).
async fn assert_only_warns(tag: &str, url: &str, extra: &[&str], key: &str) -> Run {
    let run = conform(tag, url, extra).await;
    assert_eq!(run.failed(), set(&[]), "failed checks for {tag}");
    assert_eq!(run.code, 0, "informational checks never fail a run ({tag})");
    let mut warned = run.warned();
    if key != "R6" {
        warned.remove("R6");
    }
    assert_eq!(warned, set(&[key]), "robustness checks warning for {tag}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_characters_accepted_warn_s3_format() {
    let double = support::start(Defect::AcceptFormatChars).await;
    let run = assert_only_warns("format-chars", &double.url(), &[], "S3 format").await;
    assert!(
        run.seen("S3 format").contains("U+202E: ACCEPTED"),
        "{}",
        run.seen("S3 format")
    );
    assert!(
        run.seen("S3").contains("65 bytes"),
        "the first S3 row is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_handshake_warns_r1() {
    let double = support::start(Defect::LaxHandshake).await;
    let run = assert_only_warns("lax-handshake", &double.url(), &[], "R1").await;
    assert!(
        run.seen("R1").contains("POST: UPGRADED"),
        "{}",
        run.seen("R1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_frames_accepted_warn_r2() {
    let double = support::start(Defect::AcceptUnmasked).await;
    let run = assert_only_warns("unmasked", &double.url(), &[], "R2").await;
    assert!(run.seen("R2").contains("BROADCAST"), "{}", run.seen("R2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_control_by_dropping_warns_r3() {
    let double = support::start(Defect::FloodDrops).await;
    let run = assert_only_warns("flood-drops", &double.url(), &[], "R3").await;
    assert!(
        run.seen("R3").contains("the reader got"),
        "{}",
        run.seen("R3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_timeout_warns_r4() {
    let double = support::start(Defect::NoHeaderTimeout).await;
    let run = assert_only_warns("no-header-timeout", &double.url(), &[], "R4").await;
    assert!(run.seen("R4").contains("STILL OPEN"), "{}", run.seen("R4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_limit_warns_r5() {
    let double = support::start(Defect::NoSessionLimit).await;
    let max = support::MAX_SESSIONS.to_string();
    let run = assert_only_warns("no-limit", &double.url(), &["--max-sessions", &max], "R5").await;
    assert!(run.seen("R5").contains("ACCEPTED"), "{}", run.seen("R5"));
}

/// R5 against chat-server with a small limit: the check fills it and sees the 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_server_session_limit_gives_503() {
    let server = chat_server_with(Config {
        max_sessions: Some(5),
        ..Default::default()
    })
    .await;
    let url = format!("ws://{}/", server.local_addr());
    let run = conform("limit", &url, &["--only", "R5", "--max-sessions", "5"]).await;
    assert_eq!(run.code, 0);
    assert_eq!(run.warned(), set(&[]), "{}", run.seen("R5"));
    assert!(
        run.seen("R5")
            .contains("5 logins accepted, the next refused with HTTP 503"),
        "{}",
        run.seen("R5")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_after_the_101_warns_r6() {
    let server = chat_server(Some(Fault::RegisterAfter101)).await;
    let url = format!("ws://{}/", server.local_addr());
    let run = assert_only_warns("register-after-101", &url, &[], "R6").await;
    assert!(run.seen("R6").contains("round 1"), "{}", run.seen("R6"));
    server.shutdown().await;
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

/// A rule with two checks (S3) runs both under `--only`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_rule_runs_all_of_its_checks() {
    let server = chat_server(None).await;
    let url = format!("ws://{}/", server.local_addr());
    let run = conform("only-s3", &url, &["--only", "S3"]).await;
    assert_eq!(run.code, 0);
    let keys: Vec<_> = run.json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(key)
        .collect();
    assert_eq!(keys, ["S3", "S3 format"]);
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
