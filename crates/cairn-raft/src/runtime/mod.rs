//! How cairn-raft runs on tokio, the same in production and in the simulator:
//!
//! - [`CairnRuntime`]: openraft's runtime for every group ([`crate::TypeConfig`]), tokio's
//!   ([`TokioRuntime`]) but for the randomness openraft draws (election timeouts, tick jitter),
//!   which comes from [`JitterRng`], and its watch channels ([`FifoWatch`], `watch.rs`), which
//!   wake their receivers in FIFO order where tokio's pick by an unseeded RNG.
//! - [`spawn`] / [`spawn_joined`]: every task cairn-raft and openraft start, on the tokio
//!   runtime.
//! - [`unblock`] / [`unblock_detached`]: work that blocks its thread (fsyncs, durable vote,
//!   cut and snapshot writes) runs on tokio's blocking pool.
//! - [`Deterministic`]: what the simulator enters on its thread (every simulated host runs on
//!   it): [`JitterRng`] draws from the simulation's seed instead of the OS, and blocking work
//!   runs inline, at the point it is started, instead of racing the host's tasks from an OS
//!   thread in real time, and tasks are spawned onto the host's `LocalSet` (turmoil runs every
//!   host inside one), whose tasks are dropped in the order they were spawned when turmoil
//!   crashes the host. tokio's runtime drops its own tasks shard by shard, sharded by a task id
//!   that counts the whole process's tasks, so the order in which a crashed host's connections
//!   closed (and the network's draws for them) depended on the runs before it in the process.
//!   Unentered (production, every other test), nothing changes: the jitter is the OS-seeded
//!   `rand::rng()` openraft's own runtime uses, blocking work leaves the async threads, and
//!   tasks run on the runtime's workers.
//!
//! Thread-local, not task-local (as openraft's `DeterministicRng` is, RFC 0003 §11 d): a
//! task-local seed is lost by every task spawned outside openraft (`tokio::spawn` in the peer
//! transport, the flusher), and one simulation is one thread, so the thread is the scope.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};

mod watch;

pub use watch::{FifoReceiver, FifoSender, FifoWatch};

thread_local! {
    /// The seeded jitter stream's state (splitmix64), if [`Deterministic`] is entered here.
    static SEEDED: Cell<Option<u64>> = const { Cell::new(None) };
    /// Whether [`unblock`] runs its work inline on this thread ([`Deterministic`]).
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// openraft's runtime for cairn (module docs): [`TokioRuntime`] with [`JitterRng`].
#[derive(Debug)]
pub struct CairnRuntime(TokioRuntime);

impl AsyncRuntime for CairnRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = JitterRng;
    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = FifoWatch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> JitterRng {
        JitterRng::current()
    }

    fn new(threads: usize) -> Self {
        CairnRuntime(TokioRuntime::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }
}

/// The randomness openraft draws (module docs): this thread's seeded stream inside
/// [`Deterministic`], else the OS-seeded `rand::rng()`.
#[derive(Debug)]
pub struct JitterRng(Source);

#[derive(Debug)]
enum Source {
    /// Draws advance the thread's seeded state.
    Seeded,
    Os(rand::rngs::ThreadRng),
}

impl JitterRng {
    /// This thread's generator now (the source is chosen when it is made).
    #[must_use]
    pub fn current() -> JitterRng {
        if SEEDED.with(Cell::get).is_some() {
            JitterRng(Source::Seeded)
        } else {
            JitterRng(Source::Os(rand::rng()))
        }
    }
}

impl rand::TryRng for JitterRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        // The high half: splitmix64's best bits.
        Ok(u32::try_from(self.try_next_u64()? >> 32).unwrap_or(u32::MAX))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        match &mut self.0 {
            Source::Os(os) => Ok(rand::Rng::next_u64(os)),
            // A seeded generator whose thread left `Deterministic` draws from the OS.
            Source::Seeded => Ok(SEEDED
                .with(|state| state.get().map(|seed| splitmix64(state, seed)))
                .unwrap_or_else(|| rand::Rng::next_u64(&mut rand::rng()))),
        }
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): advances `state` from `seed` and returns the output.
fn splitmix64(state: &Cell<Option<u64>>, seed: u64) -> u64 {
    let next = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    state.set(Some(next));
    let mut z = next;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// While alive, this thread's runs replay from their seed (module docs); dropping it restores
/// what the thread did before. For the simulator, whose hosts all run on the thread that
/// enters it.
#[must_use = "determinism lasts while the guard lives"]
pub struct Deterministic {
    seeded: Option<u64>,
    inline: bool,
    /// Thread-bound: it restores this thread's state.
    _thread: PhantomData<*const ()>,
}

impl Deterministic {
    /// Seeds this thread's [`JitterRng`] from `seed`, makes [`unblock`] run inline here and
    /// [`spawn`] spawn onto the current `LocalSet`.
    pub fn enter(seed: u64) -> Deterministic {
        Deterministic {
            seeded: SEEDED.with(|state| state.replace(Some(seed))),
            inline: INLINE.with(|inline| inline.replace(true)),
            _thread: PhantomData,
        }
    }
}

impl Drop for Deterministic {
    fn drop(&mut self) {
        SEEDED.with(|state| state.set(self.seeded));
        INLINE.with(|inline| inline.set(self.inline));
    }
}

/// Spawns `future` on the tokio runtime, or inside [`Deterministic`] onto the current
/// `LocalSet` (module docs).
///
/// # Panics
/// Inside [`Deterministic`], outside a `LocalSet` (the simulator runs every host in one).
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if INLINE.with(Cell::get) { tokio::task::spawn_local(future) } else { tokio::spawn(future) }
}

