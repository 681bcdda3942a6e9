//! The checks after a run, over every replica's log as its disk holds it: every acknowledged
//! record is on every replica, at its index, in its term, at the offset its leader gave it
//! (in a compacted group, unless a newer record of its key is in the log); the committed
//! prefixes (through each group's fence) are byte-identical, in a compacted group once every
//! replica carried out the rounds committed there; each replica's offsets are consecutive; no
//! term had two leaders.
//!
//! And the consumer group's (`Setup::offsets`): no partition owned by two members at once,
//! checked at every step ([`exclusive`]: a member owns what the last acknowledged answer gave
//! it until told otherwise or a session after it sent that heartbeat); every acknowledged
//! commit still there, or a higher one sent since, in what each coordinator loads
//! ([`commits_kept`]) and when the final coordinator is asked after the fence; the group
//! settled after healing, and rebalanced during the run.

use cairn_storage::EntryHeader;
use cairn_types::RaftIndex;
use cairn_types::batch::Batches;
use cairn_types::limits::BATCH_BYTES_MAX;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Setup;
use crate::world::{Ack, Group, State};

/// One replica's log through its group's fence: each entry's header and stored bytes.
struct Replica {
    node: u64,
    headers: Vec<EntryHeader>,
    /// The entries' batches, concatenated.
    bytes: Vec<u8>,
}

/// Reads `raft`'s entries from its log start through `last`.
fn read_through(node: u64, raft: &Group, last: u64) -> Result<Replica, String> {
    raft.log().with_log(|log| {
        let mut replica = Replica { node, headers: Vec::new(), bytes: Vec::new() };
        let mut from = log.start_index();
        while from.0 <= last {
            let headers = log
                .read_entries(from, RaftIndex(last + 1), 1 << 20, &mut replica.bytes)
                .map_err(|error| format!("node {node}: entry {} unreadable: {error}", from.0))?;
            if headers.is_empty() {
                return Err(format!("node {node} lacks entry {} (fence {last})", from.0));
            }
            from = RaftIndex(from.0 + headers.len() as u64);
            replica.headers.extend(headers);
        }
        Ok(replica)
    })
}

/// Whether every running replica of `group` holds its fence (in the fence's term): then the
/// logs have converged far enough to check.
#[must_use]
pub fn caught_up(state: &State, group: u64) -> bool {
    let Some(fence) = state.fences.get(&group) else { return false };
    state.hosts.values().all(|groups| {
        groups.get(&group).is_some_and(|raft| {
            raft.log().with_log(|log| {
                log.entry_at(RaftIndex(fence.index))
                    .ok()
                    .flatten()
                    .is_some_and(|entry| u64::try_from(entry.epoch.0).ok() == Some(fence.term))
            })
        })
    })
}

/// Every violation of the run (module docs); empty if none.
#[must_use]
pub fn violations(state: &State, setup: &Setup) -> Vec<String> {
    let mut found = state.violations.clone();
    for (&(group, term), leaders) in &state.leaders {
        if leaders.len() > 1 {
            found.push(format!("group {group} term {term}: two leaders {leaders:?}"));
        }
    }
    if setup.offsets.is_some() {
        found.extend(group_paths(state));
    }
    for &group in &setup.groups {
        let kind = Kind {
            idempotent: setup.idempotent.contains(&group),
            compacted: setup.compacted.contains(&group),
        };
        if let Err(violation) = check_group(state, group, kind) {
            found.push(format!("group {group}: {violation}"));
        }
    }
    found
}

/// What the client wrote to a group.
#[derive(Clone, Copy)]
struct Kind {
    idempotent: bool,
    compacted: bool,
}

fn check_group(state: &State, group: u64, kind: Kind) -> Result<(), String> {
    let fence = state.fences.get(&group).ok_or("no fence was committed after healing")?;
    let mut replicas = Vec::new();
    for (&node, groups) in &state.hosts {
        let raft = groups.get(&group).ok_or(format!("node {node} does not run it"))?;
        if kind.compacted {
            finish_rounds(node, raft, fence.index)?;
        }
        replicas.push(read_through(node, raft, fence.index)?);
    }
    let first = replicas.first().ok_or("no replica runs")?;
    for replica in &replicas {
        consecutive(replica)?;
        if replica.bytes != first.bytes {
            return Err(format!(
                "node {}'s log through {} differs from node {}'s",
                replica.node, fence.index, first.node
            ));
        }
    }
    if kind.idempotent {
        once_in_order(state, group, &first.bytes)?;
    }
    let newest = if kind.compacted { newest_of_keys(&first.bytes)? } else { BTreeMap::new() };
    let acks = state.acks.iter().filter(|ack| ack.group == group);
    for ack in acks.chain([fence]) {
        let offset = state.appended.get(&(group, ack.ticket)).map(|&(_, offset)| offset);
        for replica in &replicas {
            holds(replica, ack, offset, &newest)?;
        }
    }
    Ok(())
}

