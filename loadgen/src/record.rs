//! What a run measured, per one-second interval and overall.
//!
//! Simulated users record into a [`Recorder`] (a few mutex-guarded shards, so users on
//! different threads rarely meet); once a second the run loop closes the interval and
//! keeps an [`IntervalRecord`] (its histograms go to the latency log). Loss and expected deliveries are only known once each
//! message's delivery window has passed, so they are added to the interval the message was
//! *sent* in when the run ends.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track, in µs (one hour); larger values are clamped.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("bug: constant histogram bounds")
}

/// A histogram as text: HdrHistogram's V2 encoding in base64 (what `latency.hlog` lines
/// carry, uncompressed), for worker lines and segment files.
pub fn histogram_text(h: &Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::{Serializer as _, V2Serializer};
    let mut bytes = Vec::new();
    match V2Serializer::new().serialize(h, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(&bytes),
        Err(_) => String::new(),
    }
}

/// The histogram of [`histogram_text`]; `None` when the text is not one. An empty text is
/// an empty histogram.
pub fn histogram_from_text(text: &str) -> Option<Histogram<u64>> {
    use base64::Engine as _;
    if text.is_empty() {
        return Some(new_histogram());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    let decoded: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()?;
    let mut h = new_histogram();
    h.add(&decoded).ok()?;
    Some(h)
}

/// Declares [`Counters`] from its field list — the one place the fields are written: the
/// struct, [`Counters::add`], [`Counters::fields`] (the names and values in order, which
/// `timeseries.csv` takes as its columns) and [`Counters::meanings`] (the help of the live
/// `/metrics`) all come from it.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// Event counts. Every field is a count of events in the interval (or the whole
        /// run).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl Counters {
            /// How many fields there are.
            pub const FIELDS: usize = [$(stringify!($field),)*].len();

            /// Adds every field of `other`.
            pub fn add(&mut self, other: &Counters) {
                $(self.$field += other.$field;)*
            }

            /// Every field with its name, in declaration order.
            pub fn fields(&self) -> [(&'static str, u64); Counters::FIELDS] {
                [$((stringify!($field), self.$field),)*]
            }

            /// What each field counts (its doc comment, in one line), in declaration order.
            pub fn meanings() -> [&'static str; Counters::FIELDS] {
                [$(concat!($($doc, " ",)*),)*]
            }
        }
    };
}

counters! {
    /// Chat messages sent by simulated users (probes excluded).
    sent,
    /// Text frames received by simulated users, of any kind (equals the server's
    /// deliveries to loadgen connections).
    delivered,
    /// Deliveries that the delivery check expected (see the loss window in the docs).
    expected,
    /// Expected deliveries that never arrived.
    lost,
    /// Deliveries that arrived although the receiver was not in the message's window
    /// (churned, relogging, or not yet confirmed online): neither expected nor lost.
    unverified,
    /// A (sender, sequence) received twice by one session.
    duplicates,
    /// A message that arrived after a later message of the same sender.
    order_errors,
    /// Text that is not a loadgen message, or whose `-- FROM` does not name its stamped
    /// sender.
    foreign,
    /// A user received its own message (M2).
    self_deliveries,
    /// Login attempts that failed (refused, timed out, connection error).
    connect_errors,
    /// Sessions that ended without the loadgen asking (not evicted, not churned).
    unexpected_disconnects,
    /// Relogins started.
    relogins,
    /// Relogins whose old session ended within the deadline, the new one got the probe,
    /// and the old one got nothing after the new login.
    evictions_ok,
    /// The old session ended, but after the deadline.
    evictions_late,
    /// The old session never ended.
    evictions_missing,
    /// The new session did not receive the probe (S5: it is online but deaf).
    evictions_zombie,
    /// The old session received a message sent after the new login (plus grace).
    evictions_ghost,
    /// Not exactly one new session was open at the eviction deadline (S6).
    evictions_no_survivor,
    /// The server closed the surviving session before it got its probe (not a failure;
    /// the close is counted by its code below).
    evictions_survivor_closed,
    /// The probe reached the survivor after the probe deadline (not a failure).
    evictions_probe_late,
    /// No probe to judge by: none could be sent, or nobody received it (not a failure).
    evictions_unprobed,
    /// Unexpected disconnects by how they ended: Close 1001 (server going away).
    unexpected_close_1001,
    /// Close 1013 (try again later: the server's slow-consumer disconnect).
    unexpected_close_1013,
    /// Close 4001 (replaced by a new login, when no relogin of ours explains it).
    unexpected_close_4001,
    /// A Close with any other code, or none.
    unexpected_close_other,
    /// The connection dropped without a Close.
    unexpected_tcp_drop,
    /// Relogins and churn that were due but not started: every user tried was still busy
    /// with an earlier one (the scenario asks more of its users than they can do), or
    /// loadgen reached them only after the phases had ended (it ran late).
    disruptions_skipped,
    /// Churn disconnects (a user leaving on purpose).
    churn_leaves,
    /// Connections opened (first logins, relogins and churn rejoins).
    connects,
    /// Sessions the server closed with 4003 when their token expired (docs/protocol.md
    /// A6), each followed by a login with a fresh token: expected, not a disconnect.
    token_renewals,
}

