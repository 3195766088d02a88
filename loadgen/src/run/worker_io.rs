//! A worker's side of `loadgen run --workers N`: the segment process talks to the loadgen
//! that started it over its own stdin and stdout ([`crate::segment`] has the lines).
//!
//! stdout carries one JSON [`WorkerLine`] per line (ready, a tick per interval, done);
//! stdin carries the release line once, and then nothing: when it closes, the coordinator
//! has gone (killed, or Ctrl-C), and the worker stops as if interrupted, so that no worker
//! ever outlives the run that started it.

use std::future::Future;
use std::io::Write as _;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{oneshot, watch};

use crate::record::{histogram_text, ClosedInterval};
use crate::segment::{self, WorkerLine};

/// The worker's line to its coordinator.
pub struct Coordinator {
    release: Option<oneshot::Receiver<u64>>,
    gone: watch::Receiver<bool>,
}

impl Coordinator {
    /// Starts reading stdin: the release line, then until it closes.
    pub fn attach() -> Coordinator {
        let (release_tx, release) = oneshot::channel();
        let (gone_tx, gone) = watch::channel(false);
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            let mut release_tx = Some(release_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = segment::parse_release(&line) {
                    if let Some(tx) = release_tx.take() {
                        let _ = tx.send(at);
                    }
                }
            }
            gone_tx.send_replace(true);
        });
        Coordinator {
            release: Some(release),
            gone,
        }
    }

    /// Writes one line to the coordinator (stdout). A coordinator that stopped reading is
    /// noticed through stdin closing, not here.
    pub fn say(&self, line: &WorkerLine) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.encode());
        let _ = out.flush();
    }

    /// The start time the coordinator released us at (Unix ns); `None` if stdin closed
    /// first.
    pub async fn released(&mut self) -> Option<u64> {
        self.release.take()?.await.ok()
    }

    /// Resolves when stdin closes or Ctrl-C arrives: the run must stop.
    pub fn gone_or_interrupted(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut gone = self.gone.clone();
        async move {
            tokio::select! {
                _ = gone.wait_for(|gone| *gone) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
}

/// The tick line of interval `index`.
pub fn tick(index: usize, record: &ClosedInterval) -> WorkerLine {
    WorkerLine::Tick {
        index,
        length_s: record.length_s,
        users_online: record.users_online,
        counters: Box::new(record.counters),
        latency: histogram_text(&record.latency),
    }
}
