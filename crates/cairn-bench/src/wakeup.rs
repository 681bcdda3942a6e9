//! The wake-up probe of `e2e` runs: a thread that sleeps 1 ms at a time and records how much
//! later than asked it wakes up. Nothing else runs on it, so what it records is the machine's
//! scheduling delay under the run's load (CPUs busy with the broker and the load, the
//! hypervisor, kernel threads); every latency measured in the same run includes delays like it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stats::{Recorder, micros};

/// How long the probe sleeps each time.
const NAP: Duration = Duration::from_millis(1);

/// A running probe.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Recorder>,
}

impl Probe {
    /// Starts the probe; lateness before `warmup` (since `start`) is left out of the total.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(start: Instant, warmup: Duration) -> std::io::Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread =
            std::thread::Builder::new().name("wakeup-probe".to_owned()).spawn(move || {
                let mut recorder = Recorder::after_warmup(warmup);
                loop {
                    let asleep = Instant::now();
                    std::thread::sleep(NAP);
                    let woke = Instant::now();
                    let late = woke.duration_since(asleep).saturating_sub(NAP);
                    recorder.latency(woke.duration_since(start), micros(late), 1);
                    if stopping.load(Ordering::Relaxed) {
                        return recorder;
                    }
                }
            })?;
        Ok(Probe { stop, thread })
    }

    /// Stops the probe (after the nap under way) and returns what it recorded.
    #[must_use]
    pub fn stop(self) -> Recorder {
        self.stop.store(true, Ordering::Relaxed);
        // The loop cannot panic; a panicked probe reports nothing.
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_one_lateness_per_nap() {
        let start = Instant::now();
        let recorder = Probe::start(start, Duration::ZERO).unwrap().stop();
        let elapsed = start.elapsed();
        let naps = recorder.total.len();
        // At least the nap under way when asked to stop; every nap takes at least 1 ms.
        assert!(naps >= 1);
        assert!(u128::from(naps) <= elapsed.as_millis(), "{naps} naps in {elapsed:?}");
        let late = Duration::from_micros(recorder.total.max());
        assert!(late <= elapsed, "{late:?} late in {elapsed:?}");
    }
}
