//! `deploy/prometheus/` and `deploy/grafana/` against the real `promtool` (Debian's
//! `prometheus` package; the README's test command installs it): the scrape
//! configuration and the alert rules pass `promtool check`, a broken rule does not; every
//! expression of both Grafana dashboards is valid PromQL (checked as a recording rule)
//! and every dashboard takes its Prometheus from a `datasource` variable; every metric the
//! rules and the dashboards name is one that chat-server or loadgen really serves; and
//! what `loadgen run --metrics` serves passes `promtool check metrics`.

mod launch;
mod scratch;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use launch::{server, LOADGEN};
use scratch::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// The Grafana dashboards.
const DASHBOARDS: [&str; 2] = ["chat-server.json", "loadgen-run.json"];

/// Every PromQL expression of a dashboard, its template variables given a value that
/// matches anything.
fn dashboard_expressions(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "{file} has a datasource variable"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty(), "{file} has panels");
    let mut expressions = Vec::new();
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{file}: panel {} takes the chosen Prometheus",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            expressions.push(expr.replace("$instance", ".*").replace("$run", ".*"));
        }
    }
    expressions
}

/// `expressions` as recording rules, which `promtool check rules` parses.
fn as_rules(expressions: &[String]) -> String {
    let rules: Vec<serde_json::Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, expr)| serde_json::json!({ "record": format!("dashboard:expression_{i}"), "expr": expr }))
        .collect();
    // JSON is YAML.
    serde_json::json!({ "groups": [{ "name": "dashboards", "rules": rules }] }).to_string()
}

/// Runs promtool with `args` (and `stdin`), returning its exit success and its output.
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): it comes with Prometheus — apt-get install -y \
                 prometheus (scripts/test.sh installs it)"
            )
        });
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("promtool reads");
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_configuration_rules_and_dashboards_pass_promtool_and_broken_ones_do_not() {
    let config = deploy().join("prometheus.yml");
    let (ok, text) = promtool(&["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "{text}");
    let rules = deploy().join("alerts.yml");
    let (ok, text) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "{text}");

    let dir = TempDir::new("broken-rules");
    let broken = dir.path().join("alerts.yml");
    let text = std::fs::read_to_string(&rules).unwrap().replacen(
        "expr: up{job=\"chat-server\"} == 0",
        "expr: up{job=\"chat-server\" == 0",
        1,
    );
    std::fs::write(&broken, text).unwrap();
    let (ok, text) = promtool(&["check", "rules", broken.to_str().unwrap()], None);
    assert!(!ok, "a rule that does not parse is refused: {text}");

    for file in DASHBOARDS {
        let expressions = dashboard_expressions(file);
        let rules = dir.path().join(format!("{file}.rules.json"));
        std::fs::write(&rules, as_rules(&expressions)).unwrap();
        let (ok, text) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
        assert!(ok, "{file}: {text}");
        // The check can fail: one parenthesis short.
        let mut broken = expressions.clone();
        broken[0] = broken[0].replacen(')', "", 1);
        std::fs::write(&rules, as_rules(&broken)).unwrap();
        let (ok, _) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
        assert!(!ok, "{file}: a broken expression is refused");
    }
}

/// The metric names an expression file uses: `chat_…`, `loadgen_…` (histogram series
/// without their `_bucket` suffix).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["chat_", "loadgen_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let end = start
                + text[start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(text.len() - start);
            let word_start = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric());
            if word_start {
                let name = &text[start..end];
                names.insert(name.strip_suffix("_bucket").unwrap_or(name).to_string());
            }
            from = end;
        }
    }
    names
}

/// The metric names of an exposition (histograms by their family name).
fn served(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .map(str::to_string)
        .collect()
}

async fn http_get(address: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("reads");
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_and_panel_names_served_metrics_and_loadgens_exposition_passes_promtool() {
    // chat-server's own, from a real server (the chat_bus_ ones only a cluster node has).
    let chat = server(None).await;
    let chat_metrics = http_get(&chat.local_addr().to_string(), "/metrics").await;
    let mut known = served(&chat_metrics);
    for bus in [
        "chat_bus_connected",
        "chat_bus_unforwarded_total",
        "chat_bus_round_trip_seconds",
    ] {
        known.insert(bus.to_string());
    }

    // loadgen's, scraped from a run while it lasts.
    let dir = TempDir::new("metrics-exposition");
    let file = dir.path().join("metrics.toml");
    std::fs::write(
        &file,
        "[users]\ncount = 6\n[[phase]]\nduration = \"4s\"\nrate = 10\nsenders = 2\n",
    )
    .unwrap();
    let target = format!("ws://{}/", chat.local_addr());
    let out = dir.path().join("report");
    let mut child = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args([
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--target",
            &target,
        ])
        .args(["--metrics", "127.0.0.1:0", "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("loadgen starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
        .await
        .expect("the address is said in time")
        .unwrap()
        .unwrap_or_default();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let mut exposition = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        exposition = http_get(&address, "/metrics").await;
        // Once an interval closed: loadgen's lag is known from then on.
        if exposition.contains("loadgen_sent_total{run=")
            && exposition.contains("loadgen_send_lag_p99_seconds{run=")
        {
            break;
        }
    }
    assert!(
        exposition.contains("loadgen_sent_total{run="),
        "{exposition}"
    );
    let (ok, text) = promtool(&["check", "metrics"], Some(&exposition));
    assert!(ok, "{text}\n{exposition}");
    let broken = exposition.replacen(" counter\n", " countr\n", 1);
    let (ok, _) = promtool(&["check", "metrics"], Some(&broken));
    assert!(!ok, "promtool refuses a broken exposition");
    known.extend(served(&exposition));
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;

    let rules = std::fs::read_to_string(deploy().join("alerts.yml")).unwrap();
    let unknown: Vec<String> = names_in(&rules).difference(&known).cloned().collect();
    assert!(
        unknown.is_empty(),
        "rules name metrics nothing serves: {unknown:?}"
    );
    for file in DASHBOARDS {
        let named = names_in(&dashboard_expressions(file).join("\n"));
        let unknown: Vec<&String> = named.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics nothing serves: {unknown:?}"
        );
    }
    // The check can fail: a misspelt name is found.
    let misspelt = names_in(&rules.replace("chat_sessions_online", "chat_session_online"));
    assert!(misspelt
        .difference(&known)
        .any(|n| n == "chat_session_online"));
    chat.shutdown().await;
}
