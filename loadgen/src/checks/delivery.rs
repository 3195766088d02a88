//! The delivery check: what each received Text frame is, loss, duplicate and order
//! accounting for one receiving session, and the end-of-run loss computation. Pure: the
//! simulated users feed it, nothing here touches a socket.
//!
//! **The loss window.** A message sent at time `t` is *expected* by a session iff the
//! session was online and stable from before `t` until `t + deadline`: confirmed online
//! (its handshake finished `settle` ago, or it has already received something) and not
//! being relogged, churned, closed or dropped during that window. Deliveries expected and
//! missing are *lost*; deliveries outside any window are *unverified* (counted, not judged).
//!
//! **The sender's side.** A message its sender wrote in the last `deadline` before the
//! server cut that sender's connection unexpectedly (a server node killed, a dropped
//! connection) is *unjudged*: the server may have gone before it read it, so nobody is
//! expected to have received it (what arrives of it is unverified). The cut itself is
//! reported, as an unexpected disconnect; counting its in-flight messages as loss too
//! would blame the broadcast for what was a dead connection.
//!
//! Per (session, sender) the received sequence numbers are kept as a range
//! `[first, last]` minus a list of holes. A correct server fills the range in order and
//! never makes a hole, so the usual cost is two integers; a gap opens a hole, a late
//! arrival that fills a hole is an order error, and anything already inside the range and
//! not in a hole is a duplicate.

use std::collections::HashMap;

use crate::stamp::{Kind, Stamp};

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next in order (or after a gap).
    InOrder,
    /// Earlier than something already received (filled a hole or extended the start).
    OutOfOrder,
    /// Already received.
    Duplicate,
}

/// An inclusive range of sequence numbers.
pub type SeqRange = (u64, u64);

/// The set of sequence numbers one session received from one sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedSet {
    /// `[first, last]` when anything was received.
    range: Option<(u64, u64)>,
    /// Sorted, disjoint, inclusive ranges inside `range` that were not received.
    holes: Vec<(u64, u64)>,
}

impl ReceivedSet {
    /// Records an arrival of `seq`.
    pub fn receive(&mut self, seq: u64) -> Arrival {
        let Some((first, last)) = self.range else {
            self.range = Some((seq, seq));
            return Arrival::InOrder;
        };
        if seq > last {
            if seq > last + 1 {
                self.holes.push((last + 1, seq - 1));
            }
            self.range = Some((first, seq));
            return Arrival::InOrder;
        }
        if seq < first {
            if seq + 1 < first {
                self.holes.insert(0, (seq + 1, first - 1));
            }
            self.range = Some((seq, last));
            return Arrival::OutOfOrder;
        }
        match self.holes.iter().position(|&(a, b)| a <= seq && seq <= b) {
            None => Arrival::Duplicate,
            Some(i) => {
                let (a, b) = self.holes[i];
                match (seq == a, seq == b) {
                    (true, true) => {
                        self.holes.remove(i);
                    }
                    (true, false) => self.holes[i] = (a + 1, b),
                    (false, true) => self.holes[i] = (a, b - 1),
                    (false, false) => {
                        self.holes[i] = (a, seq - 1);
                        self.holes.insert(i + 1, (seq + 1, b));
                    }
                }
                Arrival::OutOfOrder
            }
        }
    }

    /// Whether `seq` was received.
    pub fn contains(&self, seq: u64) -> bool {
        match self.range {
            Some((first, last)) if first <= seq && seq <= last => {
                !self.holes.iter().any(|&(a, b)| a <= seq && seq <= b)
            }
            _ => false,
        }
    }

    /// `[first, last]` and the holes in it (`None`: nothing received), to write down.
    pub fn parts(&self) -> Option<(SeqRange, &[SeqRange])> {
        self.range.map(|range| (range, self.holes.as_slice()))
    }

    /// The set of [`ReceivedSet::parts`]; `None` unless the holes are sorted, disjoint,
    /// not adjacent, and strictly inside the range (what `parts` gives).
    pub fn from_parts(range: (u64, u64), holes: Vec<(u64, u64)>) -> Option<ReceivedSet> {
        let (first, last) = range;
        let mut after = first;
        for &(a, b) in &holes {
            if a <= after || b < a || b >= last {
                return None;
            }
            after = b + 1;
        }
        (first <= last).then_some(ReceivedSet {
            range: Some(range),
            holes,
        })
    }

