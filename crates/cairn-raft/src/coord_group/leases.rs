//! [`Lessor`]: the leader's deadlines of the coordination group's leases (RFC 0009 §5).
//!
//! Only the leader keeps deadlines and expires leases. It takes them up at the start of each
//! of its terms from the store: each lease's remaining TTL as last checkpointed (its full TTL
//! until one), plus one election timeout, so a lease is not expired because its keep-alives
//! could not reach a leader that did not exist yet (etcd's `Promote`). A keep-alive renews
//! the deadline to a whole TTL; expiry proposes `LeaseRevoke`, which deletes the lease's keys
//! in one revision, only after a read index confirmed this node still leads (a deposed leader
//! revokes nothing: etcd #15247). Every [`CHECKPOINT_INTERVAL`] the leader proposes the
//! remaining TTLs (`LeaseCheckpoint`), so a new leader neither resets nor cuts them short
//! (etcd #9395, #13294).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use std::collections::BTreeMap;

use cairn_coord::{Command, KvError, Lease, Refusal, Reply};
use cairn_storage::Disk;
use openraft::async_runtime::WatchReceiver;
use tokio::time::Instant;

use super::group::CoordGroup;

/// How often the leader looks for expired leases.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// How often the leader checkpoints the remaining TTLs.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

/// The leader's lease deadlines (module docs).
pub(super) struct Lessor {
    state: Mutex<Deadlines>,
    /// Added to every lease's remaining TTL when a term starts.
    extension: Duration,
}

#[derive(Default)]
struct Deadlines {
    /// The term they were taken up in; none yet: 0.
    term: u64,
    by_lease: HashMap<i64, Instant>,
}

impl Lessor {
    pub(super) fn new(extension: Duration) -> Lessor {
        Lessor { state: Mutex::new(Deadlines::default()), extension }
    }

    /// `command` with a lease id chosen for a LeaseGrant that left it to the leader (0): a
    /// random positive one no lease has.
    pub(super) fn choose_id<D: Disk + Clone>(
        &self,
        group: &CoordGroup<D>,
        command: Command,
    ) -> Command {
        let Command::LeaseGrant { id: 0, ttl } = command else { return command };
        // A collision (one in 2^63) is refused by apply as LeaseExists, as etcd's.
        let leases = group.reader().leases().unwrap_or_default();
        let id = loop {
            let id = i64::from_ne_bytes(uuid::Uuid::new_v4().as_u64_pair().0.to_ne_bytes());
            let id = id & i64::MAX;
            if id != 0 && !leases.contains_key(&id) {
                break id;
            }
        };
        Command::LeaseGrant { id, ttl }
    }

    /// Takes note of an applied command this node proposed: a granted lease runs from now.
    /// The term's deadlines are taken up first, which would otherwise give the new lease an
    /// election timeout more than its TTL.
    pub(super) fn applied<D: Disk + Clone>(
        &self,
        group: &CoordGroup<D>,
        reply: &Result<Reply, KvError>,
    ) {
        if let Ok(Reply::LeaseGranted { id, ttl }) = reply {
            if let (Ok(term), Ok(leases)) = (self.leading_term(group), leases(group)) {
                self.take_up(&leases, term);
            }
            let deadline = Instant::now() + seconds(*ttl);
            self.lock().by_lease.insert(*id, deadline);
        }
    }

    /// Renews lease `id` to its whole TTL; answers the TTL.
    pub(super) async fn keep_alive<D: Disk + Clone>(
        &self,
        group: &CoordGroup<D>,
        id: i64,
    ) -> Result<i64, Refusal> {
        let ttl = self.leased(group, id)?;
        self.lock().by_lease.insert(id, Instant::now() + seconds(ttl));
        Ok(ttl)
    }

