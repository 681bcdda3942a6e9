//! [`RaftGroup`]: a partition's openraft group over its [`GroupLog`], the one code path of every
//! partition (RFC 0003 §4, §9 step 3): with one voter it elects itself at once, and replication
//! factor 1 is a group like any other.
//!
//! - Start ([`RaftGroup::start`]): a log written before Raft is adopted first (a snapshot record
//!   at `(term 0, index 0)` with membership `{node}`, [`GroupLog::adopt`]); a group with no state
//!   at all is initialized with voters `{node}` (its membership entry is index 0); a group whose
//!   only voter is this node campaigns at once, so every start is a new term, one higher, and
//!   then runs without timers (no peer to heartbeat or to lose an election to).
//! - Produce ([`RaftGroup::propose`]): one proposal per batch through `client_write_ff`, with a
//!   responder whose commit callback is what `acks=all` waits for ([`Pending::committed`]), not
//!   the apply; the proposal's append is reported to the partition's [`AppendSink`] for `acks=1`.
//! - Roles ([`RaftGroup::roles`]): role, term and leader from openraft's server metrics, which
//!   change only on elections.
//! - Retention ([`RaftGroup::purge_through`]): a snapshot built at the purge point, then the
//!   purge (RFC 0003 §3 "Snapshots are small; purge is retention", §11 b).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_storage::{Clock, Disk};
use cairn_types::RaftIndex;
use openraft::LinearizerOption;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::metrics::{RaftMetrics, RaftServerMetrics};
use openraft::raft::ClientWriteResult;
use openraft::{Instant as _, Raft, ServerState};

use tokio::time::Instant;

use crate::peer::Router;
use crate::{
    AppendSink, CommitResponder, GroupLog, GroupTimers, GroupView, LogId, LogStore, Network,
    NoPeers, PartitionStateMachine, Proposal, Quiescence, QuietHandle, RaftHandler, RaftNodeId,
    StoreError, Term, Timers, TimersError, TypeConfig,
};

/// Why a group could not start or stopped. The partition is offline until a restart.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The log, vote or snapshot record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The timers are not a valid openraft configuration.
    #[error(transparent)]
    Timers(#[from] TimersError),
    /// openraft refused to start the group or stopped it (a storage failure it saw).
    #[error("raft group: {0}")]
    Stopped(String),
}

/// Why a proposal was not committed. Both kinds are unknown outcomes for a client (the entry
/// may still commit under another leader): retriable, never a definite failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader (or stopped leading before the entry was appended, or its
    /// entry was discarded by a later leader's log): `NOT_LEADER_OR_FOLLOWER`.
    #[error("not the leader of the group")]
    NotLeader {
        /// The leader, if known.
        leader: Option<RaftNodeId>,
    },
    /// The group stopped (shut down or failed).
    #[error("raft group stopped: {0}")]
    Stopped(String),
}

/// A group's state as its role watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// Leads its term: takes proposals.
    Leader,
    /// Follows `leader` (unknown during an election).
    Follower,
    /// Campaigning.
    Candidate,
    /// A learner: replicates, never votes.
    Learner,
    /// Stopped: shut down, or failed on a storage error.
    Stopped,
}

/// Role, term and leader of a group at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupRole {
    /// The group's state on this node.
    pub state: GroupState,
    /// The current term: the Kafka leader epoch.
    pub term: Term,
    /// The leader of the term, if known.
    pub leader: Option<RaftNodeId>,
}

fn role_of(metrics: &RaftServerMetrics<TypeConfig>) -> GroupRole {
    let state = match metrics.state {
        ServerState::Leader => GroupState::Leader,
        ServerState::Follower => GroupState::Follower,
        ServerState::Candidate => GroupState::Candidate,
        ServerState::Learner => GroupState::Learner,
        ServerState::Shutdown => GroupState::Stopped,
    };
    GroupRole { state, term: metrics.vote.leader_id.term, leader: metrics.current_leader }
}

/// The leader `metrics` know, unless it is this node and no quorum acknowledged it within
/// `lease` ([`RaftGroup::leader`]; the core's controller too).
#[must_use]
pub fn leader_with_lease(metrics: &RaftMetrics<TypeConfig>, lease: Duration) -> Option<RaftNodeId> {
    let leader = metrics.current_leader?;
    (leader != metrics.id || leads_with_quorum(metrics, lease)).then_some(leader)
}

