//! loadgen as a library: a run driven in-process, without the binary, against a real
//! chat-server on loopback — the way another tool or a test embeds the engine.

use std::path::Path;

use chat_server::{Config, Fault, Server};
use loadgen::{run, Completion, Counters, EvictionOutcome, RunRequest, Scenario};

const SCENARIO: &str = r#"
[users]
count = 10
connect_over = "100ms"

[[phase]]
duration = "1500ms"
rate = 20
senders = 5
relogin_rate = 4

[thresholds]
min_delivery_ratio = 1.0
max_eviction_failures = 0
"#;

async fn run_against(fault: Option<Fault>) -> (loadgen::RunReport, Completion) {
    let server = Server::start(Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        fault,
        ..Default::default()
    })
    .await
    .expect("the server starts");
    let scenario = Scenario::parse(Path::new("library.toml"), SCENARIO).expect("valid");
    let done = run(RunRequest {
        scenario,
        scenario_path: "library.toml".into(),
        targets: vec![format!("ws://{}/", server.local_addr())],
        quiet: true,
        segment: None,
        source_addresses: Vec::new(),
        live: None,
    })
    .await
    .expect("the run starts");
    server.shutdown().await;
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_driven_in_process_reports_and_judges() {
    let (report, completion) = run_against(None).await;
    assert_eq!(completion, Completion::Complete);
    assert_eq!(report.setup.scenario_name, "library");
    let Counters {
        sent,
        lost,
        relogins,
        evictions_ok,
        ..
    } = report.totals;
    assert!(sent > 0 && relogins > 0, "{:?}", report.totals);
    assert_eq!(lost, 0);
    assert_eq!(evictions_ok, relogins, "{:?}", report.totals);
    assert!(report.verdicts().iter().all(|v| v.passed));
    assert_eq!(report.server_deliveries_out, Some(report.totals.delivered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_run_fails_on_a_server_that_forgets_relogged_users() {
    let (report, _) = run_against(Some(Fault::DeleteByName)).await;
    assert!(report.totals.evictions_zombie > 0, "{:?}", report.totals);
    let failed: Vec<_> = report
        .verdicts()
        .into_iter()
        .filter(|v| !v.passed)
        .collect();
    assert!(
        failed.iter().any(|v| v.name == "max_eviction_failures"),
        "{failed:?}"
    );
    // The outcome a zombie counts as.
    let mut counters = Counters::default();
    EvictionOutcome::Zombie.count(&mut counters);
    assert_eq!(counters.evictions_zombie, 1);
}
