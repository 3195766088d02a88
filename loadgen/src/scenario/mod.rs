//! The scenario file: who connects, what they do in each phase, and what counts as a pass.
//!
//! Parsed with serde from TOML, unknown fields refused, then validated as a whole, so a
//! mistake is reported as the file, the field and the reason (exit code 2) before any
//! connection is made. `scenarios/README.md` documents every field.

mod check;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::segment::Segment;

use crate::credentials::{self, Credentials, CredentialsError, JwtSettings, TokenPlacement};
use crate::duration::Span;
use crate::headers::{HeaderValue, LoginHeaders};
use crate::protocol::{Eviction, Profile, ProtocolSettings};
use crate::thresholds::Thresholds;
use crate::tls::TlsSettings;
use crate::toml_file::{self, Invalid, TomlFile, TomlFileError};

/// The longest user name the protocol's reference server accepts (docs/protocol.md S3).
pub const MAX_NAME_BYTES: usize = 64;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Names the run and its report folder; defaults to the file's stem.
    pub name: Option<String>,
    /// Free text, copied into the report.
    pub description: Option<String>,
    /// Server URL(s); users are spread across them round-robin. Absent: loadgen starts
    /// its own chat-server as a child process.
    #[serde(default, skip_serializing_if = "Targets::is_embedded")]
    pub target: Targets,
    /// The protocol the target speaks (absent: our chat protocol), [`crate::protocol`].
    #[serde(default, skip_serializing_if = "ProtocolSettings::is_default")]
    pub protocol: ProtocolSettings,
    /// The simulated users.
    pub users: Users,
    /// Deadlines of the delivery and eviction checks.
    #[serde(default)]
    pub verify: Verify,
    /// What happens, in order.
    #[serde(rename = "phase", default)]
    pub phases: Vec<Phase>,
    /// The first part of the measured run that is played but not judged: latency
    /// percentiles (and so the latency thresholds) leave it out, rounded up to whole
    /// 1-second intervals. Loss and errors still count everywhere.
    pub warmup: Option<Span>,
    /// Pass/fail limits.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Seed for choosing which users relogin or churn (same seed, same choices).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The performance gate's tolerance of single metrics, by name
    /// (`write_syscalls_per_delivery = 0.05`); the others keep `--tolerance` (timings) or
    /// `--counter-tolerance` (cost counters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gate_tolerance: BTreeMap<String, f64>,
    /// Run the scenario as this many cooperating loadgen processes on this machine (each
    /// plays every N-th user; one merged report). Absent: one process, or as many as the
    /// open-file limit needs. `--workers` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
}

/// `target = "ws://…"` or `target = ["ws://…", …]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Targets {
    /// No target: run the embedded server.
    #[default]
    Embedded,
    One(String),
    Many(Vec<String>),
}

impl Targets {
    /// No target: the embedded server.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Targets::Embedded)
    }

    /// The URLs as written (empty for the embedded server).
    pub fn urls(&self) -> Vec<String> {
        match self {
            Targets::Embedded => Vec::new(),
            Targets::One(url) => vec![url.clone()],
            Targets::Many(urls) => urls.clone(),
        }
    }
}

