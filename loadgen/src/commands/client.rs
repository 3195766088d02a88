//! `loadgen client`: one user, by hand. Lines from stdin are sent as messages (framed as
//! the `--protocol` frames them: as they are for our chat, as a Socket.IO event, in a
//! text template); what is received is printed with the local time (and, for
//! loadgen-stamped messages, a latency); the protocol's pings are answered; the way the
//! session ends decides the exit code, so scripts can tell an eviction (4) from a lost
//! connection (5), an expired token (6) and a clean close (0).
//!
//! stdin is read by a plain thread, not tokio's stdin: a blocking read would keep the
//! runtime from shutting down when the server ends the session first.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, Payload};
use tokio::sync::mpsc;

use crate::commands::cli::ClientArgs;
use crate::commands::exit::Exit;
use crate::connection::{self, FrameReader, Incoming, ReadStream, Writer};
use crate::headers::{with_flags, LoginHeaders};
use crate::protocol::{Eviction, Inbound, Profile};
use crate::stamp::Stamp;
use crate::target::Target;
use crate::tls::TlsClient;

/// The Close code of an eviction (docs/protocol.md S4).
const REPLACED: u16 = 4001;
/// The Close code of a session whose token expired (docs/protocol.md A6).
const TOKEN_EXPIRED: u16 = 4003;
/// How long to wait for the server's answer to our Close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the reader task reports.
enum Received {
    Text(Vec<u8>),
    Ping(Vec<u8>),
    Close { code: Option<u16>, reason: String },
    Lost(String),
}

