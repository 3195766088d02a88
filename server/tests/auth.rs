//! Authenticated logins (docs/protocol.md A1–A7) over real sockets, with keys made at test
//! time: an HS256 secret, P-256 and Ed25519 key pairs (ring), an RSA key pair (openssl).
//! Every refusal is shown with its status, its one-line reason and its counter; each
//! deliberate defect is shown letting through what it should not.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_server::jwt_keys::{self, token, Algorithm, SigningKey, VerifyingKey};
use chat_server::{Authentication, Config, Fault, ServerHandle};
use common::*;
use serde_json::{json, Value};
use tokio::net::TcpStream;

const SECRET: &[u8] = b"a shared secret of more than thirty-two bytes";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Claims for `sub`, valid for ten minutes.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "exp": now() + 600})
}

fn hs256() -> SigningKey {
    SigningKey::hs256(SECRET).expect("a long secret")
}

fn generated(algorithm: Algorithm) -> SigningKey {
    let pem = jwt_keys::generate_private_pem(algorithm).expect("a key");
    SigningKey::from_private_pem(pem.as_bytes()).expect("reads back")
}

/// A server verifying with `key`'s verifying half.
async fn server_for(key: &SigningKey, tune: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut config = Config {
        auth: Some(Authentication::new(key.verifying_key().clone())),
        ..Config::default()
    };
    tune(&mut config);
    start(config).await
}

/// An upgrade to `target` with `token` as a Bearer header (if any) and `extra` headers.
async fn attempt(
    server: &ServerHandle,
    target: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<Client, (u16, String, String)> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    upgrade_with(stream, target.as_bytes(), &headers).await
}

/// Asserts a refusal with `status` whose body starts with `reason` and never holds
/// `token`; returns the body.
async fn refused(
    server: &ServerHandle,
    target: &str,
    token: Option<&str>,
    status: u16,
    reason: &str,
) -> String {
    match attempt(server, target, token, &[]).await {
        Ok(_) => panic!("{target} with {token:?} was accepted; want {status} {reason}"),
        Err((got, head, body)) => {
            assert_eq!(got, status, "{body}");
            assert!(body.starts_with(reason), "want {reason:?}: {body}");
            if let Some(token) = token {
                assert!(!body.contains(token) && !head.contains(token), "{body}");
            }
            if status == 401 {
                assert!(
                    head.to_ascii_lowercase()
                        .contains("www-authenticate: bearer"),
                    "{head}"
                );
            }
            body
        }
    }
}

/// `sender` says something; `receiver` must see it as from `name`.
async fn speaks_as(sender: &mut Client, receiver: &mut Client, name: &str) {
    sender.send("hello").await;
    assert_eq!(receiver.text().await, format!("hello -- FROM {name}"));
}

