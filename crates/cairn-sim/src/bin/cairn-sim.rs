//! `cairn-sim --seeds N [--from S] [--trace]`: simulates seeds `S..S+N` (what `cargo xtask sim`
//! runs) and prints one line per seed; a failing seed prints its violations and its replay
//! command. `--trace` also prints each run's events, one a line, to compare replays (and a
//! failing run's, up to its failure).

#![expect(clippy::print_stderr, reason = "a command-line tool reports on stderr")]

use std::process::ExitCode;
use std::time::Instant;

use cairn_sim::{Setup, simulate};

/// What to run: how many seeds, the first, and whether to print traces.
struct Args {
    seeds: u64,
    from: u64,
    trace: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut seeds, mut from, mut trace) = (32, 1, false);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "--trace" {
            trace = true;
            continue;
        }
        let value = rest.next().ok_or(format!("{flag} needs a value"))?;
        let number =
            value.parse::<u64>().map_err(|_| format!("{flag}: `{value}` is not a number"))?;
        match flag.as_str() {
            "--seeds" => seeds = number,
            "--from" => from = number,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args { seeds, from, trace })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Args { seeds, from, trace } = match parse(&args) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("error: {error}\nusage: cairn-sim --seeds N [--from S] [--trace]");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    for seed in from..from.saturating_add(seeds) {
        let started = Instant::now();
        match simulate(seed, &Setup::default()) {
            Ok(report) if trace => {
                for event in &report.trace {
                    println!("{event}");
                }
                eprintln!("seed {seed}: ok, trace {:016x}", report.trace_hash);
            }
            Ok(report) => eprintln!(
                "seed {seed}: ok, {} acked, {} faults, {} terms, {} duplicates, {} rounds, {} rebalances, {} coordinator changes ({} mid-rebalance), {} commits, trace {:016x} ({:.1?})",
                report.acked,
                report.faults,
                report.terms,
                report.duplicates,
                report.rounds,
                report.rebalances,
                report.coordinator_changes,
                report.failovers_mid_rebalance,
                report.commits,
                report.trace_hash,
                started.elapsed()
            ),
            Err(failure) => {
                failed += 1;
                if trace {
                    for event in &failure.trace {
                        println!("{event}");
                    }
                }
                eprintln!("{failure}");
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {seeds} seeds failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