    /// How many distinct sequence numbers were received.
    pub fn len(&self) -> u64 {
        match self.range {
            None => 0,
            Some((first, last)) => {
                last - first + 1 - self.holes.iter().map(|&(a, b)| b - a + 1).sum::<u64>()
            }
        }
    }

    /// How many of `lo..=hi` were received.
    pub fn count_in(&self, lo: u64, hi: u64) -> u64 {
        let Some((first, last)) = self.range else {
            return 0;
        };
        let (a, b) = (lo.max(first), hi.min(last));
        if a > b {
            return 0;
        }
        let holes: u64 = self
            .holes
            .iter()
            .map(|&(x, y)| {
                let (x, y) = (x.max(a), y.min(b));
                if x > y {
                    0
                } else {
                    y - x + 1
                }
            })
            .sum();
        b - a + 1 - holes
    }
}

/// What one Text frame received by a simulated user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not a message of this run, or its ` -- FROM ` does not name its stamped sender.
    Foreign,
    /// A relogin probe of any segment's probe user: its id (unique in the run) and its
    /// send time (run clock, ns).
    Probe { id: u64, sent_ns: u64 },
    /// The receiver's own message (M2 says it must not come back).
    OwnMessage,
    /// Another user's chat message.
    Chat {
        sender: u32,
        seq: u64,
        /// When the sender's schedule meant to send it (run clock, ns).
        intended_ns: u64,
    },
}

/// Classifies a Text frame that `receiver` got in run `run_id` of `users` users, where
/// `name_of` gives each user's name and users from `users` on are the segments' probe
/// users (a name of `""`: no such user).
pub fn classify_text<'n>(
    bytes: &[u8],
    run_id: u32,
    receiver: u32,
    users: u32,
    name_of: impl Fn(u32) -> &'n str,
) -> Delivery {
    let decoded = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| Stamp::decode_delivery(text).ok());
    let Some((stamp, from)) = decoded else {
        return Delivery::Foreign;
    };
    let names_its_sender = |sender| {
        let name = name_of(sender);
        !name.is_empty() && from == name
    };
    classify(stamp, run_id, receiver, users, names_its_sender, false)
}

/// Classifies a stamp found in a frame of a protocol that does not name the sender the
/// chat protocol's way ([`crate::protocol`]): the stamp alone says who sent it. With
/// `self_delivery`, the receiver's own messages are deliveries like any other.
pub fn classify_stamp<'n>(
    stamp: Stamp,
    run_id: u32,
    receiver: u32,
    users: u32,
    name_of: impl Fn(u32) -> &'n str,
    self_delivery: bool,
) -> Delivery {
    let exists = |sender| !name_of(sender).is_empty();
    classify(stamp, run_id, receiver, users, exists, self_delivery)
}

fn classify(
    stamp: Stamp,
    run_id: u32,
    receiver: u32,
    users: u32,
    sender_ok: impl Fn(u32) -> bool,
    self_delivery: bool,
) -> Delivery {
    if stamp.run != run_id {
        return Delivery::Foreign;
    }
    match stamp.kind {
        Kind::Probe if stamp.sender >= users && sender_ok(stamp.sender) => Delivery::Probe {
            id: stamp.seq,
            sent_ns: stamp.intended_ns,
        },
        Kind::Chat if stamp.sender < users && stamp.seq > 0 && sender_ok(stamp.sender) => {
            if stamp.sender == receiver && !self_delivery {
                Delivery::OwnMessage
            } else {
                Delivery::Chat {
                    sender: stamp.sender,
                    seq: stamp.seq,
                    intended_ns: stamp.intended_ns,
                }
            }
        }
        _ => Delivery::Foreign,
    }
}

/// Everything the delivery check needs from one finished session.
#[derive(Debug, Clone, Default)]
pub struct SessionLedger {
    /// Index of the user the session belonged to.
    pub user: u32,
    /// Start of the time (ns on the run clock) from which deliveries were expected, if the
    /// session ever became stable.
    pub expect_from_ns: Option<u64>,
    /// When the session stopped being stable (relogin, churn, close, drop, end of run).
    pub stable_until_ns: u64,
    /// Received sequence numbers by sender index.
    pub received: HashMap<u32, ReceivedSet>,
}

