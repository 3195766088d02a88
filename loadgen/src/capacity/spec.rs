//! The capacity file: what to grow, from where, by how much, up to what, the traffic of
//! every step, and the objective a step must meet.
//!
//! Parsed like a scenario (serde from TOML, unknown fields refused, then validated as a
//! whole, so a mistake names the file, the field and the reason). A step is described by
//! a position `k` on the path — step `k` offers `start + k × step` of each grown
//! dimension — and [`CapacitySpec::scenario_at`] turns a position into the plain run
//! scenario that measures it. `scenarios/README.md` documents every field.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::duration::Span;
use crate::scenario::{Phase, Scenario, Targets, Users, Verify};
use crate::thresholds::Thresholds;
use crate::toml_file::{self, Invalid, TomlFile, TomlFileError};

/// A whole capacity file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySpec {
    /// Names the search and its report folder; defaults to the file's stem.
    pub name: Option<String>,
    /// Free text, copied into the report.
    pub description: Option<String>,
    /// Server URL(s), as in a run scenario. Absent: a fresh embedded chat-server per step.
    #[serde(default)]
    pub target: Targets,
    /// The protocol the target speaks, as in a run scenario (absent: our chat protocol).
    #[serde(
        default,
        skip_serializing_if = "crate::protocol::ProtocolSettings::is_default"
    )]
    pub protocol: crate::protocol::ProtocolSettings,
    /// What grows and how far.
    pub capacity: SearchSettings,
    /// The traffic of every step.
    #[serde(default)]
    pub load: Load,
    /// How `wss://` servers are verified (from the command line: `--ca-file`, …).
    #[serde(skip)]
    pub tls: crate::tls::TlsSettings,
    /// How every step's users mint their login tokens (from the command line:
    /// `--jwt-secret-file`, `--jwt-private-key`, …); `None`: logins without a token.
    #[serde(skip)]
    pub jwt: Option<crate::credentials::JwtSettings>,
    /// Where the tokens go (`--token-in`).
    #[serde(skip)]
    pub token_in: crate::credentials::TokenPlacement,
    /// Deadlines of the delivery and eviction checks, as in a run scenario.
    #[serde(default)]
    pub verify: Verify,
    /// The objective: a step meets it when every threshold holds.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Seed for choosing which users relogin.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

/// Which dimension grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grow {
    /// More users; the total message rate stays `load.rate`.
    Users,
    /// A higher total message rate; the users stay `load.users`.
    Rate,
    /// Both, along the straight path `(users.start + k × users.step, rate.start + k ×
    /// rate.step)`.
    Both,
}

/// `start`, `step` and `limit` of one grown dimension.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub start: f64,
    pub step: f64,
    pub limit: f64,
}

/// `[capacity]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    pub grow: Grow,
    /// Users per step, when `grow` is `users` or `both`.
    pub users: Option<Range>,
    /// Total messages per second per step, when `grow` is `rate` or `both`.
    pub rate: Option<Range>,
    /// Played at the start of every step but not judged (latency leaves it out).
    #[serde(default = "default_warmup")]
    pub warmup: Span,
    /// The judged, steady part of every step.
    #[serde(default = "default_measure")]
    pub measure: Span,
    /// Halvings of the interval between the last good and the first bad step.
    #[serde(default = "default_bisections")]
    pub bisections: u32,
    /// Extra measurements of the knee, each of which must meet the objective too.
    #[serde(default = "default_confirm")]
    pub confirm: u32,
    /// The published capacity's margin: at the published capacity, every run's value of
    /// every latency threshold is at most this share of its limit (0 < margin <= 1; 1
    /// publishes the knee itself).
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// After the search, capacity, knee and above-knee are each measured this many more
    /// times, interleaved (0: no reproduction).
    #[serde(default = "default_reproduce")]
    pub reproduce: u32,
    /// Pause between steps, so that one step's closing connections do not load the next.
    #[serde(default = "default_pause")]
    pub pause: Span,
}