impl Counters {
    /// Relogins that failed an eviction check (late, missing, zombie, ghost, no single
    /// survivor; see `checks::eviction` for the outcomes that are not failures).
    pub fn eviction_failures(&self) -> u64 {
        self.evictions_late
            + self.evictions_missing
            + self.evictions_zombie
            + self.evictions_ghost
            + self.evictions_no_survivor
    }
}

/// Highest login phase time the connect histograms track, in µs (two minutes).
pub const MAX_CONNECT_US: u64 = 120_000_000;

/// How long the parts of logins took, µs: minting the login's token (with `[users] jwt`
/// only), the TCP connect, the TLS handshake (`wss://` only) and the WebSocket upgrade
/// (request sent to `101` received). Two significant digits: a login time to 1% is plenty,
/// and an interval's histograms stay ~80 KiB.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectTimes {
    pub tcp: Histogram<u64>,
    pub tls: Histogram<u64>,
    pub upgrade: Histogram<u64>,
    pub mint: Histogram<u64>,
}

/// One login's phase times, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginTimes {
    pub tcp_us: u64,
    /// `None` for `ws://`.
    pub tls_us: Option<u64>,
    pub upgrade_us: u64,
    /// Minting the login's token; `None` without one (or with a tokens file).
    pub mint_us: Option<u64>,
}

impl Default for ConnectTimes {
    fn default() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, MAX_CONNECT_US, 2)
                .expect("bug: constant histogram bounds")
        };
        ConnectTimes {
            tcp: histogram(),
            tls: histogram(),
            upgrade: histogram(),
            mint: histogram(),
        }
    }
}

impl ConnectTimes {
    /// Records one login (times above the bound are clamped to it).
    pub fn record(&mut self, times: &LoginTimes) {
        let clamp = |us: u64| us.clamp(1, MAX_CONNECT_US);
        self.tcp.saturating_record(clamp(times.tcp_us));
        if let Some(tls) = times.tls_us {
            self.tls.saturating_record(clamp(tls));
        }
        self.upgrade.saturating_record(clamp(times.upgrade_us));
        if let Some(mint) = times.mint_us {
            self.mint.saturating_record(clamp(mint));
        }
    }

    /// Adds another set (same bounds, so it cannot fail).
    pub fn add(&mut self, other: &ConnectTimes) {
        let _ = self.tcp.add(&other.tcp);
        let _ = self.tls.add(&other.tls);
        let _ = self.upgrade.add(&other.upgrade);
        let _ = self.mint.add(&other.mint);
    }

    /// Logins recorded.
    pub fn logins(&self) -> u64 {
        self.tcp.len()
    }

    /// The histograms as text ([`histogram_text`]): tcp, tls, upgrade, mint.
    pub fn to_text(&self) -> Vec<String> {
        vec![
            histogram_text(&self.tcp),
            histogram_text(&self.tls),
            histogram_text(&self.upgrade),
            histogram_text(&self.mint),
        ]
    }