/// Carries out, on `node`'s replica, the compaction rounds committed through `fence`: those
/// the cleaner left queued and those the replica had not applied yet, as apply would queue
/// them.
fn finish_rounds(node: u64, raft: &Group, fence: u64) -> Result<(), String> {
    let failed = |error: String| format!("node {node}: finishing its rounds: {error}");
    let replica = read_through(node, raft, fence)?;
    for (header, batch) in replica.headers.iter().zip(Batches::new(&replica.bytes, BATCH_BYTES_MAX))
    {
        let batch = batch.map_err(|error| failed(error.to_string()))?;
        let bytes = bytes::Bytes::copy_from_slice(batch.as_bytes());
        if !cairn_raft::codec::is_reserved(batch.header()) {
            continue;
        }
        let term = u64::try_from(header.epoch.0).map_err(|_| failed("a negative epoch".into()))?;
        let log_id = cairn_raft::LogId::new_term_index(term, header.index.0);
        let entry = cairn_raft::codec::decode(bytes, log_id).map_err(|e| failed(e.to_string()))?;
        if let Some(round) = entry.compaction() {
            raft.log()
                .with_log_mut(|log| log.queue_round(round))
                .map_err(|e| failed(e.to_string()))?;
        }
    }
    let mut unlimited = cairn_raft::compaction::Throttle::new(None);
    cairn_raft::compaction::carry_out_rounds(raft.log(), &mut unlimited)
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}

/// The offset of the newest record of each key in the committed prefix `bytes`.
fn newest_of_keys(bytes: &[u8]) -> Result<BTreeMap<Vec<u8>, u64>, String> {
    let mut newest = BTreeMap::new();
    let mut keyless = false;
    for_each_record(bytes, |offset, record| match record.key {
        Some(key) => drop(newest.insert(key.to_vec(), offset)),
        None => keyless = true,
    })?;
    if keyless {
        return Err("a keyless record in a compacted group".into());
    }
    Ok(newest)
}