/// `[load]`: the traffic of every step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Users, when they do not grow.
    pub users: Option<u32>,
    /// Total messages per second, when the rate does not grow.
    pub rate: Option<f64>,
    /// Users that send (the first ones); fewer when a step has fewer users.
    #[serde(default = "default_senders")]
    pub senders: u32,
    /// Bytes per message, stamp included.
    #[serde(default = "default_message_size")]
    pub message_size: usize,
    /// Relogins per second among users that do not send (eviction checks under load).
    #[serde(default)]
    pub relogin_rate: f64,
    /// Users are named `<name_prefix><index>`.
    #[serde(default = "default_prefix")]
    pub name_prefix: String,
    /// Logins per second while a step connects its users.
    #[serde(default = "default_connect_rate")]
    pub connect_rate: f64,
    /// A login that has not completed its handshake by then counts as a connect error.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            users: None,
            rate: None,
            senders: default_senders(),
            message_size: default_message_size(),
            relogin_rate: 0.0,
            name_prefix: default_prefix(),
            connect_rate: default_connect_rate(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

/// The load of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub users: u32,
    /// Total messages per second.
    pub rate: f64,
}

fn default_seed() -> u64 {
    1
}
fn default_warmup() -> Span {
    Span(std::time::Duration::from_secs(2))
}
fn default_measure() -> Span {
    Span(std::time::Duration::from_secs(5))
}
fn default_bisections() -> u32 {
    3
}
fn default_confirm() -> u32 {
    2
}
fn default_margin() -> f64 {
    super::procedure::DEFAULT_MARGIN
}
fn default_reproduce() -> u32 {
    super::procedure::DEFAULT_REPRODUCE
}
fn default_pause() -> Span {
    Span(std::time::Duration::from_secs(1))
}
fn default_senders() -> u32 {
    10
}
fn default_message_size() -> usize {
    64
}
fn default_prefix() -> String {
    "user".into()
}
fn default_connect_rate() -> f64 {
    2000.0
}
fn default_connect_timeout() -> Span {
    Span(std::time::Duration::from_secs(5))
}

/// Rates are offered to a tenth of a message per second.
const RATE_RESOLUTION: f64 = 0.1;

impl TomlFile for CapacitySpec {
    fn name_slot(&mut self) -> &mut Option<String> {
        &mut self.name
    }

    fn validate(&self, path: &Path) -> Result<(), Invalid> {
        self.check()?;
        // Every step's scenario must be a valid run scenario: check the two ends of the
        // path (the start and the limit), which bound every step in between.
        for k in [0.0, self.last_k()] {
            let scenario = self.scenario_at(k);
            if let Err(TomlFileError::Invalid { field, reason, .. }) =
                Scenario::parse(path, &toml_of(&scenario))
            {
                return Err(Invalid::new(
                    format!("(step scenario) {field}"),
                    format!("{reason} (at {})", self.describe(self.point(k))),
                ));
            }
        }
        Ok(())
    }
}

impl CapacitySpec {
    /// Reads, parses and validates a capacity file.
    pub fn load(path: &Path) -> Result<CapacitySpec, TomlFileError> {
        toml_file::load(path)
    }

    /// Parses and validates capacity-file text; `path` is for messages and the default name.
    #[cfg(test)]
    pub fn parse(path: &Path, text: &str) -> Result<CapacitySpec, TomlFileError> {
        toml_file::parse(path, text)
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("capacity")
    }

