//! [`LogStore`] and [`LogReader`]: openraft's log storage over a partition's cairn-storage log
//! (RFC 0003 §3 "Append", "Truncation", "Snapshots are small; purge is retention").
//!
//! - Append: entries made on this node (proposals, blank, membership) are encoded and written
//!   with the leader append, which stamps the term as the leader epoch, several entries of one
//!   term in one call; entries that carry stored bytes (read from a log, received from a peer)
//!   go through the follower append, their epoch checked against their term. Each proposal's
//!   ticket is reported to the partition's [`AppendSink`] with its index and offsets. The
//!   `IOFlushed` callback fires once the group commit made the entries durable.
//! - The leader append admits idempotent batches (RFC 0006 §4): each is judged, in log order,
//!   against the log's producers and the batches ahead of it in the same call
//!   ([`cairn_storage::ProducerStates::check`]). One that repeats a kept batch, skips a
//!   sequence or carries a fenced epoch is not written: a blank entry's control batch takes its
//!   index ([`codec::refused_batch`]), and its report carries the [`Verdict`] (for a repeat,
//!   the original's offsets). A repeat of a batch ahead in the same call is judged once that
//!   batch is written, so its offsets are known.
//! - `truncate_after` and `purge` are the log's cuts; a purge deletes only whole segments the
//!   snapshot covers, and hides the rest of what it purges from Raft reads.
//! - The vote and the committed id live in `raft-vote`. The committed id saved is clamped to
//!   the locally durable log and kept below any membership entry the state machine has not
//!   applied, so a restart may report the committed id as applied without reading the log
//!   (RFC 0003 §11 b; [`crate::PartitionStateMachine`]).
//! - Reads decode whole entries; a limited read stops at [`RAFT_READ_BYTES_MAX`]; the key log
//!   ids come from the log's epoch history, each term's first index.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds, RangeInclusive};
use std::sync::Arc;

use bytes::Bytes;
use cairn_storage::{Clock, Disk, ProducerBatch, StoredVote, Verdict};
use cairn_types::batch::{BatchHeader, Frames};
use cairn_types::limits::{APPEND_BYTES_MAX, BATCH_BYTES_MAX, RAFT_READ_BYTES_MAX};
use cairn_types::{Offset, RaftIndex};
use openraft::RaftLogReader;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::VoteOf;

use crate::entry::log_id;
use crate::epoch::{self, epoch_of};
use crate::group::{GroupLog, Recent, State, StoreError};
use crate::{LogId, RaftEntry, TypeConfig, codec};

/// The node a vote names when `raft-vote` holds a term without a candidate (a log adopted at
/// its latest epoch): no real node, so this replica grants no vote in that term.
const NO_CANDIDATE: u64 = u64::MAX;

/// What the partition learns from its group's storage: each proposal's append, for `acks=1`
/// (answered from it) and for `acks=all` (which then waits for the entry's commit); and, once
/// registered with [`crate::GroupLog::observe`], each flush and each apply (the replica's
/// `flushed` and high watermark). Every call is made without any lock held.
pub trait AppendSink: Send + Sync + 'static {
    /// The proposal with `ticket` is in the log (page cache) at `appended`. Called once per
    /// fresh proposal whose ticket is not [`crate::Proposal::TICKET_NONE`], in log order.
    fn appended(&self, ticket: u64, appended: ProposalAppended);

    /// A flush made the log durable below `durable`.
    fn flushed(&self, durable: Offset) {
        let _ = durable;
    }

    /// An append failed with `error` (the group stops on it): a full disk shows in health.
    fn append_failed(&self, error: &StoreError) {
        let _ = error;
    }

    /// The state machine applied (so the group committed) every entry up to `index`, whose
    /// records end before `end`: the high watermark.
    fn applied(&self, index: RaftIndex, end: Offset) {
        let _ = (index, end);
    }
}

/// Where a proposal landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposalAppended {
    /// Its Raft index.
    pub index: RaftIndex,
    /// Offset of its first record (of the blank written instead, if refused).
    pub base_offset: Offset,
    /// Offset after its last record.
    pub next_offset: Offset,
    /// The admission of its idempotent batch: [`Verdict::Append`] if written (and for every
    /// batch without a producer); otherwise why it was not (module docs).
    pub verdict: Verdict,
}

/// openraft's log storage of one partition (module docs).
pub struct LogStore<D: Disk> {
    group: GroupLog<D>,
    sink: Arc<dyn AppendSink>,
    /// Timestamps the control batches of blank and membership entries made here.
    clock: Arc<dyn Clock>,
    /// The batches of one append call. Reused.
    buffer: Vec<u8>,
}

