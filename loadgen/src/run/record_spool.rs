//! The interval records of a running run, kept in a temporary file until the run ends.
//!
//! A record is a few hundred bytes, but a soak closes 86,400 of them a day: kept in memory
//! they would grow a run by about 1.5 MB an hour, most of what a soak's memory limit
//! allows. So each record goes to a file (one JSON line) as its interval closes, and the
//! records are read back once, when the run ends and its reports are written. The last
//! record stays at hand for whoever watches the run. When no temporary file can be made
//! the records stay in memory, which is only slower to leak, never wrong.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};

use crate::record::IntervalRecord;

/// Records so far: spooled, or in memory.
pub struct RecordSpool {
    spooled: Option<Spooled>,
    memory: Vec<IntervalRecord>,
    count: usize,
    /// Why spooling stopped, if it did (the records after it are kept in memory).
    failed: Option<String>,
}

/// The open file; its name is removed as soon as it is open, so nothing is left behind
/// however the process ends.
struct Spooled {
    file: BufWriter<File>,
}

impl Default for RecordSpool {
    fn default() -> Self {
        RecordSpool::new()
    }
}

impl RecordSpool {
    /// A spool in a new file of the system's temporary folder (in memory if none can be
    /// made).
    pub fn new() -> RecordSpool {
        let spooled = crate::spool_file::nameless("records")
            .ok()
            .map(|file| Spooled {
                file: BufWriter::new(file),
            });
        RecordSpool {
            spooled,
            memory: Vec::new(),
            count: 0,
            failed: None,
        }
    }

    /// Records kept so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Adds one record.
    pub fn push(&mut self, record: IntervalRecord) {
        self.count += 1;
        // Once a line failed, every later record stays in memory, in order after the
        // spooled ones.
        if self.failed.is_none() {
            if let Some(spooled) = &mut self.spooled {
                let line = serde_json::to_string(&record)
                    .map_err(|e| e.to_string())
                    .and_then(|line| writeln!(spooled.file, "{line}").map_err(|e| e.to_string()));
                match line {
                    Ok(()) => return,
                    Err(why) => self.failed = Some(why),
                }
            }
        }
        self.memory.push(record);
    }

    /// Every record, in order. A spool that cannot be read back gives the records it can
    /// and the reason it stopped.
    pub fn into_records(mut self) -> (Vec<IntervalRecord>, Option<String>) {
        let mut records = Vec::with_capacity(self.count);
        let mut failed = self.failed.take();
        if let Some(spooled) = &mut self.spooled {
            let read = spooled
                .file
                .flush()
                .and_then(|()| spooled.file.get_mut().rewind())
                .map_err(|e| e.to_string());
            match read {
                Ok(()) => {
                    for line in BufReader::new(spooled.file.get_ref()).lines() {
                        match line
                            .map_err(|e| e.to_string())
                            .and_then(|line| serde_json::from_str(&line).map_err(|e| e.to_string()))
                        {
                            Ok(record) => records.push(record),
                            Err(why) => {
                                failed.get_or_insert(why);
                                break;
                            }
                        }
                    }
                }
                Err(why) => {
                    failed.get_or_insert(why);
                }
            }
        }
        records.append(&mut self.memory);
        (records, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Counters;

    fn record(second: u64) -> IntervalRecord {
        IntervalRecord {
            start_s: second as f64,
            length_s: 1.0,
            users_online: 7,
            counters: Counters {
                sent: second,
                delivered: second * 10,
                ..Counters::default()
            },
            latency_us: [1, 2, 3, 4, 5, second],
            logins: [second, 0, 0, 0, 0, 0, 0, 0, 9],
        }
    }

    #[test]
    fn records_come_back_in_order() {
        let mut spool = RecordSpool::new();
        assert!(spool.spooled.is_some());
        for second in 0..1000 {
            spool.push(record(second));
        }
        assert_eq!(spool.len(), 1000);
        assert!(spool.memory.is_empty(), "nothing kept in memory");
        let (records, failed) = spool.into_records();
        assert_eq!(failed, None);
        assert_eq!(records, (0..1000).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn without_a_file_the_records_stay_in_memory() {
        let mut spool = RecordSpool::new();
        spool.spooled = None;
        spool.push(record(1));
        spool.push(record(2));
        assert_eq!(spool.into_records(), (vec![record(1), record(2)], None));
    }
}
