//! The body of `loadgen conform`: flags to a [`Request`], the table printed as checks
//! finish, the report files, and the exit code (0 conforms, 1 a MUST check failed,
//! 2 bad usage, 3 server unreachable or a report file not written).

use std::io::Write as _;

use crate::commands::cli::ConformArgs;
use crate::commands::exit::Exit;
use crate::conform::check::{all_must_passed, Knobs};
use crate::conform::{output, Request};

pub async fn main(args: ConformArgs) -> Exit {
    let protocol = match args.protocol.profile() {
        Ok(profile) => std::sync::Arc::new(profile),
        Err(error) => {
            eprintln!("loadgen conform: {error}");
            return Exit::Usage;
        }
    };
    let credentials = match args.jwt.credentials() {
        Ok(credentials) => credentials.map(std::sync::Arc::new),
        Err(error) => {
            eprintln!("loadgen conform: {error}");
            return Exit::Usage;
        }
    };
    let request = Request {
        urls: args.urls.clone(),
        only: args.only.clone(),
        connect_timeout: args.connect_timeout,
        knobs: Knobs {
            delivery_deadline: args.delivery_deadline,
            close_deadline: args.close_deadline,
            relogins: args.relogins,
            concurrent_rounds: args.concurrent_rounds,
            concurrent_logins: args.concurrent_logins,
            order_messages: args.order_messages,
            slow_bytes: args.slow_mib.saturating_mul(1024 * 1024),
            slow_stall: args.slow_stall,
            max_message: args.max_message,
            header_timeout: args.header_timeout,
            max_sessions: args.max_sessions,
            check_timeout: args.check_timeout,
        },
        tls: args.tls.settings(),
        credentials,
        protocol: protocol.clone(),
    };
    // The header waits for the first row, so a usage error or an unreachable server
    // prints only the error.
    let mut header = Some(output::table_header());
    let printed = crate::conform::run(&request, |result| {
        if let Some(header) = header.take() {
            println!("{header}");
        }
        println!("{}", output::table_row(result));
        let _ = std::io::stdout().flush();
    })
    .await;
    let results = match printed {
        Ok(results) => results,
        Err(error) => {
            eprintln!("loadgen conform: {error}");
            return if error.unreachable() {
                Exit::CouldNotRun
            } else {
                Exit::Usage
            };
        }
    };
    let url = args.urls.join(" ");
    println!("{}", output::table_footer(&results, &url));
    let skipped = crate::conform::not_applicable(&protocol);
    if !skipped.is_empty() {
        println!(
            "not applicable under protocol {}: {} (rules of our chat protocol itself)",
            protocol.kind(),
            skipped.join(" ")
        );
    }
    if let Some(path) = &args.json {
        if let Err(error) = output::write_json(path, &url, &results) {
            eprintln!("loadgen conform: {error}");
            return Exit::CouldNotRun;
        }
    }
    if let Some(path) = &args.junit {
        if let Err(error) = output::write_junit(path, &url, &results) {
            eprintln!("loadgen conform: {error}");
            return Exit::CouldNotRun;
        }
    }
    if all_must_passed(&results) {
        Exit::Passed
    } else {
        Exit::Failed
    }
}
