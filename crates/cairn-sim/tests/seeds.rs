//! The simulation's fixed seeds, run by CI as ordinary tests (each seed about 4–10 s in a debug
//! build). `cargo xtask sim --seeds N [--from S]` sweeps more; a seed it finds failing
//! becomes a regression test by joining [`REGRESSIONS`], with a comment naming what it found.

use cairn_sim::{Setup, simulate};

/// Seeds every CI run simulates. Together they crash leaders and followers (losing unsynced
/// writes), restart processes, isolate leaders and followers, hold links and add latency.
const SEEDS: &[u64] = &[1, 2, 3, 4];

/// Seeds that once failed, kept so that they keep passing.
const REGRESSIONS: &[u64] = &[];

fn run(seeds: &[u64]) {
    for &seed in seeds {
        match simulate(seed, &Setup::default()) {
            Ok(report) => {
                assert!(report.acked > 0, "seed {seed}: nothing acknowledged");
                assert!(report.faults > 0, "seed {seed}: no fault injected");
            }
            Err(failure) => panic!("{failure}"),
        }
    }
}

#[test]
fn fixed_and_regression_seeds_keep_every_acknowledged_record_and_identical_logs() {
    let seeds: Vec<u64> = SEEDS.iter().chain(REGRESSIONS).copied().collect();
    run(&seeds);
}
