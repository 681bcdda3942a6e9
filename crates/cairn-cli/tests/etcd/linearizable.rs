//! The etcd API of three real `cairn serve` processes is linearizable while its leader is
//! killed and paused: clients of the real `etcd-client` crate, each talking to one node, put,
//! read (linearizable ranges) and compare-and-swap a few keys; a nemesis SIGKILLs the
//! coordination group's leader (then restarts it) or SIGSTOPs it for longer than an election
//! timeout (then SIGCONTs it); the history is checked with cairn-testkit's porcupine-style
//! checker, one register per key, an operation that failed or timed out counted as an unknown
//! outcome (it may have taken effect at any time after its call, or never), as etcd's own
//! robustness tests count them.
//!
//! Nothing sleeps to synchronise: the nemesis pauses between faults by the clock (the faults'
//! timing is the test's input, not something it waits on), readiness is polled.

use std::time::{Duration, Instant};

use cairn_testkit::linearizable::{
    Operation, Register, RegisterInput, RegisterOutput, check_partitioned,
};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use rustix::process::{Pid, Signal, kill_process};

use crate::cluster::{Member, OPERATION, connect, leader, start};

/// How long the clients run while the nemesis acts.
const RUN: Duration = Duration::from_secs(14);
const KEYS: u64 = 3;
const CLIENTS: u64 = 6;

type History = Vec<(u64, Operation<RegisterInput, RegisterOutput>)>;

/// A small seeded generator (xorshift): the schedule of operations and faults.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One client: operations on random keys until `until`, each recorded with its key.
async fn client(id: u64, endpoint: String, start: Instant, until: Instant) -> History {
    let mut history = Vec::new();
    let mut random = Seeded(0x9e37_79b9_7f4a_7c15 ^ (id + 1));
    let mut client = None;
    let mut sequence = 0;
    // The value this client last read of each key: what its compare-and-swaps expect.
    let mut seen = [None; KEYS as usize];
    while Instant::now() < until {
        if client.is_none() {
            client = connect(&endpoint).await.ok();
        }
        let Some(etcd) = client.as_mut() else {
            // The node is down: try again a little later.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        sequence += 1;
        let key = random.below(KEYS);
        let value = id * 1_000_000 + sequence;
        let input = match random.below(3) {
            0 => RegisterInput::Read,
            1 => RegisterInput::Write(value),
            _ => RegisterInput::CompareAndSet { expected: seen[key as usize], new: value },
        };
        let call = micros(start);
        let output =
            tokio::time::timeout(OPERATION, run(etcd, key, &input)).await.ok().and_then(Result::ok);
        match output {
            Some(RegisterOutput::Read(value)) => seen[key as usize] = value,
            Some(_) => {}
            None => {
                // A client whose call failed connects again, a little later: the cluster is
                // electing or the node is down.
                client = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let returned = output.as_ref().map(|_| micros(start));
        history.push((key, Operation { call, returned, input, output }));
    }
    history
}

fn micros(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn run(
    etcd: &mut Client,
    key: u64,
    input: &RegisterInput,
) -> Result<RegisterOutput, etcd_client::Error> {
    let name = format!("k{key}");
    Ok(match *input {
        RegisterInput::Read => {
            let got = etcd.get(name, None).await?;
            let value = got.kvs().first().map(|kv| parse(kv.value()));
            RegisterOutput::Read(value)
        }
        RegisterInput::Write(value) => {
            etcd.put(name, value.to_string(), None).await?;
            RegisterOutput::Written
        }
        RegisterInput::CompareAndSet { expected, new } => {
            let compare = match expected {
                Some(old) => Compare::value(name.clone(), CompareOp::Equal, old.to_string()),
                None => Compare::version(name.clone(), CompareOp::Equal, 0),
            };
            let txn =
                Txn::new().when([compare]).and_then([TxnOp::put(name, new.to_string(), None)]);
            RegisterOutput::Swapped(etcd.txn(txn).await?.succeeded())
        }
    })
}

fn parse(value: &[u8]) -> u64 {
    std::str::from_utf8(value).ok().and_then(|text| text.parse().ok()).unwrap_or(u64::MAX)
}

/// Kills or pauses the leader every few seconds until `until`; returns the faults done.
async fn nemesis(members: &mut [Member], until: Instant) -> Vec<&'static str> {
    let mut random = Seeded(0x5eed);
    let mut done = Vec::new();
    while Instant::now() + Duration::from_secs(3) < until {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let Some(leader) = leader(members).await else { continue };
        let member = &mut members[leader];
        let node = member.node.as_ref().expect("the leader runs");
        let pid = Pid::from_raw(i32::try_from(node.pid()).expect("a pid")).expect("a pid");
        if random.below(2) == 0 {
            kill_process(pid, Signal::STOP).expect("SIGSTOP");
            tokio::time::sleep(Duration::from_millis(2500)).await;
            kill_process(pid, Signal::CONT).expect("SIGCONT");
            done.push("pause");
        } else {
            member.kill();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            member.restart();
            done.push("kill");
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_reads_and_swaps_stay_linearizable_while_the_leader_is_killed_and_paused() {
    let mut members = start();
    let start = Instant::now();
    let until = start + RUN;
    let endpoints: Vec<String> = members.iter().map(|m| m.etcd.clone()).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let endpoint = endpoints[usize::try_from(id % 3).expect("a small id")].clone();
            tokio::spawn(client(id, endpoint, start, until))
        })
        .collect();
    let faults = nemesis(&mut members, until).await;
    let mut history: History = Vec::new();
    for client in clients {
        history.extend(client.await.expect("a client"));
    }
    let answered = history.iter().filter(|(_, op)| op.output.is_some()).count();
    let writes = history
        .iter()
        .filter(|(_, op)| op.output.is_some() && op.input != RegisterInput::Read)
        .count();
    let unknown = history.len() - answered;
    // The run's shape, in the test's output (nextest shows it on failure or with --no-capture).
    println!("faults {faults:?}: {answered} answered ({writes} writes), {unknown} unknown");
    assert!(faults.len() >= 2, "the nemesis acted: {faults:?}");
    assert!(
        answered >= 100 && writes >= 30,
        "{answered} answered, {writes} writes: too few to tell"
    );
    let (keys, operations): (Vec<u64>, Vec<_>) = history.into_iter().unzip();
    let checked = check_partitioned(&Register, &operations, |index, _| keys[index]);
    assert!(checked.is_ok(), "not linearizable under {faults:?}: {checked:?}\n{operations:#?}");
    crate::cluster::stop(members);
}
