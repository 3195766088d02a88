//! The user's request to stop: Ctrl-C (SIGINT) or SIGTERM (what `kill`, systemd and
//! Kubernetes send). The first one ends a run early, at any point — the ramp, the
//! phases, the wind-down: it stops at once, writes every report for what ran, marked
//! incomplete with the reason, and exits with 3. A second one, for when even that takes
//! too long, exits at once with 130 and writes nothing more.
//!
//! One task per process watches both signals ([`Interrupt::watch`]); every part of a run
//! that waits holds an [`Interrupt`] and asks it. Holding a signal handler means the
//! default action (the process dies) no longer happens, which is why the second signal
//! must exit by hand.

use std::future::Future;
use std::sync::OnceLock;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// The exit status of a second interrupt: 128 + SIGINT, as a shell reports a process that
/// Ctrl-C killed.
pub const EXIT_AT_ONCE: i32 = 130;

/// Why the run was asked to stop, once it was: `"interrupted (Ctrl-C)"` or
/// `"interrupted (SIGTERM)"`.
pub type Reason = &'static str;

static REQUESTS: OnceLock<watch::Sender<Option<Reason>>> = OnceLock::new();

/// A view of the process's stop request.
#[derive(Debug, Clone)]
pub struct Interrupt {
    request: watch::Receiver<Option<Reason>>,
}

impl Interrupt {
    /// Starts watching SIGINT and SIGTERM, once per process (later calls share the
    /// watch). Must be called within the tokio runtime.
    pub fn watch() -> Interrupt {
        let sender = REQUESTS.get_or_init(|| {
            let (sender, _) = watch::channel(None);
            tokio::spawn(listen());
            sender
        });
        Interrupt {
            request: sender.subscribe(),
        }
    }

    /// Why the run was asked to stop, if it was.
    pub fn reason(&self) -> Option<Reason> {
        *self.request.borrow()
    }

    /// Resolves when the run is asked to stop (at once if it already was), with why.
    pub fn requested(&self) -> impl Future<Output = Reason> + Send + 'static {
        let mut request = self.request.clone();
        async move {
            let reason = match request.wait_for(Option::is_some).await {
                Ok(reason) => Some(reason.unwrap_or(INTERRUPTED_BY_CTRL_C)),
                // The watching task is gone (its runtime ended): no request can come.
                Err(_) => None,
            };
            match reason {
                Some(reason) => reason,
                None => std::future::pending().await,
            }
        }
    }
}

const INTERRUPTED_BY_CTRL_C: Reason = "interrupted (Ctrl-C)";
const INTERRUPTED_BY_SIGTERM: Reason = "interrupted (SIGTERM)";

/// Waits for the signals: the first is published, the second exits.
async fn listen() {
    // Streams, not one-shot futures, so that a signal arriving while the first is being
    // handled is not missed. A handler that cannot be installed leaves that signal its
    // default action: the process ends at once.
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut asked = false;
    loop {
        let reason = tokio::select! {
            Some(()) = next(&mut interrupt) => INTERRUPTED_BY_CTRL_C,
            Some(()) = next(&mut term) => INTERRUPTED_BY_SIGTERM,
            else => return,
        };
        if asked {
            // Nothing is printed: the status is the message, as for a shell's own Ctrl-C.
            std::process::exit(EXIT_AT_ONCE);
        }
        asked = true;
        if let Some(requests) = REQUESTS.get() {
            requests.send_replace(Some(reason));
        }
    }
}

/// The next signal of `stream`; never, without one.
async fn next(stream: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match stream {
        Some(stream) => stream.recv().await,
        None => std::future::pending().await,
    }
}