/// openraft's log reader of one partition: reads never block appends for longer than a copy.
pub struct LogReader<D: Disk> {
    group: GroupLog<D>,
}

impl<D: Disk> LogStore<D> {
    /// The log store of `group`, reporting proposals to `sink`.
    pub fn new(
        group: GroupLog<D>,
        sink: Arc<dyn AppendSink>,
        clock: Arc<dyn Clock>,
    ) -> LogStore<D> {
        LogStore { group, sink, clock, buffer: Vec::new() }
    }

    /// Writes `entries` (not empty) to the log; returns the proposals to report.
    fn append_entries(
        &mut self,
        entries: &[RaftEntry],
    ) -> Result<Vec<(u64, ProposalAppended)>, StoreError> {
        let now_ms = self.clock.now_ms();
        let group = self.group.clone();
        let mut state = group.state();
        state.check_failed()?;
        position_for(&mut state, entries[0].index())?;
        let mut reports = Vec::new();
        let mut rest = entries;
        while !rest.is_empty() {
            let run = run_len(rest, now_ms)?;
            let (run_entries, tail) = rest.split_at(run);
            self.append_run(&mut state, run_entries, now_ms, &mut reports)?;
            rest = tail;
        }
        Ok(reports)
    }

    /// Appends entries of one term and one form (all fresh or all stored): one log call, or
    /// more when a fresh batch repeats one ahead of it in the run (module docs).
    fn append_run(
        &mut self,
        state: &mut State<D>,
        run: &[RaftEntry],
        now_ms: i64,
        reports: &mut Vec<(u64, ProposalAppended)>,
    ) -> Result<(), StoreError> {
        let term = run[0].term();
        let epoch = epoch_of(term)?;
        let fresh = run[0].stored().is_none();
        self.buffer.clear();
        let mut verdicts = Vec::with_capacity(run.len());
        let mut ahead = Vec::new();
        let mut start = 0;
        for (i, entry) in run.iter().enumerate() {
            let mut batch = codec::encode(entry, now_ms)?;
            let header =
                BatchHeader::parse(&batch, BATCH_BYTES_MAX).map_err(codec::CodecError::from)?;
            let verdict = match ProducerBatch::of(&header).filter(|_| fresh) {
                None => Verdict::Append,
                Some(produced) => {
                    let mut verdict = state.log.producers().check(&produced, &ahead);
                    if matches!(verdict, Verdict::Duplicate(kept) if kept.offsets.is_none()) {
                        self.write(state, &run[start..i], &verdicts[start..], epoch, reports)?;
                        (start, ahead) = (i, Vec::new());
                        self.buffer.clear();
                        verdict = state.log.producers().check(&produced, &ahead);
                    }
                    if verdict == Verdict::Append {
                        ahead.push(produced.proposed());
                    } else {
                        batch = codec::refused_batch(now_ms);
                    }
                    verdict
                }
            };
            if !fresh && header.partition_leader_epoch != epoch {
                let stamped = header.partition_leader_epoch;
                return Err(codec::CodecError::EpochMismatch { term, epoch: stamped }.into());
            }
            verdicts.push(verdict);
            self.buffer.extend_from_slice(&batch);
        }
        self.write(state, &run[start..], &verdicts[start..], epoch, reports)
    }

    /// Writes the buffer, the batches of `entries` (whose admissions are `verdicts`), with one
    /// log call, and reports their proposals.
    fn write(
        &mut self,
        state: &mut State<D>,
        entries: &[RaftEntry],
        verdicts: &[Verdict],
        epoch: cairn_types::LeaderEpoch,
        reports: &mut Vec<(u64, ProposalAppended)>,
    ) -> Result<(), StoreError> {
        let Some(first) = entries.first() else { return Ok(()) };
        let appended = if first.stored().is_some() {
            state.log.append_replicated(&self.buffer)?
        } else {
            state.log.append(&mut self.buffer, epoch)?
        };
        if appended.first_index.0 != first.index() {
            return Err(StoreError::Invalid(format!(
                "entry {} appended at index {}",
                first.index(),
                appended.first_index
            )));
        }
        let written = Frames::new(&self.buffer, BATCH_BYTES_MAX).zip(entries.iter().zip(verdicts));
        for ((_, header), (entry, &verdict)) in written {
            if entry.applied_whole() {
                state.unapplied.insert(entry.index());
            }
            let end = header.next_offset();
            state.remember(Recent { index: entry.index(), term: first.term(), end });
            let Some(proposal) = entry.proposal().filter(|_| entry.stored().is_none()) else {
                continue;
            };
            if proposal.ticket != crate::Proposal::TICKET_NONE {
                let at = ProposalAppended {
                    index: RaftIndex(entry.index()),
                    base_offset: header.base_offset,
                    next_offset: header.next_offset(),
                    verdict,
                };
                reports.push((proposal.ticket, at));
            }
        }
        Ok(())
    }
}

