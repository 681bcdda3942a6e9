//! The etcd API on three real `cairn serve` processes with the real `etcd-client` crate:
//! linearizability under leader kills and pauses (`linearizable.rs`), leases and locks across
//! a leader's death (`leases.rs`), over the cluster of `cluster.rs`.

mod cluster;
mod leases;
mod linearizable;
