//! What a simulated user proves its name with, for servers that authenticate logins
//! (docs/protocol.md A1–A7): a JSON Web Token, minted by loadgen for the user's own name
//! and fresh for every login (`[users] jwt`, `--jwt-secret-file`, `--jwt-private-key`), or
//! read from a file of tokens made elsewhere (`[users] tokens_file`) for servers whose keys
//! loadgen does not hold.
//!
//! A minted token is `{"sub": NAME, "iat": now, "exp": now + ttl}` plus the scenario's
//! extra string claims (`aud`, `iss`, …), signed with HS256 (a shared secret) or with the
//! private key's own algorithm (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA). Minting is
//! timed: a report shows what proof costs per login beside the TCP, TLS and upgrade times.
//! The token goes in `Authorization: Bearer` (default) or `?token=` (`token_in = "query"`,
//! as a browser must). Keys, secrets and tokens never reach a report: only file paths,
//! the algorithm and the claim names do.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jwt_keys::{Algorithm, SigningKey};
use serde::{Deserialize, Serialize};

use crate::duration::Span;

/// How long a minted token is valid when the scenario does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The longest `ttl` accepted (30 days).
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Claims loadgen sets itself.
const RESERVED_CLAIMS: [&str; 4] = ["sub", "iat", "exp", "nbf"];

/// `[users] jwt`: mint every login's token with this key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// An HS256 shared secret (at least 32 bytes; one line ending at its end is not part of
    /// it). Exclusive with `private_key`. Relative to the scenario file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// A PEM private key (PKCS#8, or PKCS#1 for RSA), as `openssl genpkey` writes them.
    /// Relative to the scenario file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PathBuf>,
    /// The algorithm, checked against the key (`HS256` with a secret; `RS256`, `ES256` or
    /// `EdDSA` with a private key). Absent: the key's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// How long each token is valid: `exp = now + ttl` at every login.
    #[serde(default = "default_ttl")]
    pub ttl: Span,
    /// Extra string claims of every token (`aud = "chat"`, `iss = "https://auth.example"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
}

fn default_ttl() -> Span {
    Span(DEFAULT_TTL)
}

impl JwtSettings {
    /// Settings with `secret_file` or `private_key` and nothing else.
    pub fn with_key(secret_file: Option<PathBuf>, private_key: Option<PathBuf>) -> JwtSettings {
        JwtSettings {
            secret_file,
            private_key,
            alg: None,
            ttl: default_ttl(),
            claims: BTreeMap::new(),
        }
    }

    /// The key these settings name, read and checked.
    pub fn signing_key(&self) -> Result<SigningKey, CredentialsError> {
        let key = match (&self.secret_file, &self.private_key) {
            (Some(_), Some(_)) => return Err(CredentialsError::TwoKeys),
            (None, None) => return Err(CredentialsError::NoKey),
            (Some(path), None) => SigningKey::hs256_file(path),
            (None, Some(path)) => SigningKey::private_pem_file(path),
        }
        .map_err(|error| CredentialsError::Key {
            path: self
                .secret_file
                .clone()
                .or_else(|| self.private_key.clone())
                .unwrap_or_default(),
            error,
        })?;
        if let Some(alg) = &self.alg {
            let named = Algorithm::from_name(alg).ok_or_else(|| CredentialsError::Algorithm {
                alg: alg.clone(),
                key: key.algorithm(),
            })?;
            if named != key.algorithm() {
                return Err(CredentialsError::Algorithm {
                    alg: alg.clone(),
                    key: key.algorithm(),
                });
            }
        }
        Ok(key)
    }

    /// Checks everything but the key file.
    pub fn check(&self) -> Result<(), CredentialsError> {
        if self.ttl.0 < Duration::from_secs(1) || self.ttl.0 > MAX_TTL {
            return Err(CredentialsError::Ttl(self.ttl));
        }
        for (name, value) in &self.claims {
            if RESERVED_CLAIMS.contains(&name.as_str()) {
                return Err(CredentialsError::ReservedClaim(name.clone()));
            }
            if name.is_empty() || value.chars().any(char::is_control) {
                return Err(CredentialsError::BadClaim(name.clone()));
            }
        }
        Ok(())
    }
}

