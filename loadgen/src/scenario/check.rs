//! The scenario checked as a whole ([`Scenario::check`]): every value in range, the
//! fields that must agree agreeing, and the login credentials readable — so a mistake is
//! the file, the field and the reason (exit 2) before any connection is made.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{Scenario, Targets, MAX_NAME_BYTES};
use crate::credentials::{CredentialsError, TokenPlacement};
use crate::duration::Span;
use crate::headers::LoginHeaders;
use crate::segment::{Segment, MAX_SEGMENTS};
use crate::stamp::{Stamp, FROM};
use crate::target::Target;
use crate::tls::TlsClient;

impl Scenario {
    /// Checks `[users] jwt`, `tokens_file` and `token_in` (the key or file is read):
    /// again after flags changed them.
    pub fn check_credentials(&self) -> Result<(), (String, String)> {
        let users = &self.users;
        let fail = |field: &str, reason: String| Err((field.to_string(), reason));
        if users.jwt.is_some() && users.tokens_file.is_some() {
            return fail(
                "users.tokens_file",
                "set jwt (loadgen mints the tokens) or tokens_file, not both".into(),
            );
        }
        let tokens = users.jwt.is_some() || users.tokens_file.is_some();
        if !tokens && !users.token_in.is_default() {
            return fail(
                "users.token_in",
                "there is no token to place: set jwt or tokens_file".into(),
            );
        }
        if tokens
            && users.token_in == TokenPlacement::Header
            && users
                .headers
                .keys()
                .any(|name| name.eq_ignore_ascii_case("authorization"))
        {
            return fail(
                "users.headers",
                "Authorization is the token's header here (jwt or tokens_file): leave it out, or set token_in = \"query\"".into(),
            );
        }
        let credentials = match users.credentials() {
            Ok(credentials) => credentials,
            Err(error) => {
                let field = match (&error, &users.jwt) {
                    (
                        CredentialsError::TokensFile { .. }
                        | CredentialsError::MissingTokens { .. },
                        _,
                    ) => "users.tokens_file",
                    (CredentialsError::Ttl(_), _) => "users.jwt.ttl",
                    (CredentialsError::ReservedClaim(_) | CredentialsError::BadClaim(_), _) => {
                        "users.jwt.claims"
                    }
                    (CredentialsError::Algorithm { .. }, _) => "users.jwt.alg",
                    (_, Some(jwt)) if jwt.private_key.is_some() && jwt.secret_file.is_none() => {
                        "users.jwt.private_key"
                    }
                    (_, Some(jwt)) if jwt.secret_file.is_some() && jwt.private_key.is_none() => {
                        "users.jwt.secret_file"
                    }
                    _ => "users.jwt",
                };
                return fail(field, error.to_string());
            }
        };
        if let Some(credentials) = credentials {
            if let Err(error) = credentials.cover(&self.login_names()) {
                return fail("users.tokens_file", error.to_string());
            }
        }
        Ok(())
    }