/// Expected, lost and unverified deliveries, each attributed to the interval in which the
/// message was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossTally {
    pub expected: Vec<u64>,
    pub lost: Vec<u64>,
    pub unverified: Vec<u64>,
}

impl LossTally {
    /// Adds `other`, whose intervals past `last` count in `last` (a tally taken while the
    /// run went on does not know how many intervals it will have).
    pub fn add(&mut self, other: &LossTally, last: usize) {
        for (mine, theirs) in [
            (&mut self.expected, &other.expected),
            (&mut self.lost, &other.lost),
            (&mut self.unverified, &other.unverified),
        ] {
            for (index, &n) in theirs.iter().enumerate() {
                if n > 0 {
                    let at = index.min(last);
                    if mine.len() <= at {
                        mine.resize(at + 1, 0);
                    }
                    mine[at] += n;
                }
            }
        }
    }

    fn bump(slot: &mut Vec<u64>, index: usize) {
        if slot.len() <= index {
            slot.resize(index + 1, 0);
        }
        slot[index] += 1;
    }
}

/// What one sender sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentLog {
    /// `times[k]` is the run-clock time (ns) at which the message with sequence `k + 1`
    /// was sent (non-decreasing in `k`).
    pub times: Vec<u64>,
    /// Inclusive sequence ranges that are unjudged (see the module doc), in order.
    pub unjudged: Vec<(u64, u64)>,
}

impl SentLog {
    /// A log with every message judged.
    #[cfg(test)]
    pub fn from_times(times: Vec<u64>) -> SentLog {
        SentLog {
            times,
            unjudged: Vec::new(),
        }
    }

    /// Marks the messages sent on a connection (sequences `first..=last`) that the server
    /// cut at `cut_ns` and that were sent within `deadline_ns` before the cut.
    #[cfg(test)]
    pub fn cut(&mut self, first: u64, last: u64, cut_ns: u64, deadline_ns: u64) {
        if let Some(range) = cut_range(&self.times, first, last, cut_ns, deadline_ns) {
            self.unjudged.push(range);
        }
    }

    /// The log, borrowed.
    pub fn view(&self) -> SentView<'_> {
        SentView {
            times: &self.times,
            unjudged: &self.unjudged,
        }
    }
}

/// The messages `first..=last` sent on a connection the server cut at `cut_ns` that were
/// sent within `deadline_ns` before the cut (`times` as in [`SentLog`]).
pub fn cut_range(
    times: &[u64],
    first: u64,
    last: u64,
    cut_ns: u64,
    deadline_ns: u64,
) -> Option<(u64, u64)> {
    let since = cut_ns.saturating_sub(deadline_ns);
    let lo = (first.max(1)..=last)
        .find(|&seq| times.get((seq - 1) as usize).is_some_and(|&t| t >= since))?;
    Some((lo, last))
}

/// What one sender sent, borrowed: a [`SentLog`]'s parts, or a running run's send times
/// and the unjudged ranges known so far.
#[derive(Debug, Clone, Copy)]
pub struct SentView<'a> {
    /// `times[k]`: when the message with sequence `k + 1` was sent (run clock, ns).
    pub times: &'a [u64],
    /// Inclusive sequence ranges that are unjudged.
    pub unjudged: &'a [(u64, u64)],
}

impl SentView<'_> {
    fn is_unjudged(&self, seq: u64) -> bool {
        self.unjudged.iter().any(|&(lo, hi)| lo <= seq && seq <= hi)
    }
}

/// Computes loss over all sessions. `sent[s]` is what sender `s` sent; `interval_of` maps a
/// send time to the index of the report interval it fell in. With `self_delivery` (the
/// protocol sends a user's messages back to it), a session expects its own user's
/// messages too.
pub fn tally_loss(
    ledgers: &[SessionLedger],
    sent: &[SentLog],
    deadline_ns: u64,
    self_delivery: bool,
    interval_of: impl Fn(u64) -> usize,
) -> LossTally {
    let views: Vec<SentView<'_>> = sent.iter().map(SentLog::view).collect();
    tally_loss_of(ledgers, &views, deadline_ns, self_delivery, interval_of)
}