#[tokio::test]
async fn a_name_is_taken_only_with_a_token_whose_sub_it_is() {
    let key = hs256();
    let server = server_for(&key, |_| {}).await;
    let ann = key.mint(&claims("ann")).unwrap();
    let bob = key.mint(&claims("bob")).unwrap();
    // A1: ?user= alone is not enough.
    refused(&server, "/?user=ann", None, 401, "missing_token").await;
    refused(&server, "/", None, 401, "missing_token").await;
    // A4: the header, or ?token= as browsers must; NAME is sub, ?user= may repeat it.
    let mut a = attempt(&server, "/", Some(&ann), &[])
        .await
        .expect("header");
    let mut b = attempt(&server, &format!("/?token={bob}&user=bob"), None, &[])
        .await
        .expect("query");
    wait_online(&server, 2).await;
    speaks_as(&mut a, &mut b, "ann").await;
    speaks_as(&mut b, &mut a, "bob").await;
    // A4: ?user= differing from sub is 403, whatever the token.
    refused(&server, "/?user=bob", Some(&ann), 403, "name_mismatch").await;
    // A5: a relogin with a fresh token evicts the first session.
    let ann2 = key.mint(&claims("ann")).unwrap();
    let _a2 = attempt(&server, "/", Some(&ann2), &[])
        .await
        .expect("relogin");
    a.expect_close(4001, "replaced by a new login").await;
    assert_eq!(
        metric_labeled(
            server.local_addr(),
            "chat_refused_handshakes_total",
            "reason=\"missing_token\""
        )
        .await,
        2
    );
    assert_eq!(
        metric_labeled(
            server.local_addr(),
            "chat_refused_handshakes_total",
            "reason=\"name_mismatch\""
        )
        .await,
        1
    );
    assert_eq!(server.metrics().refused_auth, 3);
    // A Basic header is no token.
    let refusal = attempt(&server, "/", None, &[("Authorization", "Basic YW5uOnB3")]).await;
    assert!(
        matches!(refusal, Err((401, _, ref body)) if body.starts_with("missing_token")),
        "{:?}",
        refusal.err()
    );
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused_with_the_claim_named() {
    let key = hs256();
    let server = server_for(&key, |_| {}).await;
    let good = key.mint(&claims("ann")).unwrap();
    // A2: alg none, a wrong key, a tampered payload.
    let none = token::unsecured(&claims("ann")).unwrap();
    refused(&server, "/", Some(&none), 401, "wrong_algorithm").await;
    let other = SigningKey::hs256(&[9u8; 40])
        .unwrap()
        .mint(&claims("ann"))
        .unwrap();
    refused(&server, "/", Some(&other), 401, "bad_signature").await;
    let tampered = token::with_payload(&good, &claims("eve")).unwrap();
    refused(&server, "/", Some(&tampered), 401, "bad_signature").await;
    let es256 = generated(Algorithm::ES256).mint(&claims("ann")).unwrap();
    refused(&server, "/", Some(&es256), 401, "wrong_algorithm").await;
    // A3: exp and nbf beyond the leeway (30 s), with the claim named.
    let expired = key
        .mint(&json!({"sub": "ann", "exp": now() - 120}))
        .unwrap();
    let body = refused(&server, "/", Some(&expired), 401, "expired").await;
    assert!(
        body.contains("exp is") && body.contains("leeway 30 s"),
        "{body}"
    );
    let early = key
        .mint(&json!({"sub": "ann", "exp": now() + 7200, "nbf": now() + 3600}))
        .unwrap();
    let body = refused(&server, "/", Some(&early), 401, "not_yet_valid").await;
    assert!(body.contains("nbf is"), "{body}");
    // An aud the server does not check is someone else's token.
    let aud = key
        .mint(&json!({"sub": "ann", "exp": now() + 60, "aud": "billing"}))
        .unwrap();
    refused(&server, "/", Some(&aud), 401, "wrong_audience").await;
    // Claims a login needs, and claims of the wrong type (CVE-2026-25537's exp and nbf).
    for (claims, what) in [
        (json!({"sub": "ann"}), "no exp claim"),
        (json!({"exp": now() + 60}), "no sub claim"),
        (json!({"sub": "ann", "exp": "9999999999"}), "exp"),
        (
            json!({"sub": "ann", "exp": now() + 60, "nbf": "99999999999"}),
            "nbf",
        ),
        (json!({"sub": 7, "exp": now() + 60}), "sub"),
    ] {
        let token = key.mint(&claims).unwrap();
        let body = refused(&server, "/", Some(&token), 401, "malformed_token").await;
        assert!(body.contains(what), "{claims}: {body}");
    }
    refused(&server, "/", Some("not.a.token"), 401, "malformed_token").await;
    refused(&server, "/", Some("garbage"), 401, "malformed_token").await;
    // S3 holds for sub.
    let long = key.mint(&claims(&"n".repeat(65))).unwrap();
    refused(&server, "/", Some(&long), 400, "user name too long").await;
    let control = key.mint(&claims("a\u{7}b")).unwrap();
    refused(
        &server,
        "/",
        Some(&control),
        400,
        "user name holds a control character",
    )
    .await;
    // Every refusal counted, nothing opened, and no secret in /metrics.
    let (_, metrics) = http_get(server.local_addr(), b"/metrics", false).await;
    assert!(!metrics.contains(std::str::from_utf8(SECRET).unwrap()));
    assert_eq!(server.metrics().logins, 0);
    assert_eq!(server.metrics().refused_auth, 14);
}

#[tokio::test]
async fn public_keys_fix_the_algorithm_and_refuse_algorithm_confusion() {
    for algorithm in [Algorithm::ES256, Algorithm::EdDSA] {
        let key = generated(algorithm);
        let server = server_for(&key, |_| {}).await;
        let token = key.mint(&claims("ann")).unwrap();
        let _ann = attempt(&server, "/", Some(&token), &[])
            .await
            .expect("its own token");
        let public = key.verifying_key().public_pem().unwrap();
        for confused in [
            token::hs256_keyed_with(public.as_bytes(), &claims("eve")).unwrap(),
            token::hs256_keyed_with(public.trim_end().as_bytes(), &claims("eve")).unwrap(),
        ] {
            refused(&server, "/", Some(&confused), 401, "wrong_algorithm").await;
        }
        let other = generated(algorithm).mint(&claims("eve")).unwrap();
        refused(&server, "/", Some(&other), 401, "bad_signature").await;
    }
}

#[tokio::test]
async fn an_rsa_key_made_by_openssl_verifies_rs256() {
    let dir = std::env::temp_dir().join(format!("chat-auth-rsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs openssl ({e}): apt-get install -y openssl")
            });
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa.pem",
    ]);
    run(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"]);
    let key = SigningKey::private_pem_file(&dir.join("rsa.pem")).unwrap();
    let public = VerifyingKey::public_pem_file(&dir.join("rsa.pub.pem")).unwrap();
    assert_eq!(public.algorithm(), Algorithm::RS256);
    let server = start(Config {
        auth: Some(Authentication::new(public)),
        ..Config::default()
    })
    .await;
    let token = key.mint(&claims("ann")).unwrap();
    let _ann = attempt(&server, "/", Some(&token), &[])
        .await
        .expect("RS256 token");
    let confused = token::hs256_keyed_with(
        &std::fs::read(dir.join("rsa.pub.pem")).unwrap(),
        &claims("eve"),
    )
    .unwrap();
    refused(&server, "/", Some(&confused), 401, "wrong_algorithm").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn audience_and_issuer_are_required_when_configured() {
    let key = hs256();
    let server = server_for(&key, |config| {
        let auth = config.auth.as_mut().unwrap();
        auth.audience = Some("chat".into());
        auth.issuer = Some("https://auth.example".into());
    })
    .await;
    let with = |aud: Option<&str>, iss: Option<&str>| {
        let mut claims = claims("ann");
        if let Some(aud) = aud {
            claims["aud"] = json!(aud);
        }
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        key.mint(&claims).unwrap()
    };
    let good = with(Some("chat"), Some("https://auth.example"));
    let _ann = attempt(&server, "/", Some(&good), &[])
        .await
        .expect("both right");
    let several = key
        .mint(&json!({"sub": "bob", "exp": now() + 60, "aud": ["mail", "chat"], "iss": "https://auth.example"}))
        .unwrap();
    let _bob = attempt(&server, "/", Some(&several), &[])
        .await
        .expect("chat among the audiences");
    refused(
        &server,
        "/",
        Some(&with(Some("mail"), Some("https://auth.example"))),
        401,
        "wrong_audience",
    )
    .await;
    refused(
        &server,
        "/",
        Some(&with(Some("chat"), Some("https://evil.example"))),
        401,
        "wrong_issuer",
    )
    .await;
    let body = refused(
        &server,
        "/",
        Some(&with(None, Some("https://auth.example"))),
        401,
        "malformed_token",
    )
    .await;
    assert!(body.contains("no aud claim"), "{body}");
    let body = refused(
        &server,
        "/",
        Some(&with(Some("chat"), None)),
        401,
        "malformed_token",
    )
    .await;
    assert!(body.contains("no iss claim"), "{body}");
}

#[tokio::test]
async fn a_session_ends_with_4003_when_its_token_expires() {
    let key = hs256();
    let server = server_for(&key, |_| {}).await;
    let exp = now() + 2;
    let token = key.mint(&json!({"sub": "ann", "exp": exp})).unwrap();
    let mut ann = attempt(&server, "/", Some(&token), &[])
        .await
        .expect("valid for now");
    let bob_token = key.mint(&claims("bob")).unwrap();
    let mut bob = attempt(&server, "/", Some(&bob_token), &[])
        .await
        .expect("bob");
    wait_online(&server, 2).await;
    speaks_as(&mut bob, &mut ann, "bob").await;
    let seen = ann.next_within(Duration::from_secs(5)).await;
    let closed_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(seen, Some(Seen::Close(Some(4003), "token expired".into())));
    // At exp itself: not before it, and not a sweep's interval after it.
    assert!(
        closed_at >= Duration::from_secs(exp),
        "closed {closed_at:?}, exp {exp}"
    );
    assert!(
        closed_at < Duration::from_secs(exp) + Duration::from_millis(500),
        "closed {closed_at:?}, exp {exp}"
    );
    assert_eq!(
        wait_metric(server.local_addr(), "chat_sessions_expired_total", 1).await,
        1
    );
    wait_online(&server, 1).await;
    // A token already past its exp, but within the leeway, logs in and is closed at once.
    let late = key.mint(&json!({"sub": "cy", "exp": now() - 5})).unwrap();
    let mut cy = attempt(&server, "/", Some(&late), &[])
        .await
        .expect("within the leeway");
    assert_eq!(
        cy.next_within(Duration::from_secs(2)).await,
        Some(Seen::Close(Some(4003), "token expired".into()))
    );
}

#[tokio::test]
async fn browser_origins_not_listed_are_refused_with_or_without_authentication() {
    for authenticated in [false, true] {
        let key = hs256();
        let server = start(Config {
            auth: authenticated.then(|| Authentication::new(key.verifying_key().clone())),
            allowed_origins: vec!["https://chat.example".into()],
            ..Config::default()
        })
        .await;
        let token = key.mint(&claims("ann")).unwrap();
        let token = authenticated.then_some(token.as_str());
        let target = "/?user=ann";
        assert!(attempt(
            &server,
            target,
            token,
            &[("Origin", "https://chat.example")]
        )
        .await
        .is_ok());
        assert!(
            attempt(&server, target, token, &[]).await.is_ok(),
            "no Origin: not a browser"
        );
        match attempt(
            &server,
            target,
            token,
            &[("Origin", "https://evil.example")],
        )
        .await
        {
            Err((403, _, body)) => assert!(body.starts_with("origin:"), "{body}"),
            other => panic!("a foreign origin: {:?}", other.err()),
        }
        assert_eq!(
            metric_labeled(
                server.local_addr(),
                "chat_refused_handshakes_total",
                "reason=\"origin\""
            )
            .await,
            1
        );
    }
}

#[tokio::test]
async fn an_embedder_is_told_of_bad_authentication_settings() {
    let auth = Authentication {
        leeway: Duration::from_secs(301),
        ..Authentication::new(hs256().verifying_key().clone())
    };
    let refused = chat_server::Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: Some(auth),
        ..Config::default()
    })
    .await
    .err()
    .expect("a leeway over the bound");
    assert!(refused.to_string().contains("leeway"), "{refused}");
    let refused = chat_server::Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_origins: vec!["chat.example".into()],
        ..Config::default()
    })
    .await
    .err()
    .expect("not an origin");
    assert!(refused.to_string().contains("scheme://host"), "{refused}");
}