    /// Checks every value; on failure names the field and says why.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, reason: String| Err((field.to_string(), reason));
        for (i, url) in self.target.urls().iter().enumerate() {
            if let Err(error) = url.parse::<Target>() {
                return fail(&format!("target[{i}]"), error.to_string());
            }
        }
        if matches!(&self.target, Targets::Many(urls) if urls.is_empty()) {
            return fail(
                "target",
                "an empty list; leave `target` out to use the embedded server".into(),
            );
        }
        self.protocol.check()?;
        for (name, &tolerance) in &self.gate_tolerance {
            if !(tolerance > 0.0 && tolerance < 1.0) {
                return fail(
                    &format!("gate_tolerance.{name}"),
                    format!("{tolerance}: a fraction between 0 and 1 (0.02 is 2%)"),
                );
            }
        }
        let users = &self.users;
        if users.count == 0 {
            return fail("users.count", "must be at least 1".into());
        }
        if let Some(workers) = self.workers {
            if workers == 0 || workers > MAX_SEGMENTS {
                return fail(
                    "workers",
                    format!("{workers}: at least 1 and at most {MAX_SEGMENTS}"),
                );
            }
        }
        let longest = self.user_name(users.count - 1).len().max(
            self.probe_name_of(Segment {
                index: MAX_SEGMENTS - 1,
                count: MAX_SEGMENTS,
            })
            .len(),
        );
        if longest > MAX_NAME_BYTES {
            return fail(
                "users.name_prefix",
                format!(
                    "names would be up to {longest} bytes; the protocol allows {MAX_NAME_BYTES}"
                ),
            );
        }
        if users.name_prefix.chars().any(char::is_control) {
            return fail("users.name_prefix", "holds a control character".into());
        }
        if users.name_prefix.contains(FROM.trim_start()) || users.name_prefix.contains(" -- ") {
            return fail("users.name_prefix", format!("must not contain {FROM:?}"));
        }
        match (users.connect_rate, users.connect_over) {
            (Some(_), Some(_)) => {
                return fail(
                    "users.connect_rate",
                    "set connect_rate or connect_over, not both".into(),
                )
            }
            (Some(rate), None) if !(rate > 0.0 && rate.is_finite()) => {
                return fail("users.connect_rate", "must be above zero".into())
            }
            _ => {}
        }
        if users.connect_timeout.0.is_zero() {
            return fail("users.connect_timeout", "must be above zero".into());
        }
        if let Err(error) = LoginHeaders::of(&users.headers) {
            return fail("users.headers", error.to_string());
        }
        if let Err((field, reason)) = self.check_credentials() {
            return fail(&field, reason);
        }
        if users.tls.ca_file.is_some() {
            if let Err(error) = TlsClient::new(&users.tls) {
                return fail("users.tls.ca_file", error.to_string());
            }
        }
        let mut sources = HashSet::new();
        for (i, text) in users.source_addresses.iter().enumerate() {
            let field = format!("users.source_addresses[{i}]");
            let Ok(ip) = text.parse::<IpAddr>() else {
                return fail(
                    &field,
                    format!("{text:?} is not an IP address (e.g. \"127.0.0.2\" or \"::1\")"),
                );
            };
            if ip.is_unspecified() || ip.is_multicast() {
                return fail(&field, format!("{ip} is not an address of one interface"));
            }
            if !sources.insert(ip) {
                return fail(&field, format!("{ip} is listed twice"));
            }
        }
        let v = &self.verify;
        for (field, span) in [
            ("verify.deadline", v.deadline),
            ("verify.eviction_deadline", v.eviction_deadline),
            ("verify.probe_deadline", v.probe_deadline),
            ("verify.probe_interval", v.probe_interval),
        ] {
            if span.0.is_zero() {
                return fail(field, "must be above zero".into());
            }
        }
        if self.phases.is_empty() {
            return fail("phase", "at least one [[phase]] is needed".into());
        }
        for (i, phase) in self.phases.iter().enumerate() {
            let field = |name: &str| format!("phase[{i}].{name}");
            if phase.duration.0.is_zero() {
                return fail(&field("duration"), "must be above zero".into());
            }
            let rate_ok = |r: f64| r >= 0.0 && r.is_finite();
            match (phase.rate, phase.per_sender_rate) {
                (Some(_), Some(_)) => {
                    return fail(
                        &field("rate"),
                        "set rate or per_sender_rate, not both".into(),
                    )
                }
                (Some(r), None) if !rate_ok(r) => {
                    return fail(&field("rate"), "must be zero or more".into())
                }
                (None, Some(r)) if !rate_ok(r) => {
                    return fail(&field("per_sender_rate"), "must be zero or more".into())
                }
                _ => {}
            }
            if let Some(senders) = phase.senders {
                if senders > users.count {
                    return fail(
                        &field("senders"),
                        format!("{senders} senders but only {} users", users.count),
                    );
                }
            }
            if phase.message_size == 0 || phase.message_size > 16 << 20 {
                return fail(
                    &field("message_size"),
                    "must be from 1 byte to 16 MiB".into(),
                );
            }
            if phase.message_size < Stamp::max_len() {
                // Allowed: messages are then as long as their stamp. Nothing to refuse.
            }
            for (name, rate) in [
                ("relogin_rate", phase.relogin_rate),
                ("churn_rate", phase.churn_rate),
            ] {
                if !rate_ok(rate) {
                    return fail(&field(name), "must be zero or more".into());
                }
                if rate > 0.0 && self.max_senders() >= users.count {
                    return fail(
                        &field(name),
                        "relogins and churn act on users that do not send, and every user sends: \
                         set `senders` below users.count in every phase"
                            .into(),
                    );
                }
            }
            if phase.relogin_concurrency == 0 {
                return fail(&field("relogin_concurrency"), "must be at least 1".into());
            }
            if phase.relogin_concurrency > 1 && !self.checks_eviction() {
                return fail(
                    &field("relogin_concurrency"),
                    "concurrent logins are an eviction check (one session must be left), and \
                     protocol.eviction is \"none\": set relogin_concurrency = 1, or say how \
                     the server evicts"
                        .into(),
                );
            }
            if phase.churn_rate > 0.0 && phase.churn_offline.0.is_zero() {
                return fail(&field("churn_offline"), "must be above zero".into());
            }
        }
        if let Some(warmup) = self.warmup {
            let total: std::time::Duration = self.phases.iter().map(|p| p.duration.0).sum();
            if warmup.0 >= total {
                return fail(
                    "warmup",
                    format!(
                        "{warmup} is not shorter than the phases ({}): nothing would be judged",
                        Span(total)
                    ),
                );
            }
        }
        let t = &self.thresholds;
        if !(0.0..=1.0).contains(&t.min_delivery_ratio) {
            return fail(
                "thresholds.min_delivery_ratio",
                "must be between 0 and 1".into(),
            );
        }
        if let Some(limit) = &t.max_memory_growth {
            if let Err(why) = limit.check() {
                return fail("thresholds.max_memory_growth", why);
            }
        }
        if let Some(rate) = t.min_deliveries_per_sec {
            if !(rate >= 0.0 && rate.is_finite()) {
                return fail(
                    "thresholds.min_deliveries_per_sec",
                    "must be zero or more".into(),
                );
            }
        }
        Ok(())
    }
}
