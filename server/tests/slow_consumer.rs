//! M6 of docs/protocol.md: a stalled receiver delays nobody, is disconnected with 1013, and
//! costs bounded memory. Alone in its file (so in its own process), because it measures
//! the process's resident memory.

mod common;
use common::*;

use chat_server::Config;

/// Messages in the burst, and the size of each.
const BURST: usize = 3000;
const SIZE: usize = 16 * 1024;
/// The healthy receiver may lag the sender by this many messages (application-level flow
/// control, so that it never falls behind far enough to look slow).
const WINDOW: usize = 8;
/// Per-receiver queue bounds for this server: far below what the burst sends.
const QUEUE: usize = 64;
const QUEUE_BYTES: usize = 256 * 1024;
/// How much the process may grow while ~47 MiB are sent to the stalled receiver. A queue
/// that kept everything for it would grow by nearly all of that.
const GROWTH_BOUND_KIB: u64 = 16 * 1024;

fn message(n: usize) -> String {
    let mut text = format!("{n:06}:");
    text.extend(std::iter::repeat_n('x', SIZE - text.len()));
    text
}

fn broadcast(n: usize) -> String {
    format!("{} -- FROM talker", message(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m6_stalled_receiver_delays_nobody_is_dropped_with_1013_and_memory_stays_bounded() {
    const WARMUP: usize = 50;
    let server = start(Config {
        queue: QUEUE,
        queue_bytes: QUEUE_BYTES,
        // About the receivers, not the sender's budget (R3): let the burst in at once.
        inbound: chat_server::InboundBudget {
            bytes_per_sec: 1e9,
            ..chat_server::InboundBudget::default()
        },
        ..Config::default()
    })
    .await;
    let addr = server.local_addr();
    let mut talker = login(addr, "talker").await;
    let mut healthy = login(addr, "healthy").await;
    let mut stalled = login_stalled(addr, "stalled").await; // never read until the end
    wait_online(&server, 3).await;

    // Warm up buffers and allocator pools before the baseline.
    for n in 0..WARMUP {
        talker.send(&message(n)).await;
        assert_eq!(healthy.text().await, broadcast(n));
    }
    let rss_before = vm_rss_kib();

    for n in WARMUP..WARMUP + BURST {
        talker.send(&message(n)).await;
        if n >= WARMUP + WINDOW {
            let want = n - WINDOW;
            assert_eq!(healthy.text().await, broadcast(want), "healthy at {want}");
        }
    }
    for n in WARMUP + BURST - WINDOW..WARMUP + BURST {
        assert_eq!(healthy.text().await, broadcast(n), "healthy at {n}");
    }
    let (rss_after, rss_peak) = (vm_rss_kib(), vm_hwm_kib());

    let sent_to_stalled_kib = ((WARMUP + BURST) * SIZE / 1024) as u64;
    eprintln!(
        "RSS before {rss_before} KiB, after {rss_after} KiB, peak {rss_peak} KiB; \
         {sent_to_stalled_kib} KiB sent to the stalled receiver"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < GROWTH_BOUND_KIB,
        "memory grew by {} KiB (peak) while {sent_to_stalled_kib} KiB went to a stalled receiver",
        rss_peak.saturating_sub(rss_before)
    );

    assert_eq!(
        metric(addr, "chat_slow_consumer_disconnects_total").await,
        1,
        "exactly the stalled receiver is a slow consumer"
    );
    wait_online(&server, 2).await;

    // The stalled receiver got a prefix of the messages, in order, then 1013 (or, if its
    // connection was dropped before the Close could be written, just the end).
    let (end, texts) = stalled.until_end().await;
    for (n, text) in texts.iter().enumerate() {
        assert!(
            *text == broadcast(n),
            "stalled receiver's message {n} is wrong"
        );
    }
    assert!(
        texts.len() < WARMUP + BURST,
        "the stalled receiver got everything"
    );
    match end {
        Seen::Close(Some(1013), _) | Seen::Dropped => {}
        other => panic!("the stalled receiver ended with {other:?}"),
    }

    // Everyone else carries on.
    healthy.send("still here").await;
    assert_eq!(talker.text().await, "still here -- FROM healthy");
}
