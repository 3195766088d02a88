//! Temporary files that leave nothing behind: what a long run spools to disk instead of
//! keeping in memory (each interval's latency histogram, each interval's record).
//!
//! The file is created in the system's temporary folder under a unique name and the name
//! is removed at once: the open file lives until it is dropped, and however the process
//! ends (a second Ctrl-C, a kill) no file is left to clean up.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};

/// A new, nameless read-write file; `kind` goes into its short-lived name.
pub fn nameless(kind: &str) -> std::io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "loadgen-{}-{}.{kind}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    use super::*;

    #[test]
    fn it_reads_back_what_was_written_and_has_no_name() {
        let mut file = nameless("test-spool").unwrap();
        file.write_all(b"one line\n").unwrap();
        file.rewind().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "one line\n");
        let prefix = format!("loadgen-{}-", std::process::id());
        let named = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&prefix) && name.ends_with(".test-spool")
            });
        assert!(!named);
    }
}
