//! [`FifoWatch`]: openraft's watch channel (metrics, server state) for [`super::CairnRuntime`],
//! which wakes its waiting receivers in an order that depends only on the order they started
//! waiting. tokio's own watch files each waiter under one of 8 notifiers picked by the runtime's
//! RNG, which only `--cfg tokio_unstable` seeds, so two tasks waiting on one watch (a group's
//! role relay and a caller of `Raft::wait`) woke in a different order in each replay of a
//! simulated seed. Otherwise the same contract as tokio's: a value and its version under a
//! lock; `changed` returns once the version moved past the one the receiver saw, and fails once
//! every sender is gone; `send` fails (keeping the old value) once every receiver is gone.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use openraft::OptionalSend;
use openraft::OptionalSync;
use openraft::async_runtime::watch::{self, RecvError, SendError};
use tokio::sync::Notify;

/// The watch family (module docs).
#[derive(Debug)]
pub struct FifoWatch;

/// What a channel's senders and receivers share.
struct Shared<T> {
    value: RwLock<T>,
    /// Bumped under `value`'s write lock by every change.
    version: AtomicU64,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Notified after every change and when the last sender goes: FIFO, no randomness.
    changed: Notify,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, T> {
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`FifoWatch`] sender.
pub struct FifoSender<T>(Arc<Shared<T>>);

/// A [`FifoWatch`] receiver: the version it last saw.
pub struct FifoReceiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl watch::Watch for FifoWatch {
    type Sender<T: OptionalSend + OptionalSync> = FifoSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = FifoReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (FifoSender<T>, FifoReceiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            changed: Notify::new(),
        });
        (FifoSender(Arc::clone(&shared)), FifoReceiver { shared, seen: 0 })
    }
}

impl<T> Clone for FifoSender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::AcqRel);
        FifoSender(Arc::clone(&self.0))
    }
}

impl<T> Drop for FifoSender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

impl<T> Clone for FifoReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        FifoReceiver { shared: Arc::clone(&self.shared), seen: self.seen }
    }
}

impl<T> Drop for FifoReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T: OptionalSend + OptionalSync> watch::WatchSender<FifoWatch, T> for FifoSender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.0.receivers.load(Ordering::Acquire) == 0 {
            return Err(SendError(value));
        }
        self.send_if_modified(|current| {
            *current = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F: FnOnce(&mut T) -> bool>(&self, modify: F) -> bool {
        let modified = {
            let mut value = self.0.value.write().unwrap_or_else(PoisonError::into_inner);
            let modified = modify(&mut value);
            if modified {
                self.0.version.fetch_add(1, Ordering::AcqRel);
            }
            modified
        };
        if modified {
            self.0.changed.notify_waiters();
        }
        modified
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.0.read()
    }

    fn subscribe(&self) -> FifoReceiver<T> {
        self.0.receivers.fetch_add(1, Ordering::AcqRel);
        let value = self.0.read();
        let seen = self.0.version.load(Ordering::Acquire);
        drop(value);
        FifoReceiver { shared: Arc::clone(&self.0), seen }
    }
}

impl<T: OptionalSend + OptionalSync> watch::WatchReceiver<FifoWatch, T> for FifoReceiver<T> {
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registered before the checks, so that a change between them still wakes it.
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::Acquire);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        // The version only moves under the write lock, so it is the one of the value read.
        let value = self.shared.read();
        self.seen = self.shared.version.load(Ordering::Acquire);
        value
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::async_runtime::watch::{Watch, WatchReceiver, WatchSender};

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test(flavor = "current_thread")]
    async fn changed_sees_each_change_once_and_fails_when_every_sender_is_gone() {
        let (sender, mut receiver) = FifoWatch::channel(0u32);
        let mut early = receiver.clone();
        assert!(sender.send(1).is_ok());
        assert_eq!(tokio::time::timeout(WAIT, receiver.changed()).await.ok(), Some(Ok(())));
        assert_eq!(*receiver.borrow_watched(), 1);
        // Seen: nothing more until the next change.
        assert!(tokio::time::timeout(Duration::from_millis(1), receiver.changed()).await.is_err());
        assert!(!sender.send_if_modified(|_| false), "unmodified");
        let late = sender.subscribe();
        assert_eq!(*late.borrow_watched(), 1);
        let second = sender.clone();
        drop(sender);
        assert!(second.send(2).is_ok());
        drop(second);
        assert_eq!(receiver.changed().await, Ok(()), "the last value before close is seen");
        assert_eq!(*receiver.borrow_and_update(), 2);
        assert!(receiver.changed().await.is_err(), "closed");
        assert_eq!(early.changed().await, Ok(()));
        assert!(early.changed().await.is_err());
    }

    /// Four tasks wait on one watch; a send wakes them in the order they started waiting, in
    /// every runtime (tokio's watch orders them by its runtime's OS-seeded RNG).
    #[test]
    fn waiting_receivers_wake_in_the_order_they_started_waiting() {
        for round in 0..20 {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build();
            let runtime = runtime.expect("a current-thread runtime builds");
            let local = tokio::task::LocalSet::new();
            let woken = local.block_on(&runtime, wake_four());
            assert_eq!(woken, [0, 1, 2, 3], "round {round}");
        }
    }

    async fn wake_four() -> Vec<usize> {
        let (sender, receiver) = FifoWatch::channel(0u32);
        let woken = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for waiter in 0..4 {
            let (mut receiver, woken) = (receiver.clone(), std::rc::Rc::clone(&woken));
            tasks.push(tokio::task::spawn_local(async move {
                if receiver.changed().await.is_ok() {
                    woken.borrow_mut().push(waiter);
                }
            }));
            // Each waits before the next starts.
            tokio::task::yield_now().await;
        }
        assert!(sender.send(1).is_ok());
        for task in tasks {
            assert!(tokio::time::timeout(WAIT, task).await.is_ok_and(|joined| joined.is_ok()));
        }
        woken.take()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_receiver_is_woken_and_send_fails_without_receivers() {
        let (sender, receiver) = FifoWatch::channel(String::new());
        let mut waiting = receiver.clone();
        let waiter = tokio::spawn(async move {
            waiting.changed().await.map(|()| waiting.borrow_watched().clone())
        });
        tokio::task::yield_now().await;
        assert!(sender.send("one".to_owned()).is_ok());
        let woken = tokio::time::timeout(WAIT, waiter).await;
        assert_eq!(woken.ok().and_then(Result::ok), Some(Ok("one".to_owned())));
        drop(receiver);
        assert_eq!(sender.send("two".to_owned()).map_err(|error| error.0), Err("two".to_owned()));
        assert_eq!(*sender.borrow_watched(), "one", "a refused send keeps the old value");
    }
}