    /// The set of [`ConnectTimes::to_text`] (fewer texts — files from before mint times
    /// were kept have three — leave the rest empty); `None` when a text is not a
    /// histogram or there are more than four.
    pub fn from_text(texts: &[String]) -> Option<ConnectTimes> {
        if texts.len() > 4 {
            return None;
        }
        let mut times = ConnectTimes::default();
        for (histogram, text) in [
            &mut times.tcp,
            &mut times.tls,
            &mut times.upgrade,
            &mut times.mint,
        ]
        .into_iter()
        .zip(texts)
        {
            if !text.is_empty() {
                histogram.add(histogram_from_text(text)?).ok()?;
            }
        }
        Some(times)
    }
}

/// What the reports keep of one interval of the run: its counts and the figures of its
/// histograms, a few hundred bytes. The histograms themselves ([`ClosedInterval`]) go to
/// `latency.hlog` as the interval closes and are dropped, so a run's memory does not grow
/// with its length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalRecord {
    /// Seconds from the start of the measured run to the start of this interval.
    pub start_s: f64,
    /// Length of the interval in seconds (1.0 except the last one, usually).
    pub length_s: f64,
    /// Sessions online at the end of the interval.
    pub users_online: u64,
    /// Events in the interval.
    pub counters: Counters,
    /// Delivery latency in µs: p50, p90, p99, p99.9, max and count; all zero without
    /// deliveries.
    pub latency_us: [u64; 6],
    /// Logins timed, then p50 and p99 of TCP, TLS, upgrade and token mint in µs; all zero
    /// without logins (TLS zero for `ws://`, mint zero without minted tokens).
    pub logins: [u64; 9],
}

impl IntervalRecord {
    /// True when the interval had no delivery.
    pub fn no_deliveries(&self) -> bool {
        self.latency_us[5] == 0
    }
}

/// One interval as it closes: its record and its whole histograms, handed to whatever
/// needs the histograms (the latency log, the live view, a worker's coordinator) and then
/// reduced to its [`IntervalRecord`].
#[derive(Debug, Clone)]
pub struct ClosedInterval {
    /// Seconds from the start of the measured run to the start of this interval.
    pub start_s: f64,
    /// Length of the interval in seconds (1.0 except the last one, usually).
    pub length_s: f64,
    /// Sessions online at the end of the interval.
    pub users_online: u64,
    /// Events in the interval.
    pub counters: Counters,
    /// Delivery latency (receive time minus intended send time) in µs.
    pub latency: Histogram<u64>,
    /// The times of the logins completed in the interval; `None` when there were none.
    pub connect: Option<Box<ConnectTimes>>,
}

impl ClosedInterval {
    /// What the reports keep of it.
    pub fn record(&self) -> IntervalRecord {
        IntervalRecord {
            start_s: self.start_s,
            length_s: self.length_s,
            users_online: self.users_online,
            counters: self.counters,
            latency_us: latency_figures(&self.latency),
            logins: login_figures(self.connect.as_deref()),
        }
    }
}

/// p50, p90, p99, p99.9, max and count; all zero for an interval without deliveries.
pub fn latency_figures(latency: &Histogram<u64>) -> [u64; 6] {
    if latency.is_empty() {
        return [0; 6];
    }
    [
        latency.value_at_quantile(0.50),
        latency.value_at_quantile(0.90),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max(),
        latency.len(),
    ]
}

/// Logins timed, then p50 and p99 of TCP, TLS, upgrade and token mint; all zero without
/// logins.
pub fn login_figures(connect: Option<&ConnectTimes>) -> [u64; 9] {
    let Some(c) = connect else {
        return [0; 9];
    };
    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    [
        c.logins(),
        q(&c.tcp, 0.5),
        q(&c.tcp, 0.99),
        q(&c.tls, 0.5),
        q(&c.tls, 0.99),
        q(&c.upgrade, 0.5),
        q(&c.upgrade, 0.99),
        q(&c.mint, 0.5),
        q(&c.mint, 0.99),
    ]
}

/// Where users record; the run loop drains it once per interval.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    /// Login times: few per second next to deliveries, so one lock is enough.
    connect: Mutex<Option<Box<ConnectTimes>>>,
}

#[derive(Debug)]
struct Shard {
    counters: Counters,
    latency: Histogram<u64>,
}

