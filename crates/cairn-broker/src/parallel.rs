//! Partition work in parallel on blocking threads: opening, creating and closing many partition
//! logs is mostly fsyncs of different files, which the file system commits together when they
//! are in flight at once, and none of it may block the async runtime's workers.

use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_types::limits::PARTITION_OPENS_PARALLEL_MAX;

/// Runs `work` on every item on up to [`PARTITION_OPENS_PARALLEL_MAX`] threads (the calling
/// thread is one of them, so the work runs even if no other thread can be started); returns the
/// results in the order of `items`. Blocks: call it from a blocking thread ([`blocking`]).
///
/// # Panics
/// If `work` panics (an invariant of the storage broke: fail stop, as if it ran here).
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { return done };
            done.push((i, work(item)));
        }
    };
    let threads = PARTITION_OPENS_PARALLEL_MAX.min(items.len());
    let mut results = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|n| {
                let builder = std::thread::Builder::new().name(format!("cairn-partitions-{n}"));
                builder.spawn_scoped(scope, worker).ok()
            })
            .collect();
        let mut results = worker();
        for helper in helpers {
            match helper.join() {
                Ok(done) => results.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Runs `work` on the runtime's blocking pool and waits for it.
///
/// # Panics
/// If `work` panics (resumed here: fail stop). A blocking task is only cancelled when the
/// runtime shuts down, which drops this future first, so its result is always a value or a
/// panic.
pub(crate) async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = in_parallel(&items, |item| item * 2);
        assert_eq!(doubled, items.iter().map(|item| item * 2).collect::<Vec<_>>());
        assert!(in_parallel(&[] as &[u32], |item| *item).is_empty());
    }

    #[test]
    fn work_runs_on_several_threads_at_most_the_bound() {
        let items: Vec<u32> = (0..200).collect();
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let (met, meeting) = std::sync::mpsc::channel::<()>();
        let meeting = std::sync::Mutex::new(meeting);
        let waited = in_parallel(&items, |item| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Item 0 waits for item 1: it arrives only if another thread runs meanwhile.
            let waited = match item {
                0 => meeting.lock().unwrap().recv_timeout(Duration::from_secs(20)).is_ok(),
                1 => met.send(()).is_ok(),
                _ => true,
            };
            running.fetch_sub(1, Ordering::SeqCst);
            waited
        });
        assert!(waited.iter().all(|ok| *ok), "items 0 and 1 ran at once");
        let most = most.load(Ordering::SeqCst);
        assert!((2..=PARTITION_OPENS_PARALLEL_MAX).contains(&most), "{most} at once");
    }
}
