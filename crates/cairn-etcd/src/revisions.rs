//! [`Revisions`]: the applied revisions after a given one, in order and once each, from the
//! backend's live feed, with `history` filling in what the feed skipped (a lag, or a gap). Lock
//! and Campaign wait on it for a key's deletion; Observe follows an election with it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::backend::{Applied, CoordError, Coordination};
use crate::status::SERVER_STOPPED;

/// A cursor over the applied revisions, owned by one waiting call or stream.
pub struct Revisions<B> {
    backend: Arc<B>,
    feed: broadcast::Receiver<Arc<Applied>>,
    /// The next revision owed to the caller.
    next: i64,
    /// Revisions read from history and not handed out yet, oldest first; at most a page.
    pending: VecDeque<Arc<Applied>>,
    /// How many revisions one history read asks for.
    page_revisions: usize,
}

impl<B: Coordination> Revisions<B> {
    /// A cursor at the revision applied now: [`next`](Revisions::next) answers the ones after.
    pub fn subscribe(backend: &Arc<B>, page_revisions: usize) -> Self {
        let (feed, head) = backend.subscribe();
        Revisions {
            backend: Arc::clone(backend),
            feed,
            next: head + 1,
            pending: VecDeque::new(),
            page_revisions: page_revisions.max(1),
        }
    }

    /// Skips the revisions up to `revision` (included): the caller read the store at it.
    pub fn skip_to(&mut self, revision: i64) {
        self.next = self.next.max(revision + 1);
    }

    /// The next applied revision.
    ///
    /// # Errors
    ///
    /// [`CoordError::Compacted`] if the feed lagged and history no longer holds what it
    /// skipped; [`CoordError::Unavailable`] once the feed closed (the backend stopped); the
    /// backend's error of a history read.
    pub async fn next(&mut self) -> Result<Arc<Applied>, CoordError> {
        loop {
            if let Some(applied) = self.pending.pop_front() {
                if applied.revision >= self.next {
                    self.next = applied.revision + 1;
                    return Ok(applied);
                }
                continue;
            }
            let applied = match self.feed.recv().await {
                Ok(applied) => applied,
                Err(RecvError::Lagged(_)) => {
                    self.fill().await?;
                    continue;
                }
                Err(RecvError::Closed) => {
                    return Err(CoordError::Unavailable(SERVER_STOPPED.to_owned()));
                }
            };
            if applied.revision > self.next {
                // Revisions between were skipped (history holds them, and this one).
                self.fill().await?;
                if !self.pending.is_empty() {
                    continue;
                }
            }
            if applied.revision >= self.next {
                self.next = applied.revision + 1;
                return Ok(applied);
            }
        }
    }

    /// Reads the next page of history into `pending`.
    async fn fill(&mut self) -> Result<(), CoordError> {
        let page = self.backend.history(self.next - 1, self.page_revisions).await?;
        self.pending.extend(page);
        Ok(())
    }
}