/// Each deliberate defect lets through what a correct server refuses (so that the
/// conformance checks built on these can be shown to fail).
#[tokio::test]
async fn the_deliberate_defects_let_bad_tokens_through() {
    let key = hs256();
    let serve = |fault: Fault| server_for(&key, move |config| config.fault = Some(fault));
    let none = token::unsecured(&claims("ann")).unwrap();
    let server = serve(Fault::JwtAcceptAlgNone).await;
    assert!(
        attempt(&server, "/", Some(&none), &[]).await.is_ok(),
        "alg none"
    );
    let server = serve(Fault::JwtIgnoreSignature).await;
    let forged = SigningKey::hs256(&[1u8; 32])
        .unwrap()
        .mint(&claims("ann"))
        .unwrap();
    assert!(
        attempt(&server, "/", Some(&forged), &[]).await.is_ok(),
        "any signature"
    );
    let server = serve(Fault::JwtIgnoreExpiry).await;
    let expired = key
        .mint(&json!({"sub": "ann", "exp": now() - 3600}))
        .unwrap();
    let mut ann = attempt(&server, "/", Some(&expired), &[])
        .await
        .expect("expired");
    assert_eq!(
        ann.next_within(Duration::from_millis(300)).await,
        None,
        "and not closed"
    );
    let server = serve(Fault::JwtNameFromUser).await;
    let mut eve = attempt(
        &server,
        "/?user=ann",
        Some(&key.mint(&claims("eve")).unwrap()),
        &[],
    )
    .await
    .expect("a token of eve's takes ann");
    let mut bob = attempt(&server, "/", Some(&key.mint(&claims("bob")).unwrap()), &[])
        .await
        .expect("bob");
    wait_online(&server, 2).await;
    speaks_as(&mut eve, &mut bob, "ann").await;
}

