//! chat-server terminating TLS (`Config::tls`, `--tls-cert`/`--tls-key`), black box over
//! loopback with real TLS: certificates are made at test time by `rcgen` (a test CA and a
//! server certificate for localhost and 127.0.0.1), never committed. Chat, eviction,
//! `/healthz` and `/metrics` work over TLS as over plain TCP; a client that does not speak
//! TLS is refused without harm; the binary serves TLS from its flags and refuses a
//! certificate or key it cannot use.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chat_server::Config;
use common::{start, Client, WAIT};
use http_body_util::Empty;
use hyper::header::{CONNECTION, UPGRADE};
use hyper::Request;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A test CA and a server certificate it signed, as PEM files in a fresh folder.
struct TestPki {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
}

impl TestPki {
    fn new(tag: &str) -> TestPki {
        let dir = std::env::temp_dir().join(format!("chat-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "chat test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        TestPki {
            dir,
            ca_der: ca.der().clone(),
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        chat_server::tls::server_config(&self.cert(), &self.key()).expect("a usable certificate")
    }

    /// A client that trusts only the test CA.
    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS connection to `addr`, verified for the name 127.0.0.1.
async fn tls_to(
    pki: &TestPki,
    addr: std::net::SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    pki.connector().connect(name, tcp).await
}

/// Logs in as `user` over TLS.
async fn login_tls(pki: &TestPki, addr: std::net::SocketAddr, user: &str) -> Client {
    let tls = tls_to(pki, addr).await.expect("TLS handshake");
    let request = Request::builder()
        .method("GET")
        .uri(format!("/?user={user}"))
        .header("Host", addr.to_string())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (ws, _) = fastwebsockets::handshake::client(&common::SpawnExecutor, request, tls)
        .await
        .expect("upgrade over TLS");
    Client::over(Box::new(ws.into_inner()))
}

/// `GET target` over TLS: the status code and the whole response.
async fn https_get(pki: &TestPki, addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    let mut tls = tls_to(pki, addr).await.expect("TLS handshake");
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_eviction_work_over_tls() {
    let pki = TestPki::new("chat");
    let server = start(Config {
        tls: Some(pki.server_config()),
        ..Config::default()
    })
    .await;
    let addr = server.local_addr();
    let mut ann = login_tls(&pki, addr, "ann").await;
    let mut bo = login_tls(&pki, addr, "bo").await;
    common::wait_online(&server, 2).await;
    ann.send("hello over tls").await;
    assert_eq!(bo.text().await, "hello over tls -- FROM ann");
    // A burst, so the writer's batching and flushing over TLS are exercised.
    let burst: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    ann.send_burst(&burst).await;
    for i in 0..200 {
        assert_eq!(bo.text().await, format!("m{i} -- FROM ann"));
    }
    // A second login of ann evicts the first (S4), over TLS as over TCP.
    let mut ann2 = login_tls(&pki, addr, "ann").await;
    ann.expect_close(4001, "replaced by a new login").await;
    bo.send("still there?").await;
    assert_eq!(ann2.text().await, "still there? -- FROM bo");
    assert!(server.metrics().logins >= 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_answer_over_https_and_count_handshakes() {
    let pki = TestPki::new("https");
    let server = start(Config {
        tls: Some(pki.server_config()),
        ..Config::default()
    })
    .await;
    let addr = server.local_addr();
    let (status, _) = https_get(&pki, addr, "/healthz").await;
    assert_eq!(status, 200);
    // A client that speaks plain HTTP to the TLS port gets nothing it can use; the
    // server counts a failed handshake and goes on.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    let (status, metrics) = https_get(&pki, addr, "/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(value("chat_tls_handshakes_total") >= 2, "{metrics}");
    assert_eq!(value("chat_tls_handshake_failures_total"), 1, "{metrics}");
    server.shutdown().await;
}

#[test]
fn an_unusable_certificate_or_key_is_named() {
    let pki = TestPki::new("bad");
    let missing = pki.dir.join("missing.pem");
    let error = chat_server::tls::server_config(&missing, &pki.key()).unwrap_err();
    assert!(error.to_string().contains("missing.pem"), "{error}");
    let error = chat_server::tls::server_config(&pki.key(), &pki.key()).unwrap_err();
    assert!(error.to_string().contains("no certificate"), "{error}");
    let error = chat_server::tls::server_config(&pki.cert(), &pki.cert()).unwrap_err();
    assert!(error.to_string().contains("private key"), "{error}");
    // A key that is not the certificate's.
    let other = rcgen::KeyPair::generate().unwrap();
    let other_key = pki.dir.join("other.pem");
    std::fs::write(&other_key, other.serialize_pem()).unwrap();
    let error = chat_server::tls::server_config(&pki.cert(), &other_key).unwrap_err();
    assert!(
        error.to_string().contains("cannot be used together"),
        "{error}"
    );
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(args: &[&str], pki_dir: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(args)
        .current_dir(pki_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chat-server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tls_from_its_flags_and_refuses_what_it_cannot_use() {
    let pki = TestPki::new("binary");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = binary(
        &[
            "--listen",
            &listen,
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ],
        &pki.dir,
    );
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if tls_to(&pki, addr).await.is_ok() {
            status = https_get(&pki, addr, "/healthz").await.0;
            break;
        }
    }
    assert_eq!(status, 200, "the binary answers /healthz over https");
    let _ = server.kill().await;

    let bad = binary(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "nope.pem",
        ],
        &pki.dir,
    )
    .wait_with_output()
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("nope.pem"), "{stderr}");
    let half = binary(
        &["--listen", "127.0.0.1:0", "--tls-cert", "cert.pem"],
        &pki.dir,
    )
    .wait_with_output()
    .await
    .unwrap();
    assert_eq!(
        half.status.code(),
        Some(2),
        "--tls-cert without --tls-key is bad usage"
    );
}