/// `[users] token_in`, `--token-in`: where a login's token goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenPlacement {
    /// `Authorization: Bearer TOKEN`.
    #[default]
    Header,
    /// `?token=TOKEN`, as browsers must (they cannot set headers on a WebSocket).
    Query,
}

impl TokenPlacement {
    /// Whether this is the default (left out of written scenarios).
    pub fn is_default(&self) -> bool {
        *self == TokenPlacement::Header
    }
}

/// Why credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("give secret_file or private_key, not both")]
    TwoKeys,
    #[error("give secret_file (HS256) or private_key (RS256, ES256, EdDSA)")]
    NoKey,
    #[error("{}: {error}", path.display())]
    Key {
        path: PathBuf,
        error: jwt_keys::KeyError,
    },
    #[error("alg {alg:?} does not go with this key, which signs {key}")]
    Algorithm { alg: String, key: Algorithm },
    #[error("ttl {0} is not from 1s to 30 days")]
    Ttl(Span),
    #[error("{0:?} is set by loadgen itself (sub, iat and exp of every token)")]
    ReservedClaim(String),
    #[error("claim {0:?}: a name and a value without control characters")]
    BadClaim(String),
    #[error("{}: {reason}", path.display())]
    TokensFile { path: PathBuf, reason: String },
    #[error("{}: no token for {missing}", path.display())]
    MissingTokens { path: PathBuf, missing: String },
}

/// A token for one login, and how long minting it took (`None`: read from a file).
#[derive(Debug, Clone)]
pub struct LoginToken {
    pub text: String,
    pub mint_us: Option<u64>,
    /// When it expires, if known (minted tokens).
    pub expires: Option<SystemTime>,
}

/// Where tokens come from, ready to use.
pub struct Credentials {
    source: Source,
    pub placement: TokenPlacement,
}

enum Source {
    Mint {
        key: Box<SigningKey>,
        ttl: Duration,
        claims: BTreeMap<String, String>,
    },
    Table {
        path: PathBuf,
        tokens: HashMap<String, String>,
    },
}

impl std::fmt::Debug for Credentials {
    /// What kind of credentials, never a key or a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The claims of a minted token.
#[derive(Serialize)]
struct Minted<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(flatten)]
    extra: &'a BTreeMap<String, String>,
}

impl Credentials {
    /// Credentials that mint with `settings`' key (read and checked now).
    pub fn minting(
        settings: &JwtSettings,
        placement: TokenPlacement,
    ) -> Result<Credentials, CredentialsError> {
        settings.check()?;
        let key = settings.signing_key()?;
        Ok(Credentials {
            source: Source::Mint {
                key: Box::new(key),
                ttl: settings.ttl.0,
                claims: settings.claims.clone(),
            },
            placement,
        })
    }

    /// Credentials that mint with `key` directly.
    pub fn with_key(
        key: SigningKey,
        ttl: Duration,
        claims: BTreeMap<String, String>,
        placement: TokenPlacement,
    ) -> Credentials {
        Credentials {
            source: Source::Mint {
                key: Box::new(key),
                ttl,
                claims,
            },
            placement,
        }
    }

    /// Credentials read from a `user,token` CSV file (a header row of those two names).
    pub fn from_tokens_file(
        path: &Path,
        placement: TokenPlacement,
    ) -> Result<Credentials, CredentialsError> {
        let tokens = read_tokens(path)?;
        Ok(Credentials {
            source: Source::Table {
                path: path.to_path_buf(),
                tokens,
            },
            placement,
        })
    }