/// Whether this node leads and a quorum acknowledged it within `lease`; a sole voter is its
/// own quorum.
fn leads_with_quorum(metrics: &RaftMetrics<TypeConfig>, lease: Duration) -> bool {
    if metrics.state != ServerState::Leader {
        return false;
    }
    let sole_voter = metrics.membership_config.membership().voter_ids().eq([metrics.id]);
    let acked = metrics.last_quorum_acked.is_some_and(|at| at.elapsed() <= lease);
    sole_voter || acked
}

/// Watches a group's role; changes only on elections and on stopping.
pub struct RoleWatch {
    metrics:
        openraft::type_config::alias::WatchReceiverOf<TypeConfig, RaftServerMetrics<TypeConfig>>,
}

impl RoleWatch {
    /// The role now.
    #[must_use]
    pub fn current(&self) -> GroupRole {
        role_of(&self.metrics.borrow_watched())
    }

    /// Waits for the next change; `None` once the group is gone.
    pub async fn changed(&mut self) -> Option<GroupRole> {
        self.metrics.changed().await.ok()?;
        Some(self.current())
    }
}

/// A proposal handed to the group: its commit, or why it will not commit here.
pub struct Pending {
    /// Fires with the entry's own log id when a majority (with one voter: this node's fsync)
    /// committed it.
    commit: tokio::sync::oneshot::Receiver<LogId>,
    /// Fires after apply, or with the reason the entry was refused or discarded.
    complete: tokio::sync::oneshot::Receiver<ClientWriteResult<TypeConfig>>,
}

fn refusal(error: Option<ClientWriteError<TypeConfig>>) -> ProposeError {
    match error {
        Some(ClientWriteError::ForwardToLeader(to) | ClientWriteError::LogEntryDiscarded(to)) => {
            ProposeError::NotLeader { leader: to.leader_id }
        }
        Some(other) => ProposeError::Stopped(other.to_string()),
        None => ProposeError::Stopped("the group stopped before answering".to_owned()),
    }
}

impl Pending {
    /// Waits for the commit callback (`acks=all`): the entry's log id.
    ///
    /// # Errors
    /// [`ProposeError`] if the entry was refused, discarded, or the group stopped.
    pub async fn committed(self) -> Result<LogId, ProposeError> {
        match self.commit.await {
            Ok(log_id) => Ok(log_id),
            Err(_) => match self.complete.await {
                Ok(Err(error)) => Err(refusal(Some(error))),
                // Completed without a commit callback: cannot happen for a committed entry.
                Ok(Ok(_)) | Err(_) => Err(refusal(None)),
            },
        }
    }

    /// Resolves only if the proposal fails (refused, discarded, the group stopped); pending
    /// forever once it completes. Raced against the append report for `acks=1`.
    pub async fn refused(&mut self) -> ProposeError {
        match (&mut self.complete).await {
            Ok(Ok(_)) => std::future::pending().await,
            Ok(Err(error)) => refusal(Some(error)),
            Err(_) => refusal(None),
        }
    }
}

/// A partition's openraft group (module docs).
pub struct RaftGroup<D: Disk + Clone + Send + Sync + 'static> {
    raft: Raft<TypeConfig, PartitionStateMachine<D>>,
    log: GroupLog<D>,
    /// The router the group is registered in, and its id there, when it has peers.
    routed: Option<(Arc<Router>, u64)>,
    /// How recently a follower must have acknowledged the leader to count as in sync.
    in_sync_within: Duration,
    /// The group's quiescence (RFC 0004), when it has peers to quiesce with.
    quiet: Option<QuietHandle>,
    /// Set from a proposal's wake of the group until its lease is renewed.
    renewing: AtomicBool,
}

/// What a partition's group needs of the node's peer transport.
#[derive(Clone, Debug)]
pub struct GroupPeers {
    /// The node's clients of its peers.
    pub network: Network,
    /// Where peers' requests find the node's groups.
    pub router: Arc<Router>,
    /// The node's quiescence of its groups (RFC 0004).
    pub quiescence: Arc<Quiescence>,
}

