//! `loadgen serve` (hidden): chat-server as loadgen's embedded default, in a child process
//! started by [`crate::server_process`]. Prints `listening ADDR` once bound and runs until
//! its stdin closes or SIGTERM.

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::server_process::READY;

/// Runs the chat server until stdin closes or SIGTERM.
pub async fn serve(config: chat_server::Config) -> anyhow::Result<()> {
    let server = chat_server::Server::start(config)
        .await
        .context("embedded server")?;
    println!("{READY}{}", server.local_addr());
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    // Ctrl-C reaches the whole process group: the parent handles it and then closes our
    // stdin, so the server stays up until the parent has read its metrics.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            read = stdin.read(&mut sink) => if !matches!(read, Ok(n) if n > 0) { break },
            _ = term.recv() => break,
            _ = interrupt.recv() => continue,
        }
    }
    server.shutdown().await;
    Ok(())
}

/// The body of `loadgen serve`.
pub async fn main(args: crate::commands::cli::ServeArgs) -> crate::commands::exit::Exit {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match chat_server::tls::server_config(cert, key) {
            Ok(tls) => Some(tls),
            Err(error) => {
                eprintln!("loadgen serve: {error}");
                return crate::commands::exit::Exit::CouldNotRun;
            }
        },
        _ => None,
    };
    let key = match (&args.jwt_secret_file, &args.jwt_private_key) {
        (Some(path), _) => Some(jwt_keys::VerifyingKey::hs256_file(path)),
        (None, Some(path)) => Some(
            jwt_keys::SigningKey::private_pem_file(path).map(|key| key.verifying_key().clone()),
        ),
        (None, None) => None,
    };
    let auth = match key.transpose() {
        Ok(key) => key.map(|key| chat_server::Authentication {
            audience: args.jwt_audience.clone(),
            issuer: args.jwt_issuer.clone(),
            ..chat_server::Authentication::new(key)
        }),
        Err(error) => {
            eprintln!("loadgen serve: JWT key: {error}");
            return crate::commands::exit::Exit::Usage;
        }
    };
    let config = chat_server::Config {
        listen: args.listen,
        fault: args.fault,
        bus: args.bus,
        server_id: args.id,
        tls,
        auth,
        ..Default::default()
    };
    match serve(config).await {
        Ok(()) => crate::commands::exit::Exit::Passed,
        Err(error) => {
            eprintln!("loadgen serve: {error:#}");
            crate::commands::exit::Exit::CouldNotRun
        }
    }
}
