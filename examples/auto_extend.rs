//! A job that runs longer than its lock's TTL, kept safe by a guard's watchdog, and stopped the
//! moment the lock is lost.
//!
//! It runs the job once normally, then, on local nodes, again while killing three nodes under it.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example auto_extend    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes (then it skips killing and restarting nodes):
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379,redis://10.0.0.4:6379,redis://10.0.0.5:6379 \
//!   cargo run --example auto_extend
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::time::{Duration, Instant};

use quorumlock::{LockGuard, Redlock};

mod support;

/// The long job: ten steps of 300 ms. It must not take a step once the lock is gone.
async fn job(guard: &LockGuard) -> u32 {
    let mut steps = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        steps += 1;
        println!(
            "   step {steps:>2}: lock valid for another {:>6.0?}",
            guard.remaining()
        );
    }
    steps
}

async fn run(redlock: &Redlock, label: &str) -> Result<(), quorumlock::Error> {
    let ttl = Duration::from_secs(1);
    let guard = redlock.acquire_guard("reports:rebuild", ttl).await?;
    println!("== {label}: acquired with a {ttl:?} TTL; the job takes about 3 s");
    let start = Instant::now();
    tokio::select! {
        steps = job(&guard) => {
            let report = guard.release().await?;
            println!("   done: {steps} steps in {:.1?}, released (held to the end: {})", start.elapsed(), report.was_held());
        }
        lost = guard.lost() => {
            println!("   LOST after {:.1?}: {lost}", start.elapsed());
            println!("   the job was stopped at its last await point; nothing ran without the lock");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (urls, local) = support::nodes("QUORUMLOCK_NODES", 5)?;
    let redlock = Redlock::builder()
        .nodes(&urls)
        .node_timeout(Duration::from_millis(50))
        .build()?;
    run(&redlock, "healthy cluster").await?;

    let Some(mut cluster) = local else { return Ok(()) };
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        println!("   (killing 3 of the 5 nodes)");
        for i in [0, 2, 4] {
            cluster.kill(i).expect("kill");
        }
        cluster
    });
    run(&redlock, "three nodes die mid-job").await?;
    drop(killer.await?);
    redlock.shutdown().await;
    Ok(())
}