impl GroupPeers {
    /// The peers of node `node`'s groups over `network` and `router`, quiescing idle groups
    /// with `timers` (RFC 0004): a scan and a ping to each peer every heartbeat interval, a
    /// follower wakes when its leader's pings stopped for the shortest election timeout, and a
    /// quiesced leader's lease is a heartbeat shorter. Must run inside a tokio runtime.
    #[must_use]
    pub fn new(node: RaftNodeId, network: Network, router: Arc<Router>, timers: &Timers) -> Self {
        let heartbeat = Duration::from_millis(timers.heartbeat_ms);
        let wake_after = Duration::from_millis(timers.election_timeout_min_ms);
        let quiescence = Quiescence::new(node, wake_after, wake_after.saturating_sub(heartbeat));
        router.serve_pings(Arc::clone(&quiescence) as Arc<dyn crate::peer::PingHandler>);
        network.run_quiescence(&quiescence, heartbeat);
        GroupPeers { network, router, quiescence }
    }
}

/// Where a group runs: this node, the group's voters and id, and the peers to reach them
/// (`None` on a node without peers: then `voters` is this node alone).
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    /// This node.
    pub node: RaftNodeId,
    /// The group's voters (its replicas), this node among them.
    pub voters: &'a BTreeSet<RaftNodeId>,
    /// The group's id on the peer transport (the consistent core assigns it).
    pub group: u64,
    /// The node's peer transport, if it has peers.
    pub peers: Option<&'a GroupPeers>,
}

