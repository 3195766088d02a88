//! [`SigningKey`]: what loadgen mints its users' tokens with (and the tests theirs).
//!
//! The key is parsed once; minting a token is then the claims' JSON, two base64url
//! encodings and one signature — the whole cost a login pays for its proof.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde::Serialize;

use crate::der;
use crate::verifying::curve_name;
use crate::{read, Algorithm, KeyError, MintError, VerifyingKey};

/// A key that signs tokens with one algorithm.
pub struct SigningKey {
    kind: Kind,
    /// The encoded header, `{"alg":…,"typ":"JWT"}` in base64url: the same for every token.
    header: String,
    /// The matching verifying key (the public half, or the same secret).
    verifying: VerifyingKey,
    random: SystemRandom,
}

enum Kind {
    Hmac(ring::hmac::Key),
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    /// Names the algorithm only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HS256 key of `secret` (at least [`crate::MIN_SECRET_BYTES`]).
    pub fn hs256(secret: &[u8]) -> Result<SigningKey, KeyError> {
        let verifying = VerifyingKey::hs256(secret)?;
        Ok(SigningKey::new(
            Kind::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)),
            verifying,
        ))
    }

    /// The HS256 key of the secret file at `path` ([`crate::read_secret_file`]).
    pub fn hs256_file(path: &Path) -> Result<SigningKey, KeyError> {
        SigningKey::hs256(&crate::read_secret_file(path)?)
    }

    /// The private key of the PEM file at `path`.
    pub fn private_pem_file(path: &Path) -> Result<SigningKey, KeyError> {
        SigningKey::from_private_pem(&read(path)?)
    }

    /// A private key from PEM text: PKCS#8 (`PRIVATE KEY`: RSA, P-256 or Ed25519, as
    /// `openssl genpkey` writes them) or PKCS#1 (`RSA PRIVATE KEY`). The algorithm follows
    /// the key.
    pub fn from_private_pem(text: &[u8]) -> Result<SigningKey, KeyError> {
        let blocks = der::pem_blocks(text).map_err(KeyError::NotPem)?;
        if let Some(block) = blocks.iter().find(|b| b.label == "PRIVATE KEY") {
            return SigningKey::from_pkcs8(&block.der);
        }
        if let Some(block) = blocks.iter().find(|b| b.label == "RSA PRIVATE KEY") {
            let pair =
                RsaKeyPair::from_der(&block.der).map_err(|e| KeyError::Rejected(e.to_string()))?;
            return SigningKey::rsa(pair);
        }
        let has = |label: &str| blocks.iter().any(|b| b.label == label);
        Err(if has("ENCRYPTED PRIVATE KEY") {
            KeyError::Encrypted
        } else if has("EC PRIVATE KEY") {
            KeyError::Sec1
        } else if has("PUBLIC KEY") || has("RSA PUBLIC KEY") {
            KeyError::PublicNotPrivate
        } else {
            KeyError::NoKey
        })
    }

    /// A private key from a DER PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
        let Some((algorithm, curve)) = der::private_key_algorithm(pkcs8) else {
            return Err(KeyError::Rejected("not a PKCS#8 private key".into()));
        };
        let rejected = |e: ring::error::KeyRejected| KeyError::Rejected(e.to_string());
        match (algorithm, curve) {
            (der::OID_ED25519, _) => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(rejected)?;
                let verifying =
                    VerifyingKey::raw(Algorithm::EdDSA, pair.public_key().as_ref().to_vec());
                Ok(SigningKey::new(Kind::Ed25519(pair), verifying))
            }
            (der::OID_EC, Some(der::OID_P256)) => {
                let random = SystemRandom::new();
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                    &random,
                )
                .map_err(rejected)?;
                let verifying =
                    VerifyingKey::raw(Algorithm::ES256, pair.public_key().as_ref().to_vec());
                Ok(SigningKey::new(Kind::Ecdsa(pair), verifying))
            }
            (der::OID_EC, curve) => Err(KeyError::Unsupported(curve_name(curve))),
            (der::OID_RSA, _) => match RsaKeyPair::from_pkcs8(pkcs8) {
                Ok(pair) => SigningKey::rsa(pair),
                Err(error) => Err(KeyError::Rejected(format!(
                    "{error} (RS256 needs an RSA key of 2048 to 8192 bits)"
                ))),
            },
            (der::OID_ED448, _) => Err(KeyError::Unsupported("an Ed448 key".into())),
            _ => Err(KeyError::Unsupported("a key of another algorithm".into())),
        }
    }

    fn rsa(pair: RsaKeyPair) -> Result<SigningKey, KeyError> {
        let bits = pair.public().modulus_len() * 8;
        if !(2048..=8192).contains(&bits) {
            return Err(KeyError::RsaSize(bits));
        }
        let verifying = VerifyingKey::raw(Algorithm::RS256, pair.public().as_ref().to_vec());
        Ok(SigningKey::new(Kind::Rsa(pair), verifying))
    }

    fn new(kind: Kind, verifying: VerifyingKey) -> SigningKey {
        let header = crate::token::encode_part(
            format!(
                r#"{{"alg":"{}","typ":"JWT"}}"#,
                verifying.algorithm().as_str()
            )
            .as_bytes(),
        );
        SigningKey {
            kind,
            header,
            verifying,
            random: SystemRandom::new(),
        }
    }

    /// The algorithm every token of this key is signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.verifying.algorithm()
    }

    /// The key a server verifies this key's tokens with: the public half, or for HS256
    /// the same secret.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// This key's signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, MintError> {
        match &self.kind {
            Kind::Hmac(key) => Ok(ring::hmac::sign(key, message).as_ref().to_vec()),
            Kind::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Kind::Ecdsa(pair) => pair
                .sign(&self.random, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| MintError::Sign),
            Kind::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.random,
                    message,
                    &mut signature,
                )
                .map_err(|_| MintError::Sign)?;
                Ok(signature)
            }
        }
    }

    /// A compact token (`header.payload.signature`) of `claims`, signed with this key.
    pub fn mint(&self, claims: &impl Serialize) -> Result<String, MintError> {
        let payload = serde_json::to_vec(claims)?;
        self.mint_payload(&payload)
    }

    /// A compact token of a payload that is already JSON.
    pub fn mint_payload(&self, payload: &[u8]) -> Result<String, MintError> {
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 400);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// A new private key of `algorithm` as PKCS#8 PEM text (`PRIVATE KEY`), made with the
/// system's random source: for ES256 and EdDSA (ring does not make RSA keys: use
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`).
pub fn generate_private_pem(algorithm: Algorithm) -> Result<String, KeyError> {
    let random = SystemRandom::new();
    let failed = |_| KeyError::Rejected("the system's random source failed".into());
    let document = match algorithm {
        Algorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &random)
                .map_err(failed)?
        }
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&random).map_err(failed)?,
        Algorithm::HS256 | Algorithm::RS256 => {
            return Err(KeyError::Unsupported(format!(
                "no {algorithm} key can be generated here"
            )))
        }
    };
    Ok(der::pem("PRIVATE KEY", document.as_ref()))
}
