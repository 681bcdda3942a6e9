//! `cargo xtask sim --seeds N [--from S]`: sweeps the deterministic simulation of replication
//! (crates/cairn-sim) over seeds `S..S+N` (default 32 seeds from 1) in a release build. Each
//! seed prints one line; a failing one prints its violations and the command that replays it.
//! A failing seed becomes a regression test by joining `REGRESSIONS` in
//! `crates/cairn-sim/tests/seeds.rs`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The task's lines in `cargo xtask help`.
pub const USAGE: &str =
    "  sim     sweep the replication simulation: `--seeds N` seeds (32) `--from S` (1); a
          failing seed prints the command that replays it
";

/// A sweep's seeds, how many and the first (`sim`'s, and `nemesis`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// How many seeds.
    pub seeds: u64,
    /// The first seed.
    pub from: u64,
}

impl Options {
    /// Parses `--seeds N` and `--from S`, in any order.
    ///
    /// # Errors
    /// An unknown argument, a flag without a value, or a value that is not a number.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options { seeds: 32, from: 1 };
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let value = rest.next().with_context(|| format!("{flag} needs a value"))?;
            let number: u64 =
                value.parse().with_context(|| format!("{flag}: `{value}` is not a number"))?;
            match flag.as_str() {
                "--seeds" => options.seeds = number,
                "--from" => options.from = number,
                other => bail!("unknown argument `{other}` (usage: --seeds N [--from S])"),
            }
        }
        Ok(options)
    }
}

/// Runs the sweep (module docs).
///
/// # Errors
/// If cargo cannot run, or any seed fails.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .current_dir(root)
        .args(["run", "--release", "--quiet", "-p", "cairn-sim", "--bin", "cairn-sim", "--"])
        .args(["--seeds", &options.seeds.to_string(), "--from", &options.from.to_string()])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("the simulation failed (each failing seed printed its replay command above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn parse(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(&args.iter().map(ToString::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn parses_seeds_and_from_in_any_order_and_refuses_the_rest() {
        assert_eq!(parse(&[]).unwrap(), Options { seeds: 32, from: 1 });
        assert_eq!(parse(&["--from", "7", "--seeds", "3"]).unwrap(), Options { seeds: 3, from: 7 });
        assert!(parse(&["--seeds"]).is_err());
        assert!(parse(&["--seeds", "x"]).is_err());
        assert!(parse(&["--runs", "3"]).is_err());
    }
}
