//! The `quorumlock` command line. Its commands (`run`, `status`) are not implemented yet; this
//! binary says so instead of pretending.

fn main() {
    eprintln!(
        "quorumlock {}: the command line is not implemented yet; use the library (docs/design.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