/// [`tally_loss`] over borrowed logs: a running run tallies its finished sessions with it
/// while its senders go on sending.
pub fn tally_loss_of(
    ledgers: &[SessionLedger],
    sent: &[SentView<'_>],
    deadline_ns: u64,
    self_delivery: bool,
    interval_of: impl Fn(u64) -> usize,
) -> LossTally {
    let mut tally = LossTally::default();
    for ledger in ledgers {
        let window = ledger.expect_from_ns.and_then(|from| {
            let until = ledger.stable_until_ns.checked_sub(deadline_ns)?;
            (from <= until).then_some((from, until))
        });
        for (sender, log) in sent.iter().enumerate() {
            let times = log.times;
            let sender = sender as u32;
            if sender == ledger.user && !self_delivery {
                continue;
            }
            let received = ledger.received.get(&sender);
            // Sequence numbers (1-based) whose send time is inside the window.
            let (lo, hi) = match window {
                Some((from, until)) => {
                    let lo = times.partition_point(|&t| t < from);
                    let hi = times.partition_point(|&t| t <= until);
                    (lo as u64 + 1, hi as u64)
                }
                None => (1, 0),
            };
            for seq in lo..=hi {
                let when = interval_of(times[(seq - 1) as usize]);
                if log.is_unjudged(seq) {
                    if received.is_some_and(|r| r.contains(seq)) {
                        LossTally::bump(&mut tally.unverified, when);
                    }
                    continue;
                }
                LossTally::bump(&mut tally.expected, when);
                if !received.is_some_and(|r| r.contains(seq)) {
                    LossTally::bump(&mut tally.lost, when);
                }
            }
            if let Some(received) = received {
                let outside = received.len() - received.count_in(lo, hi);
                if outside > 0 {
                    // Attribute each out-of-window arrival to its send interval.
                    let Some((first, last)) = received.range else {
                        continue;
                    };
                    for seq in
                        (first..=last).filter(|&s| (s < lo || s > hi) && received.contains(s))
                    {
                        let when = times.get((seq - 1) as usize).map_or(0, |&t| interval_of(t));
                        LossTally::bump(&mut tally.unverified, when);
                    }
                }
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_gap_fill_and_duplicate() {
        let mut set = ReceivedSet::default();
        assert_eq!(set.receive(1), Arrival::InOrder);
        assert_eq!(set.receive(2), Arrival::InOrder);
        assert_eq!(set.receive(5), Arrival::InOrder);
        assert_eq!(set.len(), 3);
        assert!(!set.contains(3));
        assert_eq!(set.receive(4), Arrival::OutOfOrder);
        assert_eq!(set.receive(4), Arrival::Duplicate);
        assert_eq!(set.receive(2), Arrival::Duplicate);
        assert_eq!(set.receive(3), Arrival::OutOfOrder);
        assert_eq!(set.len(), 5);
        assert_eq!(set.holes, vec![]);
    }

    #[test]
    fn a_set_is_written_down_and_read_back_and_bad_parts_are_refused() {
        let mut set = ReceivedSet::default();
        for seq in [3, 4, 8, 10] {
            set.receive(seq);
        }
        let (range, holes) = set.parts().unwrap();
        assert_eq!((range, holes), ((3, 10), &[(5, 7), (9, 9)][..]));
        assert_eq!(ReceivedSet::from_parts(range, holes.to_vec()), Some(set));
        for (range, holes) in [
            ((5, 3), vec![]),
            ((1, 10), vec![(1, 2)]),
            ((1, 10), vec![(5, 10)]),
            ((1, 10), vec![(5, 6), (6, 7)]),
            ((1, 10), vec![(5, 6), (7, 8)]),
            ((1, 10), vec![(6, 5)]),
            ((1, 10), vec![(7, 8), (3, 4)]),
        ] {
            assert_eq!(
                ReceivedSet::from_parts(range, holes.clone()),
                None,
                "{range:?} {holes:?}"
            );
        }
    }

    #[test]
    fn holes_split_and_start_extends() {
        let mut set = ReceivedSet::default();
        set.receive(10);
        set.receive(20);
        assert_eq!(set.receive(15), Arrival::OutOfOrder);
        assert_eq!(set.holes, vec![(11, 14), (16, 19)]);
        assert_eq!(set.receive(7), Arrival::OutOfOrder);
        assert_eq!(set.holes, vec![(8, 9), (11, 14), (16, 19)]);
        assert_eq!(set.count_in(1, 100), 4);
        assert_eq!(set.count_in(10, 15), 2);
        assert_eq!(set.count_in(21, 30), 0);
    }

    #[test]
    fn declared_self_delivery_expects_a_users_own_messages() {
        let sends = vec![
            SentLog::from_times(vec![10, 20]),
            SentLog::from_times(vec![15]),
        ];
        // User 0 got one of its own two messages back and user 1's one.
        let own = ledger(0, 0, 1000, &[(0, &[1]), (1, &[1])]);
        let tally = tally_loss(std::slice::from_ref(&own), &sends, 10, true, |_| 0);
        assert_eq!((tally.expected, tally.lost), (vec![3], vec![1]));
        // Undeclared, its own messages are not expected (one back is a self delivery).
        let tally = tally_loss(&[own], &sends, 10, false, |_| 0);
        assert_eq!((tally.expected, tally.lost), (vec![1], vec![]));
        let stamp = Stamp {
            run: 7,
            kind: Kind::Chat,
            sender: 0,
            seq: 1,
            intended_ns: 5,
        };
        let names = |i: u32| if i < 3 { "x" } else { "" };
        assert_eq!(
            classify_stamp(stamp, 7, 0, 2, names, false),
            Delivery::OwnMessage
        );
        assert!(matches!(
            classify_stamp(stamp, 7, 0, 2, names, true),
            Delivery::Chat { sender: 0, .. }
        ));
        assert_eq!(
            classify_stamp(stamp, 8, 1, 2, names, false),
            Delivery::Foreign
        );
        let probe = Stamp {
            kind: Kind::Probe,
            sender: 2,
            ..stamp
        };
        assert!(matches!(
            classify_stamp(probe, 7, 1, 2, names, false),
            Delivery::Probe { .. }
        ));
        let nobody = Stamp {
            kind: Kind::Probe,
            sender: 9,
            ..stamp
        };
        assert_eq!(
            classify_stamp(nobody, 7, 1, 2, names, false),
            Delivery::Foreign
        );
    }

    fn ledger(user: u32, from: u64, until: u64, got: &[(u32, &[u64])]) -> SessionLedger {
        let mut received = HashMap::new();
        for (sender, seqs) in got {
            let set: &mut ReceivedSet = received.entry(*sender).or_default();
            for &s in *seqs {
                set.receive(s);
            }
        }
        SessionLedger {
            user,
            expect_from_ns: Some(from),
            stable_until_ns: until,
            received,
        }
    }

    #[test]
    fn loss_counts_only_inside_the_window() {
        // Sender 0 sends seq 1..=10 at t = 10, 20, ..., 100.
        let sends = vec![SentLog::from_times((1..=10).map(|k| k * 10).collect())];
        let per_10 = |t: u64| (t / 50) as usize;
        // Receiver 1 is stable from 25 until 95; deadline 10 -> window [25, 85]: seqs 3..=8.
        // It got 1, 3, 4, 6, 7, 8, 9: seq 5 is lost; 1 and 9 are unverified.
        let l = ledger(1, 25, 95, &[(0, &[1, 3, 4, 6, 7, 8, 9])]);
        let tally = tally_loss(&[l], &sends, 10, false, per_10);
        assert_eq!(tally.expected.iter().sum::<u64>(), 6);
        assert_eq!(tally.lost, vec![0, 1]);
        assert_eq!(tally.unverified.iter().sum::<u64>(), 2);
        // The sender never expects its own messages.
        let own = ledger(0, 0, 1000, &[]);
        assert_eq!(
            tally_loss(&[own], &sends, 10, false, per_10),
            LossTally::default()
        );
    }

    #[test]
    fn messages_in_flight_when_the_server_cut_their_sender_are_not_judged() {
        // Sender 0 sends seq 1..=10 at t = 10, 20, ..., 100 on one connection, which the
        // server cut at t = 75; deadline 10: seqs 7 (t = 70) and later are unjudged.
        let mut log = SentLog::from_times((1..=10).map(|k| k * 10).collect());
        log.cut(1, 7, 75, 10);
        assert_eq!(log.unjudged, vec![(7, 7)]);
        // The receiver, stable throughout, got 1..=6 (seq 7 died with the server) and is
        // not blamed for it; nor for seqs 8..=10, never sent on a live connection.
        log.unjudged = vec![(7, 10)];
        let l = ledger(1, 0, 1000, &[(0, &[1, 2, 3, 4, 5, 6])]);
        let tally = tally_loss(
            std::slice::from_ref(&l),
            std::slice::from_ref(&log),
            10,
            false,
            |_| 0,
        );
        assert_eq!(tally.expected, vec![6]);
        assert_eq!(tally.lost, Vec::<u64>::new());
        // The check still fails on a real loss among the judged messages.
        let holey = ledger(1, 0, 1000, &[(0, &[1, 2, 4, 5, 6])]);
        let tally = tally_loss(&[holey], &[log], 10, false, |_| 0);
        assert_eq!(tally.lost, vec![1]);
    }

    #[test]
    fn a_session_that_never_stabilised_expects_nothing() {
        let sends = vec![SentLog::from_times(vec![10, 20])];
        let mut l = ledger(1, 0, 5, &[(0, &[1])]);
        let tally = tally_loss(std::slice::from_ref(&l), &sends, 10, false, |_| 0);
        assert_eq!(tally.expected.iter().sum::<u64>(), 0);
        assert_eq!(tally.unverified, vec![1]);
        l.expect_from_ns = None;
        assert_eq!(
            tally_loss(&[l], &sends, 10, false, |_| 0)
                .expected
                .iter()
                .sum::<u64>(),
            0
        );
    }

    fn names(index: u32) -> &'static str {
        ["ann", "bob", "probe", "probe2"]
            .get(index as usize)
            .copied()
            .unwrap_or("")
    }

    fn delivery(stamp: Stamp, from: &str) -> Vec<u8> {
        format!("{}{}{from}", stamp.message(0), crate::stamp::FROM).into_bytes()
    }

    #[test]
    fn received_text_is_classified_by_stamp_and_sender_name() {
        let chat = Stamp {
            run: 7,
            kind: Kind::Chat,
            sender: 1,
            seq: 3,
            intended_ns: 42,
        };
        let got = |bytes: &[u8], receiver| classify_text(bytes, 7, receiver, 2, names);
        assert_eq!(
            got(&delivery(chat, "bob"), 0),
            Delivery::Chat {
                sender: 1,
                seq: 3,
                intended_ns: 42
            }
        );
        assert_eq!(got(&delivery(chat, "bob"), 1), Delivery::OwnMessage);
        assert_eq!(
            got(&delivery(chat, "ann"), 0),
            Delivery::Foreign,
            "wrong FROM"
        );
        assert_eq!(
            got(&delivery(Stamp { run: 8, ..chat }, "bob"), 0),
            Delivery::Foreign,
            "another run"
        );
        assert_eq!(
            got(&delivery(Stamp { seq: 0, ..chat }, "bob"), 0),
            Delivery::Foreign,
            "sequence numbers start at 1"
        );
        let probe = Stamp {
            kind: Kind::Probe,
            sender: 2,
            ..chat
        };
        assert_eq!(
            got(&delivery(probe, "probe"), 0),
            Delivery::Probe { id: 3, sent_ns: 42 }
        );
        assert_eq!(got(&delivery(probe, "bob"), 0), Delivery::Foreign);
        // Another segment's probe user: a probe too.
        let other = Stamp { sender: 3, ..probe };
        assert_eq!(
            got(&delivery(other, "probe2"), 0),
            Delivery::Probe { id: 3, sent_ns: 42 }
        );
        assert_eq!(got(&delivery(other, "probe"), 0), Delivery::Foreign);
        let nobody = Stamp { sender: 4, ..probe };
        assert_eq!(got(&delivery(nobody, ""), 0), Delivery::Foreign);
        assert_eq!(got(b"hello -- FROM bob", 0), Delivery::Foreign);
        assert_eq!(got(&[0xff, 0xfe], 0), Delivery::Foreign, "not UTF-8");
    }
}