/// Calls `f` with the offset and the record of each record of the committed prefix `bytes`
/// (control batches skipped).
fn for_each_record(
    bytes: &[u8],
    mut f: impl FnMut(u64, &cairn_types::batch::Record<'_>),
) -> Result<(), String> {
    for batch in Batches::new(bytes, BATCH_BYTES_MAX) {
        let batch = batch.map_err(|error| format!("a corrupt batch: {error}"))?;
        if batch.header().is_control() {
            continue;
        }
        for record in batch.records() {
            let record = record.map_err(|error| format!("a corrupt record: {error}"))?;
            f(batch.header().base_offset.0 + u64::from(record.offset_delta), &record);
        }
    }
    Ok(())
}

/// The idempotent producer's records in the committed prefix `bytes`: none twice, in the
/// order it sent them, every acknowledged one there.
fn once_in_order(state: &State, group: u64, bytes: &[u8]) -> Result<(), String> {
    let prefix = format!("g{group}-s");
    let mut sequences = Vec::new();
    for_each_record(bytes, |_, record| {
        let value = record.value.unwrap_or_default();
        let sequence = std::str::from_utf8(value).ok().and_then(|v| v.strip_prefix(&prefix));
        if let Some(sequence) = sequence.and_then(|s| s.parse::<u64>().ok()) {
            sequences.push(sequence);
        }
    })?;
    // One batch in flight, sent again until acknowledged: the log holds s0, s1, … each once.
    if let Some((at, &sequence)) = sequences.iter().enumerate().find(|&(at, &s)| s != at as u64) {
        return Err(format!(
            "idempotent record s{sequence} at position {at}: twice, lost or out of order"
        ));
    }
    let acked = state.idempotent_acks.get(&group).map_or(0, Vec::len);
    if sequences.len() < acked {
        return Err(format!(
            "{acked} idempotent records acknowledged, {} in the log",
            sequences.len()
        ));
    }
    Ok(())
}

/// Indexes and offsets follow each other without gaps.
fn consecutive(replica: &Replica) -> Result<(), String> {
    for pair in replica.headers.windows(2) {
        let [before, after] = pair else { continue };
        if after.index.0 != before.index.0 + 1 || after.base_offset != before.next_offset {
            return Err(format!(
                "node {}: entry {} (offsets {}..{}) does not follow entry {} (..{})",
                replica.node,
                after.index.0,
                after.base_offset.0,
                after.next_offset.0,
                before.index.0,
                before.next_offset.0
            ));
        }
    }
    Ok(())
}

/// `replica` holds `ack` at its index, in its term, at `offset` (the one its leader gave it);
/// its record, unless `newest` (a compacted group's newest offset of each key) is past it.
fn holds(
    replica: &Replica,
    ack: &Ack,
    offset: Option<cairn_types::Offset>,
    newest: &BTreeMap<Vec<u8>, u64>,
) -> Result<(), String> {
    let node = replica.node;
    let lost = |why: &str| format!("acknowledged record {} lost on node {node}: {why}", ack.ticket);
    let start = replica.headers.first().map_or(0, |header| header.index.0);
    let position = usize::try_from(ack.index.checked_sub(start).ok_or_else(|| lost("purged"))?)
        .map_err(|_| lost("index"))?;
    let header = replica.headers.get(position).ok_or_else(|| lost("beyond the log"))?;
    if u64::try_from(header.epoch.0).ok() != Some(ack.term) {
        return Err(lost(&format!(
            "index {} has term {}, not {}",
            ack.index, header.epoch.0, ack.term
        )));
    }
    if offset.is_some_and(|offset| offset != header.base_offset) {
        return Err(lost(&format!("offset {} is not {offset:?}", header.base_offset.0)));
    }
    let batch = Batches::new(&replica.bytes, BATCH_BYTES_MAX)
        .nth(position)
        .ok_or_else(|| lost("no batch"))?
        .map_err(|error| lost(&format!("a corrupt batch: {error}")))?;
    let value = batch.records().next().and_then(Result::ok).and_then(|record| record.value);
    let key = ack.key.as_ref().filter(|_| !newest.is_empty());
    let superseded = key.and_then(|key| newest.get(key)).is_some_and(|&n| n > header.base_offset.0);
    if value == Some(&ack.payload[..]) || (value.is_none() && superseded) {
        Ok(())
    } else {
        Err(lost(&format!("index {} holds {value:?}", ack.index)))
    }
}

/// Where each replica of `group` is, for a failure's report: running or not, its log's next
/// index and durable index, its role and term.
#[must_use]
pub fn positions(state: &State, nodes: &[u64], group: u64) -> String {
    let fence = state.fences.get(&group).map(|fence| (fence.index, fence.term));
    let mut out = format!("group {group} fence {fence:?}:");
    for &node in nodes {
        match state.hosts.get(&node).and_then(|groups| groups.get(&group)) {
            None => out.push_str(&format!(" node {node} not running;")),
            Some(raft) => {
                let (next, durable) =
                    raft.log().with_log(|log| (log.next_index().0, log.durable_index().0));
                let role = raft.roles().current();
                out.push_str(&format!(
                    " node {node} next {next} durable {durable} {:?} term {} leader {:?};",
                    role.state, role.term, role.leader
                ));
            }
        }
    }
    out
}

/// Records a violation if two members own a partition at `now` (module docs); once a run.
pub fn exclusive(state: &mut State, now: Duration) {
    if state.coordination.overlapped {
        return;
    }
    let mut owners: BTreeMap<i32, &str> = BTreeMap::new();
    let mut overlap = None;
    for (name, view) in &state.coordination.members {
        if now >= view.until {
            continue;
        }
        for &partition in &view.owned {
            if let Some(other) = owners.insert(partition, name) {
                overlap = Some(format!(
                    "partition {partition} owned by members {other} and {name} at {} ms: {:?}",
                    now.as_millis(),
                    state.coordination.members
                ));
            }
        }
    }
    if let Some(overlap) = overlap {
        state.coordination.overlapped = true;
        state.violations.push(overlap);
    }
}

/// The consumer group's checks after the run (module docs; exclusivity ran at every step).
fn group_paths(state: &State) -> Vec<String> {
    let group = &state.coordination;
    let mut found = Vec::new();
    if !group.settled {
        found.push("the consumer group did not settle after healing".to_owned());
    }
    if group.rebalances == 0 {
        found.push("the consumer group never rebalanced".to_owned());
    }
    let Some(finals) = &group.final_offsets else {
        found.push("the final coordinator's offsets were not read".to_owned());
        return found;
    };
    found.extend(commits_kept(state, finals, "the final coordinator"));
    found
}

/// Violations if `offsets`, the committed offsets by partition that `who` holds, lack an
/// acknowledged commit (and no higher one sent replaced it), or hold one never sent.
#[must_use]
pub fn commits_kept(state: &State, offsets: &BTreeMap<i32, i64>, who: &str) -> Vec<String> {
    let group = &state.coordination;
    let mut found = Vec::new();
    for (&partition, &acked) in &group.acked {
        let sent = group.sent.get(&partition);
        match offsets.get(&partition) {
            None => found.push(format!(
                "partition {partition}: commit {acked} acknowledged, {who} has none"
            )),
            Some(&last) if last < acked => found.push(format!(
                "partition {partition}: commit {acked} acknowledged, {who} has {last}"
            )),
            Some(&last) if !sent.is_some_and(|sent| sent.contains(&last)) => {
                found.push(format!("partition {partition}: {who} has {last}, never committed"));
            }
            Some(_) => {}
        }
    }
    found
}
