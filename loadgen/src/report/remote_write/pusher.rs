//! The pusher: a task of its own that sends the run's figures to a remote-write receiver
//! every few seconds while the run lasts and once more, with the final figures, when it
//! ends — and that never holds the run up.
//!
//! A push is one snapshot of the figures (every series, one sample each, at the push's
//! time), sent in up to [`Backoff::attempts`] requests: a receiver that is down or answers
//! 5xx or 429 is tried again after a wait that doubles from [`Backoff::first`] up to
//! [`Backoff::max`]; any other refusal (4xx) is final, as remote write 1.0 requires.
//! Pushes go one at a time, so samples reach the receiver in time order; while one is
//! being retried, the pushes due meanwhile are skipped (the next one carries newer
//! figures anyway, since every series is a running total or a gauge).
//!
//! When the run ends ([`Pusher::finish`]), waiting to retry a push stops, a request in
//! flight may still finish, and the final figures are pushed, all within a short deadline
//! ([`PushPlan::final_deadline`]), so that a dead receiver delays the run's exit by at most
//! that. Nothing here prints: [`PushTally`] counts what happened for the caller to say.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::post::{post, Endpoint, PostError};
use super::series::{self, ExpositionError};
use super::{protobuf, snappy};

/// The longest one request may take while the run lasts.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// When pushes are made and how long they are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPlan {
    /// Between pushes while the run lasts.
    pub every: Duration,
    /// From the run's end until the pusher stops, the final push included.
    pub final_deadline: Duration,
    pub backoff: Backoff,
}

impl PushPlan {
    /// A push every `every`, retried as [`Backoff::STANDARD`], 5 s for the final push.
    pub fn every(every: Duration) -> PushPlan {
        PushPlan {
            every,
            final_deadline: Duration::from_secs(5),
            backoff: Backoff::STANDARD,
        }
    }
}

/// How a push that failed is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed request.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Requests per push, the first included.
    pub attempts: u32,
}

impl Backoff {
    /// 0.5 s doubling to 30 s, six requests: a push gives up after ~15 s of waits.
    pub const STANDARD: Backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(30),
        attempts: 6,
    };

    /// The wait after failed request `attempt` (1-based).
    pub fn wait_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What the pushes came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushTally {
    /// The receiver's URL.
    pub url: String,
    /// Pushes made: snapshots of the figures, each sent in one or more requests.
    pub pushes: u64,
    /// Pushes the receiver accepted (2xx).
    pub delivered: u64,
    /// Pushes given up: refused, out of retries, or cut short by the run's end.
    pub failed: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Samples in the pushes delivered.
    pub samples_sent: u64,
    /// Samples in the pushes given up.
    pub samples_not_delivered: u64,
    /// Why the last push that failed did.
    pub last_error: Option<String>,
}

impl fmt::Display for PushTally {
    /// `14 pushes, 14 delivered (700 samples)`, or `3 of 14 pushes failed (why);
    /// 150 samples not delivered`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "es" });
        if self.pushes == 0 {
            return f.write_str("no push: the run ended before its figures began");
        }
        if self.failed == 0 {
            return write!(
                f,
                "{}, {} delivered ({} samples)",
                plural(self.pushes, "push"),
                self.delivered,
                self.samples_sent
            );
        }
        write!(
            f,
            "{} of {} failed",
            self.failed,
            plural(self.pushes, "push")
        )?;
        if let Some(error) = &self.last_error {
            write!(f, " ({error})")?;
        }
        write!(f, "; {} samples not delivered", self.samples_not_delivered)
    }
}

/// Why a push was given up.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Post(#[from] PostError),
    /// The run ended and the final push's deadline passed before an answer.
    #[error("no answer before the final push's deadline")]
    Deadline,
    /// loadgen's own exposition did not read back (a bug).
    #[error("cannot read loadgen's own figures: {0}")]
    Figures(#[from] ExpositionError),
}

/// The running pusher; dropping it stops it at once (no final push).
pub struct Pusher {
    /// `Some(deadline)` once the run has ended.
    ending: watch::Sender<Option<Instant>>,
    task: JoinHandle<()>,
    tally: Arc<Mutex<PushTally>>,
    final_deadline: Duration,
}

impl Pusher {
    /// Starts pushing to `endpoint` what `figures` returns (the exposition text, or `None`
    /// while there is nothing to push yet).
    pub fn start(
        endpoint: Endpoint,
        plan: PushPlan,
        figures: impl Fn() -> Option<String> + Send + 'static,
    ) -> Pusher {
        let tally = Arc::new(Mutex::new(PushTally {
            url: endpoint.to_string(),
            ..PushTally::default()
        }));
        let (ending, ended) = watch::channel(None);
        let task = tokio::spawn(
            Pushes {
                endpoint,
                backoff: plan.backoff,
                tally: tally.clone(),
                ending: ended,
                last_ms: i64::MIN,
            }
            .run(plan.every, figures),
        );
        Pusher {
            ending,
            task,
            tally,
            final_deadline: plan.final_deadline,
        }
    }