/// `[users]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// How many simulated users.
    pub count: u32,
    /// Users are named `<name_prefix><index>`; any UTF-8 without control characters.
    #[serde(default = "default_prefix")]
    pub name_prefix: String,
    /// Logins started per second during the ramp (default 2000 when neither this nor
    /// `connect_over` is set).
    pub connect_rate: Option<f64>,
    /// Spread the logins evenly over this long instead.
    pub connect_over: Option<Span>,
    /// A login that has not completed its handshake by then counts as a connect error.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// Where a relogin connects: the target of the user's session, or the next target in
    /// the list (a relogin on another node of a cluster).
    #[serde(default)]
    pub relogin_target: ReloginTarget,
    /// Local IP addresses the connections leave from: user `i` (the probe user too) uses
    /// entry `i % len` for all its connections. Empty: the kernel chooses, as for any
    /// client. One source/destination pair has only the ephemeral port range (about
    /// 28,000 ports), so a bigger run spreads over several (all of 127.0.0.0/8 is local on
    /// Linux); [`crate::ports`] refuses a run that would run out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_addresses: Vec<String>,
    /// Extra request headers of every login (`Authorization = "Bearer {user}"`), each a
    /// template of `{user}` and `{index}`; see [`crate::headers`] for which are secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderValue>,
    /// How `wss://` targets are verified and whether sessions resume ([`crate::tls`]).
    #[serde(default, skip_serializing_if = "is_default_tls")]
    pub tls: TlsSettings,
    /// Log in with a token minted for each login with this key (docs/protocol.md A1–A7,
    /// [`crate::credentials`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSettings>,
    /// Log in with the tokens of this CSV file (`user,token`), for servers whose tokens
    /// loadgen cannot mint. Every user of the run needs a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<std::path::PathBuf>,
    /// Where the token goes: `"header"` (`Authorization: Bearer`) or `"query"`
    /// (`?token=`, as browsers must).
    #[serde(default, skip_serializing_if = "TokenPlacement::is_default")]
    pub token_in: TokenPlacement,
}

fn is_default_tls(tls: &TlsSettings) -> bool {
    *tls == TlsSettings::default()
}

impl Users {
    /// No users and every default: a holder for settings given by flags alone.
    pub fn nobody() -> Users {
        Users {
            count: 0,
            name_prefix: default_prefix(),
            connect_rate: None,
            connect_over: None,
            connect_timeout: default_connect_timeout(),
            relogin_target: ReloginTarget::default(),
            source_addresses: Vec::new(),
            headers: BTreeMap::new(),
            tls: TlsSettings::default(),
            jwt: None,
            tokens_file: None,
            token_in: TokenPlacement::default(),
        }
    }

    /// `headers`, checked (validation has refused any that cannot be sent).
    pub fn login_headers(&self) -> LoginHeaders {
        LoginHeaders::of(&self.headers).unwrap_or_default()
    }

    /// The credentials of `jwt` or `tokens_file` (read and checked now), `None` for
    /// logins without a token.
    pub fn credentials(&self) -> Result<Option<Credentials>, CredentialsError> {
        match (&self.jwt, &self.tokens_file) {
            (Some(jwt), _) => Credentials::minting(jwt, self.token_in).map(Some),
            (None, Some(path)) => Credentials::from_tokens_file(path, self.token_in).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// `source_addresses` as addresses (validation has refused any that is not one).
    pub fn source_ips(&self) -> Vec<IpAddr> {
        self.source_addresses
            .iter()
            .filter_map(|text| text.parse().ok())
            .collect()
    }
}

/// `[users] relogin_target`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloginTarget {
    /// The target the user's session is on.
    #[default]
    Same,
    /// The next target in the list after the user's current one (with several
    /// concurrent logins, each takes the next after the previous one).
    Next,
}

/// `[verify]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// After its handshake, a session counts as online (deliveries to it are expected)
    /// after this long, or at its first delivery if sooner.
    #[serde(default = "default_settle")]
    pub settle: Span,
    /// A message is expected by every session that is online from its send time until
    /// this long after; also how long the run waits for stragglers at the end.
    #[serde(default = "default_deadline")]
    pub deadline: Span,
    /// An evicted session must be closed this long after the new login completed.
    #[serde(default = "default_eviction_deadline")]
    pub eviction_deadline: Span,
    /// The new session must receive the relogin probe within this long.
    #[serde(default = "default_probe_deadline")]
    pub probe_deadline: Span,
    /// Relogins share probes: at most one probe broadcast per this long verifies every
    /// relogin waiting for one.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Span,
    /// Messages sent later than this after a new login must not reach the old session.
    #[serde(default = "default_ghost_grace")]
    pub ghost_grace: Span,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            settle: default_settle(),
            deadline: default_deadline(),
            eviction_deadline: default_eviction_deadline(),
            probe_deadline: default_probe_deadline(),
            probe_interval: default_probe_interval(),
            ghost_grace: default_ghost_grace(),
        }
    }
}

