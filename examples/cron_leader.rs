//! Several processes run the same schedule; each period's job runs exactly once.
//!
//! The parent starts five local `redis-server` processes (or uses `QUORUMLOCK_NODES`), then
//! three worker processes (this same program with `--worker N`). Every period each worker tries
//! the lock named after the period, with a TTL of one period, and keeps it (`forget`) so that no
//! other worker runs that period's job even after the winner finished. The parent then checks
//! that every period ran exactly once.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example cron_leader    # starts local redis-server nodes (apt-get install redis-server)
//! # with your own lock nodes:
//! QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379,redis://10.0.0.4:6379,redis://10.0.0.5:6379 \
//!   cargo run --example cron_leader
//! ```
//!
//! Only `support::nodes` (examples/support/mod.rs) starts local servers; the rest is plain
//! quorumlock and tokio code that you can copy.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quorumlock::{Redlock, Retry};

mod support;

const PERIOD: Duration = Duration::from_millis(500);
const PERIODS: u64 = 8;

/// The current period number, from wall-clock time shared by all workers.
fn period_now() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    (now.as_millis() / PERIOD.as_millis()) as u64
}

async fn worker(id: usize, urls: Vec<String>, first: u64) -> Result<(), quorumlock::Error> {
    let redlock = Redlock::builder().nodes(urls).retry(Retry::none()).build()?;
    let mut period = first;
    while period < first + PERIODS {
        // Sleep until the period starts.
        while period_now() < period {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match redlock
            .try_acquire(&format!("cron:report:{period}"), PERIOD)
            .await
        {
            Ok(lock) => {
                // Run the job (here: say so), then keep the lock for the rest of the period.
                println!("RAN {period} {id}");
                lock.forget();
            }
            Err(e) if e.is_contended() => {}
            Err(e) => eprintln!("worker {id}: period {period}: {e}"),
        }
        period += 1;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        let id = args[2].parse()?;
        let first = args[3].parse()?;
        let urls = args[4].split(',').map(String::from).collect();
        worker(id, urls, first).await?;
        return Ok(());
    }

    let (urls, _local) = support::nodes("QUORUMLOCK_NODES", 5)?;
    let urls = urls.join(",");
    let first = period_now() + 2;
    println!("3 workers, {PERIODS} periods of {PERIOD:?}; each period's job must run exactly once\n");
    let exe = std::env::current_exe()?;
    let workers: Vec<_> = (1..=3)
        .map(|id| {
            Command::new(&exe)
                .args(["--worker", &id.to_string(), &first.to_string(), &urls])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut ran: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for mut child in workers {
        let out = child.stdout.take().expect("piped");
        for line in BufReader::new(out).lines() {
            let line = line?;
            if let ["RAN", period, id] = line.split_whitespace().collect::<Vec<_>>()[..] {
                ran.entry(period.parse()?).or_default().push(id.to_owned());
            }
        }
        child.wait()?;
    }
    let mut ok = true;
    for period in first..first + PERIODS {
        let who = ran.get(&period).cloned().unwrap_or_default();
        let verdict = match who.len() {
            1 => "ok",
            0 => {
                ok = false;
                "MISSED"
            }
            _ => {
                ok = false;
                "RAN TWICE"
            }
        };
        println!(
            "period {:>2}: run by worker {:<6} {verdict}",
            period - first + 1,
            who.join(", ")
        );
    }
    println!(
        "\n{}",
        if ok {
            "every period ran exactly once"
        } else {
            "a period did not run exactly once"
        }
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