/// The binary: bad key files, both keys at once and an out-of-range leeway exit 2 with the
/// reason (and never the secret); a server on a non-loopback address without a key warns
/// once, with a key or on loopback it does not; a server with a key refuses a tokenless
/// login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_its_key_from_flags_and_refuses_what_it_cannot_use() {
    let dir = std::env::temp_dir().join(format!("chat-auth-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(
        &secret,
        format!("{}\n", std::str::from_utf8(SECRET).unwrap()),
    )
    .unwrap();
    let short = dir.join("short");
    std::fs::write(&short, "only-sixteen-b\n").unwrap();
    let key = generated(Algorithm::ES256);
    let public = dir.join("key.pub.pem");
    std::fs::write(&public, key.verifying_key().public_pem().unwrap()).unwrap();
    let private = dir.join("key.pem");
    std::fs::write(
        &private,
        jwt_keys::generate_private_pem(Algorithm::ES256).unwrap(),
    )
    .unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let exe = env!("CARGO_BIN_EXE_chat-server");
    let refused: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--jwt-secret-file".into(),
                path(&secret),
                "--jwt-public-key".into(),
                path(&public),
            ],
            "cannot be used with",
        ),
        (
            vec!["--jwt-secret-file".into(), path(&short)],
            "HS256 needs at least 32",
        ),
        (
            vec!["--jwt-public-key".into(), path(&private)],
            "holds a private key",
        ),
        (
            vec!["--jwt-public-key".into(), path(&dir.join("missing.pem"))],
            "cannot read",
        ),
        (
            vec![
                "--jwt-secret-file".into(),
                path(&secret),
                "--jwt-leeway".into(),
                "6m".into(),
            ],
            "--jwt-leeway",
        ),
        (
            vec!["--jwt-audience".into(), "chat".into()],
            "--jwt-secret-file",
        ),
        (
            vec![
                "--allowed-origin".into(),
                "chat.example".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ],
            "scheme://host",
        ),
    ];
    for (args, said) in refused {
        let output = tokio::process::Command::new(exe)
            .args(&args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: want {said:?} in {stderr}");
        assert!(
            !stderr.contains(std::str::from_utf8(SECRET).unwrap()),
            "{stderr}"
        );
    }
    // Started: a warning without a key beyond loopback, none otherwise.
    let started = |args: Vec<String>| async move {
        let mut child = tokio::process::Command::new(exe)
            .args(&args)
            .args(["--log", "warn"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let _ = child.start_kill();
        let output = child.wait_with_output().await.unwrap();
        // tracing writes the log to stdout.
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let open = started(vec!["--listen".into(), "0.0.0.0:0".into()]).await;
    assert_eq!(
        open.matches("no authentication: anyone who reaches this address")
            .count(),
        1,
        "{open}"
    );
    let keyed = started(vec![
        "--listen".into(),
        "0.0.0.0:0".into(),
        "--jwt-public-key".into(),
        path(&public),
    ])
    .await;
    assert!(!keyed.contains("no authentication"), "{keyed}");
    let local = started(vec!["--listen".into(), "127.0.0.1:0".into()]).await;
    assert!(!local.contains("no authentication"), "{local}");
    let _ = std::fs::remove_dir_all(&dir);
}
