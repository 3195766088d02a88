//! Scratch folders for unit tests that write real files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh folder path under the system temp dir (not created), removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A unique path; `label` says which test it belongs to.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TempDir(std::env::temp_dir().join(format!(
            "loadgen-test-{label}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
