//! Counters behind `GET /metrics` (docs/protocol.md O1), rendered in the Prometheus text
//! format.
//!
//! Plain relaxed atomics: every counter is updated on its own and read for display only,
//! so no ordering between them is needed. `deliveries_out` counts chat messages whose
//! bytes were fully written to a receiver's socket, which is what a load generator can
//! observe; messages still queued, or dropped with a slow consumer, are not deliveries.
//!
//! After the `chat_*` counters come the two standard metrics of the Prometheus client's
//! process collector, `process_cpu_seconds_total` and `process_resident_memory_bytes`, with
//! their names, help and meaning. A load generator measures a local server by pid; a server
//! on another machine it can only ask, and this is how. Both are read from `/proc/self`
//! (through `procstat`) only when `/metrics` is rendered, never on a hot path; where they
//! cannot be read (not Linux) they are left out: a missing metric is honest, a made-up one
//! is not.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use procstat::Usage;

use crate::login::Refusal;

/// Server-wide counters. One instance per server, shared by every connection.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions currently registered (a gauge).
    pub sessions_online: AtomicU64,
    /// Successful logins (upgrades that registered a session).
    pub logins: AtomicU64,
    /// Sessions ended because the same name logged in again (S4).
    pub evictions: AtomicU64,
    /// Complete Text messages received from clients.
    pub messages_in: AtomicU64,
    /// Chat messages fully written to a receiver's socket.
    pub deliveries_out: AtomicU64,
    /// Bytes written to WebSocket sockets (all frames).
    pub bytes_out: AtomicU64,
    /// Receivers disconnected with 1013 because their queue was full (M6).
    pub slow_consumer_disconnects: AtomicU64,
    /// Binary messages received and ignored (M4).
    pub binary_ignored: AtomicU64,
    /// Connections dropped for silence (O2).
    pub idle_disconnects: AtomicU64,
    /// Connections closed for a protocol violation (1002, 1007, 1009).
    pub protocol_errors: AtomicU64,
    /// Times a sender over its inbound budget waited before its next frame was read (R3).
    pub throttled: AtomicU64,
    /// Milliseconds senders waited for their inbound budget, all together (R3).
    pub throttled_ms: AtomicU64,
    /// Refused logins, indexed by [`Refusal::index`].
    pub refused: [AtomicU64; Refusal::ALL.len()],
    /// Cluster bus (docs/protocol.md C1–C6): 1 while the link is up and resynchronised.
    pub bus_connected: AtomicU64,
    /// Chat messages published to the bus.
    pub bus_published: AtomicU64,
    /// Chat messages received from other nodes through the bus.
    pub bus_received: AtomicU64,
    /// Chat messages that could not be forwarded to the other nodes (bus down or too far
    /// behind; C4).
    pub bus_unforwarded: AtomicU64,
    /// Publications on the bus channel that could not be decoded (and were ignored).
    pub bus_undecodable: AtomicU64,
    /// Times the bus link came back after being lost.
    pub bus_reconnects: AtomicU64,
    /// Local sessions closed because a newer login of the name happened on another node.
    pub cross_node_evictions: AtomicU64,
    /// This node's probes through the bus and back.
    pub bus_round_trip: RoundTrips,
    /// TLS handshakes completed (with `Config::tls`).
    pub tls_handshakes: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// TLS handshakes that resumed an earlier session (no certificate, no full key
    /// exchange).
    pub tls_resumed: AtomicU64,
    /// Sessions closed with 4003 when their token expired (A6).
    pub sessions_expired: AtomicU64,
}

/// A Prometheus histogram of bus round trips, in fixed buckets.
#[derive(Debug, Default)]
pub struct RoundTrips {
    /// Observations at or below each of [`ROUND_TRIP_BUCKETS`] (not cumulative here).
    buckets: [AtomicU64; ROUND_TRIP_BUCKETS.len()],
    /// Observations above the last bucket.
    over: AtomicU64,
    sum_ns: AtomicU64,
}

/// Upper bounds of the round-trip buckets, in seconds.
pub const ROUND_TRIP_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl RoundTrips {
    /// Counts one round trip of `ns` nanoseconds.
    pub fn observe(&self, ns: u64) {
        let seconds = ns as f64 / 1e9;
        match ROUND_TRIP_BUCKETS.iter().position(|&le| seconds <= le) {
            Some(i) => Metrics::inc(&self.buckets[i]),
            None => Metrics::inc(&self.over),
        }
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn render(&self, out: &mut String, id: &str) {
        let name = "chat_bus_round_trip_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} This node's probes published to the bus and heard back."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, bucket) in ROUND_TRIP_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{server_id=\"{id}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let count = cumulative + self.over.load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{server_id=\"{id}\",le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{server_id=\"{id}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{server_id=\"{id}\"}} {count}");
    }
}