    /// The key, when these credentials mint.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        match &self.source {
            Source::Mint { key, .. } => Some(key),
            Source::Table { .. } => None,
        }
    }

    /// The extra claims minted tokens carry.
    pub fn claims(&self) -> Option<&BTreeMap<String, String>> {
        match &self.source {
            Source::Mint { claims, .. } => Some(claims),
            Source::Table { .. } => None,
        }
    }

    /// Fails naming the first of `names` (and how many more) the tokens file has no row
    /// for; minting credentials have a token for every name.
    pub fn cover(&self, names: &[String]) -> Result<(), CredentialsError> {
        let Source::Table { path, tokens } = &self.source else {
            return Ok(());
        };
        let missing: Vec<&String> = names.iter().filter(|n| !tokens.contains_key(*n)).collect();
        match missing.first() {
            None => Ok(()),
            Some(first) => Err(CredentialsError::MissingTokens {
                path: path.clone(),
                missing: if missing.len() == 1 {
                    format!("{first:?}")
                } else {
                    format!(
                        "{first:?} and {} more of the run's {} users",
                        missing.len() - 1,
                        names.len()
                    )
                },
            }),
        }
    }

    /// The token of one login of `user`: minted now (and timed), or the file's.
    pub fn token_for(&self, user: &str) -> Result<LoginToken, String> {
        match &self.source {
            Source::Mint { key, ttl, claims } => {
                let started = Instant::now();
                let now = SystemTime::now();
                let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let exp = iat + ttl.as_secs();
                let text = key
                    .mint(&Minted {
                        sub: user,
                        iat,
                        exp,
                        extra: claims,
                    })
                    .map_err(|error| format!("cannot mint a token: {error}"))?;
                Ok(LoginToken {
                    text,
                    mint_us: Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    expires: Some(UNIX_EPOCH + Duration::from_secs(exp)),
                })
            }
            Source::Table { tokens, .. } => tokens
                .get(user)
                .map(|text| LoginToken {
                    text: text.clone(),
                    mint_us: None,
                    expires: None,
                })
                .ok_or_else(|| format!("the tokens file has no token for {user:?}")),
        }
    }

    /// One line for reports: the algorithm and ttl, or the tokens file — never a secret.
    pub fn describe(&self) -> String {
        let placement = match self.placement {
            TokenPlacement::Header => "Authorization: Bearer",
            TokenPlacement::Query => "?token=",
        };
        match &self.source {
            Source::Mint { key, ttl, claims } => {
                let claims = if claims.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", claims {}",
                        claims.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                };
                format!(
                    "{} tokens minted per login, valid {}{claims}, in {placement}",
                    key.algorithm(),
                    Span(*ttl)
                )
            }
            Source::Table { path, tokens } => format!(
                "{} tokens from {}, in {placement}",
                tokens.len(),
                path.display()
            ),
        }
    }
}

/// The `user,token` rows of a tokens file.
fn read_tokens(path: &Path) -> Result<HashMap<String, String>, CredentialsError> {
    let fail = |reason: String| CredentialsError::TokensFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| fail(e.to_string()))?;
    let headers = reader.headers().map_err(|e| fail(e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(user_at), Some(token_at)) = (column("user"), column("token")) else {
        return Err(fail(
            "the first line must name the columns: user,token".into(),
        ));
    };
    let mut tokens = HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| fail(format!("line {line}: {e}")))?;
        let (Some(user), Some(token)) = (record.get(user_at), record.get(token_at)) else {
            return Err(fail(format!("line {line}: needs a user and a token")));
        };
        if user.is_empty() || token.is_empty() {
            return Err(fail(format!("line {line}: an empty user or token")));
        }
        if token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(fail(format!(
                "line {line}: the token of {user:?} holds a space or control character"
            )));
        }
        if tokens.insert(user.to_string(), token.to_string()).is_some() {
            return Err(fail(format!("line {line}: {user:?} has a second row")));
        }
    }
    if tokens.is_empty() {
        return Err(fail("no rows".into()));
    }
    Ok(tokens)
}

