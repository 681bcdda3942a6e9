//! [`Forward`]: what a node that does not lead the coordination group asks its leader, and
//! [`Answer`], what the leader says; their versioned encoding (the peer transport carries the
//! bytes).
//!
//! ```text
//! version: u8 (= 1)
//! Forward: kind u8: 1 Write (command: bytes), 2 ReadIndex, 3 KeepAlive (id i64),
//!          4 TimeToLive (id i64)
//! Answer:  kind u8: 1 Written (reply, revision i64, applied), 2 ReadIndex (applied),
//!          3 Lease (remaining i64, granted i64), 4 Refused (refusal)
//! applied  = term u64, index u64 (the Raft entry to wait for before answering)
//! refusal  = 1 Kv (code u8) | 2 NotLeader (flag u8, node u64) | 3 Unavailable (text: bytes)
//! ```

use crate::codec::{Reader, Writer};
use crate::command::{CodecError, Command, Reply};
use crate::types::KvError;

/// A Raft position: `(term, index)`.
pub type EntryPosition = (u64, u64);

/// A request a node hands the coordination group's leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Propose and apply a command.
    Write(Command),
    /// The leader's read index, after which a linearizable read may be served by the asking node
    /// once it applied through it.
    ReadIndex,
    /// Renew a lease (only the leader keeps leases' deadlines).
    KeepAlive {
        /// The lease.
        id: i64,
    },
    /// What remains of a lease.
    TimeToLive {
        /// The lease.
        id: i64,
    },
}

/// The leader's answer to a [`Forward`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A write committed and applied at `applied`.
    Written {
        /// The command's reply.
        reply: Reply,
        /// The store's revision after it.
        revision: i64,
        /// Its entry.
        applied: EntryPosition,
    },
    /// The read index (`None`: nothing was committed yet).
    ReadIndex(Option<EntryPosition>),
    /// A lease's seconds remaining and its granted TTL.
    Lease {
        /// Seconds remaining.
        remaining: i64,
        /// The TTL it was granted with.
        granted: i64,
    },
    /// Refused or failed.
    Refused(Refusal),
}

/// Why the leader did not carry out a [`Forward`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The store refused the request (the same on every replica).
    Kv(KvError),
    /// The node asked does not lead; the leader it knows, if any. Nothing was done.
    NotLeader(Option<u64>),
    /// No answer in time or a failure: the outcome is unknown.
    Unavailable(String),
}

const VERSION: u8 = 1;

/// The codes of [`KvError`]'s variants, in order.
const KV_ERRORS: [KvError; 9] = [
    KvError::Compacted,
    KvError::FutureRevision,
    KvError::DuplicateKey,
    KvError::EmptyKey,
    KvError::KeyNotFound,
    KvError::LeaseNotFound,
    KvError::LeaseExists,
    KvError::BadTtl,
    KvError::NoSpace,
];

impl Forward {
    /// The encoding (module docs).
    ///
    /// # Errors
    ///
    /// [`CodecError::TooLong`] for a command that does not fit its length.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer(vec![VERSION]);
        match self {
            Forward::Write(command) => {
                w.u8(1);
                w.bytes(&command.encode()?)?;
            }
            Forward::ReadIndex => w.u8(2),
            Forward::KeepAlive { id } => {
                w.u8(3);
                w.i64(*id);
            }
            Forward::TimeToLive { id } => {
                w.u8(4);
                w.i64(*id);
            }
        }
        Ok(w.0)
    }

    /// Decodes [`Forward::encode`]'s bytes.
    ///
    /// # Errors
    ///
    /// [`CodecError`] for anything but one whole, well-formed request.
    pub fn decode(bytes: &[u8]) -> Result<Forward, CodecError> {
        let mut r = versioned(bytes)?;
        let forward = match r.u8()? {
            1 => Forward::Write(Command::decode(&r.bytes()?)?),
            2 => Forward::ReadIndex,
            3 => Forward::KeepAlive { id: r.i64()? },
            4 => Forward::TimeToLive { id: r.i64()? },
            value => return Err(CodecError::Unknown { what: "forwarded request", value }),
        };
        r.end()?;
        Ok(forward)
    }
}

