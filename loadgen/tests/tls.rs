//! loadgen over TLS, end to end: `run`, `conform` and `client` against chat-server
//! terminating TLS on loopback with a test CA made at test time. With `--ca-file` of
//! that CA everything passes; without it the certificate problem is named and the
//! command exits 3; `--insecure` connects anyway and the reports say so; a CA file that
//! cannot be read is bad usage (2).

mod launch;
mod pki;
mod scratch;

use chat_server::{Config, Server, ServerHandle};
use launch::{loadgen, total};
use pki::TestPki;
use scratch::TempDir;

const SCENARIO: &str = r#"
[users]
count = 12
connect_over = "100ms"

[[phase]]
duration = "2s"
rate = 30
senders = 6
relogin_rate = 3

[thresholds]
min_delivery_ratio = 1.0
max_eviction_failures = 0
"#;

async fn tls_server(pki: &TestPki) -> ServerHandle {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(chat_server::tls::server_config(&pki.cert(), &pki.key()).unwrap()),
        ..Config::default()
    })
    .await
    .expect("the TLS server starts")
}

/// Runs SCENARIO against `url` with `extra` flags: exit code, stdout, summary.json.
async fn run(tag: &str, url: &str, extra: &[&str]) -> (i32, String, serde_json::Value) {
    let dir = TempDir::new(tag);
    let file = dir.path().join("tls.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let out = dir.path().join("report");
    let mut args = vec!["run", file.to_str().unwrap(), "--quiet", "--target", url];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    let output = loadgen(&args).await;
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map(|text| serde_json::from_str(&text).expect("summary.json parses"))
        .unwrap_or(serde_json::Value::Null);
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text += &String::from_utf8_lossy(&output.stderr);
    if let Ok(page) = std::fs::read_to_string(out.join("report.html")) {
        text += &page;
    }
    (output.status.code().unwrap_or(-1), text, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_wss_with_the_servers_ca_passes_and_counts_what_the_server_sent() {
    let pki = TestPki::new("run");
    let server = tls_server(&pki).await;
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let ca = pki.ca();
    let (code, text, summary) = run("run", &url, &["--ca-file", ca.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{text}");
    assert!(total(&summary, "delivered") > 0);
    assert_eq!(
        total(&summary, "delivered"),
        server.metrics().deliveries_out
    );
    assert!(
        total(&summary, "evictions_ok") > 0,
        "relogins over TLS were checked"
    );
    assert!(
        text.contains("verified against the public roots and"),
        "{text}"
    );
    assert!(text.contains("session resumption on"));
    // Split over local workers: each worker makes its own TLS connections.
    let args = ["--ca-file", ca.to_str().unwrap(), "--workers", "2"];
    let (code, text, summary) = run("workers", &url, &args).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(summary["segments"]["count"], 2);
    // The merge adds the segments' login times exactly.
    let merged = summary["connect_us"]["tls"]["count"].as_u64().unwrap();
    assert!(merged >= 12 + total(&summary, "relogins"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_loadgen_cannot_verify_is_named_and_insecure_connects_and_says_so() {
    let pki = TestPki::new("wrong-ca");
    let server = tls_server(&pki).await;
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let (code, text, _) = run("untrusted", &url, &[]).await;
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("TLS handshake with"), "{text}");
    assert!(text.contains("certificate"), "the problem is named: {text}");

    let (code, text, _) = run("insecure", &url, &["--insecure", "--no-tls-resumption"]).await;
    assert_eq!(code, 0, "{text}");
    let handshakes = server.metrics().tls_handshakes;
    assert!(handshakes >= 12, "{handshakes}");
    assert_eq!(server.metrics().tls_resumed, 0, "resumption was off");
    assert!(
        text.contains("INSECURE: server certificates are not verified"),
        "{text}"
    );
    assert!(text.contains("session resumption off"), "{text}");

    let missing = pki.dir.join("missing.pem");
    let (code, text, _) = run("no-ca", &url, &["--ca-file", missing.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("missing.pem"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conform_passes_every_must_over_wss_and_names_an_untrusted_certificate() {
    let pki = TestPki::new("conform");
    let server = tls_server(&pki).await;
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let ca = pki.ca();
    let output = loadgen(&["conform", &url, "--ca-file", ca.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("CONFORMS"), "{stdout}");
    let output = loadgen(&["conform", &url]).await;
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_logs_in_over_wss() {
    let pki = TestPki::new("client");
    let server = tls_server(&pki).await;
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let ca = pki.ca();
    let output = loadgen(&[
        "client",
        &url,
        "--user",
        "ann",
        "--ca-file",
        ca.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("connected to wss://"));
    assert!(server.metrics().logins >= 1);
    let output = loadgen(&["client", &url, "--user", "ann"]).await;
    assert_eq!(
        output.status.code(),
        Some(3),
        "an untrusted certificate is exit 3"
    );
}

/// `loadgen serve` over TLS with the test certificate, as a server command.
fn tls_serve_command(pki: &TestPki) -> String {
    format!(
        "{} serve --listen {{addr}} --tls-cert {} --tls-key {}",
        launch::LOADGEN,
        pki.cert().display(),
        pki.key().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_compares_two_tls_servers_over_wss() {
    let pki = TestPki::new("gate");
    let dir = TempDir::new("gate-tls");
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(
        &scenario,
        "[users]\ncount = 10\nconnect_over = \"50ms\"\n[[phase]]\nduration = \"1s\"\nrate = 20\nsenders = 5\n",
    )
    .unwrap();
    let server = tls_serve_command(&pki);
    let out = dir.path().join("out");
    let ca = pki.ca();
    let output = loadgen(&[
        "gate",
        "--base",
        &server,
        "--candidate",
        &server,
        "--wss",
        "--ca-file",
        ca.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--pairs",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["passed"], true);
    // Without --wss the gate would speak ws:// to a TLS server: every run fails to log in.
    let output = loadgen(&[
        "gate",
        "--base",
        &server,
        "--candidate",
        &server,
        "--scenario",
        scenario.to_str().unwrap(),
        "--pairs",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_search_runs_every_step_over_wss() {
    let pki = TestPki::new("capacity");
    let dir = TempDir::new("capacity-tls");
    let file = dir.path().join("tiny-capacity.toml");
    std::fs::write(
        &file,
        "[capacity]\ngrow = \"users\"\nusers = { start = 4, step = 4, limit = 8 }\nwarmup = \"1s\"\nmeasure = \"1s\"\nbisections = 0\nconfirm = 0\nreproduce = 1\npause = \"0s\"\n[load]\nrate = 10\nsenders = 2\n[verify]\ndeadline = \"500ms\"\n[thresholds]\np99 = \"2s\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let ca = pki.ca();
    let server = tls_serve_command(&pki);
    let output = loadgen(&[
        "capacity",
        file.to_str().unwrap(),
        "--server",
        &server,
        "--wss",
        "--ca-file",
        ca.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("capacity.json")).unwrap()).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "4 and 8 users, then 8 again to reproduce");
    assert!(steps.iter().all(|s| s["met"] == true), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_scenario_passes_over_wss() {
    let pki = TestPki::new("smoke");
    let server = tls_server(&pki).await;
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let dir = TempDir::new("smoke-tls");
    let out = dir.path().join("report");
    let ca = pki.ca();
    let output = loadgen(&[
        "run",
        "../scenarios/smoke.toml",
        "--quiet",
        "--target",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // Broadcast, relogins and churn all ran over TLS.
    for counter in ["delivered", "evictions_ok", "churn_leaves"] {
        assert!(total(&summary, counter) > 0, "{counter}");
    }
    assert!(summary["connect_us"]["tls"]["count"].as_u64().unwrap() >= 20);
}
