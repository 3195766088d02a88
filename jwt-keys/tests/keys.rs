//! Keys made at test time — by ring, and by the `openssl` command line as users make them —
//! read, derived, signed with and verified; every kind of wrong file refused with a reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use jwt_keys::{token, Algorithm, KeyError, SigningKey, VerifyingKey};

/// A folder of its own under the target dir, emptied.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("jwt-keys-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

/// Runs `openssl ARGS` in `dir`; fails the test, with the install command, when openssl
/// is missing.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("these tests need the openssl command ({e}): apt-get install -y openssl")
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn claims() -> serde_json::Value {
    serde_json::json!({"sub": "ann", "exp": 4_102_444_800u64})
}

/// `header.payload` and the decoded signature of a compact token.
fn split(token: &str) -> (String, Vec<u8>) {
    let (message, signature) = token.rsplit_once('.').expect("three parts");
    (
        message.to_string(),
        token::decode_part(signature).expect("base64url"),
    )
}

#[test]
fn keys_made_by_ring_sign_and_their_public_halves_verify() {
    for algorithm in [Algorithm::ES256, Algorithm::EdDSA] {
        let pem = jwt_keys::generate_private_pem(algorithm).expect("a key");
        let key = SigningKey::from_private_pem(pem.as_bytes()).expect("reads back");
        assert_eq!(key.algorithm(), algorithm);
        let token = key.mint(&claims()).expect("mints");
        assert_eq!(
            token::algorithm_name(&token).as_deref(),
            Some(algorithm.as_str())
        );
        assert_eq!(token::payload(&token), Some(claims()));
        let (message, signature) = split(&token);
        let public = VerifyingKey::from_public_pem(
            key.verifying_key()
                .public_pem()
                .expect("a public key")
                .as_bytes(),
        )
        .expect("the derived public key reads back");
        assert_eq!(&public, key.verifying_key());
        assert!(public.verify(message.as_bytes(), &signature));
        // A tampered payload, a wrong key: refused.
        let tampered = token::with_payload(&token, &serde_json::json!({"sub": "eve"})).unwrap();
        let (message, signature) = split(&tampered);
        assert!(!public.verify(message.as_bytes(), &signature));
        let other = SigningKey::from_private_pem(
            jwt_keys::generate_private_pem(algorithm)
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let (message, signature) = split(&other.mint(&claims()).unwrap());
        assert!(!public.verify(message.as_bytes(), &signature));
    }
}

#[test]
fn keys_made_by_openssl_are_read_and_their_public_files_match() {
    let dir = scratch("openssl");
    let cases: [(&str, &[&str], Algorithm); 3] = [
        (
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::RS256,
        ),
        (
            "p256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::ES256,
        ),
        ("ed25519", &["-algorithm", "ED25519"], Algorithm::EdDSA),
    ];
    for (name, options, algorithm) in cases {
        let private = format!("{name}.pem");
        let public = format!("{name}.pub.pem");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(options);
        args.extend(["-out", &private]);
        openssl(&dir, &args);
        openssl(&dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
        let signing = SigningKey::private_pem_file(&dir.join(&private)).expect(name);
        assert_eq!(signing.algorithm(), algorithm, "{name}");
        let verifying = VerifyingKey::public_pem_file(&dir.join(&public)).expect(name);
        assert_eq!(
            &verifying,
            signing.verifying_key(),
            "{name}: derived = openssl's"
        );
        let (message, signature) = split(&signing.mint(&claims()).unwrap());
        assert!(verifying.verify(message.as_bytes(), &signature), "{name}");
        // The public key file is not a signing key, nor the private one a verifying key.
        assert!(matches!(
            SigningKey::private_pem_file(&dir.join(&public)),
            Err(KeyError::PublicNotPrivate)
        ));
        let error = VerifyingKey::public_pem_file(&dir.join(&private)).unwrap_err();
        assert!(matches!(error, KeyError::PrivateNotPublic), "{error}");
        assert!(
            error
                .to_string()
                .contains("openssl pkey -in KEY.pem -pubout"),
            "{error}"
        );
    }
    // PKCS#1 forms of RSA keys are read too.
    openssl(
        &dir,
        &["pkey", "-in", "rsa.pem", "-traditional", "-out", "rsa1.pem"],
    );
    openssl(
        &dir,
        &[
            "rsa",
            "-in",
            "rsa.pem",
            "-RSAPublicKey_out",
            "-out",
            "rsa1.pub.pem",
        ],
    );
    let signing = SigningKey::private_pem_file(&dir.join("rsa1.pem")).expect("PKCS#1 private");
    let verifying =
        VerifyingKey::public_pem_file(&dir.join("rsa1.pub.pem")).expect("PKCS#1 public");
    assert_eq!(&verifying, signing.verifying_key());
}

#[test]
fn keys_chat_server_cannot_use_are_refused_with_the_reason() {
    let dir = scratch("refused");
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "p384.pem",
        ],
    );
    openssl(
        &dir,
        &["pkey", "-in", "p384.pem", "-pubout", "-out", "p384.pub.pem"],
    );
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "rsa1024.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "pkey",
            "-in",
            "rsa1024.pem",
            "-pubout",
            "-out",
            "rsa1024.pub.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sec1.pem",
        ],
    );
    openssl(
        &dir,
        &["genpkey", "-algorithm", "ED448", "-out", "ed448.pem"],
    );
    openssl(
        &dir,
        &[
            "pkey",
            "-in",
            "ed448.pem",
            "-pubout",
            "-out",
            "ed448.pub.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "req", "-x509", "-key", "sec1.pem", "-subj", "/CN=x", "-days", "1", "-out", "cert.pem",
        ],
    );
    let public = |file: &str| VerifyingKey::public_pem_file(&dir.join(file)).unwrap_err();
    let private = |file: &str| SigningKey::private_pem_file(&dir.join(file)).unwrap_err();
    let text = |error: KeyError| error.to_string();
    assert!(text(public("p384.pub.pem")).contains("P-384"));
    assert!(text(private("p384.pem")).contains("P-384"));
    assert!(matches!(public("rsa1024.pub.pem"), KeyError::RsaSize(1024)));
    assert!(text(private("rsa1024.pem")).contains("2048"));
    assert!(matches!(private("sec1.pem"), KeyError::Sec1));
    assert!(text(private("sec1.pem")).contains("openssl pkcs8 -topk8"));
    assert!(text(public("ed448.pub.pem")).contains("Ed448"));
    assert!(text(private("ed448.pem")).contains("Ed448"));
    assert!(matches!(public("cert.pem"), KeyError::Certificate));
    assert!(matches!(public("missing.pem"), KeyError::Read { .. }));
    std::fs::write(dir.join("junk.pem"), "hello").unwrap();
    assert!(matches!(public("junk.pem"), KeyError::NoKey));
    std::fs::write(
        dir.join("bad.pem"),
        "-----BEGIN PUBLIC KEY-----\n%%%\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    assert!(matches!(public("bad.pem"), KeyError::NotPem(_)));
}

