//! Ephemeral ports: will the run's connections find a local port each?
//!
//! A TCP connection is told apart by (source IP, source port, destination IP, destination
//! port). Towards one destination socket address, one source IP therefore has only the
//! kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 =
//! 28,232 ports by default) — past that, `connect` fails with "Cannot assign requested
//! address" in the middle of a run. A run spreads its users over sources and destinations
//! round-robin (user `i` leaves from source `i % sources` to target `i % targets`), so this
//! module counts the users of every (source, destination) pair exactly, scales the busiest
//! pair to the scenario's peak (relogin connections included) and refuses, up front and
//! with the arithmetic, a run that cannot fit. It also refuses a pair that can never
//! connect: a source of the other IP family than its destination.
//!
//! The count is for the whole scenario on one machine: ports are the machine's, whichever
//! process holds them. The judging is pure ([`check`]); [`ensure`] adds the machine's range.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::segment::Segment;

/// Where the kernel keeps its ephemeral port range (IPv6 uses the same one).
const RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Source counts [`check`] tries when it suggests how many sources would fit.
const SUGGESTION_TRIES: usize = 64;

/// An inclusive range of local ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Linux's default, used when the machine's range cannot be read.
    pub const LINUX_DEFAULT: PortRange = PortRange {
        first: 32768,
        last: 60999,
    };

    /// The machine's ephemeral range, or [`PortRange::LINUX_DEFAULT`] when unreadable.
    pub fn of_this_machine() -> PortRange {
        std::fs::read_to_string(RANGE_FILE)
            .ok()
            .and_then(|text| PortRange::parse(&text))
            .unwrap_or(PortRange::LINUX_DEFAULT)
    }

    /// Parses the file's format: two numbers separated by white space.
    pub fn parse(text: &str) -> Option<PortRange> {
        let mut numbers = text.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(first)), Some(Ok(last)), None) =
            (numbers.next(), numbers.next(), numbers.next())
        else {
            return None;
        };
        (first <= last).then_some(PortRange { first, last })
    }

    /// How many ports the range holds.
    pub fn ports(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A run the ephemeral ports cannot carry.
#[derive(Debug, thiserror::Error)]
pub enum PortsError {
    /// User `user` would leave from `local` towards a destination of the other family.
    #[error(
        "source address {local} ({}) cannot reach {destination} ({}), where user {user} \
         connects: a connection leaves from an address of its destination's IP family; list \
         sources of that family in [users] source_addresses or --source-address",
        family(.local),
        family(&.destination.ip())
    )]
    Family {
        local: IpAddr,
        destination: SocketAddr,
        user: u32,
    },
    /// The busiest (source, destination) pair needs more ports than the range holds.
    #[error(transparent)]
    Exhausted(#[from] TooFewPorts),
}

/// The arithmetic of a run that would run out of ephemeral ports.
#[derive(Debug)]
pub struct TooFewPorts {
    /// Connections the run holds at peak.
    pub peak: u64,
    /// Source addresses listed (0: the kernel chooses, which is one per destination).
    pub sources: usize,
    /// Distinct destination socket addresses.
    pub destinations: usize,
    /// Connections at peak on the busiest pair.
    pub busiest: u64,
    pub range: PortRange,
    /// Source addresses that would fit, if a few more would do.
    pub sources_needed: Option<usize>,
    /// Every destination is 127.x.y.z, so 127.0.0.1, 127.0.0.2, ... are sources to hand.
    pub loopback_v4: bool,
}

impl std::error::Error for TooFewPorts {}