/// One `[[phase]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Shown in progress output.
    pub name: Option<String>,
    /// How long the phase lasts.
    pub duration: Span,
    /// Messages per second across all senders (exclusive with `per_sender_rate`).
    pub rate: Option<f64>,
    /// Messages per second from each sender.
    pub per_sender_rate: Option<f64>,
    /// How many users send: the first `senders` users (default: all of them).
    pub senders: Option<u32>,
    /// Bytes per message, stamp included (at least the stamp's length).
    #[serde(default = "default_message_size")]
    pub message_size: usize,
    /// All senders send at the same instants (a burst of `senders` messages per
    /// interval) instead of spread evenly over the interval.
    #[serde(default)]
    pub aligned_senders: bool,
    /// Relogins per second, among users that do not send.
    #[serde(default)]
    pub relogin_rate: f64,
    /// New connections per relogin; above 1 they log in concurrently (S6).
    #[serde(default = "one")]
    pub relogin_concurrency: u32,
    /// Users per second that leave and rejoin, among users that do not send.
    #[serde(default)]
    pub churn_rate: f64,
    /// How long a churned user stays away.
    #[serde(default = "default_churn_offline")]
    pub churn_offline: Span,
}

impl Phase {
    /// Users sending in this phase (none when the phase has no traffic).
    pub fn sender_count(&self, users: u32) -> u32 {
        let sends = self.rate.or(self.per_sender_rate).is_some_and(|r| r > 0.0);
        if sends {
            self.senders.unwrap_or(users).min(users)
        } else {
            0
        }
    }

    /// Messages per second from each sender.
    pub fn rate_per_sender(&self, users: u32) -> f64 {
        let senders = self.sender_count(users);
        match (self.rate, self.per_sender_rate) {
            (Some(total), _) if senders > 0 => total / f64::from(senders),
            (_, Some(each)) => each,
            _ => 0.0,
        }
    }
}

fn default_seed() -> u64 {
    1
}
fn default_prefix() -> String {
    "user".into()
}
fn default_connect_timeout() -> Span {
    Span(std::time::Duration::from_secs(5))
}
fn default_settle() -> Span {
    Span(std::time::Duration::from_millis(100))
}
fn default_deadline() -> Span {
    Span(std::time::Duration::from_secs(1))
}
fn default_eviction_deadline() -> Span {
    Span(std::time::Duration::from_secs(1))
}
fn default_probe_deadline() -> Span {
    Span(std::time::Duration::from_secs(1))
}
fn default_probe_interval() -> Span {
    Span(std::time::Duration::from_millis(50))
}
fn default_ghost_grace() -> Span {
    Span(std::time::Duration::from_millis(250))
}
fn default_message_size() -> usize {
    64
}
fn one() -> u32 {
    1
}
fn default_churn_offline() -> Span {
    Span(std::time::Duration::from_secs(1))
}

impl TomlFile for Scenario {
    fn name_slot(&mut self) -> &mut Option<String> {
        &mut self.name
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let users = &mut self.users;
        if let Some(jwt) = &mut users.jwt {
            for path in [&mut jwt.secret_file, &mut jwt.private_key]
                .into_iter()
                .flatten()
            {
                *path = credentials::resolve(path, dir);
            }
        }
        if let Some(path) = &mut users.tokens_file {
            *path = credentials::resolve(path, dir);
        }
    }

    fn validate(&self, _path: &Path) -> Result<(), Invalid> {
        self.check().map_err(Invalid::from)
    }
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, TomlFileError> {
        toml_file::load(path)
    }