/// The server's counters at one moment, for an embedder (see
/// [`crate::ServerHandle::metrics`]): the `chat_*` figures of `/metrics`, with refused
/// logins summed over their reasons. Each counter is read on its own, so the figures are
/// not one atomic cut of a busy server (a delivery may already be counted whose message is
/// not yet, for instance); between reads of an idle server they agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Sessions currently online.
    pub sessions_online: u64,
    /// Successful logins.
    pub logins: u64,
    /// Sessions replaced by a new login of the same name (S4).
    pub evictions: u64,
    /// Text messages received from clients.
    pub messages_in: u64,
    /// Chat messages fully written to receivers.
    pub deliveries_out: u64,
    /// Bytes written to WebSocket connections (all frames).
    pub bytes_out: u64,
    /// Receivers disconnected with 1013 because their outbound queue was full (M6).
    pub slow_consumer_disconnects: u64,
    /// Binary messages received and ignored (M4).
    pub binary_ignored: u64,
    /// Connections dropped for silence (O2).
    pub idle_disconnects: u64,
    /// Connections closed for a protocol violation (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Times a sender over its inbound budget was slowed down (R3).
    pub throttled: u64,
    /// Logins refused before the upgrade, for any reason.
    pub refused_logins: u64,
    /// 1 while the cluster bus is connected (always 0 without a bus).
    pub bus_connected: u64,
    /// Chat messages published to the bus.
    pub bus_published: u64,
    /// Chat messages received from other nodes.
    pub bus_received: u64,
    /// Chat messages not forwarded to other nodes (bus down or behind).
    pub bus_unforwarded: u64,
    /// Local sessions closed for a newer login on another node.
    pub cross_node_evictions: u64,
    /// Logins refused with `503` because the bus was down.
    pub refused_bus_unavailable: u64,
    /// TLS handshakes completed, and how many of them resumed a session.
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// Logins refused by authentication (no token, a bad one, a name or origin refused:
    /// A1–A4, A7), all reasons together.
    pub refused_auth: u64,
    /// Sessions closed with 4003 at their token's expiry (A6).
    pub sessions_expired: u64,
    /// The process's heap allocations, when the binary counts them
    /// ([`crate::allocations`], feature `count-allocations`); `None` otherwise.
    pub allocations: Option<crate::allocations::AllocationCounts>,
}

