//! Keeps loadgen's structure what `src/lib.rs` says it is, read from the real source tree
//! (`source-graph`):
//! - no module imports, directly or through others, one that imports it back — between
//!   files, nor between folders (a folder and a file of the root count as one unit each);
//! - the stack reads one way: main → commands → capacity, gate, conform → fleet → run →
//!   report and the general modules: an engine is imported only by what stands above it;
//! - only the command line (`commands/`) imports `cli` and `exit`, and only it, the live
//!   progress line (`progress`) and the binary print to the terminal.

use std::path::Path;

use source_graph::{cycles, dependencies, imports_of, lines_with, modules, units, Graph};

fn sources() -> std::collections::BTreeMap<Vec<String>, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = modules(&src);
    assert!(
        sources.len() > 40,
        "read the source tree: {} modules",
        sources.len()
    );
    sources
}

fn graph() -> Graph {
    dependencies(&sources())
}

#[test]
fn loadgen_has_no_import_cycle_between_files_or_folders() {
    let graph = graph();
    // The check sees real dependencies (a blind scanner would pass anything).
    let run = graph.get(&vec!["run".to_string()]).expect("run module");
    assert!(run.contains(&vec!["run".into(), "state".into()]), "{run:?}");
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
}

/// Each engine, and who may import it: only what stands above it in the stack.
const STACK: &[(&str, &[&str])] = &[
    ("commands", &[]),
    ("capacity", &["commands"]),
    ("gate", &["commands"]),
    ("conform", &["commands"]),
    ("fleet", &["commands", "capacity", "gate"]),
    ("run", &["commands", "capacity", "gate", "fleet"]),
];

#[test]
fn the_stack_reads_one_way() {
    let graph = graph();
    let mut found = Vec::new();
    for (engine, above) in STACK {
        let allowed: Vec<&[&str]> = above.iter().map(std::slice::from_ref).collect();
        found.extend(imports_of(&graph, &[engine], &allowed));
    }
    assert!(
        found.is_empty(),
        "imports against the stack:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_command_line_imports_cli_and_exit_and_prints() {
    let graph = graph();
    let mut found = imports_of(&graph, &["commands", "cli"], &[&["commands"]]);
    found.extend(imports_of(&graph, &["commands", "exit"], &[&["commands"]]));
    assert!(
        found.is_empty(),
        "cli or exit imported outside commands/:\n{}",
        found.join("\n")
    );
    let printing = lines_with(
        &sources(),
        &["println!", "eprintln!", "print!(", "eprint!("],
        &[&["commands"], &["progress"]],
    );
    assert!(
        printing.is_empty(),
        "printing outside commands/ and progress:\n{}",
        printing.join("\n")
    );
}
