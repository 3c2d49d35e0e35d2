//! The `quorumlock` command line.
//!
//! The user commands (`run`, `status`) are not implemented yet. The hidden `__worker` mode is a
//! lock client driven line by line over stdin/stdout, so that tests can SIGSTOP a client while
//! it holds a lock (a real process pause, TESTPLAN C10 / S3).

mod worker;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__worker") {
        std::process::exit(worker::main(&args[2..]));
    }
    eprintln!(
        "quorumlock {}: the commands are not implemented yet; use the library (docs/design.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
