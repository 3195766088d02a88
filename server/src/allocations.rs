//! The server's own heap allocations, counted, so that the performance gate can see what
//! timings on a shared 2-core machine cannot: one more allocation per delivery (a clone
//! in the fan-out loop) moves the count per delivery by a whole unit, while it moves CPU
//! time by a few percent, inside the noise.
//!
//! The counting allocator is the binary's (`main.rs`, cargo feature `count-allocations`,
//! which `scripts/perf-gate.sh` builds with): it wraps the system allocator and calls
//! [`note_allocation`] and [`note_reallocation`], relaxed atomic additions. The library
//! only keeps the counts. `/metrics` shows them (`chat_allocations_total`,
//! `chat_reallocations_total`, `chat_allocated_bytes_total`) only when they are being
//! counted: a server built without the feature, or used as a library, shows none rather
//! than zeros ([`counts`] is `None`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Set once by the binary when its counting allocator is installed.
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static REALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed (wrapping: frees of blocks allocated before counting
/// began would take it below zero, which no block of this process is).
static LIVE: AtomicU64 = AtomicU64::new(0);

/// The counts since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocationCounts {
    /// Allocations (zeroed ones included; reallocations not).
    pub allocations: u64,
    /// Reallocations (a growing `Vec`, a `String` pushed past its capacity).
    pub reallocations: u64,
    /// Bytes asked for: each allocation's size, and each reallocation's growth.
    pub bytes: u64,
    /// Bytes allocated now (allocated minus freed): the heap the program holds, which
    /// resident memory exceeds by what the allocator keeps (fragmentation, free lists).
    pub live_bytes: u64,
}

/// Says that a counting allocator is installed: from now on [`counts`] are real.
pub fn start_counting() {
    COUNTING.store(true, Relaxed);
}

/// One allocation of `bytes`.
#[inline]
pub fn note_allocation(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Relaxed);
    BYTES.fetch_add(bytes as u64, Relaxed);
    LIVE.fetch_add(bytes as u64, Relaxed);
}

/// One block of `bytes` freed.
#[inline]
pub fn note_deallocation(bytes: usize) {
    LIVE.fetch_sub(bytes as u64, Relaxed);
}

/// One reallocation that grew a block by `growth` bytes (0 when it shrank).
#[inline]
pub fn note_reallocation(growth: usize) {
    REALLOCATIONS.fetch_add(1, Relaxed);
    BYTES.fetch_add(growth as u64, Relaxed);
}

/// A block resized from `old` to `new` bytes (for the live heap).
#[inline]
pub fn note_resize(old: usize, new: usize) {
    if new >= old {
        LIVE.fetch_add((new - old) as u64, Relaxed);
    } else {
        LIVE.fetch_sub((old - new) as u64, Relaxed);
    }
}

/// The counts, or `None` when no counting allocator is installed.
pub fn counts() -> Option<AllocationCounts> {
    COUNTING.load(Relaxed).then(|| AllocationCounts {
        allocations: ALLOCATIONS.load(Relaxed),
        reallocations: REALLOCATIONS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
        live_bytes: LIVE.load(Relaxed),
    })
}
