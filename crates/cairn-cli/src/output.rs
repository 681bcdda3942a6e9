//! Standard output of every command. `println!` panics when the reader has gone away
//! (`cairn log dump DIR | head`: EPIPE, exit 101); here a closed standard output ends the command
//! quietly with exit status 0, like other Unix tools, and any other write failure is an error.

use std::fmt;
use std::fmt::Write as _;
use std::io::Write as _;

/// The reader of standard output went away: the command stops, the process exits 0.
#[derive(Debug)]
pub(crate) struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for Closed {}

/// Writes `bytes` to standard output and flushes them.
///
/// # Errors
/// [`Closed`] on a broken pipe (see [`is_closed`]); other write errors.
pub(crate) fn write(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("writing to standard output")),
    }
}

/// [`write`] for text.
///
/// # Errors
/// As [`write`].
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    write(text.as_bytes())
}

/// Whether a command failed only because its standard output was closed.
pub(crate) fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Closed>())
}

/// Writes a line to standard error: notes beside the output and the final error message. A
/// failure to write it is ignored: there is nowhere left to report it.
pub(crate) fn note(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Appends `rows` (the first is the heading) as left-aligned columns.
pub(crate) fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