impl Answer {
    /// The encoding (module docs).
    ///
    /// # Errors
    ///
    /// [`CodecError::TooLong`] for a reply that does not fit its lengths.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer(vec![VERSION]);
        match self {
            Answer::Written { reply, revision, applied } => {
                w.u8(1);
                w.reply(reply)?;
                w.i64(*revision);
                w.position(Some(*applied));
            }
            Answer::ReadIndex(applied) => {
                w.u8(2);
                w.position(*applied);
            }
            Answer::Lease { remaining, granted } => {
                w.u8(3);
                w.i64(*remaining);
                w.i64(*granted);
            }
            Answer::Refused(refusal) => {
                w.u8(4);
                w.refusal(refusal)?;
            }
        }
        Ok(w.0)
    }

    /// Decodes [`Answer::encode`]'s bytes.
    ///
    /// # Errors
    ///
    /// [`CodecError`] for anything but one whole, well-formed answer.
    pub fn decode(bytes: &[u8]) -> Result<Answer, CodecError> {
        let mut r = versioned(bytes)?;
        let answer = match r.u8()? {
            1 => {
                let (reply, revision) = (r.reply()?, r.i64()?);
                let applied = r
                    .position()?
                    .ok_or(CodecError::Unknown { what: "a write's applied position", value: 0 })?;
                Answer::Written { reply, revision, applied }
            }
            2 => Answer::ReadIndex(r.position()?),
            3 => Answer::Lease { remaining: r.i64()?, granted: r.i64()? },
            4 => Answer::Refused(r.refusal()?),
            value => return Err(CodecError::Unknown { what: "answer", value }),
        };
        r.end()?;
        Ok(answer)
    }
}

fn versioned(bytes: &[u8]) -> Result<Reader<'_>, CodecError> {
    let mut r = Reader(bytes);
    match r.u8()? {
        VERSION => Ok(r),
        version => Err(CodecError::UnknownVersion(version)),
    }
}

impl Writer {
    fn position(&mut self, position: Option<EntryPosition>) {
        let Some((term, index)) = position else { return self.u8(0) };
        self.u8(1);
        self.0.extend_from_slice(&term.to_be_bytes());
        self.0.extend_from_slice(&index.to_be_bytes());
    }

    fn refusal(&mut self, refusal: &Refusal) -> Result<(), CodecError> {
        match refusal {
            Refusal::Kv(KvError::Storage(why)) => {
                // Not a refusal the client can act on: the replica failed.
                self.u8(3);
                self.bytes(why.as_bytes())?;
            }
            Refusal::Kv(error) => {
                self.u8(1);
                let code = KV_ERRORS.iter().position(|known| known == error).unwrap_or(0);
                self.u8(u8::try_from(code).unwrap_or(0));
            }
            Refusal::NotLeader(leader) => {
                self.u8(2);
                self.flags(&[leader.is_some()]);
                self.0.extend_from_slice(&leader.unwrap_or(0).to_be_bytes());
            }
            Refusal::Unavailable(why) => {
                self.u8(3);
                self.bytes(why.as_bytes())?;
            }
        }
        Ok(())
    }
}

impl Reader<'_> {
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn position(&mut self) -> Result<Option<EntryPosition>, CodecError> {
        let [known] = self.flags()?;
        if !known {
            return Ok(None);
        }
        Ok(Some((self.u64()?, self.u64()?)))
    }

    fn refusal(&mut self) -> Result<Refusal, CodecError> {
        Ok(match self.u8()? {
            1 => {
                let code = self.u8()?;
                let error = KV_ERRORS.get(usize::from(code)).cloned();
                Refusal::Kv(error.ok_or(CodecError::Unknown { what: "store error", value: code })?)
            }
            2 => {
                let [known] = self.flags()?;
                let leader = self.u64()?;
                Refusal::NotLeader(known.then_some(leader))
            }
            3 => Refusal::Unavailable(String::from_utf8_lossy(&self.bytes()?).into_owned()),
            value => return Err(CodecError::Unknown { what: "refusal", value }),
        })
    }

    fn end(&self) -> Result<(), CodecError> {
        match self.0.len() {
            0 => Ok(()),
            left => Err(CodecError::Trailing(left)),
        }
    }
}
