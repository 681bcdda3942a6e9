//! openraft's own conformance suite for log storage and state machines
//! (`openraft::testing::log::Suite::test_all`), run on cairn's log store and partition state
//! machine over a real directory and over `SimDisk`.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use cairn_raft::{LogStore, PartitionStateMachine, TypeConfig};
use cairn_storage::RealDisk;
use cairn_storage::sim::SimDisk;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use support::Opened;

/// Builds each test's store in a fresh temporary directory.
struct OnRealDisk;

impl StoreBuilder<TypeConfig, LogStore<RealDisk>, PartitionStateMachine<RealDisk>, Guard<RealDisk>>
    for OnRealDisk
{
    async fn build(
        &self,
    ) -> Result<
        (Guard<RealDisk>, LogStore<RealDisk>, PartitionStateMachine<RealDisk>),
        StorageError<TypeConfig>,
    > {
        let dir = tempfile::tempdir().unwrap();
        let opened = Opened::open(RealDisk, &dir.path().join("p0"));
        let (store, sm) = (opened.store(), opened.state_machine());
        Ok((Guard { _opened: opened, _dir: Some(dir) }, store, sm))
    }
}

/// Builds each test's store in a fresh directory of one `SimDisk`.
struct OnSimDisk {
    disk: SimDisk,
    next: AtomicU64,
}

impl StoreBuilder<TypeConfig, LogStore<SimDisk>, PartitionStateMachine<SimDisk>, Guard<SimDisk>>
    for OnSimDisk
{
    async fn build(
        &self,
    ) -> Result<
        (Guard<SimDisk>, LogStore<SimDisk>, PartitionStateMachine<SimDisk>),
        StorageError<TypeConfig>,
    > {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = std::path::PathBuf::from(format!("/p{n}"));
        let opened = Opened::open(self.disk.clone(), &dir);
        let (store, sm) = (opened.store(), opened.state_machine());
        Ok((Guard { _opened: opened, _dir: None }, store, sm))
    }
}

/// Keeps a test's group (and directory) until the test ends.
struct Guard<D: cairn_storage::Disk> {
    _opened: Opened<D>,
    _dir: Option<tempfile::TempDir>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_on_a_real_disk() {
    Suite::test_all(OnRealDisk).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_on_sim_disk() {
    Suite::test_all(OnSimDisk { disk: SimDisk::new(7), next: AtomicU64::new(0) }).await.unwrap();
}
