//! The soak: the random fault mix of the chaos test for as long as you like, with its report.
//!
//! Run: `cargo run --release --example chaos -- --minutes 30 [--seed N]`
//! (needs `redis-server`; starts its own nodes on loopback).
//!
//! `--no-obligations` is the negative control of the leak column: releases are given up after
//! one try, as before release obligations existed, and the leak column must then show keys.

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
    let mut cfg = runner::Config::pr(Duration::from_secs(minutes * 60), seed);
    cfg.obligations = !args.iter().any(|a| a == "--no-obligations");
    eprintln!(
        "chaos soak: {minutes} min, seed {seed}{}",
        if cfg.obligations {
            ""
        } else {
            ", release obligations OFF (negative control)"
        }
    );
    let report = runner::run(cfg);
    println!("{}", report.markdown());
    if !report.safe() {
        eprintln!("A SAFETY PROPERTY FAILED (seed {seed})");
        std::process::exit(1);
    }
}
