//! The fuzz corpora (`fuzz/corpus/<target>`) replayed on stable: every file through the function
//! its cargo-fuzz target runs, within the allocation budget the target enforces
//! (`fuzz/src/lib.rs`), measured by [`crate::alloc::Counting`].

use std::fs;
use std::path::{Path, PathBuf};

use crate::alloc::largest_allocation;

/// The directory of a target's corpus.
#[must_use]
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

/// Every file of a target's corpus with its name, sorted by name.
///
/// # Panics
///
/// If the corpus cannot be read.
#[must_use]
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, data)
        })
        .collect();
    files.sort();
    files
}

/// Replays the corpus of `target` through `run`, checking each file's largest allocation
/// against `budget` (of the file's length); returns how many files there were.
///
/// # Panics
///
/// If `run` panics (a broken promise), a file's run allocates over its budget, or the counting
/// allocator is not installed.
pub fn replay(target: &str, run: fn(&[u8]), budget: fn(usize) -> usize) -> usize {
    let files = corpus(target);
    for (name, data) in &files {
        let ((), largest) = largest_allocation(|| run(data));
        assert!(
            largest <= budget(data.len()),
            "{target}/{name}: one allocation took {largest} bytes, budget {}",
            budget(data.len())
        );
    }
    files.len()
}
