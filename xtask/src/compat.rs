//! `cargo xtask compat`: the client compatibility suite in `tests/compat/`, run with real
//! clients (Kafka: confluent-kafka, kafka-python, aiokafka, kcat, kafkajs; etcd: etcdctl,
//! etcd-sdk-python, aetcd) against real `cairn serve` processes.
//!
//! The steps, each idempotent so a second run on the same machine is quick:
//! 1. `kcat` and `etcdctl` on the `PATH`, installed with `apt-get` when missing (Debian's `kcat`
//!    and `etcd-client`; CI runs as root on Debian);
//! 2. a virtualenv at [`VENV_DIR`] with the pins of [`REQUIREMENTS`], rebuilt only when the
//!    requirements file or the Python interpreter changed (see [`venv_stamp`]);
//! 3. Node.js and npm (Debian's `nodejs` and `npm` when missing), and the kafkajs pinned by
//!    `tests/compat/js/package-lock.json` installed with `npm ci` into [`NODE_DIR`], again only
//!    when the package files changed;
//! 4. `cargo build --bin cairn --bin fault-proxy` (the debug binaries the tests start; the
//!    proxy, from cairn-testkit, cuts the peer links of the nemesis's cluster);
//! 5. `pytest tests/compat`, told where they are through `CAIRN_BIN`,
//!    `CAIRN_FAULT_PROXY_BIN` and `CAIRN_COMPAT_NODE_MODULES`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The Python test suite, relative to the workspace root.
pub const SUITE_DIR: &str = "tests/compat";

/// The pinned Python packages of the suite, relative to the workspace root.
pub const REQUIREMENTS: &str = "tests/compat/requirements.txt";

/// The suite's virtualenv, relative to the workspace root (under `target/`, so it is ignored by
/// git and removed by `cargo clean`).
pub const VENV_DIR: &str = "target/compat-venv";

/// File inside the virtualenv recording what it was built from; see [`venv_stamp`].
const VENV_STAMP_FILE: &str = "cairn-requirements.stamp";

/// The kafkajs client of the suite (`client.js`) and its pinned npm packages, relative to the
/// workspace root.
pub const JS_DIR: &str = "tests/compat/js";

/// Where the pinned npm packages are installed, relative to the workspace root.
pub const NODE_DIR: &str = "target/compat-js";

/// File inside [`NODE_DIR`] recording the package files it was installed from.
const NODE_STAMP_FILE: &str = "cairn-packages.stamp";

/// Runs the whole compatibility suite from the workspace root `root`.
///
/// # Errors
///
/// Fails if `kcat` or `etcdctl` is missing and cannot be installed, if the virtualenv cannot be built, if
/// the `cairn` binary does not build, or if any test fails.
pub fn run(root: &Path) -> Result<()> {
    header("compat: kcat");
    ensure_kcat()?;
    header("compat: etcdctl");
    ensure_etcdctl()?;
    header("compat: python virtualenv");
    let python = ensure_venv(root)?;
    header("compat: node and kafkajs");
    ensure_node()?;
    let node_modules = ensure_node_modules(root)?;
    header("compat: cairn binaries");
    let binaries = build_binaries(root)?;
    header("compat: pytest");
    let (mut command, line) = pytest(root, &python, &binaries, SUITE_DIR);
    command.env("CAIRN_COMPAT_NODE_MODULES", &node_modules);
    run_command(command.stdin(Stdio::null()), &line)
}

/// Makes sure `kcat -V` works, installing Debian's `kcat` package if it does not.
fn ensure_kcat() -> Result<()> {
    ensure_tool("kcat", &["-V"], &["kcat"])
}

/// Makes sure `etcdctl version` works (the etcd tests' command-line client), installing
/// Debian's `etcd-client` (etcdctl 3.4.x) if it does not. Real etcd (`etcd-server`) is not
/// installed: the suite tests cairn, and only a hand-run reference run needs it (README.md).
fn ensure_etcdctl() -> Result<()> {
    ensure_tool("etcdctl", &["version"], &["etcd-client"])
}

/// Makes sure `node` and `npm` run, installing Debian's `nodejs` and `npm` if they do not.
fn ensure_node() -> Result<()> {
    ensure_tool("node", &["--version"], &["nodejs", "npm"])?;
    ensure_tool("npm", &["--version"], &["npm"])
}

/// Makes sure `tool args` succeeds, installing the Debian `packages` with `apt-get` (as root)
/// if it does not.
pub(crate) fn ensure_tool(tool: &str, args: &[&str], packages: &[&str]) -> Result<()> {
    let works = || command_succeeds(Command::new(tool).args(args));
    if works() {
        header(&format!("{tool} is installed"));
        return Ok(());
    }
    let listed = packages.join(" ");
    if !command_succeeds(Command::new("apt-get").arg("--version")) {
        bail!(
            "{tool} is not installed and apt-get is not available to install it: install \
             {tool} (Debian/Ubuntu packages `{listed}`) and run again"
        );
    }
    if !is_root()? {
        bail!(
            "{tool} is not installed and installing it needs root: run `apt-get install -y \
             {listed}` as root, then run again"
        );
    }
    let install: Vec<&str> =
        ["install", "-y", "-q"].into_iter().chain(packages.iter().copied()).collect();
    if let Err(first) = apt_get(&install) {
        header(&format!("{first:#}; updating the package lists and trying again"));
        apt_get(&["update", "-q"])?;
        apt_get(&install)?;
    }
    if !works() {
        bail!("`apt-get install {listed}` succeeded but `{tool} {}` still fails", args.join(" "));
    }
    Ok(())
}

