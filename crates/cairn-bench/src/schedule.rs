//! The open-loop schedule: when each record is meant to be sent, independent of how fast the
//! broker answers.
//!
//! A run at `rate` records/s has a global schedule: record `g` (0, 1, 2, ...) is due
//! `floor(g * 10^9 / rate)` ns after the start. Producer `k` of `P` takes every `P`th record
//! from `g = k` on (its `j`th record is `g = j * P + k`), so together the producers follow the
//! global schedule exactly and are staggered, not bunched.
//!
//! Latency is measured from a record's *due* time, not from when it was actually sent. A
//! producer that falls behind (its in-flight requests are all waiting on a slow broker) keeps
//! the schedule: the records it sends late carry the delay in their latency, instead of the
//! slowness vanishing from the numbers because fewer requests were sent while it lasted
//! ("coordinated omission").
//!
//! Pure arithmetic on nanoseconds, so it is tested without clocks.

/// Nanoseconds per second.
const NANOS_PER_S: u128 = 1_000_000_000;

/// One producer's share of a global open-loop schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Records per second of the whole run (all producers), > 0.
    rate_per_s: u64,
    /// Number of producers sharing the schedule (`P`), > 0.
    stride: u64,
    /// This producer's index (`k < P`).
    offset: u64,
}

impl Schedule {
    /// Producer `producer` of `producers` in a run of `rate_per_s` records/s. `None` if the
    /// rate or the producer count is zero or `producer` is out of range.
    #[must_use]
    pub fn new(rate_per_s: u64, producers: u64, producer: u64) -> Option<Schedule> {
        (rate_per_s > 0 && producers > 0 && producer < producers).then_some(Schedule {
            rate_per_s,
            stride: producers,
            offset: producer,
        })
    }

    /// When this producer's record `index` is due, in ns since the start.
    #[must_use]
    pub fn due_ns(&self, index: u64) -> u64 {
        let global = u128::from(index) * u128::from(self.stride) + u128::from(self.offset);
        u64::try_from(global * NANOS_PER_S / u128::from(self.rate_per_s)).unwrap_or(u64::MAX)
    }

    /// How many of this producer's records are due at `elapsed_ns` since the start (records
    /// `0..n` have `due_ns <= elapsed_ns`).
    #[must_use]
    pub fn due_by(&self, elapsed_ns: u64) -> u64 {
        // Global record g is due by e iff floor(g * 10^9 / rate) <= e iff g * 10^9 < (e + 1) *
        // rate, so the last one due is g_max = ((e + 1) * rate - 1) / 10^9.
        let limit = (u128::from(elapsed_ns) + 1) * u128::from(self.rate_per_s) - 1;
        let global_last = limit / NANOS_PER_S;
        let offset = u128::from(self.offset);
        if global_last < offset {
            return 0;
        }
        let count = (global_last - offset) / u128::from(self.stride) + 1;
        u64::try_from(count).unwrap_or(u64::MAX)
    }

    /// How many records this producer sends when the whole run sends `total`: its share of
    /// records `0..total` of the global schedule.
    #[must_use]
    pub fn share_of(&self, total: u64) -> u64 {
        share(total, self.stride, self.offset)
    }
}

/// Producer `producer`'s share of `total` records dealt round-robin to `producers`: the count of
/// `g < total` with `g % producers == producer`.
#[must_use]
pub fn share(total: u64, producers: u64, producer: u64) -> u64 {
    if producers == 0 || producer >= producers || total <= producer {
        return 0;
    }
    (total - producer).div_ceil(producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_producer_at_1000_per_s_is_due_every_ms() {
        let schedule = Schedule::new(1000, 1, 0).unwrap();
        assert_eq!(schedule.due_ns(0), 0);
        assert_eq!(schedule.due_ns(1), 1_000_000);
        assert_eq!(schedule.due_ns(1000), 1_000_000_000);
        assert_eq!(schedule.due_by(0), 1, "record 0 is due at the start");
        assert_eq!(schedule.due_by(999_999), 1);
        assert_eq!(schedule.due_by(1_000_000), 2);
        assert_eq!(schedule.due_by(1_000_000_000), 1001);
    }

    #[test]
    fn producers_interleave_and_together_follow_the_global_schedule() {
        let producers = 3;
        let rate = 7_000;
        let schedules: Vec<Schedule> =
            (0..producers).map(|k| Schedule::new(rate, producers, k).unwrap()).collect();
        // Producer 1's first record is global record 1.
        assert_eq!(schedules[1].due_ns(0), 1_000_000_000 / 7_000);
        for elapsed_ns in [0, 1, 142_857, 142_858, 999_999_999, 1_000_000_000, 3_333_333_333] {
            let total: u64 = schedules.iter().map(|s| s.due_by(elapsed_ns)).sum();
            let global = Schedule::new(rate, 1, 0).unwrap();
            assert_eq!(total, global.due_by(elapsed_ns), "at {elapsed_ns} ns");
        }
    }

    /// `due_by` against its definition, by brute force over the first records.
    #[test]
    fn due_by_counts_exactly_the_records_due() {
        for (rate, producers) in [(1, 1), (3, 2), (1_000, 4), (999_983, 3), (5_000_000, 7)] {
            for producer in 0..producers {
                let schedule = Schedule::new(rate, producers, producer).unwrap();
                let dues: Vec<u64> = (0..200).map(|i| schedule.due_ns(i)).collect();
                assert!(dues.windows(2).all(|w| w[0] <= w[1]), "due times never go back");
                for &probe in dues.iter().take(150) {
                    for elapsed_ns in [probe.saturating_sub(1), probe, probe + 1] {
                        let expected = dues.iter().filter(|&&due| due <= elapsed_ns).count();
                        assert_eq!(
                            schedule.due_by(elapsed_ns),
                            expected as u64,
                            "rate {rate}, producer {producer}/{producers}, at {elapsed_ns} ns"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for total in [0, 1, 2, 9, 10, 11, 1000] {
            for producers in 1..5 {
                let sum: u64 = (0..producers).map(|k| share(total, producers, k)).sum();
                assert_eq!(sum, total, "{total} records over {producers} producers");
            }
        }
        assert_eq!(share(10, 4, 0), 3);
        assert_eq!(share(10, 4, 3), 2);
        assert_eq!(Schedule::new(100, 4, 1).unwrap().share_of(10), 3);
    }

    #[test]
    fn invalid_schedules_are_refused() {
        assert!(Schedule::new(0, 1, 0).is_none());
        assert!(Schedule::new(10, 0, 0).is_none());
        assert!(Schedule::new(10, 2, 2).is_none());
    }

    #[test]
    fn huge_rates_and_times_do_not_overflow() {
        let schedule = Schedule::new(u64::MAX, 1, 0).unwrap();
        assert_eq!(schedule.due_ns(u64::MAX), 1_000_000_000);
        let slow = Schedule::new(1, 1, 0).unwrap();
        assert_eq!(slow.due_ns(u64::MAX), u64::MAX);
        assert_eq!(slow.due_by(u64::MAX), u64::MAX / 1_000_000_000 + 1);
    }
}
