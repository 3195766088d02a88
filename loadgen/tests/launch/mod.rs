//! What the end-to-end tests start: the real `loadgen` binary (its output echoed for a
//! failing test's log) and a real chat-server on a free loopback port, with a deliberate
//! defect when a test must show a check failing. Each test file uses what it needs.
#![allow(dead_code)]

use std::process::Output;

use chat_server::{Config, Fault, Server, ServerHandle};

/// The loadgen binary cargo built for these tests.
pub const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Runs loadgen with `args` from the crate's folder and returns its output.
pub async fn loadgen(args: &[&str]) -> Output {
    let output = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("loadgen runs");
    eprintln!("--- loadgen {args:?} exited {:?}", output.status.code());
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// A chat-server on 127.0.0.1, a free port, with `fault` if given.
pub async fn server(fault: Option<Fault>) -> ServerHandle {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        fault,
        ..Config::default()
    })
    .await
    .expect("server starts")
}

/// `totals.<field>` of a summary.json.
pub fn total(summary: &serde_json::Value, field: &str) -> u64 {
    summary["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.{field} in {summary}"))
}

/// The summary.json of a report folder (`null` when the run wrote none).
pub fn summary_in(out: &std::path::Path) -> serde_json::Value {
    std::fs::read_to_string(out.join("summary.json"))
        .map(|text| serde_json::from_str(&text).expect("summary.json parses"))
        .unwrap_or(serde_json::Value::Null)
}

/// The run was clean: everything expected delivered, and nothing lost, duplicated,
/// reordered, echoed, foreign, refused or cut.
pub fn assert_clean(summary: &serde_json::Value) {
    assert_eq!(summary["delivery_ratio"].as_f64(), Some(1.0), "{summary}");
    for field in [
        "lost",
        "duplicates",
        "order_errors",
        "foreign",
        "self_deliveries",
        "connect_errors",
        "unexpected_disconnects",
    ] {
        assert_eq!(total(summary, field), 0, "{field}");
    }
}
