//! What several of cairn-storage's test binaries share (each includes it with `mod support;`).

use cairn_storage::{FlushPolicy, LogConfig};

/// Small segments and a dense index, so a few batches exercise rolls and index lookups; every
/// append is flushed.
pub(crate) fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        index_interval_bytes: 256,
        index_sync_bytes: 1 << 20,
        flush: FlushPolicy::EveryAppend,
        cache_window_bytes: None,
    }
}

/// `both_disks!(seed = N; a, b)`: for each test function `a(disk, dir)`, a module `a` with two
/// tests running it on the real disk (a temporary directory) and on a `SimDisk` seeded `N`.
macro_rules! both_disks {
    (seed = $seed:expr; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn real_disk() {
                let temp = tempfile::tempdir().unwrap();
                super::$name(&cairn_storage::RealDisk, &temp.path().join("log"));
            }
            #[test]
            fn sim_disk() {
                let disk = cairn_storage::sim::SimDisk::new($seed);
                super::$name(&disk, std::path::Path::new("/log"));
            }
        }
    )*};
}
pub(crate) use both_disks;
