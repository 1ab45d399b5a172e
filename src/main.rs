//! The `fabflow` command: the daemon (`run`), the one-command demo (`demo`),
//! configuration checks, token management and API client subcommands.

mod cli;
mod ops_cli;
mod solve;

use clap::Parser;

/// jemalloc, not the system's allocator: intake's HTTP tasks and SQLite's
/// threads allocate and free small buffers at a high rate across threads,
/// where glibc's malloc spent a fifth of the workers' time; the daemon's
/// resident memory stays where it was (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let args = match cli::run_offline(cli::Cli::parse()) {
        Ok(code) => return code,
        Err(args) => *args,
    };
    // A server holds a handle per connection, machine, broker link and
    // database file: take the most the system allows (the hard limit), not
    // the shell's soft default (often 1024).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::main(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
