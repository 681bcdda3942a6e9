//! Tidy checks: the project rules that rustc and clippy cannot see.
//!
//! Each rule is a pure function over a file's path and contents, so its unit test needs no
//! filesystem; [`violations`] walks the workspace and runs them all. `cargo xtask tidy` and the
//! `workspace_is_tidy` test both go through [`check`], so `cargo test` (and so CI) enforces them.
//!
//! The rules:
//! - `file-doc`: every `.rs` file under `crates/` and `xtask/` opens with a `//!` comment.
//! - `marker`: no `dbg!(`, `todo!(` or `FIXME` in `crates/` sources.
//! - `layering`: a cairn crate depends only on cairn crates before it in [`LAYERS`], and not
//!   on those [`FORBIDDEN`] lists for it outside `[dev-dependencies]`; [`TESTKIT`] only as a
//!   dev-dependency.
//! - `no-tokio`: the crates in [`NO_TOKIO`] have no `tokio` in `[dependencies]`.
//! - `workspace-lints`, `workspace-version`: every crate inherits `[lints]` and `version`.
//! - `workspace-dependency`: every dependency is `{ workspace = true }` (cairn crates may also
//!   use `path`), so versions are pinned once, in the root `Cargo.toml`.
//! - `architecture`: ARCHITECTURE.md exists and names every directory under `crates/`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use toml::{Table, Value};

/// cairn crates from the bottom layer up: a crate may depend only on crates listed before it.
///
/// A new cairn crate must be added here, at the layer it belongs to.
pub const LAYERS: &[&str] = &[
    "cairn-types",
    "cairn-protocol",
    "cairn-metrics",
    "cairn-storage",
    "cairn-meta",
    "cairn-group",
    "cairn-coord",
    "cairn-raft",
    "cairn-broker",
    "cairn-kafka",
    "cairn-client",
    "cairn-etcd",
    "cairn-node",
    "cairn-cli",
    "cairn-bench",
    "cairn-testkit",
    "cairn-sim",
];

/// Dependencies a crate must not have outside `[dev-dependencies]` although [`LAYERS`] puts
/// them below it: one linear order cannot say that two crates above the same base stay apart.
/// Each entry is a crate, the crates it must not depend on, and why. Tests may still use them,
/// as a dev-dependency, to run against the real thing.
pub const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    ("cairn-client", SERVER, "a client shares only cairn-protocol with the server"),
    ("cairn-bench", SERVER, "the load generator is a client like any other"),
];

/// The server's crates, which a client must not be built on.
const SERVER: &[&str] =
    &["cairn-storage", "cairn-raft", "cairn-meta", "cairn-broker", "cairn-kafka", "cairn-node"];

/// Crates that know nothing about an async runtime: no `tokio` (or `tokio-*`) in
/// `[dependencies]`, so the simulator and the real runtime can drive the same code.
pub const NO_TOKIO: &[&str] =
    &["cairn-types", "cairn-metrics", "cairn-storage", "cairn-group", "cairn-coord"];

/// The shared test-support crate: it may appear only in `[dev-dependencies]`.
pub const TESTKIT: &str = "cairn-testkit";

/// Markers that must not be committed in `crates/` sources, with the reason shown to the author.
const MARKERS: &[(&str, &str)] = &[
    ("dbg!(", "debug output left in"),
    ("todo!(", "unfinished code panics at run time"),
    ("FIXME", "fix it, or describe the limitation in a comment that says why"),
];

/// One broken rule, found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The offending file, relative to the workspace root.
    pub path: PathBuf,
    /// 1-based line of the offence, when the rule is about a line.
    pub line: Option<usize>,
    /// Short name of the broken rule (see the module documentation).
    pub rule: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Violation {
    fn new(path: &Path, rule: &'static str, message: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), line: None, rule, message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: {}", self.rule, self.message)
    }
}

/// Runs every tidy check over the workspace at `root`.
///
/// # Errors
///
/// Fails if any rule is broken, with one line per [`Violation`], or if a file cannot be read.
pub fn check(root: &Path) -> Result<()> {
    let found = violations(root)?;
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    bail!("tidy found {} problem(s):\n{}", found.len(), list.join("\n"))
}

