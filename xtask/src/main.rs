//! `cargo xtask <task>`: the entry point of cairn's project automation (the tasks live in the
//! `xtask` library: `ci.rs`, `compat.rs`, `sim.rs`, `tidy.rs`, `bench.rs`).

use std::process::ExitCode;

use anyhow::{Result, bail};

/// The task list before `bench`'s own lines (`xtask::bench::USAGE`).
const USAGE_TASKS: &str = "\
usage: cargo xtask <task>

tasks:
  ci      the project's whole test command: fmt, clippy, tests, doctests, compat (stops at the first
          failure)
  compat  only the client compatibility suite (tests/compat/, Kafka and etcd): installs kcat,
          etcdctl and a Python virtualenv if needed, builds `cairn`, runs pytest against a real
          `cairn serve`
  tidy    only the tidy checks: `//!` file docs, forbidden markers, dependency layering, manifests,
          ARCHITECTURE.md codemap (also run as the test `tidy::tests::workspace_is_tidy`)
";

/// The last line of the task list.
const USAGE_HELP: &str = "  help    print this message\n";

fn usage() -> String {
    format!(
        "{USAGE_TASKS}{}{}{}{}{USAGE_HELP}",
        xtask::sim::USAGE,
        xtask::compat::NEMESIS_USAGE,
        xtask::bench::USAGE,
        xtask::bench::etcd::USAGE
    )
}

/// Runs the task and reports its failure itself, as one `error:` line plus its causes, without
/// the backtrace anyhow would print from `main` when `RUST_BACKTRACE` is set: a failed check is
/// the expected outcome of this tool, not a bug in it.
#[expect(clippy::print_stderr, reason = "a command-line tool reports its failure on stderr")]
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        print!("{}", usage());
        return Ok(());
    };
    if task == "help" || task == "--help" || task == "-h" {
        print!("{}", usage());
        return Ok(());
    }
    let root = xtask::workspace_root();
    if task == "bench" {
        if let Some((mode, rest)) = rest.split_first()
            && mode == "etcd"
        {
            return xtask::bench::etcd::run(&root, &xtask::bench::etcd::Options::parse(rest)?);
        }
        return xtask::bench::run(&root, &xtask::bench::Options::parse(rest)?);
    }
    if task == "sim" {
        return xtask::sim::run(&root, &xtask::sim::Options::parse(rest)?);
    }
    if task == "nemesis" {
        return xtask::compat::nemesis(&root, &xtask::sim::Options::parse(rest)?);
    }
    if !rest.is_empty() {
        bail!("`cargo xtask {task}` takes no arguments, got `{}`\n\n{}", rest.join(" "), usage());
    }
    match task.as_str() {
        "ci" => xtask::ci::run(&root),
        "compat" => xtask::compat::run(&root),
        "tidy" => xtask::tidy::check(&root),
        other => bail!("unknown task `{other}`\n\n{}", usage()),
    }
}
