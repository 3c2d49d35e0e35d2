//! `quorumlock-model`: the longer checks, and the traces of the negative controls.
//!
//! ```text
//! cargo run -p quorumlock-model --release -- check [--depth N] [--threads T] [CONFIG...]
//! cargo run -p quorumlock-model --release -- controls [--depth N]
//! ```
//! CONFIG is one of core, extension, crash-fencing, persistent, multi, liveness,
//! three-clients, everything (default: the first six).

use quorumlock_model::{check, configs, control, format_trace, simulate, Bug, Config};

fn usage() -> ! {
    eprintln!(
        "usage: quorumlock-model check [--depth N] [--threads T] [CONFIG...]\n       \
         quorumlock-model controls [--depth N]\n\
         CONFIG: core extension crash-fencing persistent multi liveness three-clients everything"
    );
    std::process::exit(2)
}

fn named(name: &str) -> Option<Config> {
    Some(match name {
        "core" => configs::core(),
        "quiet" => configs::quiet(),
        "quiet-fencing" => configs::quiet_fencing(),
        "extension" => configs::extension(),
        "crash-fencing" => configs::crash_fencing(),
        "persistent" => configs::persistent(),
        "multi" => configs::multi(),
        "liveness" => configs::liveness(),
        "three-clients" => configs::three_clients(),
        "everything" => configs::everything(),
        _ => return None,
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_else(|| usage());
    let (mut depth, mut threads, mut names) = (0usize, 1usize, Vec::new());
    let (mut walks, mut seed) = (0usize, 1u64);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--depth" => {
                depth = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--simulate" => {
                walks = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            _ => names.push(a),
        }
    }
    match cmd.as_str() {
        "check" => {
            let list: Vec<(String, Config)> = if names.is_empty() {
                configs::all()
                    .into_iter()
                    .map(|(n, c)| (n.to_string(), c))
                    .collect()
            } else {
                names
                    .iter()
                    .map(|n| (n.clone(), named(n).unwrap_or_else(|| usage())))
                    .collect()
            };
            let mut failed = false;
            for (name, cfg) in list {
                let o = if walks > 0 {
                    simulate(cfg.clone(), walks, seed, false)
                } else {
                    check(cfg.clone(), depth, threads, false)
                };
                println!(
                    "{name}: {} states ({} unique), {} {} actions, {:.1?}, {}",
                    o.states,
                    o.unique,
                    if o.complete {
                        "complete, longest shortest path"
                    } else {
                        "every path up to"
                    },
                    o.depth,
                    o.elapsed,
                    if o.violations.is_empty() {
                        "no violation".to_string()
                    } else {
                        format!("{} violated", o.violations.len())
                    }
                );
                for (w, steps) in &o.witnesses {
                    println!("  found {w} ({steps} actions)");
                }
                for w in &o.missing {
                    failed = true;
                    println!("  MISSING {w}");
                }
                for (prop, path) in &o.violations {
                    failed = true;
                    println!("  {prop}:\n{}", format_trace(&cfg, path));
                }
            }
            if failed {
                std::process::exit(1);
            }
        }
        "controls" => {
            for bug in Bug::ALL
                .into_iter()
                .filter(|b| names.is_empty() || names.iter().any(|n| format!("{b:?}") == *n))
            {
                let (cfg, prop) = control(bug);
                let o = if walks > 0 {
                    simulate(cfg.clone(), walks, seed, true)
                } else {
                    check(cfg.clone(), depth, threads, true)
                };
                match o.violations.iter().find(|(p, _)| *p == prop) {
                    Some((_, path)) => println!(
                        "{bug:?}: {prop} violated after {} steps ({} states, {:.1?})\n{}",
                        path.clone().into_actions().len(),
                        o.unique,
                        o.elapsed,
                        format_trace(&cfg, path)
                    ),
                    None => println!("{bug:?}: NOT CAUGHT ({} states, {:.1?})", o.unique, o.elapsed),
                }
            }
        }
        _ => usage(),
    }
}