    /// The run has ended: pushes what `figures` returns now, and returns the tally, within
    /// the plan's final deadline.
    pub async fn finish(mut self) -> PushTally {
        let deadline = Instant::now() + self.final_deadline;
        self.ending.send_replace(Some(deadline));
        // The task keeps to the deadline itself; a moment more for a connection to close.
        let slack = Duration::from_millis(500);
        if tokio::time::timeout_at(deadline + slack, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        tally_of(&self.tally).clone()
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tally_of(tally: &Mutex<PushTally>) -> std::sync::MutexGuard<'_, PushTally> {
    match tally.lock() {
        Ok(tally) => tally,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The pusher's task.
struct Pushes {
    endpoint: Endpoint,
    backoff: Backoff,
    tally: Arc<Mutex<PushTally>>,
    ending: watch::Receiver<Option<Instant>>,
    /// The last push's timestamp (ms): each push is stamped later than the one before,
    /// since a receiver refuses a second, different sample at the same time.
    last_ms: i64,
}

impl Pushes {
    async fn run(mut self, every: Duration, figures: impl Fn() -> Option<String>) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = self.ending.wait_for(Option::is_some) => break,
                _ = ticks.tick() => {}
            }
            if let Some(text) = figures() {
                self.push(&text).await;
            }
        }
        if let Some(text) = figures() {
            self.push(&text).await;
        }
    }

    /// One push of `text`, retried as the backoff allows; counted in the tally.
    async fn push(&mut self, text: &str) {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.last_ms = now_ms.max(self.last_ms.saturating_add(1));
        let (samples, outcome) = match series::from_exposition(text) {
            Ok(series) => {
                let request = protobuf::write_request(&series, self.last_ms);
                let body = Bytes::from(snappy::compress(&request));
                (series.len() as u64, self.deliver(body).await)
            }
            Err(error) => (0, Err(PushError::from(error))),
        };
        let mut tally = tally_of(&self.tally);
        tally.pushes += 1;
        match outcome {
            Ok(()) => {
                tally.delivered += 1;
                tally.samples_sent += samples;
            }
            Err(error) => {
                tally.failed += 1;
                tally.samples_not_delivered += samples;
                tally.last_error = Some(error.to_string());
            }
        }
    }

    /// Sends `body` until it is accepted, refused for good, out of attempts, or out of
    /// time.
    async fn deliver(&mut self, body: Bytes) -> Result<(), PushError> {
        let mut attempt = 1;
        loop {
            tally_of(&self.tally).requests += 1;
            let request = tokio::time::timeout(ATTEMPT_TIMEOUT, post(&self.endpoint, body.clone()));
            let error = match within_deadline(&mut self.ending, request).await {
                Some(Ok(Ok(()))) => return Ok(()),
                Some(Ok(Err(error))) => error,
                Some(Err(_)) => PostError::Timeout(ATTEMPT_TIMEOUT),
                None => return Err(PushError::Deadline),
            };
            if !error.worth_retrying() || attempt >= self.backoff.attempts {
                return Err(error.into());
            }
            let wait = self.backoff.wait_after(attempt);
            let known = *self.ending.borrow();
            match known {
                // The final push: tried again while its deadline allows.
                Some(deadline) => {
                    if Instant::now() + wait >= deadline {
                        return Err(error.into());
                    }
                    tokio::time::sleep(wait).await;
                }
                // While the run lasts: its end stops the wait, and the final push, with
                // newer figures, takes over.
                None => tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = self.ending.wait_for(Option::is_some) => return Err(error.into()),
                },
            }
            attempt += 1;
        }
    }
}

