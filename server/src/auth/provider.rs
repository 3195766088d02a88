//! jsonwebtoken's crypto, on ring.
//!
//! jsonwebtoken (from 10.3 on: earlier versions let a malformed `exp` or `nbf` skip its
//! check, CVE-2026-25537) takes its signature code from a process-wide
//! [`CryptoProvider`], with built-in ones for aws-lc-rs (a C library and cmake to build)
//! and RustCrypto (a second crypto stack beside the ring that rustls already brings).
//! This one verifies with ring, through [`jwt_keys::verify`]; chat-server never signs, so
//! its signer factory refuses.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The provider: ring verifies HS256, RS256, ES256 and EdDSA.
static RING: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes [`RING`] jsonwebtoken's provider for this process, unless one is installed
/// already (an embedder's own: it verifies the same algorithms).
pub(crate) fn install() {
    let _ = RING.install_default();
}

/// A verifier of one algorithm's signatures with one key's bytes.
struct RingVerifier {
    algorithm: Algorithm,
    ours: jwt_keys::Algorithm,
    key: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        if jwt_keys::verify(self.ours, &self.key, message, signature) {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let ours = match algorithm {
        Algorithm::HS256 => jwt_keys::Algorithm::HS256,
        Algorithm::RS256 => jwt_keys::Algorithm::RS256,
        Algorithm::ES256 => jwt_keys::Algorithm::ES256,
        Algorithm::EdDSA => jwt_keys::Algorithm::EdDSA,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    let key = key.try_get_as_bytes()?.to_vec();
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        ours,
        key,
    }))
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::Provider("chat-server verifies tokens; it does not sign them".into()).into())
}

/// The jsonwebtoken key of one of ours.
pub(crate) fn decoding_key(key: &jwt_keys::VerifyingKey) -> Result<DecodingKey, Error> {
    let bytes = key.key_bytes();
    Ok(match key.algorithm() {
        jwt_keys::Algorithm::HS256 => DecodingKey::from_secret(bytes)?,
        jwt_keys::Algorithm::RS256 => DecodingKey::from_rsa_der(bytes),
        jwt_keys::Algorithm::ES256 => DecodingKey::from_ec_der(bytes),
        jwt_keys::Algorithm::EdDSA => DecodingKey::from_ed_der(bytes),
    })
}

/// jsonwebtoken's name of one of our algorithms.
pub(crate) fn algorithm(ours: jwt_keys::Algorithm) -> Algorithm {
    match ours {
        jwt_keys::Algorithm::HS256 => Algorithm::HS256,
        jwt_keys::Algorithm::RS256 => Algorithm::RS256,
        jwt_keys::Algorithm::ES256 => Algorithm::ES256,
        jwt_keys::Algorithm::EdDSA => Algorithm::EdDSA,
    }
}
