//! A wide broadcast and a stalled receiver (docs/protocol.md M6, M3): one receiver whose
//! socket is full must not hold up a broadcast to everyone else. Whatever path a broadcast
//! takes to the sockets (a writer task per receiver, or the broadcasting thread writing
//! directly where there is room), the others get the message while the stalled one still
//! has not read a byte, and the stalled one, once it reads, gets everything in order.

mod common;
use common::*;

use std::time::Duration;

use chat_server::{Config, Fault};

/// Receivers that read.
const READERS: usize = 100;
/// Messages that fill the stalled receiver's socket (its 4 KiB receive window, and the
/// server's send buffer, which the kernel lets grow to 4 MiB): sent until some of them
/// wait in the server, at most [`MOST_FILLERS`].
const FILL_SIZE: usize = 256 * 1024;
const MOST_FILLERS: usize = 64;

fn filler(n: usize) -> String {
    let mut text = format!("fill {n} ");
    text.extend(std::iter::repeat_n('x', FILL_SIZE - text.len()));
    text
}

/// The server's count of chat frames written, once it has stopped changing.
async fn settled_deliveries(addr: std::net::SocketAddr) -> u64 {
    let mut last = metric(addr, "chat_deliveries_out_total").await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = metric(addr, "chat_deliveries_out_total").await;
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_reader_while_one_receiver_is_stalled() {
    if let Err(failure) = broadcast_around_a_stalled_receiver(None).await {
        panic!("{failure}");
    }
}

/// The check above fails on a server whose broadcast waits for its slowest receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_held_by_a_stalled_receiver_fails_the_check() {
    let failure = broadcast_around_a_stalled_receiver(Some(Fault::BroadcastHeldByBackedUpReceiver))
        .await
        .expect_err("a broadcast held by its stalled receiver must fail the check");
    assert!(
        failure.contains("did not get the broadcast while one receiver was stalled"),
        "{failure}"
    );
}

/// How long a reader may take to get the broadcast before it counts as held up: far more
/// than a broadcast takes, far less than the stalled receiver would ever need.
const HELD_UP: Duration = Duration::from_secs(5);

/// Fills one receiver's socket, then broadcasts to [`READERS`] others; `Err` says what went
/// wrong. Panics when the setup itself fails (the stalled receiver could not be stalled).
async fn broadcast_around_a_stalled_receiver(fault: Option<Fault>) -> Result<(), String> {
    let server = start(Config {
        fault,
        max_message: FILL_SIZE,
        // Room for every filler in the stalled receiver's queue: it is stalled, not slow
        // enough to be disconnected (M6), so the broadcast has to go around it.
        queue: 4096,
        queue_bytes: (MOST_FILLERS + 1) * FILL_SIZE,
        inbound: chat_server::InboundBudget {
            bytes_per_sec: 1e9,
            ..chat_server::InboundBudget::default()
        },
        ..Config::default()
    })
    .await;
    let addr = server.local_addr();
    let mut talker = login(addr, "talker").await;
    let mut stalled = login_stalled(addr, "stalled").await; // not read until the end
    wait_online(&server, 2).await;

    // Fill the stalled receiver until its socket takes no more and fillers wait in the
    // server for it.
    let mut fillers = 0;
    let written = loop {
        assert!(
            fillers < MOST_FILLERS,
            "{MOST_FILLERS} fillers of {FILL_SIZE} bytes all went into the stalled receiver's \
             socket: it is not stalled, so this test would prove nothing"
        );
        talker.send(&filler(fillers)).await;
        fillers += 1;
        let written = settled_deliveries(addr).await;
        if written + 2 <= fillers as u64 {
            break written;
        }
    };

    // Readers log in now (no history, M7), and everyone is sent one message.
    let mut readers = Vec::new();
    for r in 0..READERS {
        readers.push(login(addr, &format!("reader{r}")).await);
    }
    wait_online(&server, READERS + 2).await;

    // The broadcast to everyone: each reader has it without the stalled one reading.
    talker.send("to everyone").await;
    for (r, reader) in readers.iter_mut().enumerate() {
        match reader.next_within(HELD_UP).await {
            Some(Seen::Text(text)) if text == "to everyone -- FROM talker" => {}
            other => {
                return Err(format!(
                    "reader{r} did not get the broadcast while one receiver was stalled: \
                     {other:?}"
                ))
            }
        }
    }
    let now = metric(addr, "chat_deliveries_out_total").await;
    if now != written + READERS as u64 {
        return Err(format!(
            "{} frames written after the broadcast to {READERS} readers: the stalled receiver \
             got more while it read nothing",
            now - written
        ));
    }
    let slow = metric(addr, "chat_slow_consumer_disconnects_total").await;
    if slow != 0 {
        return Err(format!("{slow} slow-consumer disconnects"));
    }

    // The stalled receiver reads at last: everything, in order, nothing lost (M3).
    for n in 0..fillers {
        let text = stalled.text().await;
        if !text.starts_with(&format!("fill {n} ")) {
            return Err(format!("the stalled receiver's filler {n} is out of order"));
        }
    }
    match stalled.text().await.as_str() {
        "to everyone -- FROM talker" => Ok(()),
        other => Err(format!("the stalled receiver got {other:.40} last")),
    }
}
