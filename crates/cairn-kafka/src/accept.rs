//! [`AcceptBackoff`]: what a listener does when `accept` fails.
//!
//! At the open-file limit (`EMFILE`, `ENFILE`) a pending connection stays in the listen backlog
//! and every `accept` fails again at once, so a loop that logs and retries spins a core and
//! floods the log for as long as descriptors are short. Instead the listener pauses, from
//! `ACCEPT_BACKOFF_MS_MIN` doubling to `ACCEPT_BACKOFF_MS_MAX`, logs once per episode (the first
//! failure, then one line when it accepts again) and counts every failure in a metric. The
//! connections it already has are served meanwhile: they live on their own tasks.

use std::time::Duration;

use cairn_types::limits::{ACCEPT_BACKOFF_MS_MAX, ACCEPT_BACKOFF_MS_MIN};

/// The backoff state of one listener: a pure state machine, the caller sleeps and logs.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The last pause, while failures follow each other; `None` after a success.
    delay: Option<Duration>,
    /// Failed accepts of the current episode.
    failures: u64,
}

/// What to do after a failed accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    /// Wait this long before the next accept.
    pub delay: Duration,
    /// The failure starts an episode: log it (the next ones are only counted).
    pub first: bool,
}

impl AcceptBackoff {
    /// A failed accept: the pause before the next one, and whether to log it.
    pub fn failed(&mut self) -> Pause {
        let delay = match self.delay {
            None => Duration::from_millis(ACCEPT_BACKOFF_MS_MIN),
            Some(delay) => (delay * 2).min(Duration::from_millis(ACCEPT_BACKOFF_MS_MAX)),
        };
        self.delay = Some(delay);
        self.failures += 1;
        Pause { delay, first: self.failures == 1 }
    }

    /// A successful accept ends the episode: returns how many accepts failed in it, if any (log
    /// that the listener accepts again).
    pub fn accepted(&mut self) -> Option<u64> {
        self.delay = None;
        Some(std::mem::take(&mut self.failures)).filter(|failures| *failures > 0)
    }
}

/// Whether an accept error means the process or the system is out of file descriptors.
#[must_use]
pub fn out_of_descriptors(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_bound_and_an_accept_resets_them() {
        let mut backoff = AcceptBackoff::default();
        assert_eq!(backoff.accepted(), None, "no episode yet");
        let pauses: Vec<Pause> = (0..12).map(|_| backoff.failed()).collect();
        assert!(pauses[0].first && pauses[1..].iter().all(|pause| !pause.first), "logged once");
        assert_eq!(pauses[0].delay, Duration::from_millis(ACCEPT_BACKOFF_MS_MIN));
        assert_eq!(pauses[1].delay, Duration::from_millis(2 * ACCEPT_BACKOFF_MS_MIN));
        assert!(pauses.windows(2).all(|pair| pair[0].delay <= pair[1].delay));
        assert_eq!(pauses[11].delay, Duration::from_millis(ACCEPT_BACKOFF_MS_MAX));
        assert_eq!(backoff.accepted(), Some(12), "the episode's failures");
        assert_eq!(backoff.accepted(), None);
        let again = backoff.failed();
        assert!(again.first, "a new episode is logged again");
        assert_eq!(again.delay, Duration::from_millis(ACCEPT_BACKOFF_MS_MIN));
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let enfile = std::io::Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error());
        assert!(out_of_descriptors(&emfile) && out_of_descriptors(&enfile));
        assert!(!out_of_descriptors(&std::io::ErrorKind::ConnectionAborted.into()));
    }
}
