//! Authenticated logins end to end (docs/protocol.md A1–A7): the real loadgen binary
//! against chat-server started here with a key made at test time — runs that mint a fresh
//! token per login (HS256 in the header, ES256 in the query), tokens from a file, tokens
//! that expire mid-run and are renewed, runs stopped at once when every login is refused;
//! `conform` with the key, each authentication defect failing its MUST check, and without
//! the key; `client` told its token expired. No key, secret or token may reach a report.

mod launch;
mod scratch;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_server::jwt_keys::{self, Algorithm, SigningKey};
use chat_server::{Authentication, Config, Fault, Server, ServerHandle};
use launch::{loadgen, total};
use scratch::TempDir;

const SECRET: &str = "a test secret of well over thirty-two bytes, made for this file";

/// A relogin-and-broadcast scenario; `USERS` is replaced by the `[users]` extras.
const SCENARIO: &str = r#"
[users]
count = 12
connect_over = "100ms"
USERS

[[phase]]
duration = "2s"
rate = 30
senders = 6
relogin_rate = 3

[thresholds]
min_delivery_ratio = 1.0
max_eviction_failures = 0
"#;

/// chat-server on a free loopback port verifying with `key`, and `fault` if any.
async fn server(key: &SigningKey, fault: Option<Fault>) -> ServerHandle {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        auth: Some(Authentication::new(key.verifying_key().clone())),
        header_timeout: Duration::from_secs(1),
        fault,
        ..Config::default()
    })
    .await
    .expect("server starts")
}

fn url(server: &ServerHandle) -> String {
    format!("ws://{}/", server.local_addr())
}

/// `dir/secret` holding [`SECRET`], and its key.
fn secret_file(dir: &Path) -> (String, SigningKey) {
    let path = dir.join("secret");
    std::fs::write(&path, format!("{SECRET}\n")).expect("a secret file");
    let key = SigningKey::hs256(SECRET.as_bytes()).expect("long enough");
    (path.display().to_string(), key)
}

/// `dir/NAME.pem` holding a new private key of `algorithm`, and the key.
fn private_key(dir: &Path, name: &str, algorithm: Algorithm) -> (String, SigningKey) {
    let pem = jwt_keys::generate_private_pem(algorithm).expect("a key");
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, &pem).expect("a key file");
    let key = SigningKey::from_private_pem(pem.as_bytes()).expect("reads back");
    (path.display().to_string(), key)
}

/// Runs the scenario with `users` in its `[users]` and `flags`; (exit code, stderr,
/// summary.json, the report folder's text).
async fn run(
    dir: &TempDir,
    tag: &str,
    users: &str,
    flags: &[&str],
) -> (i32, String, serde_json::Value, String) {
    let file = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&file, SCENARIO.replace("USERS", users)).expect("a scenario");
    let out = dir.path().join(format!("{tag}-report"));
    let mut args = vec![
        "run",
        file.to_str().expect("utf-8"),
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(flags);
    let output = loadgen(&args).await;
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map(|text| serde_json::from_str(&text).expect("summary.json parses"))
        .unwrap_or(serde_json::Value::Null);
    let mut reports = String::new();
    if let Ok(entries) = std::fs::read_dir(&out) {
        for entry in entries.flatten() {
            reports.push_str(&String::from_utf8_lossy(
                &std::fs::read(entry.path()).unwrap_or_default(),
            ));
        }
    }
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        summary,
        reports,
    )
}