/// Every [`Violation`] in the workspace at `root`, in a stable order.
///
/// # Errors
///
/// Fails if a directory or file cannot be read. A missing crate manifest or ARCHITECTURE.md is a
/// violation, not an error.
pub fn violations(root: &Path) -> Result<Vec<Violation>> {
    let mut found = Vec::new();

    for top in ["crates", "xtask"] {
        let mut files = Vec::new();
        rust_files(&root.join(top), &mut files)?;
        for file in files {
            let text = read(&file)?;
            let path = file.strip_prefix(root).unwrap_or(&file);
            found.extend(check_file_doc(path, &text));
            if top == "crates" {
                found.extend(check_markers(path, &text));
            }
        }
    }

    let crate_dirs = crate_dirs(&root.join("crates"))?;
    let manifests = crate_dirs
        .iter()
        .map(|dir| Path::new("crates").join(dir).join("Cargo.toml"))
        .chain([Path::new("xtask").join("Cargo.toml")]);
    for manifest in manifests {
        match read_optional(&root.join(&manifest))? {
            Some(text) => found.extend(check_manifest(&manifest, &text)),
            None => found.push(Violation::new(&manifest, "manifest", "missing")),
        }
    }

    let architecture_path = Path::new("ARCHITECTURE.md");
    let architecture = read_optional(&root.join(architecture_path))?;
    found.extend(check_architecture(architecture_path, architecture.as_deref(), &crate_dirs));

    Ok(found)
}

/// Rule `file-doc`: the first non-empty line of a Rust file is a `//!` comment saying what the
/// file is for.
#[must_use]
pub fn check_file_doc(path: &Path, text: &str) -> Option<Violation> {
    let first = text.lines().enumerate().find(|(_, line)| !line.trim().is_empty());
    match first {
        Some((_, line)) if line.trim_start().starts_with("//!") => None,
        Some((index, _)) => Some(Violation {
            line: Some(index + 1),
            ..Violation::new(path, "file-doc", "the file must open with a `//!` comment")
        }),
        None => {
            Some(Violation::new(path, "file-doc", "empty file: it must open with a `//!` comment"))
        }
    }
}

/// Rule `marker`: no [`MARKERS`] (`dbg!(`, `todo!(`, `FIXME`) in a source file.
#[must_use]
pub fn check_markers(path: &Path, text: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for (marker, why) in MARKERS {
            if line.contains(marker) {
                found.push(Violation {
                    line: Some(index + 1),
                    ..Violation::new(path, "marker", format!("`{marker}`: {why}"))
                });
            }
        }
    }
    found
}

/// Rule `architecture`: ARCHITECTURE.md (`text`, `None` when the file is missing) names every
/// directory under `crates/` as a whole word.
#[must_use]
pub fn check_architecture(
    path: &Path,
    text: Option<&str>,
    crate_dirs: &[String],
) -> Vec<Violation> {
    let Some(text) = text else {
        return vec![Violation::new(
            path,
            "architecture",
            "missing: write the bird's-eye view and a codemap naming every crate (STYLE.md rule 1)",
        )];
    };
    crate_dirs
        .iter()
        .filter(|dir| !mentions(text, dir))
        .map(|dir| {
            Violation::new(
                path,
                "architecture",
                format!("crates/{dir} is not mentioned: add it to the codemap"),
            )
        })
        .collect()
}

/// Whether `word` occurs in `text` not as part of a longer name (`cairn-storage` does not count
/// as a mention inside `cairn-storage-sim`).
fn mentions(text: &str, word: &str) -> bool {
    let is_name_char = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + word.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

/// Rules `workspace-version`, `workspace-lints`, `workspace-dependency`, `layering` and
/// `no-tokio` over one crate's `Cargo.toml`.
#[must_use]
pub fn check_manifest(path: &Path, text: &str) -> Vec<Violation> {
    let manifest: Table = match text.parse() {
        Ok(manifest) => manifest,
        Err(error) => {
            return vec![Violation::new(path, "manifest", format!("cannot parse: {error}"))];
        }
    };
    let mut found = Vec::new();

    let version = manifest.get("package").and_then(|package| package.get("version"));
    if !inherits_workspace(version) {
        found.push(Violation::new(
            path,
            "workspace-version",
            "[package] must say `version.workspace = true`",
        ));
    }
    if !inherits_workspace(manifest.get("lints")) {
        found.push(Violation::new(
            path,
            "workspace-lints",
            "must have `[lints]` with `workspace = true`",
        ));
    }

    let dependencies = dependencies(&manifest);
    for dependency in &dependencies {
        found.extend(check_dependency_source(path, dependency));
    }

    let name =
        manifest.get("package").and_then(|package| package.get("name")).and_then(Value::as_str);
    let Some(name) = name else {
        found.push(Violation::new(path, "manifest", "[package] has no `name`"));
        return found;
    };
    check_layering(path, name, &dependencies, &mut found);
    if NO_TOKIO.contains(&name) {
        let tokio = dependencies.iter().filter(|d| {
            d.kind == Kind::Normal && (d.name == "tokio" || d.name.starts_with("tokio-"))
        });
        for dependency in tokio {
            found.push(Violation::new(
                path,
                "no-tokio",
                format!(
                    "{name} knows nothing about an async runtime: remove `{}` from {}",
                    dependency.key, dependency.section
                ),
            ));
        }
    }
    found
}

/// Whether `value` is a table with `workspace = true`.
fn inherits_workspace(value: Option<&Value>) -> bool {
    value.and_then(|value| value.get("workspace")).and_then(Value::as_bool) == Some(true)
}

/// How cargo uses a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Dev,
    Build,
}

