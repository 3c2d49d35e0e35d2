//! C31, the PR tier: the random fault mix for a few minutes, seeded; the seed is printed so a
//! failing run can be replayed with `QUORUMLOCK_CHAOS_SEED=<seed>`.

use std::time::Duration;

mod runner;

#[test]
fn random_fault_mix_keeps_every_safety_property() {
    let seed = std::env::var("QUORUMLOCK_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let secs = std::env::var("QUORUMLOCK_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    eprintln!("chaos seed {seed} ({secs} s); replay: QUORUMLOCK_CHAOS_SEED={seed}");
    let report = runner::run(runner::Config::pr(Duration::from_secs(secs), seed));
    eprintln!("{}", report.markdown());
    assert!(
        report.safe(),
        "a safety property failed (seed {seed}):\n{}",
        report.markdown()
    );
    assert!(report.grants > 0, "no grant at all (seed {seed})");
}
