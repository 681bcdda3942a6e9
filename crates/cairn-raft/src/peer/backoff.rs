//! [`Backoff`], the pause before a node dials a peer lane again: doubling from a minimum to a
//! maximum (50 ms → 2 s, RFC 0003 §6), each pause jittered down to as little as half, so that
//! the nodes of a cluster that lost each other at once do not dial again in lockstep. Pure: the
//! randomness is a seeded generator, so tests see exact sequences.

use std::time::Duration;

/// The reconnect pauses of one peer lane.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first pause after a success.
    min: Duration,
    /// The largest pause.
    max: Duration,
    /// The pause before jitter that the next failure waits.
    next: Duration,
    /// xorshift64* state; never 0.
    state: u64,
}

impl Backoff {
    /// Pauses from `min` to `max` (`max` is raised to `min` if below), jittered from `seed`.
    #[must_use]
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        // splitmix64 of the seed, so that near seeds give unrelated sequences; `| 1`: never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let state = (z ^ (z >> 31)) | 1;
        Backoff { min, max: max.max(min), next: min, state }
    }

    /// The pause after one more failure in a row: between half and all of the current step,
    /// which then doubles up to the maximum.
    pub fn next_pause(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.random() % spread.saturating_add(1))
    }

    /// A connection succeeded: the next failure pauses from the minimum again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_millis(2000);

    #[test]
    fn pauses_double_within_jitter_up_to_the_maximum() {
        for seed in 0..200 {
            let mut backoff = Backoff::new(MIN, MAX, seed);
            let mut step = MIN;
            for _ in 0..12 {
                let pause = backoff.next_pause();
                assert!(pause >= step / 2 && pause <= step, "seed {seed}: {pause:?} for {step:?}");
                step = (step * 2).min(MAX);
            }
        }
    }

    #[test]
    fn reset_starts_from_the_minimum() {
        let mut backoff = Backoff::new(MIN, MAX, 7);
        for _ in 0..10 {
            backoff.next_pause();
        }
        backoff.reset();
        assert!(backoff.next_pause() <= MIN);
    }

    #[test]
    fn jitter_spreads_nodes_apart() {
        let firsts: std::collections::BTreeSet<Duration> =
            (0..50).map(|seed| Backoff::new(MIN, MAX, seed).next_pause()).collect();
        assert!(firsts.len() > 40, "50 seeds gave {} distinct pauses", firsts.len());
    }
}
