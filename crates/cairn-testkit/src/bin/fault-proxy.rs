//! `fault-proxy`: [`FaultProxy`]s driven over stdin, for tests that are not written in Rust
//! (the compat suite's nemesis runs real `cairn serve` processes from Python).
//!
//! One command per line, one answer per line on stdout (`ok ...` or `error: ...`):
//!
//! ```text
//! start NAME TARGET      a proxy named NAME to TARGET (IP:PORT); answers `ok NAME ADDRESS`
//! set NAME FAULT         pass | drop forward | drop backward | drop both | reject | delay MS
//! cut NAME               closes every open connection of NAME once
//! ```
//!
//! End of input stops every proxy and exits 0.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::time::Duration;

use cairn_testkit::proxy::{Direction, Fault, FaultProxy};

/// Longest delay `set NAME delay MS` takes: a test that wants a longer one wants `drop`.
const DELAY_MS_MAX: u64 = 60_000;

fn main() {
    let mut proxies = BTreeMap::new();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let answer = match line {
            Ok(line) => match command(&mut proxies, &line) {
                Ok(answer) => answer,
                Err(message) => format!("error: {message}"),
            },
            Err(error) => format!("error: reading stdin: {error}"),
        };
        if writeln!(stdout, "{answer}").and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
}

/// Carries out one command line; the answer to print.
fn command(proxies: &mut BTreeMap<String, FaultProxy>, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["start", name, target] => {
            let target: SocketAddr =
                target.parse().map_err(|_| format!("{target:?} is not IP:PORT"))?;
            if proxies.contains_key(*name) {
                return Err(format!("a proxy named {name} exists"));
            }
            let proxy = FaultProxy::start(target);
            let address = proxy.address();
            proxies.insert((*name).to_owned(), proxy);
            Ok(format!("ok {name} {address}"))
        }
        ["set", name, fault @ ..] => {
            let fault = parse_fault(fault)?;
            named(proxies, name)?.set(fault);
            Ok("ok".to_owned())
        }
        ["cut", name] => {
            named(proxies, name)?.cut();
            Ok("ok".to_owned())
        }
        _ => Err(format!("unknown command {line:?}")),
    }
}

fn named<'a>(
    proxies: &'a BTreeMap<String, FaultProxy>,
    name: &str,
) -> Result<&'a FaultProxy, String> {
    proxies.get(name).ok_or_else(|| format!("no proxy named {name}"))
}

fn parse_fault(words: &[&str]) -> Result<Fault, String> {
    match words {
        ["pass"] => Ok(Fault::Pass),
        ["reject"] => Ok(Fault::Reject),
        ["drop", "forward"] => Ok(Fault::Drop(Direction::Forward)),
        ["drop", "backward"] => Ok(Fault::Drop(Direction::Backward)),
        ["drop", "both"] => Ok(Fault::Drop(Direction::Both)),
        ["delay", ms] => match ms.parse::<u64>() {
            Ok(ms) if ms <= DELAY_MS_MAX => Ok(Fault::Delay(Duration::from_millis(ms))),
            _ => Err(format!("delay takes 0 to {DELAY_MS_MAX} ms, not {ms:?}")),
        },
        _ => Err(format!("unknown fault {:?}", words.join(" "))),
    }
}
