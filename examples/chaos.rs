//! The soak: the random fault mix of the chaos test for as long as you like, with its report.
//!
//! Run: `cargo run --release --example chaos -- --minutes 30 [--seed N]`
//! (needs `redis-server`; starts its own nodes on loopback).

use std::time::Duration;

#[path = "../tests/chaos/runner.rs"]
mod runner;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let minutes = value("--minutes").unwrap_or(1);
    let seed = value("--seed").unwrap_or_else(rand::random::<u64>);
    eprintln!("chaos soak: {minutes} min, seed {seed}");
    let report = runner::run(runner::Config::pr(Duration::from_secs(minutes * 60), seed));
    println!("{}", report.markdown());
    if !report.safe() {
        eprintln!("A SAFETY PROPERTY FAILED (seed {seed})");
        std::process::exit(1);
    }
}