/// Asserts a clean run whose every login minted a token and was verified.
fn assert_authenticated(summary: &serde_json::Value, server: &ServerHandle, reports: &str) {
    let connects = total(summary, "connects");
    assert!(connects > 12, "relogins happened: {summary}");
    assert_eq!(total(summary, "relogins"), total(summary, "evictions_ok"));
    assert_eq!(total(summary, "lost"), 0);
    assert_eq!(
        summary["connect_us"]["mint"]["count"].as_u64(),
        Some(connects),
        "one mint per login"
    );
    let metrics = server.metrics();
    assert_eq!(
        metrics.logins, connects,
        "every login verified by the server"
    );
    assert_eq!(metrics.refused_auth, 0);
    assert!(!reports.contains(SECRET), "the secret reached a report");
    assert!(!reports.contains("eyJ"), "a token reached a report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_mints_a_fresh_token_for_every_login_and_reports_what_it_costs() {
    let dir = TempDir::new("auth-hs256");
    let (secret, key) = secret_file(dir.path());
    let server = server(&key, None).await;
    let users = format!("jwt = {{ secret_file = {secret:?}, ttl = \"5m\" }}");
    let (code, _, summary, reports) =
        run(&dir, "hs256", &users, &["--target", &url(&server)]).await;
    assert_eq!(code, 0, "{summary}");
    assert_authenticated(&summary, &server, &reports);
    assert!(
        reports.contains("token mint p50"),
        "the login row shows the mint cost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_in_the_query_from_a_key_relative_to_the_scenario() {
    let dir = TempDir::new("auth-es256");
    let (_, key) = private_key(dir.path(), "es256", Algorithm::ES256);
    let server = server(&key, None).await;
    let users = "jwt = { private_key = \"es256.pem\", alg = \"ES256\" }\ntoken_in = \"query\"";
    let (code, _, summary, reports) = run(&dir, "es256", users, &["--target", &url(&server)]).await;
    assert_eq!(code, 0, "{summary}");
    assert_authenticated(&summary, &server, &reports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_verifies_with_the_runs_key_and_claims() {
    let dir = TempDir::new("auth-embedded");
    let (key, _) = private_key(dir.path(), "ed25519", Algorithm::EdDSA);
    let users = format!(
        "jwt = {{ private_key = {key:?}, claims = {{ aud = \"chat\", iss = \"https://auth.test\" }} }}"
    );
    let (code, _, summary, _) = run(&dir, "embedded", &users, &[]).await;
    assert_eq!(code, 0, "{summary}");
    let command = summary["server"]["command"].as_str().unwrap_or("");
    for flag in [
        "--jwt-private-key",
        "--jwt-audience chat",
        "--jwt-issuer https://auth.test",
    ] {
        assert!(command.contains(flag), "{command}");
    }
    assert_eq!(
        summary["connect_us"]["mint"]["count"].as_u64(),
        Some(total(&summary, "connects"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_every_login_is_refused_stops_at_once_and_says_why() {
    let dir = TempDir::new("auth-refused");
    let (_, key) = secret_file(dir.path());
    let server = server(&key, None).await;
    let wrong = dir.path().join("wrong");
    std::fs::write(
        &wrong,
        "another secret, long enough to be one, but not the server's",
    )
    .unwrap();
    let users = format!(
        "jwt = {{ secret_file = {:?} }}",
        wrong.display().to_string()
    );
    let started = std::time::Instant::now();
    let (code, stderr, _, _) = run(&dir, "wrong-key", &users, &["--target", &url(&server)]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("every login refused: 401 bad_signature")
            && stderr.contains("is the key right?"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "stopped early");
    let (code, stderr, _, _) = run(&dir, "no-key", "", &["--target", &url(&server)]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("every login refused: 401 missing_token"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_file_are_used_and_every_user_needs_one() {
    let dir = TempDir::new("auth-table");
    let (_, key) = private_key(dir.path(), "rs", Algorithm::ES256);
    let server = server(&key, None).await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let names: Vec<String> = (0..12)
        .map(|i| format!("user{i}"))
        .chain(["userprobe".to_string()])
        .collect();
    let mut csv = String::from("user,token\n");
    for name in &names {
        let token = key
            .mint(&serde_json::json!({"sub": name, "exp": exp}))
            .unwrap();
        csv.push_str(&format!("{name},{token}\n"));
    }
    std::fs::write(dir.path().join("tokens.csv"), &csv).unwrap();
    let (code, _, summary, reports) = run(
        &dir,
        "table",
        "tokens_file = \"tokens.csv\"",
        &["--target", &url(&server)],
    )
    .await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(server.metrics().logins, total(&summary, "connects"));
    assert!(!reports.contains("eyJ"), "a token reached a report");
    // Without the probe user's row (relogins need it), and without user11's.
    let short: String = csv
        .lines()
        .filter(|l| !l.starts_with("userprobe") && !l.starts_with("user11,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("tokens.csv"), short).unwrap();
    let (code, stderr, _, _) = run(&dir, "short", "tokens_file = \"tokens.csv\"", &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("users.tokens_file")
            && stderr.contains("no token for \"user11\" and 1 more"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_expire_mid_run_are_renewed_not_counted_as_disconnects() {
    let dir = TempDir::new("auth-renew");
    let (secret, key) = secret_file(dir.path());
    let server = server(&key, None).await;
    let file = dir.path().join("renew.toml");
    std::fs::write(
        &file,
        format!(
            "[users]\ncount = 6\nconnect_over = \"100ms\"\njwt = {{ secret_file = {secret:?}, ttl = \"2s\" }}\n\
             [[phase]]\nduration = \"5s\"\nrate = 20\nsenders = 3\n\
             [thresholds]\nmin_delivery_ratio = 1.0\nmax_connect_errors = 0\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("report");
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--target",
        &url(&server),
    ])
    .await;
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(output.status.code(), Some(0), "{summary}");
    assert!(total(&summary, "token_renewals") >= 6, "{summary}");
    assert_eq!(total(&summary, "unexpected_disconnects"), 0);
    assert_eq!(total(&summary, "lost"), 0);
    assert!(server.metrics().sessions_expired >= 6);
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains("token_renewals"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_credentials_exit_2_naming_the_field_or_flag() {
    let dir = TempDir::new("auth-usage");
    let (secret, _) = secret_file(dir.path());
    let (private, key) = private_key(dir.path(), "es", Algorithm::ES256);
    let public = dir.path().join("es.pub.pem");
    std::fs::write(&public, key.verifying_key().public_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("short"), "short").unwrap();
    let public = public.display().to_string();
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        ("jwt = { secret_file = \"missing\" }".into(), vec![], "users.jwt.secret_file"),
        ("jwt = { secret_file = \"short\" }".into(), vec![], "HS256 needs at least 32"),
        (format!("jwt = {{ private_key = {public:?} }}"), vec![], "holds a public key"),
        (format!("jwt = {{ private_key = {private:?}, alg = \"RS256\" }}"), vec![], "users.jwt.alg"),
        (format!("jwt = {{ secret_file = {secret:?}, private_key = {private:?} }}"), vec![], "not both"),
        (format!("jwt = {{ secret_file = {secret:?}, ttl = \"0s\" }}"), vec![], "users.jwt.ttl"),
        (format!("jwt = {{ secret_file = {secret:?}, claims = {{ sub = \"x\" }} }}"), vec![], "users.jwt.claims"),
        ("token_in = \"query\"".into(), vec![], "users.token_in"),
        (format!("jwt = {{ secret_file = {secret:?} }}\nheaders = {{ Authorization = \"Bearer x\" }}"), vec![], "users.headers"),
        (String::new(), vec!["--jwt-claim", "aud=chat"], "--jwt-claim goes with a key"),
        (String::new(), vec!["--jwt-secret-file", "missing-file"], "missing-file"),
        (String::new(), vec!["--jwt-secret-file", &secret, "--jwt-claim", "nonsense"], "NAME=VALUE"),
    ];
    for (i, (users, flags, said)) in cases.into_iter().enumerate() {
        let (code, stderr, _, _) = run(&dir, &format!("bad{i}"), &users, &flags).await;
        assert_eq!(code, 2, "{users} {flags:?}: {stderr}");
        assert!(
            stderr.contains(said),
            "{users} {flags:?}: want {said:?} in {stderr}"
        );
        assert!(!stderr.contains(SECRET), "{stderr}");
    }
}

/// `loadgen conform URL --only RULES` with the secret file; (exit code, conform JSON).
async fn conform(url: &str, secret: &str, only: &str) -> (i32, serde_json::Value) {
    let dir = TempDir::new("auth-conform");
    let json = dir.path().join("conform.json");
    let output = loadgen(&[
        "conform",
        url,
        "--jwt-secret-file",
        secret,
        "--only",
        only,
        "--close-deadline",
        "1s",
        "--header-timeout",
        "1s",
        "--json",
        json.to_str().unwrap(),
    ])
    .await;
    let report = std::fs::read_to_string(&json)
        .map(|text| serde_json::from_str(&text).expect("conform JSON"))
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), report)
}

fn verdicts(report: &serde_json::Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .map(|c| {
                    (
                        c["rule"].as_str().unwrap_or("").to_string(),
                        c["verdict"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const AUTH_RULES: &str = "A1,A2,A3,A4,A5,A6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conform_with_the_key_checks_every_rule_with_tokens_and_passes() {
    let dir = TempDir::new("auth-conform-pass");
    let (secret, key) = secret_file(dir.path());
    let server = server(&key, None).await;
    let (code, report) = conform(
        &url(&server),
        &secret,
        "A1,A2,A3,A4,A5,A6,A7,S2,S4,S5,M1,M3",
    )
    .await;
    assert_eq!(code, 0, "{report}");
    let verdicts = verdicts(&report);
    for (rule, verdict) in &verdicts {
        let want = match rule.as_str() {
            "A6" => "info",
            "A7" => "warn", // no allow-list configured
            _ => "pass",
        };
        assert_eq!(verdict, want, "{rule}: {report}");
    }
    assert_eq!(verdicts.len(), 12);
}

/// Each deliberate defect of authentication makes exactly its MUST check fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_authentication_defect_fails_its_must_check() {
    let dir = TempDir::new("auth-conform-faults");
    let (secret, key) = secret_file(dir.path());
    for (fault, rule) in [
        (Fault::JwtAcceptAlgNone, "A2"),
        (Fault::JwtIgnoreSignature, "A2"),
        (Fault::JwtIgnoreExpiry, "A3"),
        (Fault::JwtNameFromUser, "A4"),
    ] {
        let server = server(&key, Some(fault)).await;
        let (code, report) = conform(&url(&server), &secret, AUTH_RULES).await;
        assert_eq!(code, 1, "{fault:?}: {report}");
        let failed: Vec<String> = verdicts(&report)
            .into_iter()
            .filter(|(_, v)| v == "fail")
            .map(|(r, _)| r)
            .collect();
        assert_eq!(failed, [rule], "{fault:?}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conform_without_the_key_says_so_in_one_line() {
    let (_, key) = secret_file(TempDir::new("auth-conform-nokey").path());
    let server = server(&key, None).await;
    let output = loadgen(&["conform", &url(&server)]).await;
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("every login refused: 401 missing_token"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).trim().is_empty());
    let output = loadgen(&["conform", &url(&server), "--only", "A1"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs the key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_logs_in_with_a_token_and_says_when_it_expired() {
    let dir = TempDir::new("auth-client");
    let (secret, key) = secret_file(dir.path());
    let server = server(&key, None).await;
    // stdin stays open (piped, never written): only the expiry ends the session.
    let mut child = tokio::process::Command::new(launch::LOADGEN)
        .args([
            "client",
            &url(&server),
            "--user",
            "ann",
            "--jwt-secret-file",
            &secret,
            "--jwt-ttl",
            "2s",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("loadgen client starts");
    let _stdin = child.stdin.take();
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("the session ends by itself")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("connected to") && stderr.contains("with a token valid for"),
        "{stderr}"
    );
    assert!(
        stderr.contains("token expired: server sent Close 4003"),
        "{stderr}"
    );
    assert_eq!(server.metrics().sessions_expired, 1);
}

/// `gate` and `capacity` carry the key to every run: the servers they start verify it
/// (`loadgen serve --jwt-secret-file`, the embedded server per step), every step's logins
/// mint, and the knee's scenario keeps the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_and_capacity_mint_for_every_run_and_step() {
    let dir = TempDir::new("auth-gate-capacity");
    let (secret, _) = secret_file(dir.path());
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(
        &scenario,
        "[users]\ncount = 10\nconnect_over = \"50ms\"\n[[phase]]\nduration = \"1s\"\nrate = 20\nsenders = 5\n",
    )
    .unwrap();
    let server = format!(
        "{} serve --listen {{addr}} --jwt-secret-file {secret}",
        launch::LOADGEN
    );
    let out = dir.path().join("gate");
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
        "--jwt-secret-file",
        &secret,
    ])
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "a gate whose runs all log in"
    );
    // The same gate without the key: every run's logins are refused; the gate cannot run.
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
        dir.path().join("gate-nokey").to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("401 missing_token"));

    let (private, _) = private_key(dir.path(), "es", Algorithm::ES256);
    let spec = dir.path().join("small.toml");
    std::fs::write(
        &spec,
        "[capacity]\ngrow = \"users\"\nusers = { start = 4, step = 4, limit = 8 }\nwarmup = \"1s\"\n\
         measure = \"1s\"\nbisections = 0\nconfirm = 0\nreproduce = 0\npause = \"0s\"\n\
         [load]\nrate = 20\nsenders = 3\nrelogin_rate = 1\n[thresholds]\np99 = \"2s\"\n",
    )
    .unwrap();
    let out = dir.path().join("capacity");
    let output = loadgen(&[
        "capacity",
        spec.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--jwt-private-key",
        &private,
        "--jwt-claim",
        "aud=chat",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let steps: Vec<_> = std::fs::read_dir(out.join("steps"))
        .unwrap()
        .flatten()
        .collect();
    assert!(!steps.is_empty());
    for step in steps {
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(step.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(total(&summary, "connect_errors"), 0, "{summary}");
        assert_eq!(
            summary["connect_us"]["mint"]["count"].as_u64(),
            Some(total(&summary, "connects")),
            "every login of {:?} minted",
            step.path()
        );
    }
    let knee = std::fs::read_to_string(out.join("knee.toml")).unwrap();
    assert!(
        knee.contains("private_key") && knee.contains("aud = \"chat\""),
        "{knee}"
    );
}
