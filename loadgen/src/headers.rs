//! Extra request headers of every login: `[users] headers` in a scenario, `--header` on
//! the command line. Real deployments sit behind proxies that want an auth token, a
//! cookie or an Origin, so a login must be able to carry them.
//!
//! A value is a template: `{user}` becomes the user's name and `{index}` its number, per
//! connection (`Authorization = "Bearer {user}"`). A header is *secret* when it is marked
//! so (`{ value = "…", secret = true }`) or is named `Authorization`,
//! `Proxy-Authorization` or `Cookie` (unless marked `secret = false`): the reports then
//! show its value as `***`, and local workers get it through their environment, never
//! through a file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a secret value is shown.
pub const MASK: &str = "***";
/// Headers that are secret unless marked otherwise.
const SECRET_BY_NAME: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];
/// Headers the WebSocket handshake sets itself.
const RESERVED: [&str; 9] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
    "te",
];
/// Environment variable a coordinator passes its workers' secret header values in (JSON).
pub const SECRETS_ENV: &str = "LOADGEN_SECRET_HEADERS";

/// A value of `[users] headers`, as written in the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// `Origin = "https://chat.example"`.
    Plain(String),
    /// `Authorization = { value = "Bearer {user}", secret = true }`.
    Marked { value: String, secret: bool },
}

impl HeaderValue {
    fn template(&self) -> &str {
        match self {
            HeaderValue::Plain(value) | HeaderValue::Marked { value, .. } => value,
        }
    }
}

/// Why a header cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{0:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    Name(String),
    #[error("{0:?} is set by the WebSocket handshake itself")]
    Reserved(String),
    #[error("{name}: {placeholder:?} is not a placeholder ({{user}} and {{index}} are)")]
    Placeholder { name: String, placeholder: String },
    #[error("{0}: a value may not contain control characters (line breaks included)")]
    Control(String),
    #[error("{0:?}: write it as NAME: VALUE, e.g. \"Origin: https://chat.example\"")]
    Flag(String),
    #[error("{0:?} is given twice")]
    Twice(String),
}

/// One header to send with every login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    pub name: String,
    template: String,
    pub secret: bool,
}

impl HeaderTemplate {
    /// The value for user `user` (number `index`).
    pub fn render(&self, user: &str, index: u32) -> String {
        self.template
            .replace("{user}", user)
            .replace("{index}", &index.to_string())
    }

    /// The value as the reports show it: the template, or [`MASK`] for a secret.
    pub fn shown(&self) -> &str {
        if self.secret {
            MASK
        } else {
            &self.template
        }
    }
}

/// Every extra header of a login, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginHeaders(Vec<HeaderTemplate>);

impl LoginHeaders {
    /// The headers of `[users] headers`.
    pub fn of(headers: &BTreeMap<String, HeaderValue>) -> Result<LoginHeaders, HeaderError> {
        let mut checked: Vec<HeaderTemplate> = Vec::new();
        for (name, value) in headers {
            let secret = match value {
                HeaderValue::Marked { secret, .. } => *secret,
                HeaderValue::Plain(_) => {
                    SECRET_BY_NAME.contains(&name.to_ascii_lowercase().as_str())
                }
            };
            let header = check(name, value.template(), secret)?;
            if checked.iter().any(|h| h.name.eq_ignore_ascii_case(name)) {
                return Err(HeaderError::Twice(name.clone()));
            }
            checked.push(header);
        }
        Ok(LoginHeaders(checked))
    }

    /// The templates, in order.
    pub fn iter(&self) -> impl Iterator<Item = &HeaderTemplate> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Name and value of each header for user `user` (number `index`).
    pub fn render(&self, user: &str, index: u32) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|h| (h.name.clone(), h.render(user, index)))
            .collect()
    }
}

/// `--header 'NAME: VALUE'` flags added to (and replacing same-named entries of)
/// `headers`.
pub fn with_flags(
    headers: &BTreeMap<String, HeaderValue>,
    flags: &[String],
) -> Result<BTreeMap<String, HeaderValue>, HeaderError> {
    let mut merged = headers.clone();
    let mut seen: Vec<String> = Vec::new();
    for flag in flags {
        let Some((name, value)) = flag.split_once(':') else {
            return Err(HeaderError::Flag(flag.clone()));
        };
        let name = name.trim().to_string();
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&name)) {
            return Err(HeaderError::Twice(name));
        }
        seen.push(name.clone());
        merged.retain(|existing, _| !existing.eq_ignore_ascii_case(&name));
        merged.insert(name, HeaderValue::Plain(value.trim().to_string()));
    }
    Ok(merged)
}

/// `headers` with every secret value replaced by [`MASK`] (for files others may read),
/// and the secret values, by name, as JSON (for [`SECRETS_ENV`]).
pub fn split_secrets(
    headers: &BTreeMap<String, HeaderValue>,
) -> (BTreeMap<String, HeaderValue>, String) {
    let mut masked = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (name, value) in headers {
        let secret = match value {
            HeaderValue::Marked { secret, .. } => *secret,
            HeaderValue::Plain(_) => SECRET_BY_NAME.contains(&name.to_ascii_lowercase().as_str()),
        };
        if secret {
            secrets.insert(name.clone(), value.template().to_string());
            masked.insert(
                name.clone(),
                HeaderValue::Marked {
                    value: MASK.into(),
                    secret: true,
                },
            );
        } else {
            masked.insert(name.clone(), value.clone());
        }
    }
    (masked, serde_json::to_string(&secrets).unwrap_or_default())
}

