//! [`Counting`], a global allocator that notes the largest single allocation of each thread, so
//! a test can bound what one input makes the code allocate ([`largest_allocation`]).
//!
//! A test binary installs it with
//! `#[global_allocator] static ALLOCATOR: Counting = Counting;`.

// `GlobalAlloc` is an unsafe trait; this is the only unsafe code of the harness.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// [`System`], noting on the calling thread the largest allocation asked for.
#[derive(Debug)]
pub struct Counting;

/// Whether [`Counting`] has served an allocation: if not, it is not the global allocator and
/// every measurement would be 0.
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Largest single allocation (or reallocation target) of this thread since the last reset.
    /// `const` and without destructor, so that reading it never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    // `try_with`: a thread being torn down may still allocate.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller upholds `realloc`'s contract; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
///
/// # Panics
///
/// If [`Counting`] is not the global allocator (nothing would be counted).
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = f();
    let largest = LARGEST.with(Cell::get);
    assert!(
        INSTALLED.load(Ordering::Relaxed),
        "install the counter: #[global_allocator] static ALLOCATOR: Counting = Counting;"
    );
    (result, largest)
}