impl fmt::Display for TooFewPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources = match self.sources {
            0 => "1 source address (the kernel's choice)".to_string(),
            n => format!("{n} source address(es)"),
        };
        write!(
            f,
            "{} connections at peak over {sources} x {} destination(s) = {} on the busiest \
             pair, but the ephemeral port range {} has only {} ports per pair: ",
            self.peak,
            self.destinations,
            self.busiest,
            self.range,
            self.range.ports()
        )?;
        let add = if self.sources == 0 {
            "add"
        } else {
            "list more"
        };
        match (self.sources_needed, self.loopback_v4) {
            (Some(n), true) if n < 255 => write!(
                f,
                "{add} source_addresses (e.g. {n} addresses: 127.0.0.1 ... 127.0.0.{n}, in \
                 [users] or as --source-address)"
            ),
            (Some(n), _) => write!(
                f,
                "{add} source_addresses ({n} local addresses of this machine that reach the \
                 targets, in [users] or as --source-address)"
            ),
            (None, _) => write!(
                f,
                "{add} source_addresses (local addresses of this machine, in [users] or as \
                 --source-address), add destinations, or lower the peak"
            ),
        }
    }
}

/// Checks the run against this machine's ephemeral port range (see [`check`]).
pub fn ensure(
    users: Players,
    peak: u64,
    destinations: &[SocketAddr],
    sources: &[IpAddr],
) -> Result<(), PortsError> {
    check(
        users,
        peak,
        destinations,
        sources,
        PortRange::of_this_machine(),
    )
}

/// The users whose connections leave from this machine: `segment`'s share of `count`
/// ([`Segment::WHOLE`] for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Players {
    pub count: u32,
    pub segment: Segment,
}

impl Players {
    /// All `count` users.
    pub fn all(count: u32) -> Players {
        Players {
            count,
            segment: Segment::WHOLE,
        }
    }

    fn indices(&self) -> impl Iterator<Item = u32> {
        self.segment.users(self.count)
    }

    fn len(&self) -> u32 {
        self.segment.user_count(self.count)
    }
}

/// Checks that `users` users, holding `peak` connections at most, spread round-robin over
/// `destinations` (user `i` to `destinations[i % len]`) and `sources` (from
/// `sources[i % len]`; empty: the kernel chooses), fit in `range` on every pair, and that
/// every pair's source and destination are of one IP family.
pub fn check(
    players: Players,
    peak: u64,
    destinations: &[SocketAddr],
    sources: &[IpAddr],
    range: PortRange,
) -> Result<(), PortsError> {
    let users = players.len();
    if users == 0 || destinations.is_empty() {
        return Ok(());
    }
    if !sources.is_empty() {
        // The pairs repeat every sources x destinations users.
        let period = sources.len() * destinations.len();
        for user in players.indices().take(period) {
            let user = user as usize;
            let local = sources[user % sources.len()];
            let destination = destinations[user % destinations.len()];
            if local.is_ipv4() != destination.is_ipv4() {
                return Err(PortsError::Family {
                    local,
                    destination,
                    user: user as u32,
                });
            }
        }
    }
    let source_ids = distinct_ids(sources);
    let destination_ids = distinct_ids(destinations);
    let busiest = at_peak(
        busiest_pair(players, &source_ids, &destination_ids),
        users,
        peak,
    );
    if busiest <= range.ports() {
        return Ok(());
    }
    let distinct_destinations = destination_ids.iter().max().map_or(0, |&id| id + 1);
    // Each pair holds at least its share of the peak, so fewer sources cannot fit.
    let at_least = peak.div_ceil(range.ports() * distinct_destinations as u64) as usize;
    let sources_needed = (at_least.max(sources.len() + 1)..)
        .take(SUGGESTION_TRIES)
        .find(|&n| {
            let ids: Vec<usize> = (0..n).collect();
            at_peak(busiest_pair(players, &ids, &destination_ids), users, peak) <= range.ports()
        });
    Err(TooFewPorts {
        peak,
        sources: sources.len(),
        destinations: distinct_destinations,
        busiest,
        range,
        sources_needed,
        loopback_v4: destinations
            .iter()
            .all(|d| matches!(d.ip(), IpAddr::V4(ip) if ip.is_loopback())),
    }
    .into())
}

fn family(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Each item's index among the distinct items, in order of first appearance.
fn distinct_ids<T: PartialEq>(items: &[T]) -> Vec<usize> {
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let first = items[..i].iter().position(|seen| seen == item);
        let id = match first {
            Some(earlier) => ids[earlier],
            None => ids.iter().max().map_or(0, |&id: &usize| id + 1),
        };
        ids.push(id);
    }
    ids
}

