//! The server a run loads: the embedded one started as a child process, or the targets
//! resolved; whether its connections fit this machine's ports; whether it still answers;
//! and what its `/metrics` say it delivered.

use std::net::SocketAddr;
use std::time::Duration;

use super::outcome::RunError;
use crate::report::ServerPlacement;
use crate::scenario::Scenario;
use crate::server_process::{Launch, ServerProcess};
use crate::target::Target;
use crate::tls::TlsClient;
use crate::{ports, scrape};

/// The server the users will load, started (the embedded one) or resolved, once the
/// connections of `players` (`peak` at most) are known to fit this machine's ephemeral
/// ports; with where it runs, for the report. An embedded server is stopped again when
/// they do not fit.
pub async fn prepare_server(
    scenario: &Scenario,
    players: ports::Players,
    peak: u64,
) -> Result<
    (
        Option<ServerProcess>,
        Vec<(Target, SocketAddr)>,
        ServerPlacement,
    ),
    RunError,
> {
    let (server, resolved) = locate_server(scenario).await?;
    let destinations: Vec<SocketAddr> = resolved.iter().map(|(_, addr)| *addr).collect();
    if let Err(error) = ports::ensure(players, peak, &destinations, &scenario.users.source_ips()) {
        if let Some(server) = server {
            server.stop(Duration::from_secs(5)).await;
        }
        return Err(error.into());
    }
    let placement = match &server {
        Some(server) => ServerPlacement::EmbeddedChild {
            pid: server.pid(),
            address: server.addr.to_string(),
            command: server.command.clone(),
        },
        None => ServerPlacement::External,
    };
    Ok((server, resolved, placement))
}

/// Starts the embedded server when the scenario names no target, or resolves the targets.
async fn locate_server(
    scenario: &Scenario,
) -> Result<(Option<ServerProcess>, Vec<(Target, SocketAddr)>), RunError> {
    let unreachable = |e: &dyn std::fmt::Display| RunError::Unreachable(e.to_string());
    let urls = scenario.target.urls();
    if urls.is_empty() {
        let profile = scenario.profile();
        if !profile.is_chat() {
            return Err(RunError::ProtocolWithoutTarget(profile.kind()));
        }
        let server = ServerProcess::start(&Launch::Embedded(scenario.users.jwt.clone()))
            .await
            .map_err(|e| unreachable(&e))?;
        let target: Target = format!("ws://{}/", server.addr)
            .parse()
            .map_err(|e| unreachable(&e))?;
        let resolved = vec![(target, server.addr)];
        return Ok((Some(server), resolved));
    }
    let mut resolved = Vec::new();
    for url in &urls {
        let target: Target = url.parse().map_err(|e| unreachable(&e))?;
        let addr = tokio::net::lookup_host(target.authority())
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| RunError::Unreachable(format!("cannot resolve {target}")))?;
        resolved.push((target, addr));
    }
    Ok((None, resolved))
}

/// The servers' `chat_deliveries_out_total`, summed, when every target answers (over
/// TLS with `tls` for `wss://` targets).
pub async fn deliveries_out(
    resolved: &[(Target, SocketAddr)],
    tls: Option<&TlsClient>,
) -> Option<u64> {
    let mut sum = 0;
    for (target, addr) in resolved {
        let at = scrape::MetricsAt {
            target: target.clone(),
            addr: *addr,
            tls: tls.cloned(),
        };
        sum += scrape::counter(&at, "chat_deliveries_out_total").await?;
    }
    Some(sum)
}

/// Whether any target accepts a TCP connection within a second.
pub async fn target_reachable(targets: &[(Target, SocketAddr)]) -> bool {
    for (_, addr) in targets {
        let connect = tokio::net::TcpStream::connect(addr);
        if matches!(
            tokio::time::timeout(Duration::from_secs(1), connect).await,
            Ok(Ok(_))
        ) {
            return true;
        }
    }
    false
}