/// Spawns `future` into `set` as [`spawn`] does.
///
/// # Panics
/// As [`spawn`].
pub fn spawn_joined<T, F>(set: &mut tokio::task::JoinSet<T>, future: F)
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    if INLINE.with(Cell::get) {
        set.spawn_local(future);
    } else {
        set.spawn(future);
    }
}

/// Blocking work that did not finish: its thread panicked or its runtime shut down.
#[derive(Debug, thiserror::Error)]
#[error("blocking thread failed: {0}")]
pub struct BlockingFailed(String);

/// Runs `f`, which blocks its thread, on tokio's blocking pool, or inline inside
/// [`Deterministic`] (where a panic in `f` panics the caller, failing the simulation).
///
/// # Errors
/// [`BlockingFailed`] if the pool's thread panicked or the runtime is shutting down.
pub async fn unblock<T, F>(f: F) -> Result<T, BlockingFailed>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if INLINE.with(Cell::get) {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await.map_err(|error| BlockingFailed(error.to_string()))
}

/// Starts `f` as [`unblock`] does, without waiting for it (advice off the durability path).
pub fn unblock_detached<F: FnOnce() + Send + 'static>(f: F) {
    if INLINE.with(Cell::get) {
        f();
    } else {
        drop(tokio::task::spawn_blocking(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(count: usize) -> Vec<u64> {
        (0..count).map(|_| rand::Rng::next_u64(&mut CairnRuntime::thread_rng())).collect()
    }

    #[test]
    fn a_seeded_thread_draws_the_seeds_sequence_and_others_draw_from_the_os() {
        let first = {
            let _seeded = Deterministic::enter(7);
            draws(8)
        };
        let again = {
            let _seeded = Deterministic::enter(7);
            draws(8)
        };
        let other = {
            let _seeded = Deterministic::enter(8);
            draws(8)
        };
        assert_eq!(first, again, "one seed, one sequence");
        assert_ne!(first, other, "another seed, another sequence");
        // Unseeded: 64 bits from the OS twice, equal to the seeded ones by chance 2^-64 each.
        let (os, os_again) = (draws(8), draws(8));
        assert_ne!(os, os_again);
        assert_ne!(os, first);
    }

    #[test]
    fn leaving_restores_the_outer_seed_and_blocking_mode() {
        let _outer = Deterministic::enter(1);
        let expected = {
            let _probe = Deterministic::enter(1);
            draws(4)
        };
        {
            let _inner = Deterministic::enter(2);
            draws(3);
        }
        assert_eq!(draws(4), expected, "the outer stream resumes where it was");
        assert!(INLINE.with(Cell::get));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn deterministic_blocking_work_runs_inline_and_otherwise_on_another_thread() {
        let caller = std::thread::current().id();
        let pooled = unblock(move || std::thread::current().id()).await;
        assert_ne!(pooled.ok(), Some(caller), "on the pool");
        let _seeded = Deterministic::enter(3);
        let inline = unblock(move || std::thread::current().id()).await;
        assert_eq!(inline.ok(), Some(caller), "inline");
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&ran);
        unblock_detached(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst), "detached work ran before return");
    }
}