#[test]
fn secret_files_lose_one_line_ending_and_must_be_long_enough() {
    let dir = scratch("secrets");
    let secret = "s".repeat(40);
    for (file, text) in [
        ("lf", format!("{secret}\n")),
        ("crlf", format!("{secret}\r\n")),
        ("bare", secret.clone()),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
        assert_eq!(
            jwt_keys::read_secret_file(&dir.join(file)).unwrap(),
            secret.as_bytes(),
            "{file}"
        );
    }
    std::fs::write(dir.join("short"), "tooshort\n").unwrap();
    let error = jwt_keys::read_secret_file(&dir.join("short")).unwrap_err();
    assert!(matches!(error, KeyError::ShortSecret(8)), "{error}");
    assert!(!error.to_string().contains("tooshort"), "{error}");
    std::fs::write(dir.join("empty"), "\n").unwrap();
    assert!(matches!(
        jwt_keys::read_secret_file(&dir.join("empty")),
        Err(KeyError::EmptySecret)
    ));
    // Neither key's Debug shows the secret.
    let key = SigningKey::hs256(secret.as_bytes()).unwrap();
    assert!(!format!("{key:?} {:?}", key.verifying_key()).contains(&secret));
    assert!(key.verifying_key().public_pem().is_none());
}

#[test]
fn tokens_a_server_must_refuse_are_what_they_say() {
    let unsecured = token::unsecured(&claims()).unwrap();
    assert_eq!(token::algorithm_name(&unsecured).as_deref(), Some("none"));
    assert!(unsecured.ends_with('.'));
    let key = SigningKey::from_private_pem(
        jwt_keys::generate_private_pem(Algorithm::ES256)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let public = key.verifying_key().public_pem().unwrap();
    let confused = token::hs256_keyed_with(public.as_bytes(), &claims()).unwrap();
    assert_eq!(token::algorithm_name(&confused).as_deref(), Some("HS256"));
    // It is a valid HS256 signature by the public key's bytes…
    let hmac = SigningKey::hs256(public.as_bytes()).unwrap();
    let (message, signature) = split(&confused);
    assert!(hmac.verifying_key().verify(message.as_bytes(), &signature));
    // …and no ES256 signature.
    assert!(!key.verifying_key().verify(message.as_bytes(), &signature));
    assert!(token::with_payload("a.b", &claims()).is_none());
}