/// The dependency sections of a manifest, by the table key cargo reads them from.
const SECTIONS: &[(&str, Kind)] = &[
    ("dependencies", Kind::Normal),
    ("dev-dependencies", Kind::Dev),
    ("build-dependencies", Kind::Build),
];

/// One entry of a dependency section.
struct Dependency<'m> {
    /// The section it was found in, as written in messages: `[dev-dependencies]`.
    section: String,
    /// The key in the section (the name the code uses).
    key: &'m str,
    /// The package depended on: `package = "..."` when renamed, else the key.
    name: &'m str,
    kind: Kind,
    spec: &'m Value,
}

/// Every dependency of `manifest`, including the `[target.'cfg(..)'.*]` sections.
fn dependencies(manifest: &Table) -> Vec<Dependency<'_>> {
    let mut found = Vec::new();
    collect_dependencies(manifest, "", &mut found);
    if let Some(targets) = manifest.get("target").and_then(Value::as_table) {
        for (target, table) in targets {
            if let Some(table) = table.as_table() {
                collect_dependencies(table, &format!("target.'{target}'."), &mut found);
            }
        }
    }
    found
}

fn collect_dependencies<'m>(table: &'m Table, prefix: &str, found: &mut Vec<Dependency<'m>>) {
    for &(section, kind) in SECTIONS {
        let Some(entries) = table.get(section).and_then(Value::as_table) else { continue };
        for (key, spec) in entries {
            let name = spec.get("package").and_then(Value::as_str).unwrap_or(key);
            found.push(Dependency {
                section: format!("[{prefix}{section}]"),
                key,
                name,
                kind,
                spec,
            });
        }
    }
}

/// Rule `workspace-dependency`: a dependency is `{ workspace = true }`, or a `path` for a cairn
/// crate; never a version, git or registry source of its own.
fn check_dependency_source(path: &Path, dependency: &Dependency<'_>) -> Option<Violation> {
    let spec = dependency.spec;
    if inherits_workspace(Some(spec)) {
        return None;
    }
    let own_source = ["version", "git", "registry"].iter().any(|key| spec.get(key).is_some());
    if dependency.name.starts_with("cairn-") && spec.get("path").is_some() && !own_source {
        return None;
    }
    Some(Violation::new(
        path,
        "workspace-dependency",
        format!(
            "`{}` in {} must be `{}.workspace = true`, its version pinned once in the root \
             Cargo.toml [workspace.dependencies]",
            dependency.key, dependency.section, dependency.key
        ),
    ))
}

