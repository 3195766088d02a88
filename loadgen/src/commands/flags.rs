//! Flag groups several subcommands share: how `wss://` is verified ([`TlsArgs`]), how
//! logins prove their names ([`JwtArgs`]), and the machine calibration
//! ([`CalibrationArgs`]); and the parsers of flag values they use.

use std::path::PathBuf;

/// How `wss://` targets are verified (every command that connects has these).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Trust the CA certificates of this PEM file too (a private CA), besides the public
    /// roots compiled into loadgen (Mozilla's).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate, unverified. Only when asked for: every report says
    /// that the run was insecure.
    #[arg(long)]
    pub insecure: bool,
    /// Do not resume TLS sessions: every login makes a full handshake.
    #[arg(long)]
    pub no_tls_resumption: bool,
}

impl TlsArgs {
    /// `settings` with these flags applied.
    pub fn apply(&self, settings: &mut crate::tls::TlsSettings) {
        if let Some(ca) = &self.ca_file {
            settings.ca_file = Some(ca.clone());
        }
        settings.insecure |= self.insecure;
        if self.no_tls_resumption {
            settings.resumption = false;
        }
    }

    /// The settings of these flags alone.
    pub fn settings(&self) -> crate::tls::TlsSettings {
        let mut settings = crate::tls::TlsSettings::default();
        self.apply(&mut settings);
        settings
    }
}

/// Which protocol the server speaks (`client` and `conform`; a run's scenario says it in
/// `[protocol]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProtocolArgs {
    /// The server's protocol: chat (ours, the default), socketio (Socket.IO 4/5 over
    /// WebSocket), text (a plain text protocol), or a TOML file whose [protocol] table
    /// describes it (a scenario file will do): see scenarios/README.md, [protocol].
    #[arg(long, value_name = "KIND|FILE")]
    pub protocol: Option<String>,
}

impl ProtocolArgs {
    /// The profile the flag names (the chat protocol without it).
    pub fn profile(&self) -> Result<crate::protocol::Profile, String> {
        match &self.protocol {
            None => Ok(crate::protocol::Profile::Chat),
            Some(value) => crate::protocol::ProtocolSettings::from_flag(value)
                .map(|s| crate::protocol::Profile::from_settings(&s))
                .map_err(|e| format!("--protocol {e}")),
        }
    }
}

/// How logins prove their names to a server that authenticates them (docs/protocol.md
/// A1–A7): every command that connects has these.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwtArgs {
    /// Log in with HS256 tokens minted, fresh for every login, with the shared secret in
    /// this file (the server's --jwt-secret-file). Overrides the scenario's [users] jwt
    /// and tokens_file.
    #[arg(long, value_name = "FILE", conflicts_with = "jwt_private_key")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Log in with tokens signed by this PEM private key (RSA → RS256, P-256 → ES256,
    /// Ed25519 → EdDSA; the server holds the public key). Overrides the scenario's.
    #[arg(long, value_name = "PEM")]
    pub jwt_private_key: Option<PathBuf>,
    /// An extra string claim of every token, NAME=VALUE (repeat): e.g. aud=chat,
    /// iss=https://auth.example. Replaces a same-named claim of the scenario.
    #[arg(long = "jwt-claim", value_name = "NAME=VALUE")]
    pub jwt_claims: Vec<String>,
    /// How long each minted token is valid (exp = login time + this; default 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub jwt_ttl: Option<std::time::Duration>,
    /// Where the token goes: header (Authorization: Bearer, the default) or query
    /// (?token=, as a browser must).
    #[arg(long, value_enum, value_name = "WHERE")]
    pub token_in: Option<crate::credentials::TokenPlacement>,
}

impl JwtArgs {
    /// Whether any of these flags was given.
    pub fn given(&self) -> bool {
        self.jwt_secret_file.is_some()
            || self.jwt_private_key.is_some()
            || !self.jwt_claims.is_empty()
            || self.jwt_ttl.is_some()
            || self.token_in.is_some()
    }

