//! cairn's project automation, run as `cargo xtask <task>` (see `main.rs` for the task list).
//!
//! Scripts live here, in Rust, rather than in shell (STYLE.md rule 11): [`ci`] is the project's
//! whole test command, [`compat`] runs the Kafka client compatibility suite, [`sim`] sweeps the simulation of replication, [`tidy`] holds
//! the project rules that rustc and clippy cannot see, and [`bench`] runs the benchmark suite
//! behind `docs/benchmarks.md` (not part of CI: it is slow and its numbers are the machine's).

use std::path::{Path, PathBuf};

pub mod bench;
pub mod ci;
pub mod compat;
pub mod sim;
pub mod tidy;

/// The workspace root: the directory holding the root `Cargo.toml`, `crates/` and `xtask/`.
///
/// # Panics
///
/// Never: `CARGO_MANIFEST_DIR` is the absolute path of `xtask/`, which always has a parent.
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("CARGO_MANIFEST_DIR is the absolute path of xtask/, so it has a parent")
        .to_path_buf()
}