impl Metrics {
    /// Every counter, read now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            sessions_online: self.sessions_online.load(Relaxed),
            logins: self.logins.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            deliveries_out: self.deliveries_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            slow_consumer_disconnects: self.slow_consumer_disconnects.load(Relaxed),
            binary_ignored: self.binary_ignored.load(Relaxed),
            idle_disconnects: self.idle_disconnects.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            refused_logins: self.refused.iter().map(|r| r.load(Relaxed)).sum(),
            bus_connected: self.bus_connected.load(Relaxed),
            bus_published: self.bus_published.load(Relaxed),
            bus_received: self.bus_received.load(Relaxed),
            bus_unforwarded: self.bus_unforwarded.load(Relaxed),
            cross_node_evictions: self.cross_node_evictions.load(Relaxed),
            refused_bus_unavailable: self.refused[Refusal::BusUnavailable.index()].load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_resumed: self.tls_resumed.load(Relaxed),
            refused_auth: Refusal::ALL
                .iter()
                .filter(|r| r.is_auth())
                .map(|r| self.refused[r.index()].load(Relaxed))
                .sum(),
            sessions_expired: self.sessions_expired.load(Relaxed),
            allocations: crate::allocations::counts(),
        }
    }

    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a refused login.
    pub fn refuse(&self, reason: Refusal) {
        Self::inc(&self.refused[reason.index()]);
    }

    /// The Prometheus text exposition of every counter, then of the process's CPU time and
    /// resident memory (read from `/proc` now; left out where it cannot be read). The
    /// `chat_bus_*` metrics are there only when the server is a node of a cluster (`bus`).
    pub fn render(&self, server_id: &str, bus: bool) -> String {
        let mut out = String::with_capacity(2048);
        let id = escape_label(server_id);
        let mut metric = |name: &str, kind: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP chat_{name} {help}");
            let _ = writeln!(out, "# TYPE chat_{name} {kind}");
            let _ = writeln!(
                out,
                "chat_{name}{{server_id=\"{id}\"}} {}",
                value.load(Relaxed)
            );
        };
        metric(
            "sessions_online",
            "gauge",
            "Sessions currently online.",
            &self.sessions_online,
        );
        metric(
            "logins_total",
            "counter",
            "Successful logins.",
            &self.logins,
        );
        metric(
            "tls_handshakes_total",
            "counter",
            "TLS handshakes completed (0 without TLS).",
            &self.tls_handshakes,
        );
        metric(
            "tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            &self.tls_handshake_failures,
        );
        metric(
            "tls_resumed_total",
            "counter",
            "TLS handshakes that resumed an earlier session.",
            &self.tls_resumed,
        );
        metric(
            "sessions_expired_total",
            "counter",
            "Sessions closed with 4003 when their token expired.",
            &self.sessions_expired,
        );
        metric(
            "evictions_total",
            "counter",
            "Sessions replaced by a new login of the same name.",
            &self.evictions,
        );
        metric(
            "messages_in_total",
            "counter",
            "Text messages received from clients.",
            &self.messages_in,
        );
        metric(
            "deliveries_out_total",
            "counter",
            "Chat messages fully written to receivers.",
            &self.deliveries_out,
        );
        metric(
            "bytes_out_total",
            "counter",
            "Bytes written to WebSocket connections.",
            &self.bytes_out,
        );
        metric(
            "slow_consumer_disconnects_total",
            "counter",
            "Receivers disconnected with 1013 because their outbound queue was full.",
            &self.slow_consumer_disconnects,
        );
        metric(
            "binary_ignored_total",
            "counter",
            "Binary messages received and ignored.",
            &self.binary_ignored,
        );
        metric(
            "idle_disconnects_total",
            "counter",
            "Connections dropped after two ping intervals of silence.",
            &self.idle_disconnects,
        );
        metric(
            "protocol_errors_total",
            "counter",
            "Connections closed for a protocol violation (1002, 1007, 1009).",
            &self.protocol_errors,
        );
        metric(
            "throttled_total",
            "counter",
            "Times a sender over its inbound budget waited before its next frame was read.",
            &self.throttled,
        );
        metric(
            "throttled_milliseconds_total",
            "counter",
            "Milliseconds senders waited for their inbound budget, all together.",
            &self.throttled_ms,
        );
        if bus {
            metric(
                "bus_connected",
                "gauge",
                "1 while this node's link to the cluster bus is up, 0 while it is down.",
                &self.bus_connected,
            );
            metric(
                "bus_published_total",
                "counter",
                "Chat messages published to the cluster bus.",
                &self.bus_published,
            );
            metric(
                "bus_received_total",
                "counter",
                "Chat messages received from other nodes through the bus.",
                &self.bus_received,
            );
            metric(
                "bus_unforwarded_total",
                "counter",
                "Chat messages not forwarded to other nodes (bus down or too far behind).",
                &self.bus_unforwarded,
            );
            metric(
                "bus_undecodable_total",
                "counter",
                "Publications on the bus channel that could not be decoded.",
                &self.bus_undecodable,
            );
            metric(
                "bus_reconnects_total",
                "counter",
                "Times the bus link came back after being lost.",
                &self.bus_reconnects,
            );
            metric(
                "cross_node_evictions_total",
                "counter",
                "Local sessions closed because the name logged in on another node.",
                &self.cross_node_evictions,
            );
        }
        let _ = writeln!(
            out,
            "# HELP chat_refused_handshakes_total Logins refused before the upgrade, by reason."
        );
        let _ = writeln!(out, "# TYPE chat_refused_handshakes_total counter");
        for reason in Refusal::ALL {
            let _ = writeln!(
                out,
                "chat_refused_handshakes_total{{server_id=\"{id}\",reason=\"{}\"}} {}",
                reason.label(),
                self.refused[reason.index()].load(Relaxed)
            );
        }
        if bus {
            self.bus_round_trip.render(&mut out, &id);
        }
        if let Some(counts) = crate::allocations::counts() {
            render_allocations(&mut out, &id, &counts);
        }
        render_process(&mut out, &Usage::of_self());
        out
    }
}