/// Installs the pinned kafkajs of [`JS_DIR`]'s `package-lock.json` into [`NODE_DIR`] (again
/// only when the package files changed) and returns its `node_modules`.
fn ensure_node_modules(root: &Path) -> Result<PathBuf> {
    let source = root.join(JS_DIR);
    let read = |name: &str| {
        let path = source.join(name);
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let (package, lock) = (read("package.json")?, read("package-lock.json")?);
    let stamp = format!("{package}\n---\n{lock}");
    let dir = root.join(NODE_DIR);
    let stamp_path = dir.join(NODE_STAMP_FILE);
    let modules = dir.join("node_modules");
    if fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) && modules.is_dir() {
        header(&format!("reusing {NODE_DIR}: {JS_DIR}/package-lock.json is unchanged"));
        return Ok(modules);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in [("package.json", &package), ("package-lock.json", &lock)] {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // Exactly the lock's versions, and no install scripts run.
    run_command(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir)
            .stdin(Stdio::null()),
        &format!("npm ci in {NODE_DIR}"),
    )?;
    fs::write(&stamp_path, stamp)
        .with_context(|| format!("cannot write {}", stamp_path.display()))?;
    Ok(modules)
}

/// Whether this process runs as root, by `id -u` (xtask links no libc bindings).
fn is_root() -> Result<bool> {
    let output = Command::new("id").arg("-u").output().context("cannot run `id -u`")?;
    Ok(output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Runs `apt-get <args>` non-interactively with inherited output.
fn apt_get(args: &[&str]) -> Result<()> {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive").stdin(Stdio::null());
    run_command(&mut command, &format!("apt-get {}", args.join(" ")))
}

/// Builds (or reuses) the virtualenv and returns the path of its Python interpreter.
fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join(VENV_DIR);
    let python = venv.join("bin").join("python");
    let requirements_path = root.join(REQUIREMENTS);
    let requirements = fs::read_to_string(&requirements_path)
        .with_context(|| format!("cannot read {}", requirements_path.display()))?;
    let system_python = python_version("python3")?;
    let stamp = venv_stamp(&requirements, &system_python);
    let stamp_path = venv.join(VENV_STAMP_FILE);

    let current = fs::read_to_string(&stamp_path).ok();
    if current.as_deref() == Some(stamp.as_str()) && python.exists() {
        header(&format!("reusing {VENV_DIR}: {REQUIREMENTS} is unchanged"));
        return Ok(python);
    }

    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("cannot remove {}", venv.display()))?;
    }
    let created = run_command(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        &format!("python3 -m venv {VENV_DIR}"),
    );
    if let Err(error) = created {
        return Err(error.context(
            "cannot create the virtualenv: the suite needs Python 3.11+ with the venv module \
             (on Debian, `apt-get install python3-venv`)",
        ));
    }
    // Wheels only: nothing is compiled, so the install needs no C toolchain or headers and
    // takes seconds.
    run_command(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "--only-binary",
                ":all:",
                "--requirement",
            ])
            .arg(&requirements_path),
        &format!("{VENV_DIR}/bin/python -m pip install --only-binary :all: -r {REQUIREMENTS}"),
    )?;
    fs::write(&stamp_path, stamp)
        .with_context(|| format!("cannot write {}", stamp_path.display()))?;
    Ok(python)
}

/// What a virtualenv is built from: the requirements file's full text and the `python3 --version`
/// it was created with. A venv whose stamp differs is rebuilt from scratch. (The text itself
/// rather than a digest of it: it is small, and comparing it needs no hashing dependency.)
#[must_use]
pub fn venv_stamp(requirements: &str, python_version: &str) -> String {
    format!("python: {}\n---\n{requirements}", python_version.trim())
}

/// `<python> --version`, e.g. `Python 3.11.7`.
fn python_version(python: &str) -> Result<String> {
    let output = Command::new(python).arg("--version").output().with_context(|| {
        format!("cannot run `{python} --version`: the compat suite needs Python 3.11+")
    })?;
    if !output.status.success() {
        bail!("`{python} --version` failed: {}", output.status);
    }
    // Python 2 printed its version on stderr; 3 prints it on stdout.
    let mut version = String::from_utf8_lossy(&output.stdout).into_owned();
    version.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(version.trim().to_owned())
}

/// The binaries the suite runs: `cairn` and the nemesis's `fault-proxy` (cairn-testkit).
struct Binaries {
    cairn: PathBuf,
    fault_proxy: PathBuf,
}

