//! [`CommitResponder`]: the responder of every write to a cairn group. It reports the entry's
//! commit (what `acks=all` and the core's writers wait for) and then its outcome, each to
//! whoever still listens: a producer answered at commit stops listening, and nothing is logged
//! for that (openraft's own responder warns on every such send, thousands a second).

use openraft::OptionalSend;
use openraft::raft::responder::Responder;
use tokio::sync::oneshot;

use crate::{LogId, TypeConfig};

/// Sends a write's commit, then its outcome `T`, each to its receiver if it is still there.
pub struct CommitResponder<T> {
    commit: Option<oneshot::Sender<LogId>>,
    complete: oneshot::Sender<T>,
}

impl<T> CommitResponder<T> {
    /// A responder and its receivers: the entry's own log id once committed, then the outcome
    /// (after apply, or the reason it was refused or discarded).
    #[must_use]
    pub fn new() -> (CommitResponder<T>, oneshot::Receiver<LogId>, oneshot::Receiver<T>) {
        let (commit, committed) = oneshot::channel();
        let (complete, completed) = oneshot::channel();
        (CommitResponder { commit: Some(commit), complete }, committed, completed)
    }

    /// A responder reporting only the outcome.
    #[must_use]
    pub fn outcome_only() -> (CommitResponder<T>, oneshot::Receiver<T>) {
        let (complete, completed) = oneshot::channel();
        (CommitResponder { commit: None, complete }, completed)
    }
}

impl<T: OptionalSend + 'static> Responder<TypeConfig, T> for CommitResponder<T> {
    fn on_commit(&mut self, log_id: LogId) {
        if let Some(commit) = self.commit.take() {
            // A receiver gone stopped waiting (a timeout, a closed connection): nothing to do.
            let _ = commit.send(log_id);
        }
    }

    fn on_complete(self, outcome: T) {
        // Likewise: a producer answered at commit listens no more.
        let _ = self.complete.send(outcome);
    }
}
