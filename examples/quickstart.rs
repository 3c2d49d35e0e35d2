//! A tour of quorumlock on five real Redis nodes.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example quickstart    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes (then it skips killing and restarting nodes):
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379,redis://10.0.0.4:6379,redis://10.0.0.5:6379 \
//!   cargo run --example quickstart
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::time::{Duration, Instant};

use quorumlock::{Redlock, Retry};

mod support;

fn step(title: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m== {title}\x1b[0m");
    } else {
        println!("\n== {title}");
    }
}

fn show_nodes(err: &quorumlock::Error) {
    for (node, outcome) in err.nodes() {
        println!("     {node:<28} {outcome}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (urls, mut local) = support::nodes("QUORUMLOCK_NODES", 5)?;
    step(&format!(
        "A lock service of {} independent Redis nodes",
        urls.len()
    ));
    for u in &urls {
        println!("   {u}");
    }

    let redlock = Redlock::builder()
        .nodes(&urls)
        .node_timeout(Duration::from_millis(100))
        .retry(Retry::new().attempts(3))
        .build()?;
    println!("   quorum: {} of {}", redlock.quorum(), urls.len());

    step("Acquire a lock for 10 s");
    let t = Instant::now();
    let lock = redlock.acquire("orders:42", Duration::from_secs(10)).await?;
    println!(
        "   got {:?} in {:.2?}; valid for another {:.2?}",
        lock.resource(),
        t.elapsed(),
        lock.remaining()
    );

    step("A second client tries the same resource");
    let rival = Redlock::builder().nodes(&urls).retry(Retry::none()).build()?;
    match rival.try_acquire("orders:42", Duration::from_secs(10)).await {
        Ok(_) => println!("   !! the rival got it too: this must never happen"),
        Err(e) if e.is_contended() => println!("   refused, as it should be: held elsewhere"),
        Err(e) => println!("   refused: {e}"),
    }
    let report = lock.release().await?;
    println!(
        "   released: {} nodes confirmed the delete before release() returned",
        report.deleted()
    );
    let lock = rival.try_acquire("orders:42", Duration::from_secs(10)).await?;
    println!("   after the release the rival gets it at once");
    lock.release().await?;

    let Some(cluster) = local.as_mut() else {
        println!("\n(Using QUORUMLOCK_NODES: skipping the part that kills nodes.)");
        return Ok(());
    };

    step("Kill -9 two of the five nodes");
    cluster.kill(1)?;
    cluster.kill(3)?;
    let t = Instant::now();
    let mut lock = redlock.acquire("orders:43", Duration::from_secs(10)).await?;
    println!("   still locks with 3 of 5: acquired in {:.2?}", t.elapsed());
    lock.extend(Duration::from_secs(20)).await?;
    println!("   and extends: valid for another {:.2?}", lock.remaining());
    lock.release().await?;

    step("Kill a third node: no majority left");
    cluster.kill(4)?;
    let t = Instant::now();
    match redlock.acquire("orders:44", Duration::from_secs(10)).await {
        Ok(_) => println!("   !! acquired without a majority: this must never happen"),
        Err(e) => {
            println!(
                "   refused after {:.2?} and {} attempts:",
                t.elapsed(),
                e.attempts()
            );
            println!(
                "   too few nodes: {}, held elsewhere: {}",
                e.is_quorum_unreachable(),
                e.is_contended()
            );
            show_nodes(&e);
        }
    }

    step("Bring them back");
    for i in [1, 3, 4] {
        cluster.restart(i)?;
    }
    let lock = Redlock::builder()
        .nodes(&urls)
        .retry(Retry::new().attempts(20))
        .build()?
        .acquire("orders:44", Duration::from_secs(10))
        .await?;
    println!("   locked again: {:?}", lock.resource());
    lock.release().await?;
    redlock.shutdown().await;
    println!();
    Ok(())
}