impl<D: Disk + Clone + Send + Sync + 'static> RaftGroup<D> {
    /// Starts the group of `log` on node `node` (module docs), reporting to `sink`; its flusher
    /// must run ([`GroupLog::run_flusher`]). A new group is initialized with `voters` (every
    /// replica does so alike); with `peers` the group talks to its peers as group `group` and
    /// is registered in their router until [`RaftGroup::shutdown`]. Returns once the group is
    /// running; with one voter it is leader shortly after ([`RaftGroup::wait_leader`]).
    ///
    /// # Errors
    /// [`GroupError`] if the timers are invalid, the log cannot be adopted, or openraft refuses
    /// to start the group.
    pub async fn start(
        log: GroupLog<D>,
        placement: Placement<'_>,
        timers: &Timers,
        sink: Arc<dyn AppendSink>,
        clock: Arc<dyn Clock>,
    ) -> Result<RaftGroup<D>, GroupError> {
        let node = placement.node;
        let mut config = timers.openraft_config()?;
        log.blocking(move |log| log.adopt(node)).await?;
        let abstain = Arc::new(AtomicBool::new(false));
        let lost = abstain_if_lost(&log, placement, &abstain);
        if lost.is_some() {
            config.enable_elect = false;
        }
        let config = Arc::new(config);
        let new = log.is_new();
        log.observe(Arc::clone(&sink));
        let store = LogStore::new(log.clone(), sink, clock);
        let state_machine = PartitionStateMachine::new(log.clone())?;
        // Boxed: openraft's start future is deep, and callers nest it in theirs.
        let raft = match placement.peers {
            Some(peers) => {
                let network = peers.network.group(placement.group);
                Box::pin(Raft::new(node, config, network, store, state_machine)).await
            }
            None => {
                Box::pin(Raft::new(node, config, NoPeers::default(), store, state_machine)).await
            }
        }
        .map_err(|error| GroupError::Stopped(error.to_string()))?;
        let quiet = placement.peers.map(|peers| {
            let timers = QuietTimers { raft: raft.clone(), node, timers: *timers };
            peers.quiescence.register(placement.group, Arc::new(timers))
        });
        let routed = placement.peers.map(|peers| {
            let handler =
                RaftHandler::abstaining(raft.clone(), Arc::clone(&abstain), quiet.clone());
            peers.router.register(placement.group, handler);
            (Arc::clone(&peers.router), placement.group)
        });
        let in_sync_within = Duration::from_millis(timers.election_timeout_max_ms);
        if let Some(index) = lost {
            let rejoin =
                rejoin_when_held(raft.clone(), log.clone(), index, abstain, placement.group);
            crate::runtime::spawn(rejoin);
        }
        let renewing = AtomicBool::new(false);
        let mut group = RaftGroup { raft, log, routed, in_sync_within, quiet, renewing };
        if new {
            group.initialize(placement.voters.clone()).await?;
        }
        if group.sole_voter(node).await {
            // A sole voter has no peer to heartbeat and no one to lose an election to: its
            // timers would only wake it (thousands of idle partitions on a node), and it has
            // nothing to quiesce with.
            if let Some(quiet) = group.quiet.take() {
                quiet.unregister();
            }
            group.raft.trigger().elect(false).await.map_err(stopped)?;
            group.raft.runtime_config().tick(false);
        }
        Ok(group)
    }

    /// Initializes a new group with `voters`; a group openraft finds initialized already (a
    /// crash between the first append and its record, or a peer's leader reached it first) is
    /// left as it is.
    async fn initialize(&self, voters: BTreeSet<RaftNodeId>) -> Result<(), GroupError> {
        match self.raft.initialize(voters).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(error) => Err(GroupError::Stopped(error.to_string())),
        }
    }

    /// Whether `node` is the only voter of the group's membership. The metrics learn the
    /// membership from the core task after `Raft::new` and `initialize` return: waits for it.
    async fn sole_voter(&self, node: RaftNodeId) -> bool {
        let known = |m: &RaftMetrics<TypeConfig>| {
            m.membership_config.membership().voter_ids().next().is_some()
        };
        let metrics =
            self.raft.wait(Some(Duration::from_secs(5))).metrics(known, "membership").await;
        metrics.is_ok_and(|m| m.membership_config.membership().voter_ids().eq([node]))
    }

    /// The group's log and Raft files.
    #[must_use]
    pub fn log(&self) -> &GroupLog<D> {
        &self.log
    }

    /// On the leader, the replicas in sync (Kafka's ISR): the leader, and every follower that
    /// holds everything committed and acknowledged the leader within the longest election
    /// timeout. `None` on a replica that does not lead (it cannot tell).
    #[must_use]
    pub fn in_sync(&self) -> Option<Vec<RaftNodeId>> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        if let Some(quiet) = &self.quiet
            && metrics.state == ServerState::Leader
            && let Some(mut acked) = quiet.acked_followers(Instant::now())
        {
            // Quiesced: the followers that acknowledged its pings (RFC 0004 "Lease").
            acked.push(metrics.id);
            acked.sort_unstable();
            return Some(acked);
        }
        if !leads_with_quorum(&metrics, self.in_sync_within) {
            return None;
        }
        let committed = metrics.cluster_committed.map(|id| id.index);
        let (matched, heard) = (metrics.replication.as_ref()?, metrics.heartbeat.as_ref()?);
        let current = |follower: &RaftNodeId| {
            let caught_up =
                matched.get(follower).copied().flatten().map(|id| id.index) >= committed;
            let recent = heard
                .get(follower)
                .copied()
                .flatten()
                .is_some_and(|at| at.elapsed() <= self.in_sync_within);
            caught_up && recent
        };
        let mut in_sync: Vec<RaftNodeId> = matched.keys().filter(|f| current(f)).copied().collect();
        if !in_sync.contains(&metrics.id) {
            in_sync.push(metrics.id);
        }
        in_sync.sort_unstable();
        Some(in_sync)
    }

    /// The group's leader as this node knows it: `None` during an election, and while this
    /// node leads without a quorum's acknowledgement within the longest election timeout. Such
    /// a leader (cut off from its followers) keeps its state in openraft but refuses proposals
    /// (openraft's CheckQuorum); naming it in Metadata would send clients back to it for as
    /// long as the cut lasts.
    #[must_use]
    pub fn leader(&self) -> Option<RaftNodeId> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader = leader_with_lease(&metrics, self.in_sync_within);
        let quiet_lease = || self.quiet.as_ref().is_some_and(|q| q.holds_lease(Instant::now()));
        leader.or_else(|| {
            (metrics.state == ServerState::Leader && quiet_lease()).then_some(metrics.id)
        })
    }

    /// Watches the group's role.
    #[must_use]
    pub fn roles(&self) -> RoleWatch {
        RoleWatch { metrics: self.raft.server_metrics() }
    }

    /// Waits up to `timeout` for the group to have a leader; which node, if one was known in
    /// time.
    pub async fn wait_leader_known(&self, timeout: Duration) -> Option<RaftNodeId> {
        let known =
            self.raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a leader").await;
        known.ok().and_then(|metrics| metrics.current_leader)
    }

    /// Waits up to `timeout` for this node to lead the group; whether it does.
    pub async fn wait_leader(&self, timeout: Duration) -> bool {
        self.raft.wait(Some(timeout)).state(ServerState::Leader, "leads its group").await.is_ok()
    }

    /// Proposes `batch` (one validated record batch) with `ticket` (reported to the sink with
    /// its place in the log; [`Proposal::TICKET_NONE`] for none). Proposals are appended in the
    /// order of the calls. `wait`: whether the caller wants the outcome (`acks=0` does not).
    ///
    /// # Errors
    /// [`ProposeError::Stopped`] if the group stopped.
    pub async fn propose(
        &self,
        batch: Bytes,
        ticket: u64,
        wait: bool,
    ) -> Result<Option<Pending>, ProposeError> {
        if let Some(quiet) = &self.quiet {
            if quiet.wake() {
                self.renewing.store(true, Ordering::Release);
            }
            if self.renewing.load(Ordering::Acquire) {
                self.renew_lease().await;
                self.renewing.store(false, Ordering::Release);
            }
        }
        let proposal = Proposal { batch, ticket };
        let (responder, pending) = if wait {
            let (responder, commit, complete) = CommitResponder::new();
            (Some(responder), Some(Pending { commit, complete }))
        } else {
            (None, None)
        };
        self.raft
            .client_write_ff(proposal, responder)
            .await
            .map_err(|fatal| ProposeError::Stopped(fatal.to_string()))?;
        Ok(pending)
    }

    /// After a wake (RFC 0004 "Waking"): openraft refuses proposals from a leader whose quorum
    /// lease lapsed, so unless a quorum acknowledged it within half the lease, a heartbeat now
    /// and a wait, up to the lease, for a quorum's acknowledgement: one round trip. Proposals
    /// that arrive meanwhile wait for the same.
    async fn renew_lease(&self) {
        let fresh = self.in_sync_within / 2;
        let renewal =
            LinearizerOption::new(Some(fresh), true).with_wait_timeout(self.in_sync_within);
        if let Err(error) = self.raft.get_read_linearizer(renewal).await {
            tracing::debug!(%error, "a woken group did not renew its lease");
        }
    }

    /// Builds the group's snapshot at `index` (retention's purge point, at or below the applied
    /// index) and purges the log through it: whole segments the snapshot covers are deleted.
    /// Waits up to `timeout` for each step; whether the purge reached `index`.
    ///
    /// # Errors
    /// [`GroupError::Stopped`] if the group stopped.
    pub async fn purge_through(
        &self,
        index: RaftIndex,
        timeout: Duration,
    ) -> Result<bool, GroupError> {
        self.log.snapshot_at(index);
        self.raft.trigger().snapshot().await.map_err(stopped)?;
        let built = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= index.0), "snapshot built")
            .await;
        if built.is_err() {
            return Ok(false);
        }
        self.raft.trigger().purge_log(index.0).await.map_err(stopped)?;
        let purged = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.purged.is_some_and(|p| p.index >= index.0), "log purged")
            .await;
        Ok(purged.is_ok())
    }

    /// Stops routing peers' requests to the group and stops its Raft tasks (the log stays
    /// open: close it after).
    pub async fn shutdown(&self) {
        if let Some(quiet) = &self.quiet {
            quiet.unregister();
        }
        if let Some((router, group)) = &self.routed {
            router.remove(*group);
        }
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft group did not stop cleanly");
        }
    }
}