/// Builds the debug `cairn` and `fault-proxy` binaries and returns their absolute paths.
fn build_binaries(root: &Path) -> Result<Binaries> {
    run_command(
        Command::new("cargo")
            .args(["build", "--bin", "cairn", "--bin", "fault-proxy", "--locked"])
            .current_dir(root),
        "cargo build --bin cairn --bin fault-proxy --locked",
    )?;
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    };
    let built = |name: &str| -> Result<PathBuf> {
        let path = target_dir.join("debug").join(name);
        if !path.is_file() {
            bail!("`cargo build --bin {name}` succeeded but {} does not exist", path.display());
        }
        Ok(path)
    };
    Ok(Binaries { cairn: built("cairn")?, fault_proxy: built("fault-proxy")? })
}

/// pytest over `target` (a directory or a file of the suite) with the binaries' paths in its
/// environment, and the command line that does the same by hand.
fn pytest(root: &Path, python: &Path, binaries: &Binaries, target: &str) -> (Command, String) {
    let mut command = Command::new(python);
    command
        .args(["-m", "pytest", target, "-x", "-q", "-p", "no:cacheprovider"])
        .current_dir(root)
        .env("CAIRN_BIN", &binaries.cairn)
        .env("CAIRN_FAULT_PROXY_BIN", &binaries.fault_proxy)
        // Keep `__pycache__` and `.pytest_cache` directories out of the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let line = format!(
        "CAIRN_BIN={} CAIRN_FAULT_PROXY_BIN={} {VENV_DIR}/bin/python -m pytest {target} -x -q \
         -p no:cacheprovider",
        binaries.cairn.display(),
        binaries.fault_proxy.display()
    );
    (command, line)
}

/// The nemesis of the suite, which `cargo xtask nemesis` runs over many seeds.
const NEMESIS_TEST: &str = "tests/compat/test_nemesis.py";

/// The `nemesis` task's lines in `cargo xtask help`.
pub const NEMESIS_USAGE: &str =
    "  nemesis sweep the compat suite's nemesis (tests/compat/test_nemesis.py, seed 1 in CI) over
          `--seeds N` seeds (32, about 2 minutes each) `--from S` (1); a failing seed prints the
          command that replays it
";

/// Runs the nemesis once per seed of `seeds` (`CAIRN_NEMESIS_SEED`), every seed even after a
/// failure, and names the failing ones with the command that replays one.
///
/// # Errors
/// If the virtualenv or the binaries cannot be built, or any seed fails.
pub fn nemesis(root: &Path, seeds: &crate::sim::Options) -> Result<()> {
    header("nemesis: python virtualenv");
    let python = ensure_venv(root)?;
    header("nemesis: cairn binaries");
    let binaries = build_binaries(root)?;
    let mut failed = Vec::new();
    for seed in seeds.from..seeds.from.saturating_add(seeds.seeds) {
        let (mut command, line) = pytest(root, &python, &binaries, NEMESIS_TEST);
        let seed_text = seed.to_string();
        let status = command
            .env("CAIRN_NEMESIS_SEED", &seed_text)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot start `{line}`"))?;
        let outcome = if status.success() { "ok" } else { "FAILED" };
        header(&format!("nemesis seed {seed}: {outcome}"));
        if !status.success() {
            failed.push((seed, format!("CAIRN_NEMESIS_SEED={seed} {line}")));
        }
    }
    if let Some((_, replay)) = failed.first() {
        let seeds: Vec<u64> = failed.iter().map(|(seed, _)| *seed).collect();
        bail!("nemesis seeds {seeds:?} failed; replay the first with `{replay}`");
    }
    Ok(())
}

/// Whether `command` starts and exits 0, its output discarded.
fn command_succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `command` with inherited output, echoing `command_line` first.
fn run_command(command: &mut Command, command_line: &str) -> Result<()> {
    header(&format!("$ {command_line}"));
    let status = command.status().with_context(|| format!("cannot start `{command_line}`"))?;
    if !status.success() {
        bail!("`{command_line}` failed: {status}");
    }
    Ok(())
}

/// Prints a progress line on stderr, in the format of the CI step headers.
#[expect(clippy::print_stderr, reason = "progress lines of a command-line tool belong on stderr")]
fn header(line: &str) {
    eprintln!("==> {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_changes_with_requirements_and_python() {
        let stamp = venv_stamp("pytest==9.2.0\n", "Python 3.11.7\n");
        assert_eq!(stamp, "python: Python 3.11.7\n---\npytest==9.2.0\n");
        assert_ne!(stamp, venv_stamp("pytest==9.2.1\n", "Python 3.11.7"));
        assert_ne!(stamp, venv_stamp("pytest==9.2.0\n", "Python 3.12.1"));
    }

    #[test]
    fn requirements_are_pinned() {
        let path = crate::workspace_root().join(REQUIREMENTS);
        let text = fs::read_to_string(&path).expect("tests/compat/requirements.txt is committed");
        let requirements: Vec<&str> = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default().trim())
            .filter(|line| !line.is_empty())
            .collect();
        assert!(!requirements.is_empty(), "{REQUIREMENTS} lists no package");
        for requirement in requirements {
            assert!(requirement.contains("=="), "{REQUIREMENTS}: `{requirement}` is not pinned");
        }
    }
}