/// The heap allocation counts (only when they are counted: see [`crate::allocations`]).
fn render_allocations(out: &mut String, id: &str, counts: &crate::allocations::AllocationCounts) {
    for (name, help, value) in [
        (
            "allocations_total",
            "Heap allocations of the process (feature count-allocations).",
            counts.allocations,
        ),
        (
            "reallocations_total",
            "Heap reallocations of the process.",
            counts.reallocations,
        ),
        (
            "allocated_bytes_total",
            "Bytes asked of the heap: allocation sizes and reallocation growth.",
            counts.bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP chat_{name} {help}");
        let _ = writeln!(out, "# TYPE chat_{name} counter");
        let _ = writeln!(out, "chat_{name}{{server_id=\"{id}\"}} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP chat_heap_live_bytes Bytes the process holds on the heap now (allocated minus freed); resident memory above it is the allocator's."
    );
    let _ = writeln!(out, "# TYPE chat_heap_live_bytes gauge");
    let _ = writeln!(
        out,
        "chat_heap_live_bytes{{server_id=\"{id}\"}} {}",
        counts.live_bytes
    );
}

/// The process collector's metrics, with the official client's names, help and types and,
/// like it, no labels. A value that could not be read is left out, not shown as 0.
fn render_process(out: &mut String, usage: &Usage) {
    if let Some(seconds) = usage.cpu_seconds {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."
        );
        let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(out, "process_cpu_seconds_total {seconds}");
    }
    if let Some(bytes) = usage.resident_bytes {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes."
        );
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(out, "process_resident_memory_bytes {bytes}");
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_help_and_type() {
        let m = Metrics::default();
        Metrics::inc(&m.deliveries_out);
        m.refuse(Refusal::EmptyUser);
        let text = m.render("a\"b", false);
        assert!(text.contains("chat_deliveries_out_total{server_id=\"a\\\"b\"} 1\n"));
        assert!(text.contains("reason=\"empty_user\"} 1\n"));
        assert!(text.contains("reason=\"missing_user\"} 0\n"));
        assert_eq!(text.matches("# TYPE chat_").count(), 17);
    }

    #[test]
    fn snapshot_reads_every_counter_and_sums_refusals() {
        let m = Metrics::default();
        Metrics::inc(&m.logins);
        Metrics::inc(&m.logins);
        Metrics::inc(&m.deliveries_out);
        m.refuse(Refusal::EmptyUser);
        m.refuse(Refusal::BadHandshake);
        let snapshot = m.snapshot();
        assert_eq!(snapshot.logins, 2);
        assert_eq!(snapshot.deliveries_out, 1);
        assert_eq!(snapshot.refused_logins, 2);
        assert_eq!(snapshot.evictions, 0);
    }

    /// Allocation counts appear only once a counting allocator says it is installed: a
    /// server that does not count shows none, not zeros.
    #[test]
    fn allocation_counts_are_shown_only_when_counted() {
        let m = Metrics::default();
        if crate::allocations::counts().is_none() {
            assert!(!m.render("a", false).contains("chat_allocations_total"));
            assert_eq!(m.snapshot().allocations, None);
        }
        crate::allocations::start_counting();
        crate::allocations::note_allocation(100);
        crate::allocations::note_reallocation(28);
        let text = m.render("a", false);
        assert!(
            text.contains("# TYPE chat_allocations_total counter"),
            "{text}"
        );
        let counts = m.snapshot().allocations.expect("counted");
        assert!(counts.allocations >= 1 && counts.reallocations >= 1 && counts.bytes >= 128);
        assert!(
            text.contains("chat_allocated_bytes_total{server_id=\"a\"}"),
            "{text}"
        );
        assert!(
            text.contains("chat_heap_live_bytes{server_id=\"a\"}"),
            "{text}"
        );
    }

    #[test]
    fn renders_process_metrics_like_the_prometheus_client() {
        let mut out = String::new();
        render_process(
            &mut out,
            &Usage {
                cpu_seconds: Some(1.25),
                resident_bytes: Some(12_345_678),
            },
        );
        assert_eq!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 1.25\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 12345678\n"
        );
    }

    #[test]
    fn leaves_out_process_metrics_it_could_not_read() {
        let mut out = String::new();
        render_process(&mut out, &Usage::default());
        assert_eq!(out, "");
        render_process(
            &mut out,
            &Usage {
                cpu_seconds: None,
                resident_bytes: Some(4096),
            },
        );
        assert!(!out.contains("process_cpu_seconds_total"));
        assert!(out.ends_with("process_resident_memory_bytes 4096\n"));
    }
}
