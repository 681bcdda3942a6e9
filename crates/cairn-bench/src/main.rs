//! The `cairn-bench` binary: parses the command line, runs the subcommand on a multi-threaded
//! runtime, prints the summary table and writes `--json`/`--plot`. See `lib.rs`.

use std::process::ExitCode;

/// The same allocator as the broker: the system allocator maps and unmaps every fetch response
/// buffer above its mmap threshold, which costs the consumer a page fault per 4 KiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use cairn_bench::cli::Cli;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(cairn_bench::run(&cli.command)))
        .and_then(|report| {
            print!("{}", report.table());
            cairn_bench::write_outputs(&report, cairn_bench::output(&cli.command))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)] // the binary's one place to report a failure
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