    /// The seconds left of lease `id` (rounded up) and its TTL.
    pub(super) async fn time_to_live<D: Disk + Clone>(
        &self,
        group: &CoordGroup<D>,
        id: i64,
    ) -> Result<(i64, i64), Refusal> {
        let ttl = self.leased(group, id)?;
        let deadline = self.lock().by_lease.get(&id).copied();
        let left =
            deadline.map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now()));
        let remaining = i64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        Ok((remaining, ttl))
    }

    /// The TTL of lease `id`, this node leading, its deadlines taken up for this term.
    fn leased<D: Disk + Clone>(&self, group: &CoordGroup<D>, id: i64) -> Result<i64, Refusal> {
        let term = self.leading_term(group)?;
        let leases = leases(group)?;
        self.take_up(&leases, term);
        leases.get(&id).map(|lease| lease.ttl).ok_or(Refusal::Kv(KvError::LeaseNotFound))
    }

    /// The term this node leads in.
    fn leading_term<D: Disk + Clone>(&self, group: &CoordGroup<D>) -> Result<u64, Refusal> {
        let metrics = group.raft.metrics().borrow_watched().clone();
        match metrics.current_leader {
            Some(leader) if leader == group.node => Ok(metrics.current_term),
            leader => Err(Refusal::NotLeader(leader)),
        }
    }

    /// Takes the deadlines up from the store's `leases` if `term` is new (module docs), and
    /// forgets leases the store no longer has.
    fn take_up(&self, leases: &BTreeMap<i64, Lease>, term: u64) {
        let mut state = self.lock();
        let now = Instant::now();
        if state.term != term {
            state.term = term;
            state.by_lease = leases
                .iter()
                .map(|(&id, lease)| (id, now + seconds(lease.remaining) + self.extension))
                .collect();
        }
        state.by_lease.retain(|id, _| leases.contains_key(id));
        for (&id, lease) in leases {
            state.by_lease.entry(id).or_insert(now + seconds(lease.remaining) + self.extension);
        }
    }

    /// The leases past their deadline.
    fn expired<D: Disk + Clone>(&self, group: &CoordGroup<D>) -> Result<Vec<i64>, Refusal> {
        let term = self.leading_term(group)?;
        self.take_up(&leases(group)?, term);
        let now = Instant::now();
        let state = self.lock();
        Ok(state.by_lease.iter().filter(|(_, at)| **at <= now).map(|(&id, _)| id).collect())
    }

    /// What remains of every lease, in whole seconds (rounded up), for a checkpoint.
    fn remaining(&self) -> Vec<(i64, i64)> {
        let now = Instant::now();
        let state = self.lock();
        let left = |at: &Instant| at.saturating_duration_since(now).as_millis().div_ceil(1000);
        let mut remaining: Vec<(i64, i64)> = state
            .by_lease
            .iter()
            .map(|(&id, at)| (id, i64::try_from(left(at)).unwrap_or(i64::MAX).max(1)))
            .collect();
        remaining.sort_unstable();
        remaining
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn leases<D: Disk + Clone>(group: &CoordGroup<D>) -> Result<BTreeMap<i64, Lease>, Refusal> {
    group.reader().leases().map_err(|error| Refusal::Unavailable(error.to_string()))
}

fn seconds(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// The leader's expiry and checkpoint loop, until the group is gone.
pub(super) async fn run<D: Disk + Clone>(group: Weak<CoordGroup<D>>) {
    let mut checkpointed = Instant::now();
    loop {
        tokio::time::sleep(EXPIRY_TICK).await;
        let Some(group) = group.upgrade() else { return };
        let Ok(expired) = group.lessor.expired(&group) else { continue };
        if !expired.is_empty() && group.leader_read_index().await.is_ok() {
            for id in expired {
                revoke(&group, id).await;
            }
        }
        if checkpointed.elapsed() >= CHECKPOINT_INTERVAL {
            checkpointed = Instant::now();
            let remaining = group.lessor.remaining();
            if !remaining.is_empty() {
                let checkpoint = group.propose(Command::LeaseCheckpoint { remaining }).await;
                if let Err(error) = checkpoint {
                    tracing::debug!(?error, "a lease checkpoint failed");
                }
            }
        }
    }
}

async fn revoke<D: Disk + Clone>(group: &CoordGroup<D>, id: i64) {
    match group.propose(Command::LeaseRevoke { id }).await {
        Ok(_) => tracing::debug!(lease = id, "lease expired and revoked"),
        Err(Refusal::Kv(KvError::LeaseNotFound)) => {}
        Err(error) => tracing::debug!(lease = id, ?error, "revoking an expired lease failed"),
    }
}
