//! What the cairn-raft integration tests share: a partition's Raft storage on either disk, its
//! flusher running (its own, or a node's group commit), and a sink that records proposals'
//! appends.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_metrics::Histogram;
use cairn_raft::{
    AppendSink, GroupCommit, GroupLog, LogStore, PartitionStateMachine, ProposalAppended,
};
use cairn_storage::{Disk, FlushPolicy, LogConfig, SystemClock};

/// A small log: segments of 4 KiB, so a few entries roll segments; the group commit flushes.
pub fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        flush: FlushPolicy::Manual,
        ..LogConfig::default()
    }
}

/// Records every proposal appended, in order.
#[derive(Default)]
pub struct Recorded(pub Mutex<Vec<(u64, ProposalAppended)>>);

impl AppendSink for Recorded {
    fn appended(&self, ticket: u64, appended: ProposalAppended) {
        self.0.lock().unwrap().push((ticket, appended));
    }
}

/// A partition's group opened in `dir` with its flusher running; closes it when dropped.
pub struct Opened<D: Disk> {
    pub group: GroupLog<D>,
    pub sink: Arc<Recorded>,
}

impl<D: Disk + Clone> Opened<D> {
    pub fn open(disk: D, dir: &Path) -> Opened<D> {
        let histogram = Arc::new(Histogram::new(&[0.001, 0.01, 0.1]).unwrap());
        let group = GroupLog::open(disk, dir, config(), Arc::new(SystemClock), histogram).unwrap();
        tokio::spawn(group.clone().run_flusher());
        Opened { group, sink: Arc::default() }
    }

    /// [`Opened::open`] with the log in `commit`, a node's group commit that runs elsewhere,
    /// instead of a flusher of its own.
    pub fn open_in(disk: D, dir: &Path, commit: &Arc<GroupCommit<GroupLog<D>>>) -> Opened<D> {
        let histogram = Arc::new(Histogram::new(&[0.001, 0.01, 0.1]).unwrap());
        let group = GroupLog::open(disk, dir, config(), Arc::new(SystemClock), histogram).unwrap();
        group.join_group_commit(commit);
        Opened { group, sink: Arc::default() }
    }

    pub fn store(&self) -> LogStore<D> {
        LogStore::new(self.group.clone(), self.sink.clone(), Arc::new(SystemClock))
    }

    pub fn state_machine(&self) -> PartitionStateMachine<D> {
        PartitionStateMachine::new(self.group.clone()).unwrap()
    }
}

impl<D: Disk> Drop for Opened<D> {
    fn drop(&mut self) {
        // Stops the flusher; a test that crashed the disk may see the close fail.
        let _ = self.group.close();
    }
}
