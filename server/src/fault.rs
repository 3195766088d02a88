//! The deliberate defects a test may ask of a server ([`Fault`]): each reproduces a bug of
//! the Go demo or of a broken server, so a test can show that a check catches it. Only a
//! build with the `fault-injection` feature has their code; `config` refuses the rest.

/// Deliberate defects, each reproducing a bug of the Go demo, so tests can show that a
/// check catches it. The type always exists, so code that names faults compiles either
/// way; the defects themselves are compiled in only with the `fault-injection` feature
/// (see [`crate::Config::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A session that ends removes its user's entry by name, even when that entry is
    /// already its successor's: after a relogin the new session silently stops receiving.
    DeleteByName,
    /// Every Nth message received by the server is broadcast to nobody (message loss).
    DropEvery(u64),
    /// Every `every`-th chat delivery to a receiver whose name ends with the byte
    /// `name_suffix` is not sent: loss that only some users see (e.g. one segment of a
    /// split loadgen run, whose users are every other index).
    DropEveryTo { every: u64, name_suffix: u8 },
    /// Each sender's messages are broadcast in swapped pairs: 2, 1, 4, 3, … (the demo's
    /// goroutine per message loses order the same way, only less predictably).
    SwapPairs,
    /// The demo's order of a login: the `101` goes out first and the session registers
    /// afterwards, so a login the client sent after seeing another's `101` can register
    /// first and then be evicted by it (docs/protocol.md R6). To make the race certain,
    /// every second login (the 2nd, 4th, …) registers 100 ms after its `101`, the others
    /// at once.
    RegisterAfter101,
    /// A cluster node that ignores login notices from other nodes: eviction by name only
    /// among its own sessions, so the same name can be online on two nodes at once
    /// (docs/protocol.md C3).
    LocalEvictionOnly,
    /// A cluster node that publishes each sender's messages to the bus in swapped pairs
    /// (its own users get them in order): per-sender order breaks only across nodes
    /// (docs/protocol.md C2).
    BusSwapPairs,
    /// A relogin's new session is closed with `1013` as soon as it has replaced the old
    /// one, as a server shedding load would: the user is left without a session, by the
    /// server's explicit choice (for proving that loadgen names that cause, not "zombie").
    CloseReplacementWith1013,
    /// With authentication: a token with `alg: none` and no signature is accepted (A2).
    JwtAcceptAlgNone,
    /// With authentication: `exp` is ignored, at login and during the session (A3, A6).
    JwtIgnoreExpiry,
    /// With authentication: any signature is accepted, by any key or none (A2).
    JwtIgnoreSignature,
    /// A broadcast held by its slowest receiver: while any receiver's queue is backed up
    /// (a stalled socket), a new message reaches nobody, as in a server that writes to
    /// every receiver in lock-step (for proving that the wide-broadcast test fails on it).
    BroadcastHeldByBackedUpReceiver,
    /// With authentication: the session's name comes from `?user=` when one is given,
    /// whatever the token's `sub` (A4): any valid token takes any name.
    JwtNameFromUser,
}