    /// The ranges of the grown dimensions (users first).
    fn ranges(&self) -> impl Iterator<Item = Range> + '_ {
        let c = &self.capacity;
        let users = matches!(c.grow, Grow::Users | Grow::Both).then_some(c.users);
        let rate = matches!(c.grow, Grow::Rate | Grow::Both).then_some(c.rate);
        users.flatten().into_iter().chain(rate.flatten())
    }

    /// The last position on the path: where the first grown dimension reaches its limit.
    pub fn last_k(&self) -> f64 {
        self.ranges()
            .map(|r| (r.limit - r.start) / r.step)
            .fold(f64::INFINITY, f64::min)
            .max(0.0)
    }

    /// Positions closer than this give the same load after rounding (one user, or a tenth
    /// of a message per second, on the finest grown dimension).
    pub fn resolution(&self) -> f64 {
        let c = &self.capacity;
        let mut finest: f64 = 0.0;
        if let (Grow::Users | Grow::Both, Some(r)) = (c.grow, c.users) {
            finest = finest.max(1.0 / r.step);
        }
        if let (Grow::Rate | Grow::Both, Some(r)) = (c.grow, c.rate) {
            finest = finest.max(RATE_RESOLUTION / r.step);
        }
        finest
    }

    /// The load at position `k`.
    pub fn point(&self, k: f64) -> Point {
        let c = &self.capacity;
        let at = |r: Range| r.start + k * r.step;
        let users = match (c.grow, c.users) {
            (Grow::Users | Grow::Both, Some(r)) => at(r).round(),
            _ => f64::from(self.load.users.unwrap_or(1)),
        };
        let rate = match (c.grow, c.rate) {
            (Grow::Rate | Grow::Both, Some(r)) => at(r),
            _ => self.load.rate.unwrap_or(0.0),
        };
        Point {
            users: users.clamp(1.0, f64::from(u32::MAX)) as u32,
            rate: (rate / RATE_RESOLUTION).round() * RATE_RESOLUTION,
        }
    }

    /// The grown dimension's value at position `k` (users for `users` and `both`).
    pub fn level(&self, k: f64) -> f64 {
        let point = self.point(k);
        match self.capacity.grow {
            Grow::Rate => point.rate,
            Grow::Users | Grow::Both => f64::from(point.users),
        }
    }

    /// Unit of [`CapacitySpec::level`].
    pub fn level_unit(&self) -> &'static str {
        match self.capacity.grow {
            Grow::Rate => "msg/s",
            Grow::Users | Grow::Both => "users",
        }
    }

    /// `point` with each grown dimension times `factor` (for the load above the knee).
    pub fn scaled(&self, point: Point, factor: f64) -> Point {
        let grow = self.capacity.grow;
        Point {
            users: if matches!(grow, Grow::Users | Grow::Both) {
                (f64::from(point.users) * factor).round().max(1.0) as u32
            } else {
                point.users
            },
            rate: if matches!(grow, Grow::Rate | Grow::Both) {
                (point.rate * factor / RATE_RESOLUTION).round() * RATE_RESOLUTION
            } else {
                point.rate
            },
        }
    }

    /// "1,200 users at 50 msg/s".
    pub fn describe(&self, point: Point) -> String {
        format!("{} users at {} msg/s", point.users, trim_rate(point.rate))
    }

    /// The plain run scenario of the step at position `k`: a warm-up phase and a measured
    /// phase of the same traffic, judged by the objective after the warm-up.
    pub fn scenario_at(&self, k: f64) -> Scenario {
        self.scenario_for(self.point(k))
    }

    /// The plain run scenario of a load (see [`CapacitySpec::scenario_at`]).
    pub fn scenario_for(&self, point: Point) -> Scenario {
        let load = &self.load;
        let senders = load.senders.min(point.users);
        let phase = |name: &str, duration: Span| Phase {
            name: Some(name.into()),
            duration,
            rate: Some(point.rate),
            per_sender_rate: None,
            senders: Some(senders),
            message_size: load.message_size,
            aligned_senders: false,
            relogin_rate: load.relogin_rate,
            relogin_concurrency: 1,
            churn_rate: 0.0,
            churn_offline: Span(std::time::Duration::from_secs(1)),
        };
        Scenario {
            name: Some(format!(
                "{}-{}u-{}mps",
                self.name(),
                point.users,
                trim_rate(point.rate)
            )),
            description: Some(format!(
                "{}: {} ({} senders)",
                self.name(),
                self.describe(point),
                senders
            )),
            target: self.target.clone(),
            protocol: self.protocol.clone(),
            gate_tolerance: Default::default(),
            users: Users {
                count: point.users,
                name_prefix: load.name_prefix.clone(),
                connect_rate: Some(load.connect_rate),
                connect_over: None,
                connect_timeout: load.connect_timeout,
                relogin_target: Default::default(),
                source_addresses: Vec::new(),
                headers: Default::default(),
                tls: self.tls.clone(),
                jwt: self.jwt.clone(),
                tokens_file: None,
                token_in: self.token_in,
            },
            verify: self.verify.clone(),
            phases: vec![
                phase("warm-up", self.capacity.warmup),
                phase("measure", self.capacity.measure),
            ],
            warmup: Some(self.capacity.warmup),
            thresholds: self.thresholds.clone(),
            seed: self.seed,
            workers: None,
        }
    }

    /// Checks every value of the file itself; on failure names the field and says why.
    pub fn check(&self) -> Result<(), Invalid> {
        let fail = |field: &str, reason: String| Err(Invalid::new(field, reason));
        let c = &self.capacity;
        let needs_users = matches!(c.grow, Grow::Users | Grow::Both);
        let needs_rate = matches!(c.grow, Grow::Rate | Grow::Both);
        let grow = match c.grow {
            Grow::Users => "users",
            Grow::Rate => "rate",
            Grow::Both => "both",
        };
        for (name, range, needed) in [
            ("users", c.users, needs_users),
            ("rate", c.rate, needs_rate),
        ] {
            let field = format!("capacity.{name}");
            match (range, needed) {
                (None, true) => {
                    return fail(
                        &field,
                        format!("grow = \"{grow}\" needs {field} = {{ start, step, limit }}"),
                    )
                }
                (Some(_), false) => {
                    return fail(
                        &field,
                        format!(
                            "grow = \"{grow}\" does not grow {name}: set the fixed value as load.{name}"
                        ),
                    )
                }
                (Some(r), true) => {
                    let finite = r.start.is_finite() && r.step.is_finite() && r.limit.is_finite();
                    if !finite || r.step <= 0.0 {
                        return fail(&format!("{field}.step"), "must be above zero".into());
                    }
                    let least = if name == "users" { 1.0 } else { 0.0 };
                    if r.start < least || (name == "rate" && r.start <= 0.0) {
                        return fail(
                            &format!("{field}.start"),
                            format!("must be at least {least}{}", if name == "rate" { " and above zero" } else { "" }),
                        );
                    }
                    if r.limit < r.start {
                        return fail(
                            &format!("{field}.limit"),
                            format!("{} is below start {}", r.limit, r.start),
                        );
                    }
                    if name == "users" && r.limit > f64::from(u32::MAX) {
                        return fail(&format!("{field}.limit"), "too large".into());
                    }
                }
                (None, false) => {}
            }
        }
        match (needs_users, self.load.users) {
            (false, None) => {
                return fail(
                    "load.users",
                    format!("grow = \"{grow}\" needs a fixed load.users"),
                )
            }
            (true, Some(_)) => {
                return fail(
                    "load.users",
                    "users grow: set them in capacity.users, not load.users".into(),
                )
            }
            (false, Some(0)) => return fail("load.users", "must be at least 1".into()),
            _ => {}
        }
        match (needs_rate, self.load.rate) {
            (false, None) => {
                return fail(
                    "load.rate",
                    format!("grow = \"{grow}\" needs a fixed load.rate"),
                )
            }
            (true, Some(_)) => {
                return fail(
                    "load.rate",
                    "the rate grows: set it in capacity.rate, not load.rate".into(),
                )
            }
            (false, Some(r)) if !(r > 0.0 && r.is_finite()) => {
                return fail("load.rate", "must be above zero".into())
            }
            _ => {}
        }
        if self.load.senders == 0 {
            return fail("load.senders", "must be at least 1".into());
        }
        if !(self.load.connect_rate > 0.0 && self.load.connect_rate.is_finite()) {
            return fail("load.connect_rate", "must be above zero".into());
        }
        if c.measure.0.is_zero() {
            return fail("capacity.measure", "must be above zero".into());
        }
        if c.bisections > 20 {
            return fail("capacity.bisections", "at most 20".into());
        }
        if c.confirm > 20 {
            return fail("capacity.confirm", "at most 20".into());
        }
        if !(c.margin > 0.0 && c.margin <= 1.0) {
            return fail(
                "capacity.margin",
                format!(
                    "{} is not a share of the limit: give a number above 0 and at most 1 (0.7: every run's latency at most 70% of its limit)",
                    c.margin
                ),
            );
        }
        if c.reproduce > 20 {
            return fail("capacity.reproduce", "at most 20".into());
        }
        Ok(())
    }
}