/// First logins on the busiest (source, destination) pair, counted user by user.
/// No sources is one (the kernel's), for every destination.
fn busiest_pair(players: Players, source_ids: &[usize], destination_ids: &[usize]) -> u64 {
    let source_count = source_ids.iter().max().map_or(1, |&id| id + 1);
    let destination_count = destination_ids.iter().max().map_or(1, |&id| id + 1);
    let mut counts = vec![0u64; source_count * destination_count];
    for user in players.indices() {
        let user = user as usize;
        let source = match source_ids {
            [] => 0,
            ids => ids[user % ids.len()],
        };
        let destination = destination_ids[user % destination_ids.len()];
        counts[source * destination_count + destination] += 1;
    }
    counts.into_iter().max().unwrap_or(0)
}

/// A pair's first logins scaled to the run's peak (relogins open more), rounded up.
fn at_peak(logins: u64, users: u32, peak: u64) -> u64 {
    let scaled = u128::from(logins) * u128::from(peak.max(u64::from(users)));
    u64::try_from(scaled.div_ceil(u128::from(users))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: PortRange = PortRange::LINUX_DEFAULT;

    #[test]
    fn a_segment_counts_only_its_own_users() {
        let one = addrs(&["127.0.0.1:6789"]);
        // 76,000 users over 4 hosts: 19,000 each, well inside one pair's range.
        let segment = Players {
            count: 76_000,
            segment: Segment { index: 1, count: 4 },
        };
        assert!(check(segment, 19_001, &one, &[], RANGE).is_ok());
        // The same on one machine would not fit.
        assert!(check(Players::all(76_000), 76_001, &one, &[], RANGE).is_err());
        // A segment with too many of its own still does.
        let big = Players {
            count: 120_000,
            segment: Segment { index: 0, count: 2 },
        };
        assert!(check(big, 60_000, &one, &[], RANGE).is_err());
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| a.parse().expect("an address"))
            .collect()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter()
            .map(|a| a.parse().expect("an address"))
            .collect()
    }

    fn exhausted(result: Result<(), PortsError>) -> TooFewPorts {
        match result {
            Err(PortsError::Exhausted(too_few)) => too_few,
            other => panic!("expected too few ports, got {other:?}"),
        }
    }

    #[test]
    fn the_range_file_is_two_numbers() {
        assert_eq!(PortRange::parse("32768\t60999\n"), Some(RANGE));
        assert_eq!(RANGE.ports(), 28232);
        assert_eq!(RANGE.to_string(), "32768-60999");
        for bad in ["", "32768", "60999 32768", "a b", "1 2 3", "1 70000"] {
            assert_eq!(PortRange::parse(bad), None, "{bad:?}");
        }
        // Whatever this machine says, a range comes back.
        assert!(PortRange::of_this_machine().ports() >= 1);
    }

    #[test]
    fn a_run_that_fits_one_pair_passes() {
        let one = addrs(&["127.0.0.1:6789"]);
        assert!(check(Players::all(28_000), 28_232, &one, &[], RANGE).is_ok());
        assert!(check(
            Players::all(20),
            21,
            &one,
            &ips(&["127.0.0.2", "127.0.0.3"]),
            RANGE
        )
        .is_ok());
    }

    #[test]
    fn too_many_connections_on_one_pair_are_refused_with_the_arithmetic() {
        let one = addrs(&["127.0.0.1:6789"]);
        let too_few = exhausted(check(Players::all(120_000), 120_000, &one, &[], RANGE));
        assert_eq!(too_few.busiest, 120_000);
        assert_eq!(too_few.sources_needed, Some(5));
        let message = too_few.to_string();
        for part in [
            "120000 connections at peak over 1 source address (the kernel's choice) x 1 \
             destination(s) = 120000 on the busiest pair",
            "32768-60999 has only 28232 ports per pair",
            "e.g. 5 addresses: 127.0.0.1 ... 127.0.0.5",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
    }

    #[test]
    fn sources_share_the_connections_round_robin() {
        let one = addrs(&["127.0.0.1:6789"]);
        let five = ips(&[
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.5",
        ]);
        assert!(check(Players::all(120_000), 120_000, &one, &five, RANGE).is_ok());
        // Four are 30,000 each: too many, and five are suggested.
        let too_few = exhausted(check(
            Players::all(120_000),
            120_000,
            &one,
            &five[..4],
            RANGE,
        ));
        assert_eq!((too_few.busiest, too_few.sources_needed), (30_000, Some(5)));
        assert!(too_few.to_string().contains("list more source_addresses"));
    }

    #[test]
    fn the_peak_beyond_the_users_scales_every_pair_rounding_up() {
        let one = addrs(&["127.0.0.1:6789"]);
        // 20,000 users, but relogins make the peak 30,000: 1.5 connections a user.
        let too_few = exhausted(check(Players::all(20_000), 30_000, &one, &[], RANGE));
        assert_eq!(too_few.busiest, 30_000);
        // 3 users over 2 sources: 2 on the first; a peak of 4 makes that ceil(2 x 4/3) = 3.
        let range = PortRange { first: 1, last: 2 };
        let two = ips(&["127.0.0.2", "127.0.0.3"]);
        assert_eq!(
            exhausted(check(Players::all(3), 4, &one, &two, range)).busiest,
            3
        );
    }

    #[test]
    fn sources_and_targets_in_step_use_only_some_pairs() {
        // 2 sources x 2 targets, but user i takes source i%2 and target i%2: only two of
        // the four pairs are used, 30,000 connections each.
        let two_targets = addrs(&["127.0.0.1:1000", "127.0.0.1:2000"]);
        let two = ips(&["127.0.0.2", "127.0.0.3"]);
        let too_few = exhausted(check(
            Players::all(60_000),
            60_000,
            &two_targets,
            &two,
            RANGE,
        ));
        assert_eq!(too_few.busiest, 30_000);
        // Three sources cover all six pairs: 10,000 each.
        assert_eq!(too_few.sources_needed, Some(3));
        let three = ips(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
        assert!(check(Players::all(60_000), 60_000, &two_targets, &three, RANGE).is_ok());
    }

    #[test]
    fn one_destination_named_twice_is_one_destination() {
        let same = addrs(&["127.0.0.1:6789", "127.0.0.1:6789"]);
        let too_few = exhausted(check(Players::all(40_000), 40_000, &same, &[], RANGE));
        assert_eq!((too_few.destinations, too_few.busiest), (1, 40_000));
        let two = addrs(&["127.0.0.1:6789", "127.0.0.1:6790"]);
        assert!(check(Players::all(40_000), 40_000, &two, &[], RANGE).is_ok());
    }

    #[test]
    fn remote_targets_get_advice_without_loopback_addresses() {
        let remote = addrs(&["192.0.2.10:80"]);
        let message =
            exhausted(check(Players::all(60_000), 60_000, &remote, &[], RANGE)).to_string();
        assert!(
            message.contains("3 local addresses of this machine"),
            "{message}"
        );
        assert!(!message.contains("127.0.0.1"), "{message}");
    }

    #[test]
    fn a_source_of_the_other_family_is_refused_naming_both() {
        let v4 = addrs(&["127.0.0.1:6789"]);
        let error = check(
            Players::all(10),
            10,
            &v4,
            &ips(&["127.0.0.2", "::1"]),
            RANGE,
        )
        .expect_err("an IPv6 source for an IPv4 target");
        let message = error.to_string();
        assert!(
            message.contains("::1") && message.contains("127.0.0.1:6789"),
            "{message}"
        );
        // Matched families, one of each, in step with the targets: fine.
        let mixed = addrs(&["127.0.0.1:6789", "[::1]:6789"]);
        assert!(check(
            Players::all(10),
            10,
            &mixed,
            &ips(&["127.0.0.2", "::1"]),
            RANGE
        )
        .is_ok());
    }

    #[test]
    fn four_hundred_thousand_users_are_counted_quickly() {
        let three = addrs(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let started = std::time::Instant::now();
        let too_few = exhausted(check(Players::all(400_000), 400_000, &three, &[], RANGE));
        assert_eq!(too_few.sources_needed, Some(5));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
