//! Login headers end to end (`[users] headers`, `--header`): a template reaches the
//! server rendered for each user — a test server that records every login's headers
//! stands in for an authenticating proxy, since chat-server ignores them — also through
//! local workers, whose secret values travel in their environment and never in a file;
//! a real run against chat-server with a secret header shows `***` in every report and
//! the value nowhere; a bad header is refused before anything runs.

mod launch;
mod scratch;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use launch::{loadgen, server};
use scratch::TempDir;

/// Every login's request headers (lower-case names), by user name.
type Seen = Arc<Mutex<HashMap<String, HashMap<String, String>>>>;

/// A WebSocket server on loopback that accepts every login, records its headers, and
/// then only reads (it never sends: a stand-in for a proxy, not a chat server).
async fn recording_server() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut request: Request<_>| {
                    let record = record.clone();
                    async move {
                        let user = request
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("user="))
                            .unwrap_or("")
                            .to_string();
                        let headers = request
                            .headers()
                            .iter()
                            .map(|(name, value)| {
                                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                                (name.as_str().to_string(), value)
                            })
                            .collect();
                        record.lock().unwrap().insert(user, headers);
                        let response = match fastwebsockets::upgrade::upgrade(&mut request) {
                            Ok((response, upgrade)) => {
                                tokio::spawn(async move {
                                    if let Ok(mut ws) = upgrade.await {
                                        while let Ok(frame) = ws.read_frame().await {
                                            if frame.opcode == fastwebsockets::OpCode::Close {
                                                break;
                                            }
                                        }
                                    }
                                });
                                response
                            }
                            Err(_) => Response::new(Empty::<Bytes>::new()),
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Four users, each with a secret Authorization and a plain Origin header.
const SCENARIO: &str = r#"
[users]
count = 4
name_prefix = "h"
connect_over = "100ms"

[users.headers]
Authorization = "Bearer sekrit-{user}-{index}"
Origin = "https://chat.example"
X-Tenant = { value = "tenant-{index}", secret = true }

[[phase]]
duration = "1s"
rate = 4
senders = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_its_header_rendered_for_its_user() {
    let (addr, seen) = recording_server().await;
    let url = format!("ws://{addr}/");
    let output = loadgen(&[
        "client",
        &url,
        "--user",
        "ann",
        "--header",
        "Authorization: Bearer {user}",
        "--header",
        "X-Trace: 1",
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let seen = seen.lock().unwrap();
    let ann = seen.get("ann").expect("ann logged in");
    assert_eq!(ann["authorization"], "Bearer ann");
    assert_eq!(ann["x-trace"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_of_a_split_run_sends_its_own_rendered_headers_and_no_file_holds_a_secret() {
    let (addr, seen) = recording_server().await;
    let dir = TempDir::new("headers-workers");
    let file = dir.path().join("headers.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let out = dir.path().join("report");
    let url = format!("ws://{addr}/");
    // The recording server never delivers, so the run fails its delivery threshold (1);
    // what matters here is what reached the server and what the files say.
    let output = loadgen(&[
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
    .await;
    assert_eq!(output.status.code(), Some(1));
    {
        let seen = seen.lock().unwrap();
        for index in 0..4 {
            let user = format!("h{index}");
            let headers = seen
                .get(&user)
                .unwrap_or_else(|| panic!("{user} logged in"));
            assert_eq!(
                headers["authorization"],
                format!("Bearer sekrit-{user}-{index}")
            );
            assert_eq!(headers["origin"], "https://chat.example");
            assert_eq!(headers["x-tenant"], format!("tenant-{index}"));
        }
    }
    assert_no_secret_in(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_with_secret_headers_passes_and_its_reports_show_stars() {
    let chat = server(None).await;
    let dir = TempDir::new("headers-run");
    let file = dir.path().join("headers.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let out = dir.path().join("report");
    let url = format!("ws://{}/", chat.local_addr());
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--target",
        &url,
        "--header",
        "Cookie: session={user}",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for secret in ["sekrit", "tenant-", "session="] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let headers = &summary["scenario"]["users"]["headers"];
    assert_eq!(headers["Authorization"], "***");
    assert_eq!(headers["Cookie"], "***");
    assert_eq!(headers["Origin"], "https://chat.example");
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains("Authorization: ***"),
        "the setup lists the headers"
    );
    assert_no_secret_in(&out);
}

/// No file under `dir` holds a secret value (or its template).
fn assert_no_secret_in(dir: &std::path::Path) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        files += 1;
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for secret in ["sekrit", "tenant-", "session="] {
            assert!(
                !text.contains(secret),
                "{} holds {secret:?}",
                path.display()
            );
        }
    }
    assert!(files >= 5, "reports were written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_that_cannot_be_sent_is_refused_before_anything_runs() {
    for (header, says) in [
        ("Host: evil", "set by the WebSocket handshake"),
        ("X-A: {name}", "not a placeholder"),
        ("no colon", "NAME: VALUE"),
        ("Bad Name: 1", "not a header name"),
    ] {
        let output = loadgen(&["run", "../scenarios/smoke.toml", "--header", header]).await;
        assert_eq!(output.status.code(), Some(2), "{header}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{header}: {stderr}");
    }
    let dir = TempDir::new("headers-bad");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[users]\ncount = 2\nheaders = { Upgrade = \"h2c\" }\n[[phase]]\nduration = \"1s\"\n",
    )
    .unwrap();
    let output = loadgen(&["run", file.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("users.headers"), "{stderr}");
}
