//! `loadgen`: a load-testing and conformance harness for the chat protocol of
//! `docs/protocol.md` — open-model load, latency without coordinated omission, and
//! protocol-aware checks of delivery, order and relogin eviction — and, through protocol
//! profiles (`[protocol]`), for Socket.IO servers and any text or JSON chat protocol.
//!
//! The engine is a library, so that tests and other programs can drive a run without a
//! subprocess. What an embedding program needs is re-exported here, and only that: run a
//! scenario ([`run`], its [`RunRequest`], [`RunReport`] and [`Completion`]), the scenario
//! model ([`Scenario`]), the counters ([`Counters`]) and thresholds
//! ([`ThresholdVerdict`]), and conformance ([`conform`], [`ConformRequest`],
//! [`CheckResult`]). The `loadgen` binary is [`run_command_line`]; everything else is the
//! crate's own (tests that need an internal get it from the clearly named, hidden
//! `test_support`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use loadgen::{run, RunRequest, Scenario};
//!
//! let scenario = Scenario::load(std::path::Path::new("scenarios/smoke.toml"))?;
//! let request = RunRequest {
//!     targets: vec!["ws://127.0.0.1:6789/".into()],
//!     ..RunRequest::new(scenario, "scenarios/smoke.toml")
//! };
//! let (report, completion) = run(request).await?;
//! let failed = report.verdicts().iter().filter(|v| !v.passed).count();
//! println!("{completion:?}, {failed} thresholds failed");
//! # Ok(()) }
//! ```
//!
//! A scenario is a TOML file (`scenarios/README.md`), checked as a whole when it is read:
//!
//! ```
//! let text = "[users]\ncount = 3\n[[phase]]\nduration = \"2s\"\nrate = 10\n";
//! let scenario = loadgen::Scenario::parse(std::path::Path::new("three.toml"), text).unwrap();
//! assert_eq!((scenario.name(), scenario.users.count), ("three", 3));
//! let error = loadgen::Scenario::parse(std::path::Path::new("x.toml"), "[users]\ncount = 0\n");
//! assert!(error.unwrap_err().to_string().contains("users.count"));
//! ```
//!
//! Modules, general first: the inputs (`scenario`, `toml_file`, `duration`, `thresholds`,
//! `target`); the wire (`protocol`: how each kind of server is spoken to; `connection`,
//! `credentials`, `stamp`, `clock`); measuring
//! (`record`, `checks`, `resources`, `calibration`); this machine's limits (`nofile`,
//! `ports`); the server under test (`server_process`); the engines, from the bottom up:
//! `report`, `run`, `fleet` (split runs), `gate`, `capacity`, `conform`; and on top the
//! command line (`commands`: one file per subcommand, the only modules that print and
//! choose exit codes).

mod calibration;
mod capacity;
mod checks;
mod clock;
mod commands;
mod conform;
mod connection;
mod credentials;
mod dashboard;
mod duration;
mod fleet;
mod gate;
mod headers;
mod interrupt;
mod lag;
mod memory;
mod nofile;
mod page;
mod ports;
mod progress;
mod protocol;
mod random;
mod record;
mod report;
mod resources;
mod run;
mod scenario;
mod scrape;
#[cfg(test)]
mod scratch;
mod segment;
mod server_process;
mod spool_file;
mod stamp;
mod target;
mod thresholds;
mod tls;
mod toml_file;
mod transport;
mod xml;

pub use checks::eviction::EvictionOutcome;
pub use commands::run_command_line;
pub use conform::check::{CheckResult, CheckVerdict, Knobs};
pub use conform::{run as conform, ConformError, Request as ConformRequest};
pub use record::Counters;
pub use report::{RunReport, RunSetup};
pub use run::{run, Completion, RunError, RunRequest};
pub use scenario::Scenario;
pub use thresholds::ThresholdVerdict;

/// Internals the integration tests reach for (a Kubernetes manifest's arguments parsed by
/// the real command line, a split run's segments and ports, a server launched as a run
/// launches it, histograms as segment files hold them). Not an API: it may change with
/// any commit.
#[doc(hidden)]
pub mod test_support {
    pub use crate::commands::cli::{Cli, Command, RunArgs};
    pub use crate::ports::{check as check_ports, Players, PortRange};
    pub use crate::record::{histogram_from_text, new_histogram};
    pub use crate::run::segment_peak_connections;
    pub use crate::segment::{parse_start_at, unix_now_ns, Segment};
    pub use crate::server_process::{Launch, ServerProcess};
}