pub async fn main(args: ClientArgs) -> Exit {
    let target: Target = match args.url.parse() {
        Ok(target) => target,
        Err(error) => {
            eprintln!("loadgen client: {error}");
            return Exit::Usage;
        }
    };
    if args.user.is_empty() {
        eprintln!("loadgen client: --user must not be empty");
        return Exit::Usage;
    }
    let addr = match tokio::net::lookup_host(target.authority())
        .await
        .map(|mut a| a.next())
    {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            eprintln!("loadgen client: {} has no address", target.host);
            return Exit::CouldNotRun;
        }
        Err(error) => {
            eprintln!("loadgen client: cannot resolve {}: {error}", target.host);
            return Exit::CouldNotRun;
        }
    };
    let headers = match with_flags(&Default::default(), &args.headers)
        .and_then(|headers| LoginHeaders::of(&headers))
    {
        Ok(headers) => headers.render(&args.user, 0),
        Err(error) => {
            eprintln!("loadgen client: --header {error}");
            return Exit::Usage;
        }
    };
    let tls = match TlsClient::new(&args.tls.settings()) {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("loadgen client: --ca-file: {error}");
            return Exit::Usage;
        }
    };
    let profile = match args.protocol.profile() {
        Ok(profile) => profile,
        Err(error) => {
            eprintln!("loadgen client: {error}");
            return Exit::Usage;
        }
    };
    let credentials = match args.jwt.credentials() {
        Ok(credentials) => credentials,
        Err(error) => {
            eprintln!("loadgen client: {error}");
            return Exit::Usage;
        }
    };
    let token = match credentials
        .as_ref()
        .map(|c| c.token_for(&args.user))
        .transpose()
    {
        Ok(token) => token,
        Err(error) => {
            eprintln!("loadgen client: {error}");
            return Exit::CouldNotRun;
        }
    };
    let login = connection::Login {
        headers: &headers,
        tls: Some(&tls),
        token: token.as_ref().map(|t| t.text.as_str()),
        token_in: credentials
            .as_ref()
            .map_or(Default::default(), |c| c.placement),
        protocol: &profile,
        ..connection::Login::plain(&args.user, args.connect_timeout)
    };
    let connected = match connection::connect(&target, addr, &login).await {
        Ok(connected) => connected,
        Err(error) => {
            eprintln!("loadgen client: {error}");
            return Exit::CouldNotRun;
        }
    };
    match token.as_ref().and_then(|t| t.expires) {
        Some(expires) => {
            let left = expires
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            eprintln!(
                "connected to {target} as {}, with a token valid for {}",
                args.user,
                crate::duration::format(Duration::from_secs(left.as_secs()))
            );
        }
        None => eprintln!("connected to {target} as {}", args.user),
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_loop(connected.read, events_tx));
    let mut write = connected.write;
    let mut lines = stdin_lines();
    let mut stdin_open = true;
    let mut ticker = args.send_every.map(|period| {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut latency = LatencyOrigin::default();
    let code = loop {
        tokio::select! {
            line = lines.recv(), if stdin_open => match line {
                Some(line) if line.trim() == "/quit" => {
                    break close(&mut write, &mut events, "quit").await;
                }
                Some(line) => {
                    if let Err(error) = send_text(&mut write, profile.frame_message(line, &args.user)).await {
                        eprintln!("loadgen client: cannot send: {error}");
                        break Exit::EndedByServer;
                    }
                }
                None if ticker.is_some() => stdin_open = false,
                None => break close(&mut write, &mut events, "end of input").await,
            },
            _ = tick(&mut ticker) => {
                let frame = profile.frame_message(args.message.clone(), &args.user);
                if let Err(error) = send_text(&mut write, frame).await {
                    eprintln!("loadgen client: cannot send: {error}");
                    break Exit::EndedByServer;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                break close(&mut write, &mut events, "interrupted").await;
            }
            event = events.recv() => match event {
                Some(Received::Text(text)) => match profile.inbound(&text) {
                    Inbound::Reply(answer) => {
                        let _ = send_text(&mut write, answer).await;
                    }
                    Inbound::Ended(reason) => {
                        let _ = write.write_frame(Frame::close(1000, b"")).await;
                        break ended_by_protocol(&profile, &reason);
                    }
                    Inbound::Chat | Inbound::Stamps | Inbound::Ignore => {
                        print_message(&text, &mut latency)
                    }
                },
                Some(Received::Ping(payload)) => {
                    let _ = write.write_frame(Frame::pong(Payload::Owned(payload))).await;
                }
                Some(Received::Close { code, reason }) => {
                    let echo = Frame::close(code.unwrap_or(1000), b"");
                    let _ = write.write_frame(echo).await;
                    break ended_by_server(&profile, code, &reason);
                }
                Some(Received::Lost(why)) => {
                    eprintln!("connection lost: {why}");
                    break Exit::EndedByServer;
                }
                None => {
                    eprintln!("connection lost");
                    break Exit::EndedByServer;
                }
            },
        }
    };
    reader.abort();
    code
}

/// Waits for the next tick, or forever without `--send-every`.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn send_text(write: &mut Writer, frame: Vec<u8>) -> Result<(), String> {
    write
        .write_frame(Frame::text(Payload::Owned(frame)))
        .await
        .map_err(|e| e.to_string())
}

/// Sends Close 1000 and waits briefly for the server's answer, printing what still
/// arrives. Always a clean exit: we chose to end the session.
async fn close(
    write: &mut Writer,
    events: &mut mpsc::UnboundedReceiver<Received>,
    why: &str,
) -> Exit {
    let _ = write.write_frame(Frame::close(1000, why.as_bytes())).await;
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut latency = LatencyOrigin::default();
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(Received::Text(text))) => print_message(&text, &mut latency),
            Ok(Some(Received::Ping(_))) => {}
            Ok(Some(Received::Close { code, .. })) => {
                eprintln!(
                    "closed ({why}); server answered Close {}",
                    code.map_or("(no code)".into(), |c| c.to_string())
                );
                break;
            }
            Ok(Some(Received::Lost(_))) | Ok(None) => {
                eprintln!("closed ({why}); server dropped the connection");
                break;
            }
            Err(_) => {
                eprintln!("closed ({why}); no answer from the server within {CLOSE_WAIT:?}");
                break;
            }
        }
    }
    Exit::Passed
}

/// The protocol ended the session in its own words (a Socket.IO DISCONNECT, an eviction
/// frame): an eviction when the protocol says so.
fn ended_by_protocol(profile: &Profile, reason: &str) -> Exit {
    if profile.ended_by_eviction(Some(None), true) {
        eprintln!(
            "evicted: {reason} (another login of this name, or the server ended the session)"
        );
        Exit::Evicted
    } else {
        eprintln!("ended by the server: {reason}");
        Exit::EndedByServer
    }
}

fn ended_by_server(profile: &Profile, code: Option<u16>, reason: &str) -> Exit {
    let code_text = code.map_or("(no code)".into(), |c| c.to_string());
    let eviction_code = match profile.eviction() {
        Eviction::CloseCode(code) => code,
        _ => REPLACED,
    };
    if code == Some(eviction_code) {
        eprintln!("evicted: server sent Close {code_text} {reason:?} (another login of this name)");
        Exit::Evicted
    } else if code == Some(TOKEN_EXPIRED) {
        eprintln!(
            "token expired: server sent Close {code_text} {reason:?}; log in again with a fresh token"
        );
        Exit::TokenExpired
    } else {
        eprintln!("closed by the server: Close {code_text} {reason:?}");
        Exit::EndedByServer
    }
}