/// Makes the log's next index `first`: nothing to do if it is; an empty log (or one whose
/// entries are all purged) starts again there. Anything else is a gap or an overlap openraft
/// never asks for.
fn position_for<D: Disk>(state: &mut State<D>, first: u64) -> Result<(), StoreError> {
    let next = state.log.next_index().0;
    if first == next {
        return Ok(());
    }
    if state.visible_start() >= next {
        // openraft appends past the end of an empty log after a snapshot install (which resets
        // the log already) or a purge past its end; the purged entries are gone either way.
        let at = state.log.next_offset();
        state.log.reset(at, RaftIndex(first))?;
        state.unapplied.clear();
        state.recent.clear();
        return Ok(());
    }
    Err(StoreError::Invalid(format!("append at index {first} to a log whose next index is {next}")))
}

/// How many entries from the front of `entries` go into one log call: one term, one form
/// (fresh or stored), at most [`APPEND_BYTES_MAX`] bytes (at least one entry).
fn run_len(entries: &[RaftEntry], now_ms: i64) -> Result<usize, StoreError> {
    let first = &entries[0];
    let mut bytes = 0;
    for (count, entry) in entries.iter().enumerate() {
        let same =
            entry.term() == first.term() && entry.stored().is_some() == first.stored().is_some();
        let size = codec::encode(entry, now_ms)?.len();
        if count > 0 && (!same || bytes + size > APPEND_BYTES_MAX) {
            return Ok(count);
        }
        bytes += size;
    }
    Ok(entries.len())
}

impl<D: Disk> State<D> {
    /// The entries from `from` up to `to` (exclusive, clamped to what Raft sees), decoded: at
    /// most `bytes_max` bytes of them but at least one, or all of them for `None`.
    pub(crate) fn read(
        &self,
        from: u64,
        to: u64,
        bytes_max: Option<u32>,
    ) -> Result<Vec<RaftEntry>, StoreError> {
        let mut at = from.max(self.visible_start());
        let to = to.min(self.log.next_index().0);
        let mut entries = Vec::new();
        while at < to {
            let chunk = bytes_max.unwrap_or(RAFT_READ_BYTES_MAX);
            let mut out = Vec::new();
            let headers = self.log.read_entries(RaftIndex(at), RaftIndex(to), chunk, &mut out)?;
            let out = Bytes::from(out);
            for ((position, header), entry) in Frames::new(&out, BATCH_BYTES_MAX).zip(&headers) {
                let batch = out.slice(position..position + header.total_bytes() as usize);
                let term = epoch::term_of(entry.epoch)?;
                entries.push(codec::decode(batch, log_id(term, entry.index.0))?);
            }
            at += headers.len() as u64;
            if headers.is_empty() || bytes_max.is_some() {
                break;
            }
        }
        Ok(entries)
    }
}

/// `[from, to)` of a range of indexes.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

fn stored_vote(vote: &VoteOf<TypeConfig>) -> StoredVote {
    StoredVote {
        term: vote.leader_id.term,
        voted_for: Some(vote.leader_id.voted_for),
        committed: vote.committed,
    }
}

fn raft_vote(vote: StoredVote) -> Option<VoteOf<TypeConfig>> {
    let voted_for = match vote.voted_for {
        Some(node) => node,
        None if vote.term == 0 => return None,
        None => NO_CANDIDATE,
    };
    let leader_id = crate::LeaderId { term: vote.term, voted_for };
    Some(openraft::impls::Vote { leader_id, committed: vote.committed })
}

