//! [`VerifyingKey`]: what a server checks token signatures with.

use std::fmt;
use std::path::Path;

use ring::signature::{self, UnparsedPublicKey};

use crate::der::{self, PublicKind};
use crate::{read, Algorithm, KeyError};

/// A key that verifies one algorithm's signatures: an HS256 secret or a public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    algorithm: Algorithm,
    /// The secret (HS256), the RSAPublicKey DER (RS256), the uncompressed point (ES256) or
    /// the 32 key bytes (EdDSA): what ring verifies with.
    bytes: Vec<u8>,
}

impl fmt::Debug for VerifyingKey {
    /// Names the algorithm only: an HS256 key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An HS256 key of `secret` (at least [`crate::MIN_SECRET_BYTES`]).
    pub fn hs256(secret: &[u8]) -> Result<VerifyingKey, KeyError> {
        crate::check_secret(secret)?;
        Ok(VerifyingKey {
            algorithm: Algorithm::HS256,
            bytes: secret.to_vec(),
        })
    }

    /// The HS256 key of the secret file at `path` ([`crate::read_secret_file`]).
    pub fn hs256_file(path: &Path) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::hs256(&crate::read_secret_file(path)?)
    }

    /// The public key of the PEM file at `path`.
    pub fn public_pem_file(path: &Path) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_public_pem(&read(path)?)
    }

    /// A public key from PEM text: `PUBLIC KEY` (SubjectPublicKeyInfo) of an RSA, P-256 or
    /// Ed25519 key, or `RSA PUBLIC KEY` (PKCS#1). The algorithm follows the key.
    pub fn from_public_pem(text: &[u8]) -> Result<VerifyingKey, KeyError> {
        let blocks = der::pem_blocks(text).map_err(KeyError::NotPem)?;
        let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
        if let Some(block) = blocks.iter().find(|b| b.label == "PUBLIC KEY") {
            return VerifyingKey::from_public_key_info(&block.der);
        }
        if let Some(block) = blocks.iter().find(|b| b.label == "RSA PUBLIC KEY") {
            return VerifyingKey::rsa(block.der.clone());
        }
        Err(wrong_block(&labels))
    }

    /// A public key from a DER SubjectPublicKeyInfo.
    pub fn from_public_key_info(spki: &[u8]) -> Result<VerifyingKey, KeyError> {
        let info = der::public_key_info(spki)
            .ok_or_else(|| KeyError::Rejected("not a SubjectPublicKeyInfo".into()))?;
        match (info.algorithm, info.curve) {
            (der::OID_RSA, _) => VerifyingKey::rsa(info.key.to_vec()),
            (der::OID_EC, Some(der::OID_P256)) => {
                if info.key.len() != 65 || info.key[0] != 4 {
                    return Err(KeyError::Rejected(
                        "a P-256 key that is not an uncompressed point".into(),
                    ));
                }
                Ok(VerifyingKey {
                    algorithm: Algorithm::ES256,
                    bytes: info.key.to_vec(),
                })
            }
            (der::OID_EC, curve) => Err(KeyError::Unsupported(curve_name(curve))),
            (der::OID_ED25519, _) => {
                if info.key.len() != 32 {
                    return Err(KeyError::Rejected(
                        "an Ed25519 key of the wrong length".into(),
                    ));
                }
                Ok(VerifyingKey {
                    algorithm: Algorithm::EdDSA,
                    bytes: info.key.to_vec(),
                })
            }
            (der::OID_ED448, _) => Err(KeyError::Unsupported("an Ed448 key".into())),
            _ => Err(KeyError::Unsupported("a key of another algorithm".into())),
        }
    }

    /// An RS256 key of an RSAPublicKey DER, 2048 to 8192 bits (what ring verifies).
    fn rsa(pkcs1: Vec<u8>) -> Result<VerifyingKey, KeyError> {
        let bits = der::rsa_modulus_bits(&pkcs1)
            .ok_or_else(|| KeyError::Rejected("not an RSA public key".into()))?;
        if !(2048..=8192).contains(&bits) {
            return Err(KeyError::RsaSize(bits));
        }
        Ok(VerifyingKey {
            algorithm: Algorithm::RS256,
            bytes: pkcs1,
        })
    }

    /// A key of `algorithm` over raw bytes as ring takes them (used by [`crate::SigningKey`]).
    pub(crate) fn raw(algorithm: Algorithm, bytes: Vec<u8>) -> VerifyingKey {
        VerifyingKey { algorithm, bytes }
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key as ring takes it: the secret (HS256), an RSAPublicKey DER (RS256), an
    /// uncompressed P-256 point (ES256), or 32 bytes (EdDSA).
    pub fn key_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `signature` is this key's signature of `message` (a token's
    /// `header.payload`, its signature base64url-decoded).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        verify(self.algorithm, &self.bytes, message, signature)
    }

    /// The public key as a PEM `PUBLIC KEY` file's text; `None` for an HS256 secret.
    pub fn public_pem(&self) -> Option<String> {
        let kind = match self.algorithm {
            Algorithm::HS256 => return None,
            Algorithm::RS256 => PublicKind::Rsa,
            Algorithm::ES256 => PublicKind::P256,
            Algorithm::EdDSA => PublicKind::Ed25519,
        };
        let spki = der::subject_public_key_info(kind, &self.bytes);
        Some(der::pem("PUBLIC KEY", &spki))
    }
}

/// The error for a file whose PEM blocks (`labels`) hold no public key.
fn wrong_block(labels: &[&str]) -> KeyError {
    let has = |label: &str| labels.contains(&label);
    if has("ENCRYPTED PRIVATE KEY") {
        KeyError::Encrypted
    } else if labels.iter().any(|l| l.ends_with("PRIVATE KEY")) {
        KeyError::PrivateNotPublic
    } else if has("CERTIFICATE") {
        KeyError::Certificate
    } else {
        KeyError::NoKey
    }
}

/// How an error names an elliptic curve other than P-256.
pub(crate) fn curve_name(curve: Option<&[u8]>) -> String {
    match curve {
        Some(der::OID_P384) => "a P-384 key (ES384)".into(),
        Some(der::OID_P521) => "a P-521 key (ES512)".into(),
        _ => "an EC key on a curve other than P-256".into(),
    }
}

/// Whether `signature` is the signature of `message` by the key whose bytes, as ring takes
/// them, are `key` (see [`VerifyingKey::key_bytes`]) under `algorithm`. For a verifier that
/// holds key bytes rather than a [`VerifyingKey`] (chat-server's JWT provider).
pub fn verify(algorithm: Algorithm, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match algorithm {
        Algorithm::HS256 => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            ring::hmac::verify(&key, message, signature).is_ok()
        }
        Algorithm::RS256 => UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, key)
            .verify(message, signature)
            .is_ok(),
        Algorithm::ES256 => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key)
            .verify(message, signature)
            .is_ok(),
        Algorithm::EdDSA => UnparsedPublicKey::new(&signature::ED25519, key)
            .verify(message, signature)
            .is_ok(),
    }
}
