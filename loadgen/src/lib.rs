//! `loadgen`: a load-testing and conformance harness for the chat protocol of
//! `docs/protocol.md` — open-model load, latency without coordinated omission, and
//! protocol-aware checks of delivery, order and relogin eviction.
//!
//! The engine is a library so that tests and other tools can drive a run without a
//! subprocess; the `loadgen` binary only parses arguments and maps results to exit codes
//! ([`exit::Exit`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use loadgen::run::{run, RunRequest};
//! use loadgen::scenario::Scenario;
//!
//! let scenario = Scenario::load(std::path::Path::new("scenarios/smoke.toml"))?;
//! let request = RunRequest {
//!     scenario,
//!     scenario_path: "scenarios/smoke.toml".into(),
//!     targets: vec!["ws://127.0.0.1:6789/".into()],
//!     quiet: true,
//!     segment: None,
//!     source_addresses: Vec::new(),
//!     live: None,
//! };
//! let (report, completion) = run(request).await?;
//! let failed = report.verdicts().iter().filter(|v| !v.passed).count();
//! println!("{completion:?}, {failed} thresholds failed");
//! # Ok(()) }
//! ```
//!
//! Modules, general first: the inputs ([`scenario`], [`toml_file`], [`duration`],
//! [`thresholds`], [`target`]); the wire ([`connection`], [`credentials`], [`stamp`]); measuring
//! ([`record`], [`checks`], [`resources`]); this machine's limits ([`nofile`], [`ports`]);
//! the server under test ([`server_process`], [`serve`]); then one module per subcommand:
//! [`run`], [`conform`], [`client`], [`gate`], [`capacity`]; and what they write
//! ([`report`], [`progress`]).

pub mod calibration;
pub mod capacity;
pub mod checks;
pub mod cli;
pub mod client;
pub mod conform;
pub mod connection;
pub mod credentials;
pub mod dashboard;
pub mod duration;
pub mod exit;
pub mod fleet;
pub mod gate;
pub mod headers;
pub mod lag;
pub mod nofile;
pub mod page;
pub mod ports;
pub mod progress;
pub mod random;
pub mod record;
pub mod report;
pub mod resources;
pub mod run;
pub mod scenario;
pub mod scrape;
#[cfg(test)]
mod scratch;
pub mod segment;
pub mod serve;
pub mod server_process;
pub mod stamp;
pub mod target;
pub mod thresholds;
pub mod tls;
pub mod toml_file;
pub mod transport;
pub mod xml;