/// Rule `layering`: `crate_name`'s cairn dependencies come before it in [`LAYERS`], and
/// [`TESTKIT`] is only a dev-dependency. Non-cairn crates (xtask) are only held to the latter.
fn check_layering(
    path: &Path,
    crate_name: &str,
    dependencies: &[Dependency<'_>],
    found: &mut Vec<Violation>,
) {
    let layer = LAYERS.iter().position(|&layer| layer == crate_name);
    let is_cairn = crate_name.starts_with("cairn-");
    if is_cairn && layer.is_none() {
        found.push(not_layered(path, crate_name));
    }
    for dependency in dependencies.iter().filter(|d| d.name.starts_with("cairn-")) {
        if dependency.name == TESTKIT {
            if dependency.kind != Kind::Dev {
                found.push(Violation::new(
                    path,
                    "layering",
                    format!(
                        "{TESTKIT} is test support: move it from {} to [dev-dependencies]",
                        dependency.section
                    ),
                ));
            }
            continue;
        }
        let Some(dependency_layer) = LAYERS.iter().position(|&layer| layer == dependency.name)
        else {
            found.push(not_layered(path, dependency.name));
            continue;
        };
        let forbidden = FORBIDDEN.iter().find(|(name, forbidden, _)| {
            *name == crate_name && forbidden.contains(&dependency.name)
        });
        if let Some((_, _, why)) = forbidden
            && dependency.kind != Kind::Dev
        {
            found.push(Violation::new(
                path,
                "layering",
                format!(
                    "{crate_name} must not depend on {} ({}): {why} (FORBIDDEN in \
                     xtask/src/tidy.rs; tests may use it in [dev-dependencies])",
                    dependency.name, dependency.section
                ),
            ));
        }
        if let Some(layer) = layer
            && dependency_layer >= layer
        {
            found.push(Violation::new(
                path,
                "layering",
                format!(
                    "{crate_name} must not depend on {} ({}): a cairn crate depends only on crates \
                     before it in LAYERS in xtask/src/tidy.rs",
                    dependency.name, dependency.section
                ),
            ));
        }
    }
}

fn not_layered(path: &Path, crate_name: &str) -> Violation {
    Violation::new(
        path,
        "layering",
        format!("{crate_name} is not in the layer list: add it to LAYERS in xtask/src/tidy.rs"),
    )
}

/// Appends every `.rs` file under `dir` to `files`, sorted, skipping `target/` and hidden
/// directories.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let file_type =
            entry.file_type().with_context(|| format!("cannot stat {}", path.display()))?;
        let name = entry.file_name();
        if file_type.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, files)?;
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The names of the directories directly under `crates/`, sorted.
fn crate_dirs(crates: &Path) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    for entry in
        fs::read_dir(crates).with_context(|| format!("cannot list {}", crates.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", crates.display()))?;
        if entry
            .file_type()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?
            .is_dir()
        {
            dirs.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads `path`, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule over the real workspace: this is how `cargo test` and CI enforce tidiness.
    #[test]
    fn workspace_is_tidy() {
        if let Err(error) = check(&crate::workspace_root()) {
            panic!("{error:#}");
        }
    }

    /// Renders `found` the way `cargo xtask tidy` prints it, for whole-output comparisons.
    fn render(found: impl IntoIterator<Item = Violation>) -> Vec<String> {
        found.into_iter().map(|violation| violation.to_string()).collect()
    }

    fn check_doc(text: &str) -> Vec<String> {
        render(check_file_doc(Path::new("src/lib.rs"), text))
    }

    #[test]
    fn file_doc_accepts_a_leading_inner_doc_comment() {
        assert!(check_doc("//! The thing.\nfn f() {}\n").is_empty());
        assert!(check_doc("\n  \n//! After blank lines.\n").is_empty());
    }

    #[test]
    fn file_doc_rejects_anything_else_first() {
        let expected = "src/lib.rs:1: file-doc: the file must open with a `//!` comment";
        assert_eq!(check_doc("fn main() {}\n"), [expected]);
        assert_eq!(check_doc("// a plain comment\n//! doc\n"), [expected]);
        assert_eq!(check_doc("#![allow(unused)]\n//! doc\n"), [expected]);
        assert_eq!(
            check_doc("\n/// outer doc\n"),
            ["src/lib.rs:2: file-doc: the file must open with a `//!` comment"]
        );
        assert_eq!(
            check_doc(""),
            ["src/lib.rs: file-doc: empty file: it must open with a `//!` comment"]
        );
    }

    fn markers(text: &str) -> Vec<String> {
        render(check_markers(Path::new("crates/a/src/lib.rs"), text))
    }

    #[test]
    fn markers_are_reported_with_their_line() {
        assert!(markers("//! Clean.\nfn f() -> u8 { 1 }\n").is_empty());
        assert_eq!(
            markers("//! Doc.\nfn f() { dbg!(1); }\n// FIXME: later\nfn g() { todo!() }\n"),
            [
                "crates/a/src/lib.rs:2: marker: `dbg!(`: debug output left in",
                "crates/a/src/lib.rs:3: marker: `FIXME`: fix it, or describe the limitation in a \
                 comment that says why",
                "crates/a/src/lib.rs:4: marker: `todo!(`: unfinished code panics at run time",
            ]
        );
    }

    fn architecture(text: Option<&str>, dirs: &[&str]) -> Vec<String> {
        let dirs: Vec<String> = dirs.iter().map(ToString::to_string).collect();
        render(check_architecture(Path::new("ARCHITECTURE.md"), text, &dirs))
    }

    #[test]
    fn architecture_must_exist_and_name_every_crate() {
        let dirs = ["cairn-storage", "cairn-types"];
        assert!(architecture(Some("`cairn-types` then cairn-storage."), &dirs).is_empty());
        assert_eq!(
            architecture(None, &dirs),
            ["ARCHITECTURE.md: architecture: missing: write the bird's-eye view and a codemap \
                 naming every crate (STYLE.md rule 1)"]
        );
        assert_eq!(
            architecture(Some("only cairn-types and cairn-storage-sim"), &dirs),
            ["ARCHITECTURE.md: architecture: crates/cairn-storage is not mentioned: add it to \
                 the codemap"]
        );
    }

    #[test]
    fn mentions_needs_a_whole_name() {
        assert!(mentions("see crates/cairn-types/src/lib.rs", "cairn-types"));
        assert!(mentions("cairn-types", "cairn-types"));
        assert!(!mentions("cairn-types2 and xcairn-types", "cairn-types"));
    }

    /// A manifest with everything right, for `name`, with `extra` appended.
    fn manifest(name: &str, extra: &str) -> String {
        format!(
            "[package]\nname = \"{name}\"\nversion.workspace = true\nedition.workspace = true\n\n\
             [lints]\nworkspace = true\n\n{extra}"
        )
    }

    fn check_toml(text: &str) -> Vec<String> {
        render(check_manifest(Path::new("crates/x/Cargo.toml"), text))
    }

    #[test]
    fn manifest_accepts_workspace_dependencies_down_the_layers() {
        let text = manifest(
            "cairn-storage",
            "[dependencies]\ncairn-types.workspace = true\nthiserror = { workspace = true }\n\
             [dev-dependencies]\ncairn-testkit.workspace = true\nproptest.workspace = true\n\
             tokio = { workspace = true, features = [\"rt\"] }\n",
        );
        assert_eq!(check_toml(&text), Vec::<String>::new());
        let text =
            manifest("cairn-cli", "[dependencies]\ncairn-types = { path = \"../cairn-types\" }\n");
        assert_eq!(check_toml(&text), Vec::<String>::new());
        let text = manifest("xtask", "[dependencies]\nanyhow.workspace = true\n");
        assert_eq!(check_toml(&text), Vec::<String>::new());
    }

    #[test]
    fn manifest_requires_workspace_version_and_lints() {
        let text = "[package]\nname = \"cairn-types\"\nversion = \"0.1.0\"\n";
        assert_eq!(
            check_toml(text),
            [
                "crates/x/Cargo.toml: workspace-version: [package] must say \
                 `version.workspace = true`",
                "crates/x/Cargo.toml: workspace-lints: must have `[lints]` with `workspace = true`",
            ]
        );
    }

    #[test]
    fn manifest_rejects_dependencies_pinned_outside_the_workspace() {
        let text = manifest(
            "cairn-types",
            "[dependencies]\ncrc32c = \"0.6\"\nbytes = { version = \"1\", features = [\"std\"] }\n\
             [target.'cfg(unix)'.dev-dependencies]\nlibc = { git = \"https://x\" }\n",
        );
        assert_eq!(
            check_toml(&text),
            [
                "crates/x/Cargo.toml: workspace-dependency: `bytes` in [dependencies] must be \
                 `bytes.workspace = true`, its version pinned once in the root Cargo.toml \
                 [workspace.dependencies]",
                "crates/x/Cargo.toml: workspace-dependency: `crc32c` in [dependencies] must be \
                 `crc32c.workspace = true`, its version pinned once in the root Cargo.toml \
                 [workspace.dependencies]",
                "crates/x/Cargo.toml: workspace-dependency: `libc` in \
                 [target.'cfg(unix)'.dev-dependencies] must be `libc.workspace = true`, its \
                 version pinned once in the root Cargo.toml [workspace.dependencies]",
            ]
        );
        // A third-party crate does not get the `path` exception cairn crates have.
        let text = manifest("cairn-types", "[dependencies]\nfoo = { path = \"../foo\" }\n");
        assert_eq!(check_toml(&text).len(), 1);
    }

    #[test]
    fn layering_rejects_dependencies_up_the_layers() {
        let text = manifest("cairn-types", "[dependencies]\ncairn-storage.workspace = true\n");
        assert_eq!(
            check_toml(&text),
            ["crates/x/Cargo.toml: layering: cairn-types must not depend on cairn-storage \
                 ([dependencies]): a cairn crate depends only on crates before it in LAYERS in \
                 xtask/src/tidy.rs"]
        );
        let text = manifest("cairn-raft", "[dev-dependencies]\ncairn-raft.workspace = true\n");
        assert_eq!(check_toml(&text).len(), 1, "a crate is not below itself");
        let text =
            manifest("cairn-storage", "[build-dependencies]\ncairn-kafka.workspace = true\n");
        assert_eq!(check_toml(&text).len(), 1, "build-dependencies are layered too");
    }

    #[test]
    fn layering_keeps_the_client_off_the_server() {
        let text = manifest(
            "cairn-client",
            "[dependencies]\ncairn-protocol.workspace = true\ncairn-kafka.workspace = true\n\
             [dev-dependencies]\ncairn-broker.workspace = true\n",
        );
        assert_eq!(
            check_toml(&text),
            ["crates/x/Cargo.toml: layering: cairn-client must not depend on cairn-kafka \
                 ([dependencies]): a client shares only cairn-protocol with the server \
                 (FORBIDDEN in xtask/src/tidy.rs; tests may use it in [dev-dependencies])"]
        );
        let text = manifest("cairn-bench", "[build-dependencies]\ncairn-meta.workspace = true\n");
        assert_eq!(check_toml(&text).len(), 1, "build-dependencies count");
        let text = manifest("cairn-node", "[dependencies]\ncairn-kafka.workspace = true\n");
        assert!(check_toml(&text).is_empty(), "the rule is the client's, not everyone's");
    }

    #[test]
    fn forbidden_lists_only_layered_crates() {
        for (name, forbidden, _) in FORBIDDEN {
            assert!(LAYERS.contains(name), "{name}");
            for dependency in *forbidden {
                assert!(LAYERS.contains(dependency), "{name}: {dependency}");
            }
        }
    }

    #[test]
    fn layering_keeps_testkit_in_dev_dependencies() {
        let text = manifest("cairn-node", "[dependencies]\ncairn-testkit.workspace = true\n");
        assert_eq!(
            check_toml(&text),
            ["crates/x/Cargo.toml: layering: cairn-testkit is test support: move it from \
                 [dependencies] to [dev-dependencies]"]
        );
        let text = manifest("xtask", "[dependencies]\ncairn-testkit.workspace = true\n");
        assert_eq!(check_toml(&text).len(), 1, "non-cairn crates too");
    }

    #[test]
    fn layering_requires_every_cairn_crate_in_the_layer_list() {
        let text = manifest("cairn-new", "[dependencies]\ncairn-other.workspace = true\n");
        assert_eq!(
            check_toml(&text),
            [
                "crates/x/Cargo.toml: layering: cairn-new is not in the layer list: add it to \
                 LAYERS in xtask/src/tidy.rs",
                "crates/x/Cargo.toml: layering: cairn-other is not in the layer list: add it to \
                 LAYERS in xtask/src/tidy.rs",
            ]
        );
    }

    #[test]
    fn no_tokio_below_the_runtime() {
        let text = manifest(
            "cairn-storage",
            "[dependencies]\ntokio.workspace = true\nrt = { workspace = true, package = \"tokio-util\" }\n",
        );
        assert_eq!(
            check_toml(&text),
            [
                "crates/x/Cargo.toml: no-tokio: cairn-storage knows nothing about an async \
                 runtime: remove `rt` from [dependencies]",
                "crates/x/Cargo.toml: no-tokio: cairn-storage knows nothing about an async \
                 runtime: remove `tokio` from [dependencies]",
            ]
        );
        let text = manifest("cairn-raft", "[dependencies]\ntokio.workspace = true\n");
        assert!(check_toml(&text).is_empty(), "only the crates in NO_TOKIO are runtime-free");
    }

    #[test]
    fn manifest_reports_unparsable_toml() {
        let found = check_toml("[package\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("crates/x/Cargo.toml: manifest: cannot parse"), "{found:?}");
    }
}
