//! Support shared by cairn's fuzz targets: a global allocator that remembers the largest single
//! allocation, and [`run`], which runs a target body and fails the input if that allocation
//! passed the target's budget.
//!
//! Why: the bug class these targets hunt is "a few bytes claim a huge count and the decoder
//! allocates for it". Without a sanitizer, libFuzzer's `-malloc_limit_mb` sees nothing, and an
//! overcommitting kernel lets a 2 GiB `Vec::with_capacity` succeed silently; so the allocator
//! itself refuses anything above [`ALLOCATION_BYTES_CEILING`] (Rust then aborts with "memory
//! allocation of N bytes failed", a crash libFuzzer records), and [`run`] checks the tighter
//! per-input budget after each run.
//!
//! The target bodies live in `cairn_kafka::fuzzing` (frame, request),
//! `cairn_protocol::fuzzing` (record batch) and `cairn_raft::peer::fuzzing` (peer frame), where
//! the corpus replay tests call them on stable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One allocation above this fails at once, whatever the input.
pub const ALLOCATION_BYTES_CEILING: usize = 256 * 1024 * 1024;

const MIB: usize = 1024 * 1024;

/// What one input of a target may allocate at once.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// Frames and request bodies: the shape check bounds every count by the bytes left, and a
    /// decoded element takes at most 64 bytes per byte of wire (a 32-byte string per 1-byte
    /// compact string, up to 120-byte structs per >= 2 wire bytes), so `1 MiB + 64 * input`.
    Request,
    /// Record batches: the 1 MiB decompression cap doubled (the output buffer grows
    /// geometrically) plus the 8 MiB zstd window that `compression` accepts under any cap
    /// (`ZSTD_WINDOW_BYTES_FLOOR`), plus the input itself.
    RecordBatch,
    /// Peer frames: every count is bounded by the bytes left, a decoded element takes a few
    /// times its wire bytes, and the re-encoding is the frame's size (doubled by growth), so
    /// `1 MiB + 64 * input`, as for requests.
    PeerFrame,
}

impl Budget {
    /// Bytes one allocation may take while a target runs on an input of `input_bytes`.
    #[must_use]
    pub fn bytes_max(self, input_bytes: usize) -> usize {
        match self {
            Budget::Request | Budget::PeerFrame => MIB + 64 * input_bytes,
            Budget::RecordBatch => 2 * MIB + 8 * MIB + input_bytes,
        }
    }
}

/// The allocator of every fuzz target: [`System`], plus the largest request seen.
struct Tracking;

/// Largest single allocation (or reallocation target) since [`run`] last reset it.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Notes an allocation of `size` bytes; false if it is above the ceiling.
fn note(size: usize) -> bool {
    LARGEST.fetch_max(size, Ordering::Relaxed);
    size <= ALLOCATION_BYTES_CEILING
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, or returns
// null (allocation failure, which callers must handle) without touching memory.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `realloc`'s contract; `ptr` came from this allocator,
        // which is `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `target` on `data`.
///
/// # Panics
/// If one allocation during the run took more than `budget` allows for `data` (or `target`
/// panics).
pub fn run(data: &[u8], budget: Budget, target: fn(&[u8])) {
    LARGEST.store(0, Ordering::Relaxed);
    target(data);
    let largest = LARGEST.load(Ordering::Relaxed);
    let bytes_max = budget.bytes_max(data.len());
    assert!(
        largest <= bytes_max,
        "one allocation took {largest} bytes; the budget for a {}-byte input is {bytes_max}",
        data.len()
    );
}