async fn read_loop(mut read: ReadStream, events: mpsc::UnboundedSender<Received>) {
    let mut frames = FrameReader::new(&mut read, 64 * 1024 * 1024);
    loop {
        let event = match frames.next().await {
            Ok(Incoming::Text(text)) => Received::Text(text.to_vec()),
            Ok(Incoming::Ping(payload)) => Received::Ping(payload),
            Ok(Incoming::Binary) | Ok(Incoming::Pong) => continue,
            Ok(Incoming::Close { code, reason }) => Received::Close { code, reason },
            Err(error) => Received::Lost(error.to_string()),
        };
        let last = matches!(event, Received::Close { .. } | Received::Lost(_));
        if events.send(event).is_err() || last {
            return;
        }
    }
}

/// Lines of stdin, read on a detached thread (see the module comment). The channel closes
/// at end of input.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

/// Per loadgen run, the smallest (receive time − intended send time) seen: a stamp's
/// clock starts with its run, which this process does not know, so latency is shown
/// relative to the fastest message of the run.
#[derive(Default)]
struct LatencyOrigin {
    started: Option<Instant>,
    fastest: HashMap<u32, i128>,
}

impl LatencyOrigin {
    /// Milliseconds above the fastest message of `stamp`'s run.
    fn above_fastest_ms(&mut self, stamp: &Stamp) -> f64 {
        let started = *self.started.get_or_insert_with(Instant::now);
        let offset = started.elapsed().as_nanos() as i128 - stamp.intended_ns as i128;
        let fastest = self.fastest.entry(stamp.run).or_insert(offset);
        if offset < *fastest {
            *fastest = offset;
        }
        (offset - *fastest) as f64 / 1e6
    }
}

fn print_message(text: &[u8], latency: &mut LatencyOrigin) {
    let text = String::from_utf8_lossy(text);
    let now = local_time();
    let stamped = match Stamp::decode_delivery(&text) {
        Ok((stamp, from)) => Some((stamp, format!(", from {from}"))),
        Err(_) => Stamp::find_all(text.as_bytes())
            .next()
            .map(|stamp| (stamp, String::new())),
    };
    match stamped {
        Some((stamp, from)) => println!(
            "{now}  {text}  [loadgen run {:x} sender {} seq {}{from}: +{:.1} ms over the run's fastest]",
            stamp.run,
            stamp.sender,
            stamp.seq,
            latency.above_fastest_ms(&stamp)
        ),
        None => println!("{now}  {text}"),
    }
}

/// `HH:MM:SS.mmm` in the local time zone (libc's localtime_r; UTC if it fails).
fn local_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we pass and reads `seconds`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let local = unsafe { !libc::localtime_r(&seconds, &mut tm).is_null() };
    let (h, m, s) = if local {
        (tm.tm_hour as u64, tm.tm_min as u64, tm.tm_sec as u64)
    } else {
        let in_day = now.as_secs() % 86_400;
        (in_day / 3600, in_day / 60 % 60, in_day % 60)
    };
    format!("{h:02}:{m:02}:{s:02}.{:03}", now.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Kind;

    #[test]
    fn latency_is_relative_to_the_fastest_message_of_its_run() {
        let mut origin = LatencyOrigin::default();
        let stamp = |run, intended_ns| Stamp {
            run,
            kind: Kind::Chat,
            sender: 0,
            seq: 1,
            intended_ns,
        };
        assert_eq!(origin.above_fastest_ms(&stamp(1, 0)), 0.0);
        // Sent "50 ms later" but received at about the same time: it is the new fastest.
        assert_eq!(origin.above_fastest_ms(&stamp(1, 50_000_000)), 0.0);
        // An older message arriving now is about 50 ms slower than the fastest.
        let late = origin.above_fastest_ms(&stamp(1, 0));
        assert!((49.0..60.0).contains(&late), "{late}");
        // Another run has its own origin.
        assert_eq!(origin.above_fastest_ms(&stamp(2, 7)), 0.0);
    }

    #[test]
    fn local_time_is_hours_minutes_seconds_millis() {
        let time = local_time();
        assert_eq!(time.len(), 12, "{time}");
        assert_eq!((&time[2..3], &time[5..6], &time[8..9]), (":", ":", "."));
    }
}