/// The committed index `log` lost ([`GroupLog::lost_committed`]) if the group has peers to
/// restore it from: then `abstain` is set, and the group must not campaign either until its
/// log holds that index again ([`rejoin_when_held`]). A sole voter has nobody to restore it
/// from or to elect wrongly: it goes on with what it holds.
fn abstain_if_lost<D: Disk>(
    log: &GroupLog<D>,
    placement: Placement<'_>,
    abstain: &AtomicBool,
) -> Option<RaftIndex> {
    let index = log.lost_committed()?;
    let end = log.with_log(|log| log.next_index());
    let group = placement.group;
    if placement.peers.is_none() || placement.voters.len() < 2 {
        tracing::error!(
            group,
            committed_index = index.0,
            end_index = end.0,
            "replica's log lost committed entries and has no peer to restore them from"
        );
        return None;
    }
    tracing::warn!(
        group,
        committed_index = index.0,
        end_index = end.0,
        "replica's log lost committed entries: it neither votes nor campaigns until the \
         leader has restored them"
    );
    abstain.store(true, Ordering::Release);
    Some(index)
}

/// Waits until the group's log holds `index` again (the leader's appends restored what it
/// lost: entries up to a committed index are the same in every log that holds them), then
/// lets the replica vote and campaign, and removes `raft-restore` ([`GroupLog::restored`]).
/// Ends with the group.
async fn rejoin_when_held<D: Disk + Clone>(
    raft: Raft<TypeConfig, PartitionStateMachine<D>>,
    log: GroupLog<D>,
    index: RaftIndex,
    abstain: Arc<AtomicBool>,
    group: u64,
) {
    let mut metrics = raft.metrics();
    loop {
        let held = metrics.borrow_watched().last_log_index.is_some_and(|last| last >= index.0);
        if held {
            break;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
    abstain.store(false, Ordering::Release);
    raft.runtime_config().elect(true);
    tracing::info!(group, committed_index = index.0, "replica restored its lost committed entries");
    if let Err(error) = log.blocking(|log| log.restored()).await {
        // The next start finds the file and its index held, and removes it then.
        tracing::warn!(group, %error, "raft-restore could not be removed");
    }
}

/// A partition group as [`Quiescence`] sees it (RFC 0004).
struct QuietTimers<D: Disk + Clone + Send + Sync + 'static> {
    raft: Raft<TypeConfig, PartitionStateMachine<D>>,
    node: RaftNodeId,
    timers: Timers,
}

impl<D: Disk + Clone + Send + Sync + 'static> GroupTimers for QuietTimers<D> {
    fn view(&self) -> GroupView {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let term = metrics.vote.leader_id.term;
        match (metrics.state, metrics.current_leader) {
            (ServerState::Leader, _) => leader_view(&metrics, &self.timers),
            (ServerState::Follower, Some(leader)) if leader != self.node => {
                GroupView::Follower { leader, term }
            }
            _ => GroupView::Other,
        }
    }

    fn set_ticking(&self, on: bool) {
        self.raft.runtime_config().tick(on);
    }
}

