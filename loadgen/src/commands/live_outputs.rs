//! What a run shows while it runs — the live view (`--dashboard`), `/metrics`
//! (`--metrics`) and pushes to a remote-write receiver (`--remote-write`) — started before
//! the run and stopped after it, the same way for a whole run and for one segment of a
//! split run (whose series carry a `segment` label).

use std::path::Path;

use crate::commands::cli::RunArgs;
use crate::commands::exit::Exit;
use crate::dashboard::Dashboard;
use crate::report::live::LivePicture;
use crate::report::remote_write::{PushPlan, PushTally, Pusher};
use crate::report::{self, RunReport};
use crate::segment::Segment;

/// The shortest --remote-write-every.
const MIN_PUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// What the pushes to `--remote-write` came to, in the report folder.
const REMOTE_WRITE_JSON: &str = "remote_write.json";

/// The live picture and whatever serves or pushes it.
pub struct LiveOutputs {
    /// `Some` when anything shows the run while it runs.
    pub live: Option<LivePicture>,
    servers: Vec<Dashboard>,
    pusher: Option<Pusher>,
}

impl LiveOutputs {
    /// Checks the flags and starts what they ask for; a bad flag or an address that
    /// cannot be served is said on stderr and is a usage error.
    pub async fn start(
        args: &RunArgs,
        name: &str,
        segment: Option<Segment>,
    ) -> Result<LiveOutputs, Exit> {
        if args.dashboard_public && args.dashboard.is_none() && args.metrics.is_none() {
            eprintln!("loadgen: --dashboard-public needs --dashboard or --metrics");
            return Err(Exit::Usage);
        }
        if args.remote_write.is_some() && args.remote_write_every < MIN_PUSH_INTERVAL {
            eprintln!(
                "loadgen: --remote-write-every {}: at least {}",
                crate::duration::format(args.remote_write_every),
                crate::duration::format(MIN_PUSH_INTERVAL)
            );
            return Err(Exit::Usage);
        }
        let live =
            (args.dashboard.is_some() || args.metrics.is_some() || args.remote_write.is_some())
                .then(|| LivePicture::new(name).in_segment(segment));
        // The live view and the metrics: one HTTP server each, both serving / and /metrics.
        let mut servers = Vec::new();
        if let Some(live) = &live {
            let asked = [
                (args.dashboard, "--dashboard", "live view at http://{}/"),
                (args.metrics, "--metrics", "metrics at http://{}/metrics"),
            ];
            for (address, flag, said) in asked {
                let Some(address) = address else { continue };
                match Dashboard::start(address, args.dashboard_public, live.clone()).await {
                    Ok(server) => {
                        let at = said.replace("{}", &server.address().to_string());
                        eprintln!("loadgen: {at} while the run lasts");
                        servers.push(server);
                    }
                    Err(error) => {
                        eprintln!("loadgen: {flag}: {error}");
                        for server in servers {
                            server.stop().await;
                        }
                        return Err(Exit::Usage);
                    }
                }
            }
        }
        // Pushes begin with the measured phases (before them the figures have no run label).
        let pusher = args
            .remote_write
            .clone()
            .zip(live.clone())
            .map(|(endpoint, live)| {
                Pusher::start(
                    endpoint,
                    PushPlan::every(args.remote_write_every),
                    move || live.has_begun().then(|| live.metrics()),
                )
            });
        Ok(LiveOutputs {
            live,
            servers,
            pusher,
        })
    }

    /// The run ended: the live view and `/metrics` stop (they last exactly as long as the
    /// run), and the figures become `report`'s, for the last push.
    pub async fn run_ended(&mut self, report: Option<&RunReport>) {
        for server in self.servers.drain(..) {
            server.stop().await;
        }
        if let (Some(live), Some(report)) = (&self.live, report) {
            live.conclude(report);
        }
    }

    /// Makes the last push and says what the pushes came to (on stderr, and in
    /// `remote_write.json` in `dir` when there is one). Never changes the run's exit code.
    pub async fn finish(self, dir: Option<&Path>) {
        if let Some(pusher) = self.pusher {
            say_pushed(&pusher.finish().await, dir);
        }
    }
}

/// The remote-write outcome: one line on stderr, and `remote_write.json` in the report
/// folder when there is one.
fn say_pushed(tally: &PushTally, dir: Option<&Path>) {
    eprintln!("loadgen: remote write to {}: {tally}", tally.url);
    let Some(dir) = dir.filter(|dir| dir.is_dir()) else {
        return;
    };
    let json = serde_json::to_vec_pretty(tally).map(|mut bytes| {
        bytes.push(b'\n');
        bytes
    });
    if let Err(error) = report::write_file(dir, REMOTE_WRITE_JSON, json) {
        eprintln!("loadgen: {error}");
    }
}