    /// `users` with these flags applied: a key flag replaces the scenario's `jwt` and
    /// `tokens_file`; claims, ttl and placement change what is there. `Err` names the
    /// flag that cannot apply.
    pub fn apply(&self, users: &mut crate::scenario::Users) -> Result<(), String> {
        use crate::credentials::{resolve, JwtSettings};
        let cwd = std::path::Path::new(".");
        let key = match (&self.jwt_secret_file, &self.jwt_private_key) {
            (Some(path), _) => Some(JwtSettings::with_key(Some(resolve(path, cwd)), None)),
            (None, Some(path)) => Some(JwtSettings::with_key(None, Some(resolve(path, cwd)))),
            (None, None) => None,
        };
        if let Some(key) = key {
            let kept = users.jwt.take();
            users.tokens_file = None;
            users.jwt = Some(JwtSettings {
                ttl: kept.as_ref().map_or(key.ttl, |k| k.ttl),
                claims: kept.map(|k| k.claims).unwrap_or_default(),
                ..key
            });
        }
        let needs_jwt = |flag: &str| {
            format!("{flag} goes with a key: --jwt-secret-file, --jwt-private-key or the scenario's [users] jwt")
        };
        if !self.jwt_claims.is_empty() || self.jwt_ttl.is_some() {
            let Some(jwt) = users.jwt.as_mut() else {
                return Err(needs_jwt(if self.jwt_ttl.is_some() {
                    "--jwt-ttl"
                } else {
                    "--jwt-claim"
                }));
            };
            for claim in &self.jwt_claims {
                let Some((name, value)) = claim.split_once('=') else {
                    return Err(format!(
                        "--jwt-claim {claim:?}: write NAME=VALUE, e.g. aud=chat"
                    ));
                };
                jwt.claims
                    .insert(name.trim().to_string(), value.trim().to_string());
            }
            if let Some(ttl) = self.jwt_ttl {
                jwt.ttl = crate::duration::Span(ttl);
            }
        }
        if let Some(placement) = self.token_in {
            if users.jwt.is_none() && users.tokens_file.is_none() {
                return Err(needs_jwt("--token-in"));
            }
            users.token_in = placement;
        }
        Ok(())
    }

    /// The credentials of these flags alone (conform, client); `None` without a key.
    pub fn credentials(&self) -> Result<Option<crate::credentials::Credentials>, String> {
        let mut users = crate::scenario::Users::nobody();
        self.apply(&mut users)?;
        users.credentials().map_err(|error| {
            let flag = if self.jwt_secret_file.is_some() {
                "--jwt-secret-file"
            } else {
                "--jwt-private-key"
            };
            format!("{flag} {error}")
        })
    }
}

/// `--calibration`, shared by `run`, `gate` and `capacity`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct CalibrationArgs {
    /// Measure this machine's speed at the start and the end (loopback send cost and a
    /// fixed single-core workload, ~1 s each at `full`) and put both, and the drift
    /// between them, in every report. `quick` does a tenth of the work (rough; for tests),
    /// `off` leaves it out.
    #[arg(
        long = "calibration",
        value_enum,
        value_name = "MODE",
        default_value = "full",
        env = "LOADGEN_CALIBRATION"
    )]
    pub mode: crate::calibration::CalibrationMode,
}

/// Parses a flag's duration (`30s`, `500ms`).
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}

/// Parses `--fault`.
pub(crate) fn parse_fault(text: &str) -> Result<chat_server::Fault, String> {
    use chat_server::Fault;
    match text {
        "delete-by-name" => Ok(Fault::DeleteByName),
        "swap-pairs" => Ok(Fault::SwapPairs),
        "local-eviction-only" => Ok(Fault::LocalEvictionOnly),
        "bus-swap-pairs" => Ok(Fault::BusSwapPairs),
        "jwt-accept-alg-none" => Ok(Fault::JwtAcceptAlgNone),
        "jwt-ignore-expiry" => Ok(Fault::JwtIgnoreExpiry),
        "jwt-ignore-signature" => Ok(Fault::JwtIgnoreSignature),
        "jwt-name-from-user" => Ok(Fault::JwtNameFromUser),
        _ => text
            .strip_prefix("drop-every-")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .map(Fault::DropEvery)
            .ok_or_else(|| {
                format!("unknown fault {text:?}: use delete-by-name, swap-pairs, local-eviction-only, bus-swap-pairs, drop-every-N, or with a JWT key jwt-accept-alg-none, jwt-ignore-expiry, jwt-ignore-signature, jwt-name-from-user")
            }),
    }
}