/// A leader's [`GroupView`]: settled when its membership is stable, its last entry is
/// committed, a quorum (itself included) acknowledged it within two heartbeats (so knows the
/// commit index), every follower that did holds the last entry, and its quorum lease holds.
/// A follower silent that long (a dead or cut-off node) does not keep the group awake: it is
/// woken again when that follower answers the leader's ping on its return (RFC 0004).
fn leader_view(metrics: &RaftMetrics<TypeConfig>, timers: &Timers) -> GroupView {
    let membership = metrics.membership_config.membership();
    let followers: Vec<RaftNodeId> =
        membership.voter_ids().filter(|id| *id != metrics.id).collect();
    let last_index = metrics.last_log_index;
    let stable =
        membership.get_joint_config().len() == 1 && membership.learner_ids().next().is_none();
    let committed = metrics.cluster_committed.map(|id| id.index) == last_index;
    let recent = Duration::from_millis(2 * timers.heartbeat_ms);
    let heard: Vec<RaftNodeId> = followers
        .iter()
        .copied()
        .filter(|f| {
            let at = metrics.heartbeat.as_ref().and_then(|heard| heard.get(f).copied().flatten());
            at.is_some_and(|at| at.elapsed() <= recent)
        })
        .collect();
    let matched = metrics.replication.as_ref().is_some_and(|matched| {
        let at = |f: &RaftNodeId| matched.get(f).copied().flatten().map(|id| id.index);
        heard.iter().all(|f| at(f) == last_index)
    });
    let quorum = 2 * (heard.len() + 1) > followers.len() + 1;
    let lease = Duration::from_millis(timers.election_timeout_max_ms);
    let settled = stable && committed && quorum && matched && leads_with_quorum(metrics, lease);
    let term = metrics.vote.leader_id.term;
    GroupView::Leader { term, followers, last_index, in_sync: heard, settled }
}

fn stopped(fatal: openraft::error::Fatal<TypeConfig>) -> GroupError {
    GroupError::Stopped(fatal.to_string())
}
