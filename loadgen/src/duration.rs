//! Durations in scenario files and flags, through the workspace's one parser
//! (`duration-text`): `"10s"`, `"500ms"`, `"1.5s"`, `"2m"`, `"250us"`; a bare number is
//! refused. [`Span`] is a duration that reads and writes itself that way in TOML and JSON.

use std::fmt;
use std::time::Duration;

pub use duration_text::{format, parse};
use serde::{Deserialize, Deserializer, Serializer};

/// A [`Duration`] that (de)serializes as `"500ms"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map(Span).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(self.0))
    }
}