    /// Parses and validates scenario text; `path` is only for messages and the default name.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, TomlFileError> {
        toml_file::parse(path, text)
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("scenario")
    }

    /// The name of user `index`.
    pub fn user_name(&self, index: u32) -> String {
        format!("{}{index}", self.users.name_prefix)
    }

    /// The name of the probe user, which sends relogin probes (S5).
    pub fn probe_name(&self) -> String {
        format!("{}probe", self.users.name_prefix)
    }

    /// The probe user of `segment` (of a split run, each segment has its own).
    pub fn probe_name_of(&self, segment: Segment) -> String {
        if segment.is_split() {
            format!(
                "{}probe-{}of{}",
                self.users.name_prefix, segment.index, segment.count
            )
        } else {
            self.probe_name()
        }
    }

    /// The protocol profile the users speak.
    pub fn profile(&self) -> Profile {
        Profile::from_settings(&self.protocol)
    }

    /// Whether relogins are checked for eviction (the protocol has one).
    pub fn checks_eviction(&self) -> bool {
        self.profile().eviction() != Eviction::None
    }

    /// Whether any phase relogs users in (and so needs the probe user).
    pub fn has_relogins(&self) -> bool {
        self.phases.iter().any(|p| p.relogin_rate > 0.0)
    }

    /// The most users that send in any phase: users `0..max_senders()` are senders, the
    /// rest are the ones relogins and churn act on.
    pub fn max_senders(&self) -> u32 {
        self.phases
            .iter()
            .map(|p| p.sender_count(self.users.count))
            .max()
            .unwrap_or(0)
    }

    /// The most connections the run holds at once (users, the probe user, and extra
    /// connections during concurrent relogins).
    pub fn peak_connections(&self) -> u64 {
        let relogin_extra = self
            .phases
            .iter()
            .map(|p| {
                if p.relogin_rate > 0.0 {
                    // Relogins overlap for about eviction + probe deadlines.
                    let overlap = (self.verify.eviction_deadline.0 + self.verify.probe_deadline.0)
                        .as_secs_f64()
                        + 1.0;
                    let in_flight = (p.relogin_rate * overlap).ceil() as u64;
                    // A user relogs one relogin at a time (it is claimed for the whole
                    // relogin, its closes included), so no more users than there are.
                    in_flight.min(u64::from(self.users.count)) * u64::from(p.relogin_concurrency)
                } else {
                    0
                }
            })
            .max()
            .unwrap_or(0);
        u64::from(self.users.count) + u64::from(self.has_relogins()) + relogin_extra
    }

    /// The names every login of the run needs a token for: the users, and the probe user
    /// when phases relogin (a split run's probe users are named per segment:
    /// [`Scenario::probe_name_of`]).
    pub fn login_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (0..self.users.count).map(|i| self.user_name(i)).collect();
        if self.has_relogins() {
            names.push(self.probe_name());
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [users]
        count = 10
        [[phase]]
        duration = "2s"
        rate = 20
        senders = 5
        relogin_rate = 1
    "#;

    fn parse(text: &str) -> Result<Scenario, TomlFileError> {
        Scenario::parse(Path::new("scenarios/test.toml"), text)
    }

    #[test]
    fn good_file_with_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name(), "test");
        assert_eq!(s.users.name_prefix, "user");
        assert_eq!(s.phases[0].rate_per_sender(10), 4.0);
        assert!(matches!(s.target, Targets::Embedded));
        assert_eq!(s.thresholds.min_delivery_ratio, 1.0);
        assert_eq!(s.user_name(3), "user3");
    }

    #[test]
    fn targets_one_or_many() {
        let s = parse(&format!("target = \"ws://127.0.0.1:1/\"\n{GOOD}")).unwrap();
        assert_eq!(s.target.urls().len(), 1);
        let s = parse(&format!(
            "target = [\"ws://127.0.0.1:1/\", \"ws://[::1]:2/\"]\n{GOOD}"
        ))
        .unwrap();
        assert_eq!(s.target.urls().len(), 2);
    }

    fn invalid(text: &str) -> (String, String) {
        match parse(text) {
            Err(TomlFileError::Invalid { field, reason, .. }) => (field, reason),
            other => panic!("expected an invalid-field error, got {other:?}"),
        }
    }

    #[test]
    fn each_kind_of_bad_file_names_the_field() {
        let cases: &[(&str, &str)] = &[
            ("[users]\ncount = 0\n[[phase]]\nduration = \"1s\"", "users.count"),
            ("[users]\ncount = 2\n", "phase"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"0s\"", "phase[0].duration"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\nrate = 1\nper_sender_rate = 1", "phase[0].rate"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\nrate = -1", "phase[0].rate"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\nsenders = 3", "phase[0].senders"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\nrate = 1\nrelogin_rate = 1", "phase[0].relogin_rate"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\nmessage_size = 0", "phase[0].message_size"),
            ("[users]\ncount = 2\nconnect_rate = 5\nconnect_over = \"1s\"\n[[phase]]\nduration = \"1s\"", "users.connect_rate"),
            (&format!("[users]\ncount = 2\nname_prefix = \"{}\"\n[[phase]]\nduration = \"1s\"", "x".repeat(70)), "users.name_prefix"),
            ("[users]\ncount = 2\nname_prefix = \"a\\n\"\n[[phase]]\nduration = \"1s\"", "users.name_prefix"),
            ("target = \"http://x/\"\n[users]\ncount = 2\n[[phase]]\nduration = \"1s\"", "target[0]"),
            ("target = []\n[users]\ncount = 2\n[[phase]]\nduration = \"1s\"", "target"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\n[thresholds]\nmin_delivery_ratio = 2", "thresholds.min_delivery_ratio"),
            ("[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\n[thresholds]\nmax_memory_growth = { mb_per_hour = -2 }", "thresholds.max_memory_growth"),
            ("[users]\ncount = 2\nsource_addresses = [\"127.0.0.2\", \"localhost\"]\n[[phase]]\nduration = \"1s\"", "users.source_addresses[1]"),
            ("[users]\ncount = 2\nsource_addresses = [\"127.0.0.2\", \"127.0.0.2\"]\n[[phase]]\nduration = \"1s\"", "users.source_addresses[1]"),
            ("[users]\ncount = 2\nsource_addresses = [\"0.0.0.0\"]\n[[phase]]\nduration = \"1s\"", "users.source_addresses[0]"),
            ("[protocol]\nkind = \"text\"\nsend = \"hi\"\n[users]\ncount = 2\n[[phase]]\nduration = \"1s\"", "protocol.send"),
            ("[protocol]\nkind = \"socketio\"\nevent = \"\"\n[users]\ncount = 2\n[[phase]]\nduration = \"1s\"", "protocol.event"),
            ("[protocol]\nkind = \"socketio\"\nready = \"x\"\n[users]\ncount = 2\n[[phase]]\nduration = \"1s\"", "protocol.ready"),
            ("[protocol]\nkind = \"text\"\neviction = \"none\"\n[users]\ncount = 3\n[[phase]]\nduration = \"1s\"\nrate = 1\nsenders = 1\nrelogin_rate = 1\nrelogin_concurrency = 2", "phase[0].relogin_concurrency"),
        ];
        for (text, field) in cases {
            assert_eq!(invalid(text).0, *field, "for {text}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_parse_errors() {
        for text in [
            "[users]\ncount = 2\ncolour = 1\n[[phase]]\nduration = \"1s\"",
            "[users]\ncount = 2\n[[phase]]\nduration = \"10\"",
            "[users]\ncount = \"many\"",
            "[users\ncount = 2",
            "[[phase]]\nduration = \"1s\"",
        ] {
            match parse(text) {
                Err(TomlFileError::Parse { message, .. }) => assert!(!message.is_empty()),
                other => panic!("expected a parse error for {text:?}, got {other:?}"),
            }
        }
        let message = parse("[users]\ncount = 2\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("scenarios/test.toml") && message.contains("colour"),
            "{message}"
        );
    }

    #[test]
    fn non_ascii_prefix_is_fine() {
        let s = parse("[users]\ncount = 2\nname_prefix = \"张\"\n[[phase]]\nduration = \"1s\"")
            .unwrap();
        assert_eq!(s.user_name(1), "张1");
    }

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios/") {
            let path = entry.expect("a directory entry").path();
            // capacity.toml is a capacity file, not a run scenario (capacity tests load it).
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".toml") || name == "capacity.toml" {
                continue;
            }
            if name.starts_with("auth-") {
                // Its key is made by scripts/auth-keys.sh, never committed: give it one
                // made now, beside a copy of the file.
                let scratch = crate::scratch::TempDir::new("shipped-scenario");
                let dir = scratch.0.clone();
                std::fs::create_dir_all(dir.join("keys")).expect("a keys folder");
                for algorithm in [jwt_keys::Algorithm::ES256, jwt_keys::Algorithm::EdDSA] {
                    let pem = jwt_keys::generate_private_pem(algorithm).expect("a key");
                    let file = format!("keys/{}.pem", algorithm.as_str().to_lowercase());
                    std::fs::write(dir.join(file), pem).expect("a key file");
                }
                let text = std::fs::read_to_string(&path).expect("readable");
                Scenario::parse(&dir.join(name), &text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            } else {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            loaded += 1;
        }
        assert!(loaded >= 6, "only {loaded} scenarios found");
        let cluster = Scenario::load(&dir.join("cluster-relogin.toml")).expect("loads");
        assert_eq!(cluster.users.relogin_target, ReloginTarget::Next);
    }

    #[test]
    fn relogin_target_is_same_or_next() {
        let base = "[users]\ncount = 2\n{}\n[[phase]]\nduration = \"1s\"\n";
        let with = |line: &str| base.replace("{}", line);
        let parsed = Scenario::parse(Path::new("t.toml"), &with("")).expect("default");
        assert_eq!(parsed.users.relogin_target, ReloginTarget::Same);
        let error = Scenario::parse(Path::new("t.toml"), &with("relogin_target = \"elsewhere\""))
            .expect_err("an unknown value");
        assert!(error.to_string().contains("relogin_target"), "{error}");
    }

    #[test]
    fn relogin_connections_are_bounded_by_the_users_who_can_relog() {
        let storm = |rate: u32| {
            let text = format!(
                "[users]\ncount = 3000\n[[phase]]\nduration = \"1s\"\nrelogin_rate = {rate}\nrelogin_concurrency = 2\n"
            );
            Scenario::parse(Path::new("t.toml"), &text).expect("parses")
        };
        // 10 relogins/s overlap for ~3 s: 30 users at a time, 2 new connections each.
        assert_eq!(storm(10).peak_connections(), 3000 + 1 + 60);
        // 10,000/s would be 30,000 at a time, but only 3,000 users can relog at once.
        assert_eq!(storm(10_000).peak_connections(), 3000 + 1 + 6000);
    }

    #[test]
    fn source_addresses_parse_in_order_and_default_to_none() {
        let base = "[users]\ncount = 2\n{}\n[[phase]]\nduration = \"1s\"\n";
        let with = |line: &str| base.replace("{}", line);
        let parsed = parse(&with("")).expect("default");
        assert!(parsed.users.source_ips().is_empty());
        let parsed = parse(&with("source_addresses = [\"127.0.0.3\", \"::1\"]")).expect("two");
        let expected: Vec<IpAddr> = vec!["127.0.0.3".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(parsed.users.source_ips(), expected);
        let (field, reason) = invalid(&with("source_addresses = [\"127.0.0.300\"]"));
        assert_eq!(field, "users.source_addresses[0]");
        assert!(
            reason.contains("127.0.0.300") && reason.contains("not an IP"),
            "{reason}"
        );
    }
}
