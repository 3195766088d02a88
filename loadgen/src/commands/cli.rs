//! Command-line interface: subcommands and their flags. `main.rs` only dispatches.

// The doc comments below are clap's --help text, written for a terminal: `<scenario>`
// and `[thresholds]` there are not HTML or links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::report::remote_write::Endpoint;
use crate::segment::Segment;

use super::flags::{parse_duration, parse_fault};
pub use super::flags::{CalibrationArgs, JwtArgs, ProtocolArgs, TlsArgs};

/// Load and conformance harness for the chat protocol (docs/protocol.md).
///
/// Exit codes, the same for every subcommand: 0 passed (every threshold or MUST check
/// met, no regression, the search ran to its end; for `client`, closed by us); 1 the
/// server under test failed (a threshold, a MUST check, a regression, a capacity below
/// --expect-at-least); 2 bad usage or a bad scenario/capacity file (file, field and
/// reason are printed), or a load that cannot fit the open-file limit; 3 could not run
/// (target unreachable, every login refused, server died mid-run, Ctrl-C, a report not
/// written) — reports written so far are marked incomplete. `client` adds 4 evicted by
/// another login of the same name (Close 4001), 5 the server ended the session otherwise
/// and 6 its token expired (Close 4003).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario: simulated users, open-model traffic, delivery and eviction checks,
    /// reports in reports/<scenario>-<UTC time>/.
    ///
    /// With no `target` in the scenario and no --target, loadgen starts chat-server itself
    /// (as a child process on 127.0.0.1, a free port) and stops it at the end.
    ///
    /// A server that authenticates logins: [users] jwt in the scenario, or
    /// --jwt-secret-file / --jwt-private-key, and every login carries a token minted for
    /// it then (timed: the summary's login row). A run whose logins are all refused (401,
    /// 403) stops at once and says why (exit 3).
    ///
    /// Examples:
    ///   loadgen run scenarios/relogin.toml
    ///   loadgen run scenarios/relogin.toml --target ws://127.0.0.1:6789/ --jwt-private-key es256.pem
    ///
    /// Exit codes: 0 every threshold met; 1 a threshold failed (each is named); 2 bad
    /// usage or scenario (file, field and reason; a key or tokens file that cannot be
    /// used), or more users than the open-file limit or the ephemeral ports (see
    /// --source-address) allow; 3 the run could not be carried out (target unreachable,
    /// every login refused, server died mid-run, a worker died, Ctrl-C or SIGTERM) — the
    /// reports written are marked incomplete; 130 a second Ctrl-C or SIGTERM.
    ///
    /// Stopping: Ctrl-C (SIGINT) or SIGTERM at any point — the ramp, the phases, the
    /// wind-down — stops the run at once and writes every report for what ran, marked
    /// INCOMPLETE with the reason ("interrupted (SIGTERM) during the wind-down"), exit 3.
    /// A second one exits at once with 130 and writes nothing more.
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Check a chat server against the protocol (docs/protocol.md), rule by rule.
    ///
    /// One named check per MUST rule (S2 S4 S5 S6 S7 M1 M2 M3 M5 M6: pass/fail) and
    /// informational checks (S1, S3 twice, M4, O1, R1-R7: info when the server does what
    /// the rule says, warn when it differs; they never fail the run). Works against any
    /// server speaking the protocol; where the protocol allows two behaviours (HTTP 400 or
    /// a drop; Close 4001 or a TCP drop) both pass and the table says which was seen.
    /// Verdicts: pass/fail for MUST rules (warn on a MUST check means it passed with a
    /// remark), info/warn for the others.
    ///
    /// The robustness rules R1-R7 are ours, not marked MUST in the protocol, so they are
    /// reported as info/warn: R1 POST, HTTP/1.0 and version-8 upgrades refused (405, 400,
    /// 426 with Sec-WebSocket-Version: 13) and no session opened; R2 an unmasked Text and
    /// a 126-byte Ping closed with 1002, nothing broadcast; R3 a sender flooding 2500
    /// messages beside a reader: the reader keeps its session and gets all of them in
    /// order (throttling shown if /metrics has chat_throttled_total); R4 a 20 KiB head
    /// gets 431 and an unfinished head is ended within --header-timeout plus
    /// --close-deadline (this wait is most of a default run's time); R5 only with
    /// --max-sessions N (503 for login N+1); R6 20 rounds of logins of one name each sent
    /// after the previous 101: the last survives; R7 is not checkable without shutting
    /// the server down, and says so. Where a rule names a status or Close code another
    /// code is a warn; a refusal by dropping the connection is accepted and reported.
    ///
    /// Authentication (A1-A7): given the key the server's tokens are signed with
    /// (--jwt-secret-file for HS256, --jwt-private-key for RS256/ES256/EdDSA; --jwt-claim
    /// aud=... when the server checks claims), every login of every check carries a token
    /// minted for its name, and the A-rules are checked: MUST A1 no token, no session; A2
    /// alg none, another key, a changed payload, an altered signature and (public keys) an
    /// HS256 token keyed with the public key are refused; A3 an expired and a not-yet-valid
    /// token (and a wrong aud/iss when the tokens carry one) are refused, and no refusal
    /// echoes the token; A4 the session's name is the token's sub (header and ?token=;
    /// ?user= other than sub refused); A5 a relogin with a fresh token evicts. Info: A6 the
    /// session is closed with 4003 at exp; A7 a foreign browser Origin is refused. Without
    /// a key, against a server that wants tokens, conform says so in one line and exits 3.
    ///
    /// A cluster: give the URL of each node (ws://A/ ws://B/ ws://C/). Each check's logins
    /// then take the nodes in turn, so S4-S6 and M1-M6 are checked across nodes (a relogin
    /// on node 2 must evict the session on node 1), and two MUST checks are added: C2 a
    /// sender's burst reaches a receiver on every node in order; C3 in each round one login
    /// of one name on every node at once leaves exactly one session cluster-wide, and the
    /// survivor hears a user on another node. Raw-HTTP checks (S2, S3, R1-R5) use the first
    /// node.
    ///
    /// Every loop is bounded in count and time; a default run against a local chat-server
    /// takes about 15 seconds (10 of them R4 waiting out the server's header timeout);
    /// against a broken one each check stops at --check-timeout.
    ///
    /// Examples:
    ///   loadgen conform ws://127.0.0.1:6789/
    ///   loadgen conform ws://chat.example:6789/ --only S4,S5,S6 --relogins 1000
    ///   loadgen conform ws://127.0.0.1:6789/ --junit conform.xml --json conform.json
    ///   loadgen conform ws://127.0.0.1:6789/ --only R4,R5 --header-timeout 2s --max-sessions 100
    ///   loadgen conform ws://127.0.0.1:6789/ ws://127.0.0.1:6790/ ws://127.0.0.1:6791/
    ///   loadgen conform ws://127.0.0.1:6789/ --jwt-private-key es256.pem
    ///
    /// Exit codes: 0 every MUST check passed; 1 a MUST check failed; 2 bad usage;
    /// 3 the server cannot be reached, refuses every login (401/403), or a report file
    /// cannot be written.
    #[command(verbatim_doc_comment)]
    Conform(ConformArgs),
    /// Log in as one user and chat by hand: stdin lines are sent, messages are printed.
    ///
    /// Each line read from stdin is sent as a Text message (`/quit` closes the session).
    /// Each message received is printed as `HH:MM:SS.mmm <text>`, with its latency when it
    /// carries a loadgen stamp (relative to the fastest message of that run seen, since
    /// a stamp's clock starts with its run). End of stdin closes the session cleanly after
    /// sending everything read, so it works in scripts; with --send-every it keeps going
    /// until Ctrl-C. Status lines (connected, closed, evicted) go to stderr.
    ///
    /// With a key (--jwt-secret-file or --jwt-private-key) the login carries a token
    /// minted for --user (valid --jwt-ttl, 10m by default); when it expires the server
    /// ends the session with Close 4003 and the client says "token expired" (exit 6).
    ///
    /// Examples:
    ///   loadgen client --user ann
    ///   printf 'hi\nbye\n' | loadgen client ws://127.0.0.1:6789/ --user bob
    ///   loadgen client --user demo --send-every 6s --message hello   (like the demo's client)
    ///   loadgen client wss://chat.example/ --user ann --jwt-private-key es256.pem
    ///
    /// Exit codes: 0 closed by us (/quit, end of stdin, Ctrl-C: Close 1000); 2 bad usage;
    /// 3 cannot connect or login refused; 4 evicted by another login of the same name
    /// (Close 4001); 5 the server ended the session otherwise (other Close, TCP drop);
    /// 6 token expired (Close 4003): log in again with a fresh token.
    #[command(verbatim_doc_comment)]
    Client(ClientArgs),
    /// Performance regression gate: run a base and a candidate server alternately under a
    /// scenario and compare the pairs.
    ///
    /// Each command is a shell command line with `{addr}` where the listen address goes;
    /// every run starts a fresh server process on 127.0.0.1. Per pair it compares two
    /// kinds of metric. Timings: deliveries/s, latency p50 and p99, and server CPU seconds
    /// per 1,000 deliveries, judged against --tolerance (10%). Cost counters, each per
    /// delivery: the server's allocations and bytes allocated (from its /metrics, when it
    /// counts them: chat-server built with --features count-allocations), read and write
    /// system calls and bytes written (its /proc/PID/io), judged against
    /// --counter-tolerance (2%; write calls 25%), and context switches (/proc/PID/status),
    /// shown but not judged. A counter that cannot be read is "not measured", never zero.
    /// The scenario's [gate_tolerance] table sets single metrics' tolerances. A metric
    /// regresses when the median candidate/base ratio is worse than its tolerance, its
    /// whole 95% bootstrap interval is worse than 1, and a sign test over the pairs agrees
    /// (p <= 0.10). Any run failing the scenario's thresholds fails the gate.
    /// Writes compare.md, compare.json and compare.html (default folder reports/gate-<UTC time>).
    ///
    /// Example:
    ///   loadgen gate --base "old/chat-server --listen {addr}" \
    ///                --candidate "target/release/chat-server --listen {addr}"
    ///
    /// Exit codes: 0 no regression; 1 regression or correctness failure; 2 bad usage;
    /// 3 the gate could not run. scripts/perf-gate.sh builds a git base and runs this.
    #[command(verbatim_doc_comment)]
    Gate(GateArgs),
    /// Find the capacity to plan with: the highest load that meets an objective with a
    /// margin, the knee where it stops meeting it, and what runs out.
    ///
    /// The file (see scenarios/README.md) names what grows — users, the message rate, or
    /// both along a straight path — with start, step and limit, the traffic of every step,
    /// and the objective ([thresholds], e.g. p99 <= 25ms with nothing lost). Each step is
    /// a plain run (a warm-up that is not judged, then the measured part) against a fresh
    /// server; the search steps up until the objective fails or the limit is reached, then
    /// bisects between the last good and the first bad step, then measures the knee again
    /// (`confirm` times; it must meet the objective every time).
    ///
    /// The knee is the highest load that happened to pass: a plain run there an hour later
    /// misses about as often as it meets. The published capacity (the headline,
    /// capacity.json's `capacity`, capacity.toml) is the highest load at which every run
    /// kept each latency threshold within `margin` of its limit (0.7 by default: p99 at
    /// most 17.5 ms against 25 ms), found by a second bisection and confirmed the same way.
    /// Then capacity, knee and 20% above the knee are measured `reproduce` more times
    /// (3 by default) in interleaved order, and the report gives each one's pass rate and
    /// says plainly when the knee did not reproduce. The machine's speed is calibrated at
    /// the start and the end (see --calibration), so reports from different machines or
    /// days can be compared: --compare A B.
    ///
    /// Server and loadgen CPU and memory are sampled during each step, so the report can
    /// say which side ran out — including, plainly, when the load generator itself was
    /// the limit.
    ///
    /// Writes reports/capacity-<UTC time>/: capacity.csv (a row per step), capacity.json,
    /// report.html (self-contained, three SVG charts), report.md, capacity.toml (a plain
    /// run of the published capacity), knee.toml and above-knee.toml (the knee and 20%
    /// above it), and each step's run reports under steps/.
    ///
    /// Where the server comes from: nothing (default) = embedded chat-server, a fresh
    /// process per step; --server "CMD {addr}" = your server, a fresh process per step;
    /// --target URL = a running server shared by every step (its CPU and memory from
    /// --server-pid, or from process_cpu_seconds_total and process_resident_memory_bytes
    /// in its /metrics).
    ///
    /// Examples:
    ///   loadgen capacity scenarios/capacity.toml
    ///   loadgen capacity scenarios/capacity.toml --server "./my-server --listen {addr}"
    ///   loadgen capacity scenarios/capacity.toml --target ws://127.0.0.1:6789/ --server-pid 4242
    ///   loadgen capacity scenarios/capacity.toml --expect-at-least 1200   (a CI check)
    ///   loadgen capacity --compare reports/capacity-A reports/capacity-B
    ///
    /// Exit codes: 0 the search ran to its end (with --compare: the machines explain the
    /// difference); 1 the published capacity is below --expect-at-least (with --compare:
    /// they do not); 2 bad usage or file (or the limit cannot fit the open-file limit; with
    /// --compare: a report unreadable, or without a capacity or a calibration); 3 the
    /// search could not run or was cut short (server not startable or unreachable, Ctrl-C)
    /// — the report of the steps done so far is still written.
    #[command(verbatim_doc_comment)]
    Capacity(CapacityArgs),
    /// Merge the reports of a split run's segments into one report.
    ///
    /// Each `loadgen run --segment I/N --start-at TIME` writes its own report folder with
    /// a segment.json. merge reads one folder per segment and writes the same five files a
    /// single run writes: counts summed, latency histograms added interval by interval,
    /// loss recounted over the whole population (a receiver in one segment expects the
    /// messages of senders in every other), eviction outcomes of every segment; thresholds
    /// are judged on the merged report. summary.json says how many segments were merged and
    /// which are missing or incomplete.
    ///
    /// Example (two hosts, then here):
    ///   host-a$ loadgen run scenarios/broadcast.toml --segment 0/2 --start-at 2026-11-26T10:00:00Z --out seg0
    ///   host-b$ loadgen run scenarios/broadcast.toml --segment 1/2 --start-at 2026-11-26T10:00:00Z --out seg1
    ///   loadgen merge seg0 seg1 --out merged
    ///
    /// Exit codes: 0 every threshold met; 1 a threshold failed; 2 bad usage, or folders
    /// that are not segments of one run (each reason printed); 3 a segment is missing or
    /// incomplete (the merged report is written and marked incomplete), or the report could
    /// not be written.
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// Measure this machine's speed as every report does: loopback send cost per 128-byte
    /// write and the time of a fixed single-core workload (the medians of 5 chunks).
    ///
    /// run, gate and capacity take this calibration at their start and end by themselves;
    /// this command prints one on its own, to compare machines before a test. Exit 0, or 3
    /// when the loopback workload cannot run.
    Calibrate(CalibrateArgs),
    /// Run the chat server for an embedded run (used by `run`; prints `listening ADDR`,
    /// stops when stdin closes).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario file (TOML; see scenarios/README.md).
    pub scenario: PathBuf,
    /// Server URL, overriding the scenario's `target` (repeat to spread users over
    /// several). Example: --target ws://127.0.0.1:6789/
    #[arg(long = "target", value_name = "URL")]
    pub targets: Vec<String>,
    /// Report directory (default: reports/<scenario>-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No live progress; only the final summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run as N cooperating loadgen processes on this machine: each plays every N-th user
    /// (its own open-file limit, ~19,900 connections), all start measuring together, and
    /// one merged report is written (the segments' own reports under <out>/segments/).
    /// Default: the scenario's `workers`, else 1 — or as many as the open-file limit
    /// needs, which is then said. Example: --workers 6
    #[arg(long, value_name = "N", conflicts_with = "segment")]
    pub workers: Option<u32>,
    /// Play only segment I of N (users I, I+N, I+2N, ...; 0-based), for a run split over
    /// processes or hosts; needs --start-at. Each segment writes its own report folder
    /// with segment.json; `loadgen merge` combines them into the run's report.
    /// Example: --segment 0/4
    #[arg(long, value_name = "I/N")]
    pub segment: Option<Segment>,
    /// With --segment: when the measured phases start, the same on every segment. UTC RFC
    /// 3339 (2026-11-26T10:00:00Z), Unix seconds (@1795687200), or from now (+30s). Users
    /// connect before it; a segment not connected by then is reported incomplete. Across
    /// hosts, latency is only as good as their clock sync.
    #[arg(long, value_name = "TIME", requires = "segment")]
    pub start_at: Option<String>,
    /// (Used by --workers) a segment started by another loadgen: wait for its release on
    /// stdin, report on stdout.
    #[arg(long, hide = true, requires = "segment", conflicts_with = "start_at")]
    pub coordinated: bool,
    /// (Used by --workers) the run id shared by every segment.
    #[arg(long, hide = true, requires = "segment")]
    pub run_id: Option<u32>,
    /// Local address the connections leave from, overriding the scenario's `[users]
    /// source_addresses` (repeat for several: user i takes the (i mod N)-th). One source
    /// and destination share only the ephemeral port range (~28,000 ports), so a run of
    /// more connections needs more sources; all of 127.0.0.0/8 is local on Linux.
    /// Example: --source-address 127.0.0.2 --source-address 127.0.0.3
    #[arg(long = "source-address", value_name = "IP")]
    pub source_addresses: Vec<IpAddr>,
    /// Serve a live view of the run at http://ADDRESS/ while it runs: the page report.html
    /// will be, drawn from the intervals so far, reloading every 2 s. It stops when the run
    /// ends. Loopback only unless --dashboard-public. Port 0 picks a free port; the address
    /// is printed on stderr. It also serves /metrics (see --metrics). Example: --dashboard
    /// 127.0.0.1:8080
    #[arg(long, value_name = "ADDRESS")]
    pub dashboard: Option<SocketAddr>,
    /// Serve the run's figures so far at http://ADDRESS/metrics in Prometheus' text format
    /// while it runs, for a Prometheus to scrape beside the server's own metrics: every
    /// event counter as loadgen_<counter>_total (sends, deliveries, duplicates, order
    /// errors, connects, unexpected disconnects by how they ended, relogins and each
    /// eviction outcome, …; loss is known only when the run ends), loadgen_users_online
    /// and loadgen_latency_seconds (a histogram), labelled run="<scenario>-<UTC start>"
    /// and scenario (and segment="I/N" for one segment of a split run), with loadgen's own
    /// lag (loadgen_send_lag_p99_seconds, loadgen_timer_lag_p99_seconds, their _max_, and
    /// loadgen_saturated). Loopback only unless --dashboard-public; port 0 picks a free
    /// port, printed on stderr. Example: --metrics 127.0.0.1:9464
    #[arg(long, value_name = "ADDRESS")]
    pub metrics: Option<SocketAddr>,
    /// Allow --dashboard and --metrics on an address other machines can reach (e.g.
    /// 0.0.0.0:8080).
    #[arg(long)]
    pub dashboard_public: bool,
    /// Push the run's figures to a Prometheus remote-write receiver (remote write 1.0:
    /// snappy-compressed protobuf in an HTTP POST), for a Prometheus that cannot scrape
    /// this machine: the series --metrics serves (every loadgen_<counter>_total,
    /// loadgen_users_online, loadgen_elapsed_seconds and the loadgen_latency_seconds
    /// histogram as its _bucket, _sum and _count series), labelled run="<scenario>-<UTC
    /// start>" and scenario, one sample each at the push's time, every
    /// --remote-write-every once the measured phases have begun and once more at the end
    /// with the final figures (what summary.json says, loss included). A receiver that is down or
    /// answers 5xx or 429 is tried again (waits of 0.5 s doubling to 30 s, at most 6 tries
    /// a push); another 4xx is not. It never slows or fails the run: pushes happen beside
    /// it, its end waits at most 5 s for the last one, and the outcome is one line on
    /// stderr and remote_write.json in the report folder; the exit code is the run's.
    /// Plain http:// only. A Prometheus receives with --web.enable-remote-write-receiver.
    /// Example: --remote-write http://127.0.0.1:9090/api/v1/write
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<Endpoint>,
    /// With --remote-write: the time between pushes while the run lasts (at least 100ms).
    /// Example: --remote-write-every 15s
    #[arg(
        long,
        default_value = "5s",
        value_parser = parse_duration,
        value_name = "DURATION",
        requires = "remote_write"
    )]
    pub remote_write_every: std::time::Duration,
    /// An extra request header of every login, NAME: VALUE (repeat for several), replacing
    /// a same-named one of `[users] headers`; {user} and {index} become each user's name
    /// and number. Authorization, Proxy-Authorization and Cookie values are shown as ***
    /// in every report. Example: --header 'Authorization: Bearer {user}'
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub calibration: CalibrationArgs,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Segment report folders (each holds the segment.json a `--segment` run wrote), one
    /// per segment of the run.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged report goes (default: reports/<scenario>-<UTC start>-merged).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// `full` (about 1 s per workload) or `quick` (a tenth of it, rougher).
    #[arg(
        long = "calibration",
        value_enum,
        value_name = "MODE",
        default_value = "full"
    )]
    pub mode: crate::calibration::CalibrationMode,
    /// Print JSON (the `calibration.start` object of the reports) instead of a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// Capacity file (TOML; see scenarios/README.md).
    #[arg(required_unless_present = "compare")]
    pub file: Option<PathBuf>,
    /// Compare two capacity reports (their folders or capacity.json files) instead of
    /// searching: the difference in published capacity, the difference in machine speed
    /// from their calibrations, and whether the machine explains the capacity's. Exit 0
    /// when it does, 1 when it does not, 2 when a report cannot be read or has no
    /// capacity or calibration.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["file", "targets", "server"])]
    pub compare: Option<Vec<PathBuf>>,
    /// With --compare: how far (percent) the capacity ratio may stray beyond the range
    /// the machine-speed ratios span and still count as explained.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = 10.0,
        requires = "compare"
    )]
    pub tolerance: f64,
    /// The published capacity's margin, overriding the file's `[capacity] margin`: every
    /// run's latency at most this share of its limit (0.7 by default).
    #[arg(long, value_name = "SHARE")]
    pub margin: Option<f64>,
    /// Re-measurements of capacity, knee and above-knee after the search, overriding the
    /// file's `[capacity] reproduce` (3 by default; 0 skips them).
    #[arg(long, value_name = "N")]
    pub reproduce: Option<u32>,
    #[command(flatten)]
    pub calibration: CalibrationArgs,
    /// Server URL of a running server, overriding the file's `target` (repeat to spread
    /// users over several).
    #[arg(long = "target", value_name = "URL")]
    pub targets: Vec<String>,
    /// Start the server for each step from this shell command, with {addr} where the
    /// listen address goes (its CPU and memory are then read from /proc).
    #[arg(long, value_name = "COMMAND", conflicts_with = "targets")]
    pub server: Option<String>,
    /// With --target: the process id of that server on this machine, to read its CPU and
    /// memory from /proc rather than its /metrics.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Run each step as N cooperating loadgen processes (see `loadgen run --workers`), so
    /// the search can go past one process's open-file limit (~19,900 connections); their
    /// CPU and memory count as loadgen's. knee.toml then says `workers = N`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
    /// Exit 1 when the published capacity (with its margin) is below this level (users,
    /// or msg/s when the rate grows).
    #[arg(long, value_name = "LEVEL")]
    pub expect_at_least: Option<f64>,
    /// Report directory (default: reports/capacity-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only the conclusion, no line per step.
    #[arg(long, short)]
    pub quiet: bool,
    /// With --server: the command serves TLS, so connect with wss:// (e.g. chat-server
    /// --tls-cert c.pem --tls-key k.pem --listen {addr}).
    #[arg(long, requires = "server")]
    pub wss: bool,
    #[command(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// A deliberate defect, for tests that prove a check or the gate can fail:
    /// `delete-by-name`, `swap-pairs`, `drop-every-N`, for cluster nodes
    /// `local-eviction-only` and `bus-swap-pairs`, and with a JWT key
    /// `jwt-accept-alg-none`, `jwt-ignore-expiry`, `jwt-ignore-signature` and
    /// `jwt-name-from-user`. Only test builds have them
    /// (chat-server's `fault-injection` feature); a release build refuses with exit 3.
    #[arg(long, value_parser = parse_fault)]
    pub fault: Option<chat_server::Fault>,
    /// Join a chat-server cluster over this Redis (redis://HOST:PORT), as chat-server's
    /// --bus does.
    #[arg(long, value_name = "URL")]
    pub bus: Option<String>,
    /// Node id, as chat-server's --id.
    #[arg(long, default_value = "1")]
    pub id: String,
    /// Serve wss:// with this certificate chain (PEM), as chat-server's --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM), as chat-server's --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require HS256 tokens with this secret, as chat-server's --jwt-secret-file.
    #[arg(long, value_name = "FILE", conflicts_with = "jwt_private_key")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Require tokens signed by this private key (its public half verifies them): the key
    /// the run's users mint with.
    #[arg(long, value_name = "PEM")]
    pub jwt_private_key: Option<PathBuf>,
    /// As chat-server's --jwt-audience.
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// As chat-server's --jwt-issuer.
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ConformArgs {
    /// Server URL, e.g. ws://127.0.0.1:6789/ — or the URLs of several nodes of one
    /// cluster: every check's users are then spread over them, and C2 and C3 run too.
    #[arg(required = true, num_args = 1.., value_name = "URL")]
    pub urls: Vec<String>,
    /// Run only these rules, comma-separated (e.g. S5,M3); a rule with several checks
    /// (S3) runs all of them.
    #[arg(long, value_delimiter = ',', value_name = "RULES")]
    pub only: Option<Vec<String>>,
    /// Write JUnit XML (one testcase per check) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Handshake deadline per login.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: std::time::Duration,
    /// How long a message may take to arrive before it counts as lost.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub delivery_deadline: std::time::Duration,
    /// How long an evicted, refused or closing connection may take to be closed.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub close_deadline: std::time::Duration,
    /// Relogins in S5 (the second half while another user floods the chat).
    #[arg(long, default_value_t = 200)]
    pub relogins: usize,
    /// Rounds of concurrent logins in S6.
    #[arg(long, default_value_t = 10)]
    pub concurrent_rounds: usize,
    /// Simultaneous logins of one name per S6 round.
    #[arg(long, default_value_t = 8)]
    pub concurrent_logins: usize,
    /// Messages per sender in M3 (three senders at once). Keep three times this below the
    /// server's per-receiver queue bound (chat-server: 1024): a burst the receiver cannot
    /// read fast enough — this process's own senders compete with its readers for the
    /// CPU — is a slow consumer, and a correct server may close it with 1013.
    #[arg(long, default_value_t = 300)]
    pub order_messages: usize,
    /// MiB pushed past a stalled receiver in M6.
    #[arg(long, default_value_t = 12)]
    pub slow_mib: usize,
    /// In M6, how long the healthy receiver may go without a message before the check fails.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub slow_stall: std::time::Duration,
    /// The server's message size limit in bytes; M5 sends one byte more.
    #[arg(long, default_value_t = 65536)]
    pub max_message: usize,
    /// The server's request-head timeout: R4 sends an unfinished head and expects the
    /// connection ended within this plus --close-deadline.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub header_timeout: std::time::Duration,
    /// The server's session limit, if you know it (at most 4999): R5 then logs in that
    /// many users plus one and expects 503. Without it R5 is reported as not checked.
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Upper bound on any one check.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub check_timeout: std::time::Duration,
    /// Under another protocol than ours (socketio, text, or a file with a [protocol]
    /// table), only the rules any chat server must keep are checked: M1 (contained, not
    /// the exact form), M2 or the declared self-delivery, M3, M6 and, when the protocol
    /// evicts, S4-S6 and C3; the rest are listed as not applicable.
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(default_value = "ws://127.0.0.1:6789/")]
    pub url: String,
    /// The user name to log in as.
    #[arg(long, short)]
    pub user: String,
    /// Send --message on this period, like the demo's client (e.g. 6s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub send_every: Option<std::time::Duration>,
    /// The message --send-every sends.
    #[arg(long, default_value = "hello", requires = "send_every")]
    pub message: String,
    /// Handshake deadline.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: std::time::Duration,
    /// An extra request header of the login, NAME: VALUE (repeat for several); {user}
    /// becomes the user's name. Example: --header 'Authorization: Bearer {user}'
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub struct GateArgs {
    /// Command starting the base server, with {addr} for the listen address.
    #[arg(long, value_name = "COMMAND")]
    pub base: String,
    /// Command starting the candidate server, with {addr} for the listen address.
    #[arg(long, value_name = "COMMAND")]
    pub candidate: String,
    /// Scenario to run against each server (its `target` is ignored).
    #[arg(long, default_value = "scenarios/gate.toml")]
    pub scenario: PathBuf,
    /// Run each side's load as N cooperating loadgen processes (see `loadgen run
    /// --workers`); default: the scenario's `workers`, else 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
    /// Number of base/candidate pairs.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(2..=100))]
    pub pairs: u32,
    /// Relative change a timing (deliveries/s, p50, p99, server CPU) may worsen by before
    /// it can count as a regression.
    #[arg(long, default_value_t = 0.10)]
    pub tolerance: f64,
    /// The same for a cost counter per delivery (the server's allocations, bytes
    /// allocated, read and write system calls, bytes written, context switches): exact
    /// counts, steady between identical builds, so the tolerance is tight. A metric may
    /// have its own in the scenario's [gate_tolerance] table.
    #[arg(long, default_value_t = 0.02)]
    pub counter_tolerance: f64,
    /// Folder for compare.md, compare.json and compare.html (default: reports/gate-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only the final comparison, no line per run.
    #[arg(long, short)]
    pub quiet: bool,
    /// Both commands serve TLS: connect with wss:// (e.g. chat-server --tls-cert c.pem
    /// --tls-key k.pem --listen {addr}).
    #[arg(long)]
    pub wss: bool,
    #[command(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub calibration: CalibrationArgs,
}