/// `work`'s output, unless the run ends (`ending` gets its deadline) and the deadline
/// passes first (`None`).
async fn within_deadline<F: Future>(
    ending: &mut watch::Receiver<Option<Instant>>,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    let known = *ending.borrow();
    let deadline = match known {
        Some(deadline) => deadline,
        None => {
            tokio::select! {
                output = &mut work => return Some(output),
                _ = ending.wait_for(Option::is_some) => {}
            }
            let set = *ending.borrow();
            set.unwrap_or_else(Instant::now)
        }
    };
    tokio::time::timeout_at(deadline, work).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A receiver on loopback that answers each request with the next of `statuses` (the
    /// last one repeated) and hands over each request's head and body.
    async fn receiver(
        statuses: &'static [u16],
    ) -> (
        Endpoint,
        tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut answered = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut bytes = Vec::new();
                let mut buffer = [0u8; 4096];
                let (head, body) = loop {
                    let n = stream.read(&mut buffer).await.unwrap();
                    assert!(n > 0, "the request ended early");
                    bytes.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = text[..end].to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|v| v.trim().parse().ok())
                        .expect("a content length");
                    if bytes.len() >= end + 4 + length {
                        break (head, bytes[end + 4..end + 4 + length].to_vec());
                    }
                };
                let status = statuses[answered.min(statuses.len() - 1)];
                answered += 1;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 12\r\nconnection: close\r\n\r\nwhat it says"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = seen.send((head, body));
            }
        });
        (url.parse().unwrap(), requests)
    }

    const FIGURES: &str = "# TYPE loadgen_sent_total counter\n\
                           loadgen_sent_total{run=\"r-1\",scenario=\"r\"} 240\n\
                           loadgen_users_online{run=\"r-1\",scenario=\"r\"} 20\n";

    fn quick(every_ms: u64, final_ms: u64) -> PushPlan {
        PushPlan {
            every: Duration::from_millis(every_ms),
            final_deadline: Duration::from_millis(final_ms),
            backoff: Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(40),
                attempts: 4,
            },
        }
    }

    #[test]
    fn the_wait_doubles_up_to_its_limit() {
        let waits: Vec<f64> = (1..=9)
            .map(|n| Backoff::STANDARD.wait_after(n).as_secs_f64())
            .collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        assert_eq!(Backoff::STANDARD.wait_after(1000), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_push_carries_the_headers_and_a_body_that_decodes_to_the_figures() {
        let (endpoint, mut requests) = receiver(&[204]).await;
        let before = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let pusher = Pusher::start(endpoint, quick(60_000, 2_000), || Some(FIGURES.into()));
        let (head, body) = requests.recv().await.expect("a push");
        let tally = pusher.finish().await;
        let after = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("post /api/v1/write http/1.1"), "{head}");
        for header in [
            "content-encoding: snappy",
            "content-type: application/x-protobuf",
            "x-prometheus-remote-write-version: 0.1.0",
            concat!("user-agent: loadgen/", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(head.contains(header), "{header} in {head}");
        }
        let request = snappy::tests::decompress(&body).expect("a snappy block");
        let series = series::from_exposition(FIGURES).unwrap();
        assert!(
            (before..=after).any(|ms| protobuf::write_request(&series, ms) == request),
            "the body is the figures' WriteRequest at the push's time"
        );
        assert_eq!(
            tally,
            PushTally {
                url: tally.url.clone(),
                pushes: 2,
                delivered: 2,
                failed: 0,
                requests: 2,
                samples_sent: 4,
                samples_not_delivered: 0,
                last_error: None,
            },
            "the first push and the final one"
        );
        assert_eq!(tally.to_string(), "2 pushes, 2 delivered (4 samples)");
    }

    #[tokio::test]
    async fn a_receiver_answering_500_is_tried_again_and_one_answering_400_is_not() {
        let (endpoint, mut requests) = receiver(&[500, 503, 204]).await;
        let pusher = Pusher::start(endpoint, quick(60_000, 2_000), || Some(FIGURES.into()));
        for _ in 0..3 {
            requests.recv().await.expect("a request");
        }
        let tally = pusher.finish().await;
        assert_eq!(
            (tally.pushes, tally.delivered, tally.requests),
            (2, 2, 4),
            "{tally:?}"
        );

        let (endpoint, mut requests) = receiver(&[400]).await;
        let pusher = Pusher::start(endpoint, quick(60_000, 2_000), || Some(FIGURES.into()));
        requests.recv().await.expect("a request");
        let tally = pusher.finish().await;
        assert_eq!(
            (tally.pushes, tally.failed, tally.requests),
            (2, 2, 2),
            "{tally:?}"
        );
        assert_eq!(tally.samples_not_delivered, 4);
        let error = tally.last_error.clone().unwrap_or_default();
        assert!(
            error.contains("400") && error.contains("what it says"),
            "{error}"
        );
        assert_eq!(
            tally.to_string(),
            format!("2 of 2 pushes failed ({error}); 4 samples not delivered")
        );
    }

    #[tokio::test]
    async fn a_dead_receiver_holds_the_end_no_longer_than_the_final_deadline() {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint: Endpoint = format!("http://127.0.0.1:{port}/api/v1/write")
            .parse()
            .unwrap();
        let pusher = Pusher::start(endpoint, quick(30, 300), || Some(FIGURES.into()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ending = std::time::Instant::now();
        let tally = pusher.finish().await;
        assert!(
            ending.elapsed() < Duration::from_millis(900),
            "{:?}",
            ending.elapsed()
        );
        assert!(
            tally.pushes >= 2 && tally.failed == tally.pushes,
            "{tally:?}"
        );
        assert!(tally.requests > tally.pushes, "retried: {tally:?}");
        assert_eq!(tally.samples_not_delivered, 2 * tally.pushes);
        let error = tally.last_error.unwrap_or_default();
        assert!(error.starts_with("cannot connect"), "{error}");
    }

    #[tokio::test]
    async fn nothing_is_pushed_before_there_are_figures() {
        let (endpoint, _requests) = receiver(&[204]).await;
        let pusher = Pusher::start(endpoint, quick(10, 300), || None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tally = pusher.finish().await;
        assert_eq!((tally.pushes, tally.requests), (0, 0));
        assert_eq!(
            tally.to_string(),
            "no push: the run ended before its figures began"
        );
    }
}