/// `path` made absolute against `base` (a scenario file's folder) when it is relative.
pub fn resolve(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::path::absolute(base.join(path)).unwrap_or_else(|_| base.join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> crate::scratch::TempDir {
        let dir = crate::scratch::TempDir::new(&format!("credentials-{name}"));
        std::fs::create_dir_all(&dir.0).expect("a scratch folder");
        dir
    }

    #[test]
    fn minted_tokens_carry_the_name_a_fresh_exp_and_the_extra_claims() {
        let scratch = scratch("mint");
        let dir = &scratch.0;
        std::fs::write(dir.join("secret"), format!("{}\n", "k".repeat(40))).unwrap();
        let settings = JwtSettings {
            ttl: Span(Duration::from_secs(90)),
            claims: [("aud".to_string(), "chat".to_string())].into(),
            ..JwtSettings::with_key(Some(dir.join("secret")), None)
        };
        let credentials = Credentials::minting(&settings, TokenPlacement::Header).unwrap();
        let token = credentials.token_for("ann").unwrap();
        let claims = jwt_keys::token::payload(&token.text).unwrap();
        assert_eq!(claims["sub"], "ann");
        assert_eq!(claims["aud"], "chat");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 90);
        assert!(token.mint_us.is_some());
        assert_eq!(
            jwt_keys::token::algorithm_name(&token.text).as_deref(),
            Some("HS256")
        );
        let described = credentials.describe();
        assert!(
            described.contains("HS256") && described.contains("aud"),
            "{described}"
        );
        assert!(!described.contains("kkkk") && !format!("{credentials:?}").contains("kkkk"));
    }

    #[test]
    fn bad_settings_are_named() {
        let settings = |f: &dyn Fn(&mut JwtSettings)| {
            let mut s = JwtSettings::with_key(Some("x".into()), None);
            f(&mut s);
            s
        };
        assert!(matches!(
            settings(&|s| s.ttl = Span(Duration::ZERO)).check(),
            Err(CredentialsError::Ttl(_))
        ));
        assert!(matches!(
            settings(&|s| {
                s.claims.insert("exp".into(), "1".into());
            })
            .check(),
            Err(CredentialsError::ReservedClaim(_))
        ));
        assert!(matches!(
            settings(&|s| s.private_key = Some("y".into())).signing_key(),
            Err(CredentialsError::TwoKeys)
        ));
        let scratch = scratch("alg");
        let dir = &scratch.0;
        let pem = jwt_keys::generate_private_pem(Algorithm::EdDSA).unwrap();
        std::fs::write(dir.join("ed.pem"), pem).unwrap();
        let mismatch = JwtSettings {
            alg: Some("ES256".into()),
            ..JwtSettings::with_key(None, Some(dir.join("ed.pem")))
        };
        let error = mismatch.signing_key().unwrap_err().to_string();
        assert!(error.contains("EdDSA"), "{error}");
    }

    #[test]
    fn a_tokens_file_gives_each_user_its_row_and_names_who_is_missing() {
        let scratch = scratch("table");
        let dir = &scratch.0;
        let path = dir.join("tokens.csv");
        std::fs::write(
            &path,
            "user,token\nuser0,aaa.bbb.ccc\nuser1, ddd.eee.fff \n",
        )
        .unwrap();
        let credentials = Credentials::from_tokens_file(&path, TokenPlacement::Query).unwrap();
        assert_eq!(credentials.token_for("user1").unwrap().text, "ddd.eee.fff");
        let names: Vec<String> = (0..4).map(|i| format!("user{i}")).collect();
        let error = credentials.cover(&names).unwrap_err().to_string();
        assert!(
            error.contains("\"user2\" and 1 more of the run's 4 users"),
            "{error}"
        );
        assert!(credentials.cover(&names[..2]).is_ok());
        for (text, want) in [
            ("name,token\nuser0,a\n", "user,token"),
            ("user,token\nuser0,a\nuser0,b\n", "second row"),
            ("user,token\nuser0,\n", "empty"),
            ("user,token\n", "no rows"),
            ("user,token\nuser0,a b\n", "space"),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Credentials::from_tokens_file(&path, TokenPlacement::Header).unwrap_err();
            assert!(error.to_string().contains(want), "{text:?}: {error}");
        }
    }
}
