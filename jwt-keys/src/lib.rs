//! JWT keys for chat-server and loadgen (docs/protocol.md A1–A7): the key files read and
//! checked, public keys derived from private ones, and tokens signed — with ring, the
//! crypto library rustls already brings into both binaries.
//!
//! - [`VerifyingKey`]: what a server checks signatures with — an HS256 shared secret or a
//!   PEM public key, whose kind fixes the algorithm (RSA → RS256, P-256 → ES256,
//!   Ed25519 → EdDSA).
//! - [`SigningKey`]: what loadgen (and the tests) sign with — the same secret, or a PEM
//!   private key; [`SigningKey::mint`] makes a compact token of any claims, and
//!   [`SigningKey::verifying_key`] is the matching [`VerifyingKey`].
//! - [`token`]: tokens a correct server must refuse, for conformance checks (`alg: none`,
//!   HS256 keyed with a public key, a tampered payload).
//!
//! Every file error says what the file holds and what to do about it (a private key where a
//! public one belongs: the `openssl` command that derives it). Secrets never appear in an
//! error or a `Debug` text.
//!
//! ```
//! let key = jwt_keys::SigningKey::hs256(&[7u8; 32]).unwrap();
//! let token = key.mint(&serde_json::json!({"sub": "ann", "exp": 4102444800u64})).unwrap();
//! assert_eq!(token.split('.').count(), 3);
//! let (message, signature) = token.rsplit_once('.').unwrap();
//! let signature = jwt_keys::token::decode_part(signature).unwrap();
//! assert!(key.verifying_key().verify(message.as_bytes(), &signature));
//! ```

mod der;
mod signing;
pub mod token;
mod verifying;

use std::fmt;
use std::path::{Path, PathBuf};

pub use signing::{generate_private_pem, SigningKey};
pub use verifying::{verify, VerifyingKey};

/// The signature algorithms chat-server accepts and loadgen signs with (RFC 7518 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256 and a shared secret.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of 2048 to 8192 bits.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named `text` (exactly as RFC 7518 spells it).
    pub fn from_name(text: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shortest HS256 secret accepted: RFC 7518 section 3.2 requires a key at least as
/// long as the hash (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a key or secret cannot be used. The texts never hold secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read (the I/O error is in the text, not a `source`).
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the secret is empty")]
    EmptySecret,
    #[error(
        "the secret is {0} bytes; HS256 needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2), e.g. \
         `openssl rand -base64 48 > secret`"
    )]
    ShortSecret(usize),
    #[error("not a PEM file ({0})")]
    NotPem(String),
    #[error("holds no PEM key (no \"-----BEGIN … KEY-----\" block)")]
    NoKey,
    #[error(
        "holds a private key, and this needs the public key: `openssl pkey -in KEY.pem -pubout -out KEY.pub.pem`"
    )]
    PrivateNotPublic,
    #[error("holds a public key, and this needs the private key to sign with")]
    PublicNotPrivate,
    #[error(
        "holds a certificate; give its public key: `openssl x509 -in CERT.pem -pubkey -noout > KEY.pub.pem`"
    )]
    Certificate,
    #[error(
        "holds an encrypted private key; decrypt it first: `openssl pkey -in KEY.pem -out KEY.plain.pem`"
    )]
    Encrypted,
    #[error(
        "holds an EC key in SEC1 form (\"BEGIN EC PRIVATE KEY\"); convert it to PKCS#8: \
         `openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out KEY.p8.pem`"
    )]
    Sec1,
    #[error("holds {0}; chat-server and loadgen take RSA (RS256), P-256 (ES256) and Ed25519 (EdDSA) keys")]
    Unsupported(String),
    #[error("holds an RSA key of {0} bits; RS256 needs 2048 to 8192")]
    RsaSize(usize),
    #[error("is not a usable key: {0}")]
    Rejected(String),
}

/// Reads an HS256 shared secret from `path`: the file's bytes, less one line ending at the
/// end (so `echo` and editors do not change the secret); at least [`MIN_SECRET_BYTES`].
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bytes = read(path)?;
    secret_from_file_bytes(bytes)
}

/// [`read_secret_file`] of bytes already read.
pub fn secret_from_file_bytes(mut bytes: Vec<u8>) -> Result<Vec<u8>, KeyError> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    check_secret(&bytes)?;
    Ok(bytes)
}

/// Whether `secret` is long enough for HS256.
pub(crate) fn check_secret(secret: &[u8]) -> Result<(), KeyError> {
    match secret.len() {
        0 => Err(KeyError::EmptySecret),
        n if n < MIN_SECRET_BYTES => Err(KeyError::ShortSecret(n)),
        _ => Ok(()),
    }
}

/// The bytes of `path`, or why not.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|error| KeyError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the claims are not JSON: {0}")]
    Claims(#[from] serde_json::Error),
    #[error("signing failed (the system's random source?)")]
    Sign,
}
