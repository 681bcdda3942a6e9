//! The consistent core's state machine (RFC 0003 §5), pure: no openraft, no tokio, no IO.
//!
//! The core is one Raft group (id 0) whose log holds [`CoreCommand`]s; every replica applies
//! them with [`apply`] to its [`CoreState`], and the same commands on the same state give the
//! same state and replies everywhere. The Raft layer (cairn-raft, cairn-node) stores the
//! encoded commands ([`CoreCommand::encode`]), snapshots the state
//! ([`CoreState::encode_snapshot`]) and serves `MetadataStore` from it.
//!
//! - `state.rs`: [`CoreState`] and its nouns.
//! - `command.rs`: [`CoreCommand`], [`apply`], [`CoreReply`], and the leader's constructors.
//! - `placement.rs`: [`place`] and [`check_assignments`].
//! - `encoding.rs`, `snapshot.rs`: the binary formats, on `codec.rs`'s reader and writer.

mod codec;
mod command;
mod encoding;
mod placement;
mod snapshot;
mod state;

pub use codec::CodecError;
pub use command::{CoreCommand, CoreReply, NewTopic, apply};
pub(crate) use placement::check_lists;
pub use placement::{check_assignments, place};
pub use state::{CoreState, GroupId, Liveness, LogPosition, NodeRecord, PartitionAssignment};
