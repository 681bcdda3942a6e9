//! A seed names one history: simulating it again gives the same events at the same simulated
//! times (the trace, and so its hash), whatever ran before it in the process and on whichever
//! thread, and the replay command a failure prints (`cairn-sim --seeds 1 --from S`, what
//! `cargo xtask sim --seeds 1 --from S` runs) replays it in a process of its own.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cairn_sim::{Report, Setup, simulate};

/// How long the replay process may take (a debug run takes about 5 s).
const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);

fn run(seed: u64) -> Report {
    simulate(seed, &Setup::default()).unwrap_or_else(|failure| panic!("{failure}"))
}

/// Fails with the first event at which `replayed` left `original`.
fn assert_same_trace(seed: u64, original: &[String], replayed: &[String]) {
    let diverged = original.iter().zip(replayed).position(|(one, two)| one != two);
    if let Some(at) = diverged {
        panic!("seed {seed} diverged at event {at}: `{}`, then `{}`", original[at], replayed[at]);
    }
    assert_eq!(original.len(), replayed.len(), "seed {seed}: one trace is a prefix of the other");
}

/// Seed 1 crashes a leader (its disk tearing unsynced writes), so a host's tasks are dropped
/// mid-flight, and elects new leaders: the second run, after the first in this process and on
/// another thread, once left the first at that crash.
#[test]
fn one_seed_simulated_twice_in_one_process_replays_the_same_trace() {
    let first = run(1);
    let second = std::thread::spawn(|| run(1)).join().unwrap_or_else(|_| panic!("run panicked"));
    assert!(first.faults > 0 && first.acked > 0, "the run did something: {first:?}");
    assert_same_trace(1, &first.trace, &second.trace);
    assert_eq!(first, second);
}

#[test]
fn the_replay_command_replays_a_run_in_a_process_of_its_own() {
    let seed = 2;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-sim"))
        .args(["--seeds", "1", "--from", &seed.to_string(), "--trace"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the cairn-sim binary starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (sender, printed) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let read = stdout.read_to_string(&mut text).map(|_| text);
        drop(sender.send(read));
    });
    let here = run(seed);
    let printed = printed.recv_timeout(REPLAY_TIMEOUT);
    if printed.is_err() {
        drop(child.kill());
    }
    let status = child.wait().expect("the child is waited for");
    let printed = printed.expect("the replay finishes in time").expect("its output is text");
    assert!(status.success(), "the replay failed: {status}");
    let replayed: Vec<String> = printed.lines().map(str::to_owned).collect();
    assert!(here.faults > 0 && here.acked > 0, "the run did something: {here:?}");
    assert_same_trace(seed, &here.trace, &replayed);
}
