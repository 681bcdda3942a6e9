//! `cargo xtask ci`: the project's whole test command, run by `.ci/run` and by the README.
//!
//! The steps run in the order of [`STEPS`] and the first failure stops the run. To add a step
//! (say, a Python virtualenv for compatibility tests), write a `fn(&Path) -> Result<()>` and add
//! it to [`STEPS`]; nothing else needs to know about it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// One step of the CI run.
pub struct Step {
    /// Short name, printed in the step's header lines.
    pub name: &'static str,
    /// Runs the step from the workspace root (the argument); an error fails the whole run.
    pub run: fn(&Path) -> Result<()>,
}

/// Every CI step, in the order they run. The single list of what CI does.
pub const STEPS: &[Step] = &[
    Step { name: "fmt", run: fmt },
    Step { name: "tools", run: tools },
    Step { name: "clippy", run: clippy },
    Step { name: "test", run: test },
    Step { name: "doctest", run: doctest },
    Step { name: "compat", run: crate::compat::run },
];

/// Runs every step of [`STEPS`] from `root`, printing a header line before and after each.
///
/// # Errors
///
/// Returns the first step's failure; later steps do not run.
pub fn run(root: &Path) -> Result<()> {
    let ci_start = Instant::now();
    for step in STEPS {
        header(&format!("{}: start", step.name));
        let step_start = Instant::now();
        let result = (step.run)(root);
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        header(&format!("{}: {outcome} in {}", step.name, seconds(step_start.elapsed())));
        result.with_context(|| format!("ci step `{}` failed", step.name))?;
    }
    header(&format!("ci: all {} steps ok in {}", STEPS.len(), seconds(ci_start.elapsed())));
    Ok(())
}

fn fmt(root: &Path) -> Result<()> {
    cargo(root, &["fmt", "--all", "--", "--check"])
}

/// Installs what building the tests needs beyond cargo: `protoc`, which the build script of
/// cairn-etcd's `etcd-client` dev-dependency runs (cairn's own crates build without it).
fn tools(_root: &Path) -> Result<()> {
    crate::compat::ensure_tool("protoc", &["--version"], &["protobuf-compiler"])
}

fn clippy(root: &Path) -> Result<()> {
    cargo(root, &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])
}

/// Runs the tests with cargo-nextest when it is installed, else with `cargo test`.
fn test(root: &Path) -> Result<()> {
    if nextest_installed(root) {
        cargo(root, &["nextest", "run", "--workspace", "--locked"])
    } else {
        cargo(root, &["test", "--workspace", "--locked"])
    }
}

/// Runs the doctests, which nextest does not (with `cargo test` this runs them a second time).
fn doctest(root: &Path) -> Result<()> {
    cargo(root, &["test", "--workspace", "--doc", "--locked"])
}

fn nextest_installed(root: &Path) -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `cargo <args>` in `root` with inherited stdio, echoing the command line first.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let command_line = format!("cargo {}", args.join(" "));
    header(&format!("$ {command_line}"));
    let status = Command::new("cargo")
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot start `{command_line}`"))?;
    if !status.success() {
        bail!("`{command_line}` failed: {status}");
    }
    Ok(())
}

/// Prints a CI progress line on stderr, where cargo's own progress goes, so the two interleave
/// in order.
#[expect(clippy::print_stderr, reason = "progress lines of a command-line tool belong on stderr")]
fn header(line: &str) {
    eprintln!("==> {line}");
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_unique() {
        for (i, step) in STEPS.iter().enumerate() {
            assert!(
                STEPS[..i].iter().all(|earlier| earlier.name != step.name),
                "duplicate ci step name `{}`",
                step.name
            );
        }
    }

    #[test]
    fn seconds_has_one_decimal() {
        assert_eq!(seconds(Duration::from_millis(1234)), "1.2s");
        assert_eq!(seconds(Duration::ZERO), "0.0s");
    }
}
