//! `quorumlock`: a distributed `flock(1)` over a Redlock quorum, and a status view of a lock.
//!
//! `quorumlock run` holds a lock for as long as a command runs and stops the command if the lock
//! is lost; `quorumlock status` shows one resource on every node. See `--help` and
//! `docs/cli.md`.
//!
//! The hidden `__worker` mode is a lock client driven line by line over stdin/stdout, so that
//! tests can SIGSTOP a client while it holds a lock (C10 / S3 in docs/testing.md).

mod args;
mod exit;
mod run;
mod status;
mod stop;
mod ttl;
mod worker;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("__worker") {
        std::process::exit(worker::main(&raw[2..]));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quorumlock: cannot start the runtime: {e}");
            std::process::exit(exit::SOFTWARE);
        }
    };
    let code = rt.block_on(async {
        match &cli.command {
            Command::Run(run) => run::main(&cli.global, run).await,
            Command::Status(status) => status::main(&cli.global, status).await,
        }
    });
    std::process::exit(code);
}
