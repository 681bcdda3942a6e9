//! The coordination group (RFC 0009 §1): a second Raft group on the core's voters whose log
//! holds cairn-coord's [`cairn_coord::Command`]s and whose state machine is cairn-coord's
//! [`cairn_coord::Store`], etcd's MVCC keyspace with its leases, behind the etcd API.
//!
//! - `state_machine.rs`: [`CoordStateMachine`]: each entry's command applied to the store,
//!   each revision it made published to the watchers ([`cairn_coord::Applied`]), the applied position
//!   moved, then the writers answered; snapshots of the store, the log purged behind them, and
//!   their install on a follower behind the purged log.
//! - `group.rs`: [`CoordGroup`]: writes proposed by the leader (forwarded to it in `CoordCall`
//!   frames by the other nodes), linearizable reads through the leader's read index, the
//!   store and its revisions for reads and watches.
//! - `leases.rs`: the leader's lease deadlines, expiry and checkpoints.
//! - `open.rs`: [`CoordGroup::open`] in `<meta>/coord/`, with the core's settings and voters.

mod group;
mod leases;
mod open;
mod state_machine;

pub use group::{CoordGroup, CoordStatus, Written};
pub use leases::CHECKPOINT_INTERVAL;
pub use state_machine::{
    CoordSnapshot, CoordSnapshotBuilder, CoordStateMachine, PERSIST_ENTRIES, PERSIST_INTERVAL,
    STORE_FILE,
};

/// The coordination group's id on the peer transport: the highest, which partitions' groups
/// (numbered up from 1 by the core) never reach.
pub const COORD_GROUP: u64 = u64::MAX;

/// The directory of the coordination group's log, inside the metadata directory.
pub const COORD_DIR: &str = "coord";
