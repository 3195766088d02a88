//! Keeps chat-server's structure what `src/lib.rs` says it is: no module imports,
//! directly or through others, one that imports it back — between files, nor between
//! folders (a folder and a file of the root count as one unit each) — and nothing below
//! the crate root reaches back up to it: the root's own code is the API, and the modules
//! below get their shared state from `shared`, `hub` and `config`, never from `crate::…`
//! re-exports. The graph is read from the real source tree (`source-graph`).

use std::path::Path;

use source_graph::{cycles, dependencies, modules, units};

#[test]
fn chat_server_has_no_import_circle_between_files_or_folders_and_nothing_reaches_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = modules(&src);
    assert!(
        sources.len() > 20,
        "read the source tree: {} modules",
        sources.len()
    );
    let graph = dependencies(&sources);
    // The check sees real dependencies (a blind scanner would pass anything).
    let session = graph
        .get(&vec!["session".to_string()])
        .expect("session module");
    assert!(session.contains(&vec!["shared".to_string()]), "{session:?}");
    let files = cycles(&graph);
    assert!(
        files.is_empty(),
        "import cycles between files:\n{}",
        files.join("\n")
    );
    let folders = cycles(&units(&graph));
    assert!(
        folders.is_empty(),
        "import cycles between folders:\n{}",
        folders.join("\n")
    );
    let upward: Vec<String> = graph
        .iter()
        .filter(|(from, edges)| !from.is_empty() && edges.contains(&Vec::new()))
        .map(|(from, _)| from.join("::"))
        .collect();
    assert!(
        upward.is_empty(),
        "modules reaching up to the crate root: {upward:?}"
    );
}
