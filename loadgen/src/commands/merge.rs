//! `loadgen merge DIR... --out DIR`: reads the segment folders of a split run, merges them
//! ([`crate::fleet::merge`]), writes the run's report, and judges its thresholds.

use std::path::{Path, PathBuf};

use crate::commands::cli::MergeArgs;
use crate::commands::exit::Exit;
use crate::commands::run::conclude;
use crate::fleet::file::SegmentFile;
use crate::fleet::merge::{self, Found};
use crate::report;

pub fn main(args: MergeArgs) -> Exit {
    let mut found = Vec::new();
    for dir in &args.dirs {
        match SegmentFile::read(dir) {
            Ok(file) => found.push(Found {
                origin: dir.display().to_string(),
                file,
            }),
            Err(error) => {
                eprintln!("loadgen: {error}");
                return Exit::Usage;
            }
        }
    }
    let (report, completion) = match merge::merge(found, Vec::new()) {
        Ok(merged) => merged,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return Exit::Usage;
        }
    };
    let dir: PathBuf = args.out.unwrap_or_else(|| {
        let base = report::default_dir(
            Path::new("reports"),
            &report.setup.scenario_name,
            report.started_at,
        );
        PathBuf::from(format!("{}-merged", base.display()))
    });
    conclude(&report, &completion, &dir)
}
