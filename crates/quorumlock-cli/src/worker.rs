//! `quorumlock __worker <node-url>...`: a lock client for tests, one command per line on stdin,
//! one answer per line on stdout.
//!
//! | command | answer |
//! |---|---|
//! | `acquire <resource> <ttl-ms>` | `granted <fence or 0> <remaining-ms>` or `failed <kind>` |
//! | `valid` | `true` or `false` |
//! | `extend <ttl-ms>` | `extended` or `failed <kind>` |
//! | `write <redis-url> <key>` | `accepted` or `refused`: a fenced write (fence >= the stored max) |
//! | `release` | `released <nodes deleted>` or `failed <kind>` |
//! | `exit` | (exits) |

use std::time::Duration;

use quorumlock::{Lock, Redlock, Retry};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The same script as `quorumlock_testkit::FENCED_WRITE` (the binary does not link the test kit).
const FENCED_WRITE: &str = "if tonumber(ARGV[1]) >= tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0";

pub(crate) fn main(urls: &[String]) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return 1;
        }
    };
    rt.block_on(run(urls))
}

async fn run(urls: &[String]) -> i32 {
    let redlock = match Redlock::builder()
        .nodes(urls)
        .fencing(true)
        .node_timeout(Duration::from_millis(100))
        .retry(Retry::new().attempts(50).deadline(Duration::from_secs(10)))
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let mut lock: Option<Lock> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["acquire", resource, ttl] => {
                let ttl = Duration::from_millis(ttl.parse().unwrap_or(0));
                match redlock.acquire(resource, ttl).await {
                    Ok(l) => {
                        let a = format!(
                            "granted {} {}",
                            l.fencing_token().unwrap_or(0),
                            l.remaining().as_millis()
                        );
                        lock = Some(l);
                        a
                    }
                    Err(e) => format!("failed {:?}", e.kind()),
                }
            }
            ["valid"] => lock.as_ref().is_some_and(Lock::is_valid).to_string(),
            ["extend", ttl] => match lock.as_mut() {
                Some(l) => match l.extend(Duration::from_millis(ttl.parse().unwrap_or(0))).await {
                    Ok(()) => "extended".to_owned(),
                    Err(e) => format!("failed {:?}", e.kind()),
                },
                None => "failed NoLock".to_owned(),
            },
            ["write", url, key] => match lock.as_ref().and_then(Lock::fencing_token) {
                Some(fence) => fenced_write(url, key, fence),
                None => "failed NoLock".to_owned(),
            },
            ["release"] => match lock.take() {
                Some(l) => match l.release().await {
                    Ok(report) => format!("released {}", report.deleted()),
                    Err(e) => format!("failed {:?}", e.kind()),
                },
                None => "failed NoLock".to_owned(),
            },
            ["exit"] => break,
            _ => format!("error unknown command {line:?}"),
        };
        if out.write_all(format!("{answer}\n").as_bytes()).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
    if let Some(l) = lock {
        l.forget();
    }
    redlock.shutdown().await;
    0
}

fn fenced_write(url: &str, key: &str, fence: u64) -> String {
    let result = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .and_then(|mut c| {
            redis::cmd("EVAL")
                .arg(FENCED_WRITE)
                .arg(1)
                .arg(key)
                .arg(fence)
                .query::<i64>(&mut c)
        });
    match result {
        Ok(1) => "accepted".to_owned(),
        Ok(_) => "refused".to_owned(),
        Err(e) => format!("failed {e}"),
    }
}
