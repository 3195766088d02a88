//! Relogin eviction, S4–S6 of docs/protocol.md, and proof that the S5 check catches the Go
//! demo's bug.

mod common;
use common::*;

use chat_server::{Config, Fault};
use tokio::task::JoinSet;

#[tokio::test]
async fn s4_relogin_closes_the_old_session_with_4001() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut old = login(addr, "ann").await;
    let mut bob = login(addr, "bob").await;
    wait_online(&server, 2).await;
    let mut new = login(addr, "ann").await;
    old.expect_close(4001, "replaced by a new login").await;
    // ... and then the server closes the connection.
    assert_eq!(old.next().await, Seen::Dropped);
    assert_eq!(server.online(), 2);
    assert_eq!(wait_metric(addr, "chat_evictions_total", 1).await, 1);

    // The new connection is ann's session, both ways.
    new.send("i am back").await;
    assert_eq!(bob.text().await, "i am back -- FROM ann");
    bob.send("welcome").await;
    assert_eq!(new.text().await, "welcome -- FROM bob");
}

/// S5 as a check that reports rather than panics, so it can be run against a broken
/// server too. 20 times: `ann` logs in again while the previous connection just holds
/// its socket (it neither reads nor answers the Close); once the new session has spoken
/// (so it is registered), a message `carol` sends must reach it. The held connections
/// are read only at the end.
async fn s5_check(config: Config) -> Result<(), String> {
    const RELOGINS: usize = 20;
    let server = start(config).await;
    let addr = server.local_addr();
    let mut carol = login(addr, "carol").await;
    let mut current = login(addr, "ann").await;
    wait_online(&server, 2).await;
    let mut held = Vec::new();

    for i in 0..RELOGINS {
        let new = login(addr, "ann").await;
        held.push(std::mem::replace(&mut current, new));

        current.send(&format!("ready {i}")).await;
        expect_text(&mut carol, &format!("ready {i} -- FROM ann"), "carol").await?;
        carol.send(&format!("after relogin {i}")).await;
        expect_text(
            &mut current,
            &format!("after relogin {i} -- FROM carol"),
            &format!("ann's session after relogin {i}"),
        )
        .await?;
    }

    // Every replaced connection was ended (a Close, or at least dropped) ...
    for (i, old) in held.iter_mut().enumerate() {
        match old.next().await {
            Seen::Close(..) | Seen::Dropped => {}
            other => return Err(format!("replaced connection {i} got {other:?}")),
        }
    }
    drop(held);
    // ... and the last login is still ann's session once they are all gone.
    carol.send("final").await;
    expect_text(&mut current, "final -- FROM carol", "ann's last session").await?;
    if server.online() != 2 {
        return Err(format!("{} users online, want 2", server.online()));
    }
    Ok(())
}

async fn expect_text(client: &mut Client, want: &str, who: &str) -> Result<(), String> {
    match client.next_within(WAIT).await {
        Some(Seen::Text(got)) if got == want => Ok(()),
        Some(other) => Err(format!("{who}: expected {want:?}, got {other:?}")),
        None => Err(format!("{who}: {want:?} never arrived")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_new_session_survives_the_slow_end_of_the_old_one() {
    if let Err(failure) = s5_check(Config::default()).await {
        panic!("S5 violated: {failure}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_check_fails_on_a_registry_that_deletes_by_name() {
    let broken = Config {
        fault: Some(Fault::DeleteByName),
        ..Config::default()
    };
    match s5_check(broken).await {
        Ok(()) => panic!("the S5 check passed against the demo's delete-by-name bug"),
        Err(failure) => eprintln!("the S5 check caught the fault: {failure}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s6_concurrent_logins_of_one_name_leave_exactly_one_session() {
    const LOGINS: usize = 50;
    let server = start_default().await;
    let addr = server.local_addr();

    let mut logins = JoinSet::new();
    for _ in 0..LOGINS {
        logins.spawn(async move { login(addr, "dup").await });
    }
    let mut clients = Vec::new();
    while let Some(client) = logins.join_next().await {
        clients.push(client.expect("login task"));
    }
    // Every login has registered (and replaced its predecessor, if any).
    assert_eq!(
        wait_metric(addr, "chat_logins_total", LOGINS as u64).await,
        LOGINS as u64
    );
    assert_eq!(
        wait_metric(addr, "chat_evictions_total", LOGINS as u64 - 1).await,
        LOGINS as u64 - 1
    );
    assert_eq!(server.online(), 1);

    let mut zed = login(addr, "zed").await;
    wait_online(&server, 2).await;
    zed.send("who is there").await;

    let mut firsts = JoinSet::new();
    for mut client in clients {
        firsts.spawn(async move {
            let first = client.next().await;
            (client, first)
        });
    }
    let (mut live, mut closed) = (0, 0);
    let mut kept = Vec::new(); // the winner must stay connected for the count below
    while let Some(result) = firsts.join_next().await {
        let (client, first) = result.expect("reader task");
        kept.push(client);
        match first {
            Seen::Text(t) => {
                assert_eq!(t, "who is there -- FROM zed");
                live += 1;
            }
            Seen::Close(Some(4001), _) | Seen::Dropped => closed += 1,
            other => panic!("a connection of dup saw {other:?}"),
        }
    }
    assert_eq!(
        (live, closed),
        (1, LOGINS - 1),
        "want exactly one live session"
    );
    assert_eq!(server.online(), 2);
}