/// A rate without a trailing `.0`.
pub fn trim_rate(rate: f64) -> String {
    let text = format!("{rate:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_string)
}

/// A scenario as TOML text, for `knee.toml` and for validating a step's scenario with the
/// same code that reads a file.
pub fn toml_of(scenario: &Scenario) -> String {
    toml::to_string(scenario).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = r#"
        [capacity]
        grow = "users"
        users = { start = 100, step = 100, limit = 1050 }
        [load]
        rate = 20
        [thresholds]
        p99 = "50ms"
    "#;

    fn parse(text: &str) -> Result<CapacitySpec, TomlFileError> {
        CapacitySpec::parse(Path::new("cap.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn a_users_path_steps_to_the_limit() {
        let spec = parse(USERS).unwrap();
        assert_eq!(spec.name(), "cap");
        assert_eq!(spec.last_k(), 9.5);
        assert_eq!(
            spec.point(0.0),
            Point {
                users: 100,
                rate: 20.0
            }
        );
        assert_eq!(
            spec.point(9.5),
            Point {
                users: 1050,
                rate: 20.0
            }
        );
        assert_eq!(spec.level(2.0), 300.0);
        assert_eq!(spec.resolution(), 0.01);
        let scenario = spec.scenario_at(1.0);
        assert_eq!(scenario.users.count, 200);
        assert_eq!(scenario.phases.len(), 2);
        assert_eq!(scenario.phases[1].senders, Some(10));
        assert_eq!(
            scenario.warmup,
            Some(Span(std::time::Duration::from_secs(2)))
        );
        // The step scenario reads back as a run scenario.
        let back = Scenario::parse(Path::new("knee.toml"), &toml_of(&scenario)).unwrap();
        assert_eq!(back.users.count, 200);
        assert_eq!(back.thresholds, spec.thresholds);
    }

    #[test]
    fn both_grow_together_and_stop_at_the_first_limit() {
        let spec = parse(
            r#"
            [capacity]
            grow = "both"
            users = { start = 100, step = 100, limit = 1000 }
            rate = { start = 10, step = 5, limit = 30 }
            "#,
        )
        .unwrap();
        assert_eq!(spec.last_k(), 4.0);
        assert_eq!(
            spec.point(1.5),
            Point {
                users: 250,
                rate: 17.5
            }
        );
        assert_eq!(spec.level_unit(), "users");
    }

    #[test]
    fn every_mistake_is_named() {
        for (text, field) in [
            ("[capacity]\ngrow = \"users\"\n[load]\nrate = 5", "capacity.users"),
            (
                "[capacity]\ngrow = \"rate\"\nrate = { start = 1, step = 1, limit = 5 }\nusers = { start = 1, step = 1, limit = 5 }\n[load]\nusers = 5",
                "capacity.users",
            ),
            ("[capacity]\ngrow = \"rate\"\nrate = { start = 1, step = 1, limit = 5 }", "load.users"),
            ("[capacity]\ngrow = \"users\"\nusers = { start = 1, step = 1, limit = 5 }", "load.rate"),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 10, step = 0, limit = 50 }\n[load]\nrate = 5",
                "capacity.users.step",
            ),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 100, step = 10, limit = 50 }\n[load]\nrate = 5",
                "capacity.users.limit",
            ),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 0, step = 10, limit = 50 }\n[load]\nrate = 5",
                "capacity.users.start",
            ),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 1, step = 1, limit = 5 }\n[load]\nrate = 5\nusers = 3",
                "load.users",
            ),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 1, step = 1, limit = 5 }\n[load]\nrate = -5",
                "load.rate",
            ),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 1, step = 1, limit = 5 }\nmeasure = \"0s\"\n[load]\nrate = 5",
                "capacity.measure",
            ),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 10, step = 1, limit = 50 }\n[load]\nrate = 5\nsenders = 10\nrelogin_rate = 1",
                "relogin_rate",
            ),
            (
                "[capacity]\ngrow = \"users\"\nusers = { start = 10, step = 10, limit = 50 }\n[load]\nrate = 5\nmessage_size = 0",
                "message_size",
            ),
        ] {
            let message = error(text);
            assert!(message.contains(field), "{field:?} not in {message:?}");
        }
        assert!(error("[capacity]\ngrow = \"sideways\"").contains("sideways"));
        assert!(error(&format!("{USERS}\nbogus = 1")).contains("bogus"));
    }
}
