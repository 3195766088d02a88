//! Just enough DER and PEM for JWT keys: read the PEM blocks of a key file, take a
//! SubjectPublicKeyInfo or a PKCS#8 key apart (which algorithm, which curve, which bytes),
//! and write a SubjectPublicKeyInfo for a key pair's public half.
//!
//! ring takes keys as bytes of a fixed shape (an RSAPublicKey, an uncompressed P-256
//! point, 32 Ed25519 bytes) and says nothing helpful when a file holds something else; this
//! module is what lets the errors say which key a file holds and what to do about it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// `rsaEncryption`, 1.2.840.113549.1.1.1 (the OID's content bytes).
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `id-ecPublicKey`, 1.2.840.10045.2.1.
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` (P-256), 1.2.840.10045.3.1.7.
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `secp384r1` (P-384), 1.3.132.0.34.
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// `secp521r1` (P-521), 1.3.132.0.35.
pub(crate) const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
/// `id-Ed25519`, 1.3.101.112.
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// `id-Ed448`, 1.3.101.113.
pub(crate) const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// The AlgorithmIdentifier of an RSA public key (with its NULL parameters), whole.
const ALG_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// The AlgorithmIdentifier of a P-256 public key, whole.
const ALG_P256: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// The AlgorithmIdentifier of an Ed25519 public key, whole.
const ALG_ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// One `-----BEGIN LABEL-----` block of a PEM file, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// Every PEM block in `text`, in order; `Err` names the first block whose body is not
/// base64 or that has no END line.
pub(crate) fn pem_blocks(text: &[u8]) -> Result<Vec<PemBlock>, String> {
    let text = String::from_utf8_lossy(text);
    let mut blocks = Vec::new();
    let mut rest: &str = &text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + "-----BEGIN ".len()..];
        let Some(end_of_label) = after.find("-----") else {
            return Err("a BEGIN line without its closing dashes".into());
        };
        let label = after[..end_of_label].to_string();
        let body_start = &after[end_of_label + 5..];
        let end_line = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_line) else {
            return Err(format!("\"BEGIN {label}\" has no \"END {label}\" line"));
        };
        let body: String = body_start[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if body.contains(':') {
            return Err(format!(
                "\"{label}\" has header lines (Proc-Type/DEK-Info): the key is encrypted"
            ));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|error| format!("\"{label}\" is not valid base64: {error}"))?;
        blocks.push(PemBlock { label, der });
        rest = &body_start[end + end_line.len()..];
    }
    Ok(blocks)
}

/// A public key as a SubjectPublicKeyInfo says it: the algorithm's OID, the curve's OID
/// when the parameters are one, and the key bytes (the BIT STRING's content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublicKeyInfo<'a> {
    pub algorithm: &'a [u8],
    pub curve: Option<&'a [u8]>,
    pub key: &'a [u8],
}

/// Takes a DER SubjectPublicKeyInfo apart; `None` when it is not one.
pub(crate) fn public_key_info(der: &[u8]) -> Option<PublicKeyInfo<'_>> {
    let (0x30, spki, []) = tlv(der)? else {
        return None;
    };
    let (0x30, algorithm_id, after) = tlv(spki)? else {
        return None;
    };
    let (algorithm, curve) = algorithm_identifier(algorithm_id)?;
    let (0x03, bits, []) = tlv(after)? else {
        return None;
    };
    // The first byte of a BIT STRING counts the unused bits: a key has none.
    let (0, key) = bits.split_first()? else {
        return None;
    };
    Some(PublicKeyInfo {
        algorithm,
        curve,
        key,
    })
}

/// The algorithm (and curve) of a PKCS#8 private key; `None` when it is not one.
pub(crate) fn private_key_algorithm(der: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (0x30, info, _) = tlv(der)? else {
        return None;
    };
    let (0x02, _version, after) = tlv(info)? else {
        return None;
    };
    let (0x30, algorithm_id, _) = tlv(after)? else {
        return None;
    };
    algorithm_identifier(algorithm_id)
}

/// The bit length of an RSAPublicKey's modulus (`SEQUENCE { n INTEGER, e INTEGER }`).
pub(crate) fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Option<usize> {
    let (0x30, fields, []) = tlv(rsa_public_key)? else {
        return None;
    };
    let (0x02, modulus, _) = tlv(fields)? else {
        return None;
    };
    let significant: &[u8] = match modulus.iter().position(|&b| b != 0) {
        Some(first) => &modulus[first..],
        None => &[],
    };
    let top = significant
        .first()
        .map_or(0, |b| 8 - b.leading_zeros() as usize);
    Some(significant.len().saturating_sub(1) * 8 + top)
}

/// The OID content of an AlgorithmIdentifier, and of its parameters when those are an OID.
fn algorithm_identifier(content: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (0x06, oid, parameters) = tlv(content)? else {
        return None;
    };
    let curve = match tlv(parameters) {
        Some((0x06, curve, _)) => Some(curve),
        _ => None,
    };
    Some((oid, curve))
}

/// One DER element: its tag, its content and what follows it. Definite lengths of up to
/// four bytes only (no key is larger).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let (length, rest) = rest.split_at(bytes);
        let length = length
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (content, after) = rest.split_at(length);
    Some((tag, content, after))
}

/// Which public key to wrap in a SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PublicKind {
    /// An RSAPublicKey (PKCS#1) DER.
    Rsa,
    /// An uncompressed P-256 point.
    P256,
    /// 32 Ed25519 bytes.
    Ed25519,
}

/// The DER SubjectPublicKeyInfo of `key`.
pub(crate) fn subject_public_key_info(kind: PublicKind, key: &[u8]) -> Vec<u8> {
    let algorithm = match kind {
        PublicKind::Rsa => ALG_RSA,
        PublicKind::P256 => ALG_P256,
        PublicKind::Ed25519 => ALG_ED25519,
    };
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut content = algorithm.to_vec();
    content.extend(encode(0x03, &bits));
    encode(0x30, &content)
}

/// `der` as a PEM block with `label`, lines of 64 characters.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_info_round_trips() {
        let point = [4u8; 65];
        let der = subject_public_key_info(PublicKind::P256, &point);
        let info = public_key_info(&der).expect("parses");
        assert_eq!(info.algorithm, OID_EC);
        assert_eq!(info.curve, Some(OID_P256));
        assert_eq!(info.key, point);
        let modulus = [0x80u8; 300];
        let der = subject_public_key_info(PublicKind::Rsa, &modulus);
        let info = public_key_info(&der).expect("a long-form length parses");
        assert_eq!((info.algorithm, info.curve), (OID_RSA, None));
        assert_eq!(info.key.len(), 300);
    }

    #[test]
    fn truncated_or_trailing_bytes_are_not_a_key() {
        let der = subject_public_key_info(PublicKind::Ed25519, &[7u8; 32]);
        assert!(public_key_info(&der[..der.len() - 1]).is_none());
        let mut longer = der.clone();
        longer.push(0);
        assert!(public_key_info(&longer).is_none());
        assert!(public_key_info(&[]).is_none());
        assert!(public_key_info(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(public_key_info(&[0x30, 0x80]).is_none());
    }

    #[test]
    fn pem_blocks_are_read_in_order_and_bad_ones_named() {
        let text = format!(
            "junk\n{}{}",
            pem("PUBLIC KEY", &[1, 2, 3]),
            pem("PRIVATE KEY", &[4; 100])
        );
        let blocks = pem_blocks(text.as_bytes()).expect("two blocks");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "PUBLIC KEY");
        assert_eq!(blocks[0].der, [1, 2, 3]);
        assert_eq!(blocks[1].der, [4; 100]);
        assert!(pem_blocks(b"-----BEGIN X-----\nAAAA\n").is_err());
        assert!(pem_blocks(b"-----BEGIN X-----\n!!!!\n-----END X-----\n").is_err());
        assert!(pem_blocks(b"no pem at all").expect("fine").is_empty());
    }

    #[test]
    fn the_modulus_length_counts_significant_bits() {
        // SEQUENCE { INTEGER 00 80 .. (256 bytes of modulus), INTEGER 65537 }
        let mut modulus = vec![0u8];
        modulus.extend([0x80; 256]);
        let mut fields = encode(0x02, &modulus);
        fields.extend(encode(0x02, &[1, 0, 1]));
        assert_eq!(rsa_modulus_bits(&encode(0x30, &fields)), Some(2048));
        let mut fields = encode(0x02, &[0x01, 0xff]);
        fields.extend(encode(0x02, &[3]));
        assert_eq!(rsa_modulus_bits(&encode(0x30, &fields)), Some(9));
    }
}