/// `headers` with the secret values of [`split_secrets`]'s JSON put back.
pub fn restore_secrets(headers: &mut BTreeMap<String, HeaderValue>, json: &str) {
    let secrets: BTreeMap<String, String> = serde_json::from_str(json).unwrap_or_default();
    for (name, value) in secrets {
        headers.insert(
            name,
            HeaderValue::Marked {
                value,
                secret: true,
            },
        );
    }
}

/// `[users] headers` of a scenario as JSON, with secret values masked in place.
pub fn mask_json(scenario: &mut serde_json::Value, headers: &LoginHeaders) {
    let Some(table) = scenario
        .pointer_mut("/users/headers")
        .and_then(|h| h.as_object_mut())
    else {
        return;
    };
    for header in headers.iter().filter(|h| h.secret) {
        if let Some(value) = table.get_mut(&header.name) {
            *value = serde_json::Value::String(MASK.into());
        }
    }
}

fn check(name: &str, template: &str, secret: bool) -> Result<HeaderTemplate, HeaderError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(HeaderError::Name(name.to_string()));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(HeaderError::Reserved(name.to_string()));
    }
    if template.chars().any(|c| c.is_control() && c != '\t') {
        return Err(HeaderError::Control(name.to_string()));
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let end = after.find('}').map_or(after.len(), |end| end + 1);
        let placeholder = &after[..end];
        if placeholder != "{user}" && placeholder != "{index}" {
            return Err(HeaderError::Placeholder {
                name: name.to_string(),
                placeholder: placeholder.to_string(),
            });
        }
        rest = &after[end..];
    }
    Ok(HeaderTemplate {
        name: name.to_string(),
        template: template.to_string(),
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, HeaderValue)]) -> BTreeMap<String, HeaderValue> {
        entries
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    fn plain(value: &str) -> HeaderValue {
        HeaderValue::Plain(value.into())
    }

    #[test]
    fn templates_render_per_user_and_secrets_are_masked() {
        let headers = LoginHeaders::of(&table(&[
            ("Authorization", plain("Bearer {user}-{index}")),
            ("Origin", plain("https://chat.example")),
            (
                "X-Token",
                HeaderValue::Marked {
                    value: "t{index}".into(),
                    secret: true,
                },
            ),
        ]))
        .unwrap();
        assert_eq!(
            headers.render("ann", 7),
            [
                ("Authorization".to_string(), "Bearer ann-7".to_string()),
                ("Origin".to_string(), "https://chat.example".to_string()),
                ("X-Token".to_string(), "t7".to_string()),
            ]
        );
        let shown: Vec<&str> = headers.iter().map(HeaderTemplate::shown).collect();
        assert_eq!(shown, [MASK, "https://chat.example", MASK]);
        let mut json = serde_json::json!({"users": {"headers": {
            "Authorization": "Bearer {user}-{index}", "Origin": "https://chat.example",
            "X-Token": {"value": "t{index}", "secret": true}}}});
        mask_json(&mut json, &headers);
        let text = json.to_string();
        assert!(
            !text.contains("Bearer") && !text.contains("t{index}"),
            "{text}"
        );
        assert!(text.contains("https://chat.example"));
    }

    #[test]
    fn bad_headers_are_refused_with_the_reason() {
        let refused = |name: &str, value: &str| LoginHeaders::of(&table(&[(name, plain(value))]));
        assert_eq!(
            refused("X Bad", "1"),
            Err(HeaderError::Name("X Bad".into()))
        );
        assert_eq!(
            refused("Host", "x"),
            Err(HeaderError::Reserved("Host".into()))
        );
        assert!(matches!(
            refused("X-A", "{name}"),
            Err(HeaderError::Placeholder { .. })
        ));
        assert!(matches!(
            refused("X-A", "a\r\nX-B: 1"),
            Err(HeaderError::Control(_))
        ));
        assert!(matches!(
            refused("X-A", "{user"),
            Err(HeaderError::Placeholder { .. })
        ));
        assert!(refused("X-A", "{user}{index}").is_ok());
        assert!(matches!(
            with_flags(&BTreeMap::new(), &["no colon".into()]),
            Err(HeaderError::Flag(_))
        ));
        assert!(matches!(
            with_flags(&BTreeMap::new(), &["A: 1".into(), "a: 2".into()]),
            Err(HeaderError::Twice(_))
        ));
    }

    #[test]
    fn flags_replace_scenario_entries_and_secrets_travel_apart() {
        let scenario = table(&[("origin", plain("a")), ("Cookie", plain("s={user}"))]);
        let merged = with_flags(&scenario, &["Origin: https://b".into()]).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged["Origin"], plain("https://b"));
        let (masked, secrets) = split_secrets(&merged);
        assert_eq!(
            masked["Cookie"],
            HeaderValue::Marked {
                value: MASK.into(),
                secret: true
            }
        );
        assert!(!serde_json::to_string(&masked).unwrap().contains("s={user}"));
        let mut restored = masked.clone();
        restore_secrets(&mut restored, &secrets);
        let headers = LoginHeaders::of(&restored).unwrap();
        assert_eq!(headers.render("bo", 1)[0], ("Cookie".into(), "s=bo".into()));
    }
}