impl Recorder {
    /// A recorder with `shards` independent shards (use about twice the worker threads).
    pub fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(Shard {
                    counters: Counters::default(),
                    latency: new_histogram(),
                })
            })
            .collect();
        Recorder {
            shards,
            connect: Mutex::new(None),
        }
    }

    /// Records one login's phase times.
    pub fn login(&self, times: &LoginTimes) {
        let mut connect = self
            .connect
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connect.get_or_insert_with(Box::default).record(times);
    }

    /// Takes the login times recorded since the last call (`None`: no login).
    pub fn take_logins(&self) -> Option<Box<ConnectTimes>> {
        self.connect
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Runs `f` on shard `key % shards` (callers pass their user index).
    pub fn with<R>(
        &self,
        key: usize,
        f: impl FnOnce(&mut Counters, &mut Histogram<u64>) -> R,
    ) -> R {
        let mut shard = self.shards[key % self.shards.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Shard { counters, latency } = &mut *shard;
        f(counters, latency)
    }

    /// Adds to counters only.
    pub fn count(&self, key: usize, f: impl FnOnce(&mut Counters)) {
        self.with(key, |counters, _| f(counters));
    }

    /// Takes everything recorded since the last call.
    pub fn take(&self) -> (Counters, Histogram<u64>) {
        let mut counters = Counters::default();
        let mut latency = new_histogram();
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            counters.add(&shard.counters);
            shard.counters = Counters::default();
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = latency.add(&shard.latency);
            shard.latency.reset();
        }
        (counters, latency)
    }
}

#[cfg(test)]
mod histogram_text_tests {
    use super::*;

    #[test]
    fn histograms_round_trip_through_text() {
        let mut h = new_histogram();
        for v in [1, 10, 1_000, 250_000] {
            h.record(v).unwrap();
        }
        let back = histogram_from_text(&histogram_text(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(histogram_from_text("").unwrap().len(), 0);
        assert!(histogram_from_text("not base64!").is_none());
        assert!(
            histogram_from_text("AAAA").is_none(),
            "base64 but not a histogram"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_times_record_by_phase_and_round_trip_through_text() {
        let recorder = Recorder::new(2);
        assert!(recorder.take_logins().is_none(), "no login, no histograms");
        recorder.login(&LoginTimes {
            tcp_us: 120,
            tls_us: Some(900),
            upgrade_us: 300,
            mint_us: Some(40),
        });
        recorder.login(&LoginTimes {
            tcp_us: 0,
            tls_us: None,
            upgrade_us: u64::MAX,
            mint_us: None,
        });
        let times = recorder.take_logins().expect("two logins");
        assert!(recorder.take_logins().is_none(), "taken");
        assert_eq!(times.logins(), 2);
        assert_eq!(times.tls.len(), 1, "only the wss:// login has a TLS time");
        assert_eq!(times.mint.len(), 1, "only the minted token has a mint time");
        assert!(
            times.upgrade.max() >= MAX_CONNECT_US * 99 / 100,
            "clamped, not lost"
        );
        let back = ConnectTimes::from_text(&times.to_text()).expect("decodes");
        assert_eq!(back, *times);
        assert!(ConnectTimes::from_text(&["x".into(), String::new(), String::new()]).is_none());
        // A segment file from before mint times were kept has three texts.
        let old = times.to_text()[..3].to_vec();
        let back = ConnectTimes::from_text(&old).expect("three texts decode");
        assert_eq!((back.logins(), back.mint.len()), (2, 0));
        assert!(ConnectTimes::from_text(&vec![String::new(); 5]).is_none());
    }

    #[test]
    fn take_merges_shards_and_resets_them() {
        let recorder = Recorder::new(3);
        for user in 0..6 {
            recorder.with(user, |c, h| {
                c.delivered += 1;
                h.record(100 + user as u64).unwrap();
            });
        }
        let (counters, latency) = recorder.take();
        assert_eq!(counters.delivered, 6);
        assert_eq!(latency.len(), 6);
        let (counters, latency) = recorder.take();
        assert_eq!(counters.delivered, 0);
        assert_eq!(latency.len(), 0);
    }
}
