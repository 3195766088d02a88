//! The cluster checks (docs/protocol.md C2, C3), run when `loadgen conform` is given the
//! URLs of two or more nodes of one cluster. (Every other check already spreads its users
//! over the nodes, so S4–S6, M1–M6 are checked across nodes too; C1.)
//!
//! - C2: a sender on the first node, a receiver on every node (its own included): each
//!   receives the sender's burst in the order sent.
//! - C3: in each round one login of one name on *every* node at once: exactly one
//!   connection survives cluster-wide, every other one is closed, and the survivor hears
//!   a user on another node.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::check::{flush, probe, settle, CheckOutcome, Settings};
use super::peer::{Event, Peer};

/// C2: per-sender order across nodes.
pub async fn order_across_nodes(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("C2");
    let nodes = settings.endpoint.nodes.len();
    let messages = settings.knobs.order_messages.max(2);
    let mut sender = match Peer::login_at(&settings.endpoint, 0, &format!("{prefix}tx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("login on node 1 failed: {error}")),
    };
    let mut receivers = Vec::with_capacity(nodes);
    for node in 0..nodes {
        match Peer::login_at(&settings.endpoint, node, &format!("{prefix}rx{node}")).await {
            Ok(peer) => receivers.push(peer),
            Err(error) => {
                return CheckOutcome::fail(format!("login on node {} failed: {error}", node + 1))
            }
        }
    }
    if let Err(outcome) = settle(settings, &mut sender, &mut receivers).await {
        return outcome;
    }
    for seq in 0..messages {
        if let Err(error) = sender.send_text(&format!("<c2 {seq}>")).await {
            return CheckOutcome::fail(format!("the sender could not send: {error}"));
        }
    }
    flush(&mut sender).await;
    let deadline = Instant::now() + settings.knobs.delivery_deadline + Duration::from_secs(3);
    let mut problems = Vec::new();
    let mut missing = 0usize;
    for (node, receiver) in receivers.iter_mut().enumerate() {
        let mut last: Option<usize> = None;
        let mut got = 0usize;
        while got < messages {
            match receiver.next_event(deadline).await {
                Some(Event::Text(text)) => {
                    let Some(seq) = parse_c2(&text) else { continue };
                    got += 1;
                    if let Some(previous) = last.filter(|&p| seq <= p) {
                        if problems.len() < 3 {
                            problems.push(format!(
                                "the receiver on node {} got #{seq} after #{previous}",
                                node + 1
                            ));
                        }
                    }
                    last = Some(seq);
                }
                Some(end) if end.is_end() => {
                    problems.push(format!(
                        "the receiver on node {} was closed: {}",
                        node + 1,
                        end.describe_end()
                    ));
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        missing += messages.saturating_sub(got);
    }
    sender.close().await;
    for receiver in receivers.iter_mut() {
        receiver.close().await;
    }
    if !problems.is_empty() {
        return CheckOutcome::fail(problems.join("; "));
    }
    let seen =
        format!("{messages} msgs from node 1 to a receiver on each of {nodes} nodes: in order");
    if missing > 0 {
        CheckOutcome::warn(format!(
            "{seen}, but {missing} of {} never arrived (see M1)",
            messages * nodes
        ))
    } else {
        CheckOutcome::pass(seen)
    }
}

/// Finds `<c2 SEQ>` anywhere in a delivery.
fn parse_c2(text: &[u8]) -> Option<usize> {
    let start = text.windows(4).position(|w| w == b"<c2 ")? + 4;
    let rest = &text[start..];
    let end = rest.iter().position(|b| *b == b'>')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// C3: concurrent logins of one name on every node leave exactly one session.
pub async fn one_session_cluster_wide(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("C3");
    let nodes = settings.endpoint.nodes.len();
    let rounds = settings.knobs.concurrent_rounds.max(1);
    // The speaker sits on the last node; the survivor may be anywhere.
    let mut speaker =
        match Peer::login_at(&settings.endpoint, nodes - 1, &format!("{prefix}tx")).await {
            Ok(peer) => peer,
            Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
        };
    let mut survivors_by_node = vec![0usize; nodes];
    let mut deaf = 0usize;
    for round in 0..rounds {
        let name = format!("{prefix}u{round}");
        let mut logins = JoinSet::new();
        for node in 0..nodes {
            let (endpoint, name) = (settings.endpoint.clone(), name.clone());
            logins.spawn(async move { (node, Peer::login_at(&endpoint, node, &name).await) });
        }
        let mut peers: Vec<(usize, Peer)> = Vec::with_capacity(nodes);
        let mut refused = Vec::new();
        while let Some(joined) = logins.join_next().await {
            match joined {
                Ok((node, Ok(peer))) => peers.push((node, peer)),
                Ok((node, Err(error))) => refused.push(format!("node {}: {error}", node + 1)),
                Err(error) => return CheckOutcome::fail(format!("login task failed: {error}")),
            }
        }
        if peers.is_empty() {
            return CheckOutcome::fail(format!(
                "round {}: every login was refused ({})",
                round + 1,
                refused.join("; ")
            ));
        }
        let deadline = Instant::now() + settings.knobs.close_deadline;
        loop {
            let open = peers.iter().filter(|(_, p)| p.ended().is_none()).count();
            if open <= 1 || Instant::now() >= deadline {
                break;
            }
            let step = (Instant::now() + Duration::from_millis(5)).min(deadline);
            for (_, peer) in peers.iter_mut().filter(|(_, p)| p.ended().is_none()) {
                let _ = peer.next_event(step).await;
            }
        }
        let open: Vec<usize> = (0..peers.len())
            .filter(|&i| peers[i].1.ended().is_none())
            .collect();
        if open.len() != 1 {
            let on: Vec<String> = open
                .iter()
                .map(|&i| format!("node {}", peers[i].0 + 1))
                .collect();
            return CheckOutcome::fail(format!(
                "round {}/{rounds}: {} of {} logins of one name still open {:?} later, on {} (want exactly 1 cluster-wide)",
                round + 1,
                open.len(),
                peers.len(),
                settings.knobs.close_deadline,
                if on.is_empty() { "none".into() } else { on.join(", ") },
            ));
        }
        let (node, survivor) = &mut peers[open[0]];
        survivors_by_node[*node] += 1;
        let deadline = Instant::now() + settings.knobs.delivery_deadline;
        if probe(&mut speaker, survivor, &format!("c3 {round}"), deadline)
            .await
            .is_err()
        {
            deaf += 1;
        }
        for (_, peer) in peers.iter_mut() {
            peer.close().await;
        }
    }
    speaker.close().await;
    let spread: Vec<String> = survivors_by_node
        .iter()
        .enumerate()
        .map(|(node, n)| format!("node {}: {n}", node + 1))
        .collect();
    let seen = format!(
        "{rounds} rounds × 1 login on each of {nodes} nodes: exactly 1 survivor each ({})",
        spread.join(", ")
    );
    if deaf > 0 {
        CheckOutcome::fail(format!(
            "{seen}; but in {deaf} rounds the survivor never heard a user on another node"
        ))
    } else {
        CheckOutcome::pass(seen)
    }
}
