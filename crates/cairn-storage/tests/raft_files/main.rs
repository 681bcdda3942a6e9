//! The Raft state files beside a partition log: [`cairn_storage::VoteFile`] (`raft-vote`) and
//! the snapshot (`raft-snapshot`), on the real disk and on `SimDisk` with a crash at every step.

#![allow(clippy::unwrap_used)]

mod crash;
mod snapshot;
#[allow(dead_code)] // what the log tests share beside both_disks!
#[path = "../support/mod.rs"]
mod support;
mod vote;
mod vote_model;