impl<D: Disk> RaftLogReader<TypeConfig> for LogReader<D> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, io::Error> {
        let (from, to) = bounds(&range);
        Ok(self.group.state().read(from, to, None)?)
    }

    /// Apply's read: entries the log's record of recent appends covers come without their
    /// batches (apply needs their log ids and end offsets only), so a busy partition's apply
    /// reads nothing back; the rest are read whole.
    async fn entries_stream<RB>(
        &mut self,
        range: RB,
    ) -> impl futures_util::Stream<Item = Result<RaftEntry, io::Error>> + Send
    where
        RB: RangeBounds<u64> + Clone + Debug + Send,
    {
        let (from, to) = bounds(&range);
        let state = self.group.state();
        let entries = match state.applied_only(from, to) {
            Some(entries) => Ok(entries),
            None => state.read(from, to, None).map_err(io::Error::from),
        };
        drop(state);
        let items: Vec<Result<RaftEntry, io::Error>> = match entries {
            Ok(entries) => entries.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        };
        futures_util::stream::iter(items)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        Ok(self.group.vote().vote().and_then(raft_vote))
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<RaftEntry>, io::Error> {
        Ok(self.group.state().read(start, end, Some(RAFT_READ_BYTES_MAX))?)
    }

    async fn get_key_log_ids(
        &mut self,
        range: RangeInclusive<LogId>,
    ) -> Result<Vec<LogId>, io::Error> {
        let (first, last) = range.into_inner();
        let state = self.group.state();
        let mut keys = Vec::new();
        let mut term = first.leader_id.term;
        for start in state.log.epoch_history() {
            let index = start.start_index.0;
            if index > first.index && index <= last.index {
                push_key(&mut keys, log_id(term, index - 1));
                term = epoch::term_of(start.epoch).map_err(StoreError::from)?;
            }
        }
        if term != last.leader_id.term {
            let reason = format!("epoch history ends in term {term}, the log at {last}");
            return Err(StoreError::Invalid(reason).into());
        }
        push_key(&mut keys, last);
        Ok(keys)
    }
}

/// Adds the last log id of a leader to `keys`, replacing the one before if it is the same
/// leader's.
fn push_key(keys: &mut Vec<LogId>, id: LogId) {
    match keys.last_mut() {
        Some(last) if last.leader_id == id.leader_id => *last = id,
        _ => keys.push(id),
    }
}

impl<D: Disk> RaftLogStorage<TypeConfig> for LogStore<D> {
    type LogReader = LogReader<D>;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let state = self.group.state();
        let last_log_id = state.last_log_id()?;
        Ok(LogState { last_purged_log_id: state.purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogReader<D> {
        LogReader { group: self.group.clone() }
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let vote = stored_vote(vote);
        self.group.blocking(move |group| Ok(group.vote().save_vote(vote)?)).await?;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let Some(committed) = committed else { return Ok(()) };
        self.group.state().committed = Some(committed);
        Ok(self.group.save_committed()?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.group.held_committed()?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let Some(last) = entries.last() else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let end = RaftIndex(last.index() + 1);
        let reports = self.append_entries(&entries).inspect_err(|error| {
            self.sink.append_failed(error);
        })?;
        for (ticket, appended) in reports {
            self.sink.appended(ticket, appended);
        }
        self.group.wait_durable(end, callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        // Answer every waiting callback first: a flush begun before the cut would not count.
        self.group.flush().await?;
        let committed = self.group.vote().committed().map(|c| log_id(c.term, c.index));
        let cut = last_log_id.map_or(0, |id| id.index + 1);
        self.group
            .blocking(move |group| {
                let mut state = group.state();
                let cut = cut.max(state.visible_start());
                if cut >= state.log.next_index().0 {
                    return Ok(());
                }
                let bound = state.commit_bound(committed)?;
                let after = (cut > state.log.start_index().0).then(|| RaftIndex(cut - 1));
                state.log.truncate_after(after, bound)?;
                state.unapplied.retain(|&index| index < cut);
                state.recent.retain(|recent| recent.index < cut);
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.group
            .blocking(move |group| {
                let mut state = group.state();
                if state.purged.is_some_and(|purged| purged.index >= log_id.index) {
                    return Ok(());
                }
                state.purged = Some(log_id);
                state.unapplied.retain(|&index| index > log_id.index);
                // Only what the durable snapshot covers is deleted; the rest is hidden.
                let covered = state.record.snapshot.as_ref().map(|p| p.last_log_id.index);
                if let Some(through) = covered.map(|covered| covered.min(log_id.index)) {
                    state.log.purge_through(RaftIndex(through))?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}

impl<D: Disk> State<D> {
    /// The committed id to save for `committed`: at most the last durable entry, and below the
    /// first entry to apply whole not yet applied; `None` if no such entry is known here (the
    /// older saved id stays, which is always safe).
    pub(crate) fn clamp_committed(&self, committed: LogId) -> Result<Option<LogId>, StoreError> {
        let mut last = committed.index;
        if let Some(&unapplied) = self.unapplied.first() {
            let Some(before) = unapplied.checked_sub(1) else { return Ok(None) };
            last = last.min(before);
        }
        let Some(durable_last) = self.log.durable_index().0.checked_sub(1) else {
            return Ok(None);
        };
        last = last.min(durable_last);
        if last == committed.index {
            return Ok(Some(committed));
        }
        if last >= self.log.start_index().0 {
            return self.log_id_at(last).map(Some);
        }
        Ok(None)
    }
}
