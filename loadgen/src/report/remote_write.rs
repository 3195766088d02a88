//! `loadgen run --remote-write URL`: the run's figures pushed to a Prometheus remote-write
//! 1.0 receiver (<https://prometheus.io/docs/specs/remote_write_spec/>), for a Prometheus
//! that cannot scrape loadgen — a run behind NAT or in CI, or one shorter than a scrape
//! interval.
//!
//! What is pushed is exactly what `--metrics` serves ([`super::prometheus`]): the text is
//! read back into series ([`series`]), encoded as a `WriteRequest` ([`protobuf`]),
//! compressed in snappy's block format ([`snappy`]) and POSTed over HTTP/1.1 ([`post`]);
//! the [`Pusher`] does so every few seconds and once more at the end, retrying a receiver
//! that is down, in a task of its own so that the run never waits for it.
//!
//! No crate does this for us here: `prost` needs a code generator (and `protoc`) for four
//! small messages whose encoding is a page, and snappy's block format is a varint and two
//! kinds of element; the real Prometheus in `tests/prometheus_live.rs` reads both.

mod post;
mod protobuf;
mod pusher;
mod series;
mod snappy;

pub use post::Endpoint;
pub use pusher::{PushPlan, PushTally, Pusher};
