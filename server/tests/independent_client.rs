//! chat-server's authentication against a client that is not ours: keys made by the
//! `openssl` command, tokens minted by jose (JavaScript's most used JWT library) and logins
//! made by ws, in `tests/independent-client/client.mjs`. A good token logs in, in the
//! header and in `?token=`; `alg: none`, algorithm confusion (HS256 keyed with the server's
//! public key), a tampered payload and an expired token are each refused with 401.
//!
//! Needs node and the client's packages: `cd server/tests/independent-client && npm ci`
//! (scripts/test.sh and .ci/run do it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chat_server::jwt_keys::VerifyingKey;
use chat_server::{Authentication, Config};
use common::*;

/// The client's folder, checked to be ready to run.
fn client_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent-client");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "this test needs Node.js (apt-get install -y nodejs npm)"
    );
    assert!(
        dir.join("node_modules/jose").is_dir() && dir.join("node_modules/ws").is_dir(),
        "this test needs the client's packages: cd {} && npm ci",
        dir.display()
    );
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("this test needs openssl ({e}): apt-get install -y openssl"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the independent client once; its JSON line.
async fn client(client: &Path, url: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new("node")
        .arg(client.join("client.mjs"))
        .args(["--url", url])
        .args(args)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "the client said {stdout:?}; stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_minted_by_jose_log_in_and_forged_ones_are_refused() {
    let node = client_dir();
    let keys = std::env::temp_dir().join(format!("chat-independent-{}", std::process::id()));
    std::fs::create_dir_all(&keys).unwrap();
    for (name, options) in [
        (
            "es256",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        ("ed25519", vec!["-algorithm", "ED25519"]),
    ] {
        let mut args = vec!["genpkey"];
        args.extend(options);
        let private = format!("{name}.pem");
        args.extend(["-out", &private]);
        openssl(&keys, &args);
        openssl(
            &keys,
            &[
                "pkey",
                "-in",
                &private,
                "-pubout",
                "-out",
                &format!("{name}.pub.pem"),
            ],
        );
    }
    openssl(&keys, &["rand", "-base64", "-out", "hs256.secret", "48"]);
    for (alg, key, verifying) in [
        (
            "ES256",
            "es256.pem",
            VerifyingKey::public_pem_file(&keys.join("es256.pub.pem")),
        ),
        (
            "EdDSA",
            "ed25519.pem",
            VerifyingKey::public_pem_file(&keys.join("ed25519.pub.pem")),
        ),
        (
            "HS256",
            "hs256.secret",
            VerifyingKey::hs256_file(&keys.join("hs256.secret")),
        ),
    ] {
        let server = start(Config {
            auth: Some(Authentication::new(verifying.expect("the key reads"))),
            ..Config::default()
        })
        .await;
        let url = format!("ws://{}/", server.local_addr());
        let key = keys.join(key);
        let public = keys
            .join(key.file_stem().unwrap())
            .with_extension("pub.pem");
        let run = |kind: &'static str, placement: &'static str| {
            let (node, url, key, public) = (node.clone(), url.clone(), key.clone(), public.clone());
            async move {
                let mut args = vec![
                    "--sub", "ann", "--kind", kind, "--alg", alg, "--in", placement,
                ];
                let (key, public) = (key.display().to_string(), public.display().to_string());
                args.extend(["--key", &key]);
                if alg != "HS256" {
                    args.extend(["--public", &public]);
                }
                client(&node, &url, &args).await
            }
        };
        for placement in ["header", "query"] {
            let good = run("good", placement).await;
            assert_eq!(
                (good["status"].as_u64(), good["open"].as_bool()),
                (Some(101), Some(true)),
                "{alg} {placement}: {good}"
            );
        }
        let mut kinds = vec!["none", "tampered", "expired"];
        if alg != "HS256" {
            kinds.push("confusion");
        }
        for kind in kinds {
            let refused = run(kind, "header").await;
            assert_eq!(
                refused["status"].as_u64(),
                Some(401),
                "{alg} {kind}: {refused}"
            );
            let body = refused["body"].as_str().unwrap_or("");
            let reason = match kind {
                "none" | "confusion" => "wrong_algorithm",
                "tampered" => "bad_signature",
                _ => "expired",
            };
            assert!(body.starts_with(reason), "{alg} {kind}: {body}");
        }
        assert_eq!(
            server.metrics().logins,
            2,
            "{alg}: only the good tokens logged in"
        );
    }
    let _ = std::fs::remove_dir_all(&keys);
}
