//! A model-checked specification of quorumlock's Redlock protocol (issue 13).
//!
//! The model ([`model::Redlock`]) is the protocol as this library implements it: acquire with a
//! fresh token per attempt, fan-out to every node, an early decision at quorum or when quorum is
//! impossible, validity `ttl - elapsed - drift`, clean-up of every node that may hold the token
//! as a release obligation, tombstones against late SET bytes, extension, release, fencing with
//! write-back to a majority, and multi-resource acquisition. The environment is hostile within
//! stated bounds: messages are delayed, lost and reordered across connections, clients replace
//! connections, pause for any number of ticks, nodes crash and restart with or without
//! persistence, node clocks drift within the allowance and (as a switch) step.
//!
//! The checker is [stateright](https://docs.rs/stateright/0.31) 0.31, used through its plain
//! [`stateright::Model`] trait rather than its actor framework: the properties need ghost state
//! that spans clients and servers (which tokens a client is finished with, the fences returned so
//! far), time is a global tick that every component reads, and the network needs a per-connection
//! FIFO with connections that are replaced while bytes are still in flight, which the actor
//! framework's networks (unordered or per-pair ordered) do not express. Its breadth-first search
//! gives shortest counterexamples, which is what `docs/model.md` lists and what the replayed
//! tests follow. TLA+ would have kept the model outside `cargo test`; a hand-written search would
//! have needed its own trace reconstruction and property bookkeeping.
//!
//! Run `cargo run -p quorumlock-model --release -- help` for the longer checks.

pub mod model;

use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Path};

pub use model::{Action, Bug, Config, Redlock, State};

/// Property names, as in docs/design.md.
pub const G1: &str = "G1 mutual exclusion";
pub const G2: &str = "G2 ownership";
pub const G5: &str = "G5 no leaks";
pub const G6: &str = "G6 fence order";
pub const LIVENESS: &str = "liveness";

/// The configurations the correct model is checked in. Each is small enough for a bounded
/// check in CI; together they switch on every fault and feature the model has.
pub mod configs {
    use super::Config;

    /// Two clients, three nodes, loss, connection resets with late bytes, client pauses.
    pub fn core() -> Config {
        Config::base()
    }

    /// [`core()`] without loss, resets or early timeouts, and with the second client starting after
    /// the first returned: only delays, pauses and clock faults. The controls whose
    /// counterexample needs no network fault are searched here, where the shortest trace is
    /// within reach (it is then the shortest trace of this configuration).
    pub fn quiet() -> Config {
        Config {
            sequential: true,
            lossy: false,
            resets: false,
            early_timeouts: false,
            ..Config::base()
        }
    }

    /// [`core()`] with one extension per holder, and two attempts per client.
    pub fn extension() -> Config {
        Config {
            extend: true,
            attempts: 2,
            horizon: 7,
            ..Config::base()
        }
    }

    /// Crashes and restarts without persistence (delayed-restart rule), fencing with write-back,
    /// and a node whose clock is two ticks ahead of the others.
    pub fn crash_fencing() -> Config {
        Config {
            fencing: true,
            crashes: true,
            lossy: false,
            horizon: 7,
            offsets: vec![2, 0, 0],
            ..Config::base()
        }
    }

    /// [`crash_fencing()`] with AOF-always persistence: a node may come back at once.
    pub fn persistent() -> Config {
        Config {
            persistent: true,
            ..crash_fencing()
        }
    }

    /// Multi-resource: client 0 locks resources {0, 1}, client 1 locks {1}.
    pub fn multi() -> Config {
        Config {
            locks: vec![0b11, 0b10, 0b01],
            fencing: true,
            ..Config::base()
        }
    }

    /// Liveness: one client, two attempts, no loss, at most one node down for good.
    pub fn liveness() -> Config {
        Config {
            clients: 1,
            attempts: 2,
            lossy: false,
            liveness: true,
            horizon: 4,
            ..Config::base()
        }
    }

    /// Three clients (longer runs only).
    pub fn three_clients() -> Config {
        Config {
            clients: 3,
            horizon: 5,
            ..Config::base()
        }
    }

    /// Every feature at once (longer runs only): extension, fencing, crashes, loss.
    pub fn everything() -> Config {
        Config {
            extend: true,
            fencing: true,
            crashes: true,
            offsets: vec![2, 0, 0],
            horizon: 7,
            ..Config::base()
        }
    }

    /// Every correct-model configuration, by name.
    pub fn all() -> Vec<(&'static str, Config)> {
        vec![
            ("core", core()),
            ("extension", extension()),
            ("crash-fencing", crash_fencing()),
            ("persistent", persistent()),
            ("multi", multi()),
            ("liveness", liveness()),
        ]
    }
}

/// The configuration in which a negative control shows its violation, and the property that
/// must fail.
pub fn control(bug: Bug) -> (Config, &'static str) {
    let (cfg, prop) = match bug {
        Bug::QuorumHalf | Bug::IgnoreElapsed | Bug::ClockStep => (configs::quiet(), G1),
        Bug::ReleaseOnlyGranted | Bug::NoTombstone => (configs::core(), G5),
        Bug::ObligationBoundFromT0 => (configs::core(), G5),
        Bug::NoWriteBack => (
            Config {
                fencing: true,
                offsets: vec![2, 0, 0],
                ..configs::quiet()
            },
            G6,
        ),
        Bug::ImmediateRestart => (
            Config {
                crashes: true,
                // One server that may crash is enough for B1 and keeps the search short.
                crashable: 0b001,
                ..configs::quiet()
            },
            G1,
        ),
        Bug::DuplicateServer => (configs::liveness(), LIVENESS),
    };
    (cfg.with_bug(bug), prop)
}

/// What one check found.
#[derive(Debug)]
pub struct Outcome {
    pub states: usize,
    pub unique: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Property name and its counterexample.
    pub violations: Vec<(&'static str, Path<State, Action>)>,
}

/// Breadth-first check of `cfg` up to `depth` steps (0: no bound), on `threads` threads.
/// With `stop_early` the search ends at the first violation.
pub fn check(cfg: Config, depth: usize, threads: usize, stop_early: bool) -> Outcome {
    let start = Instant::now();
    let model = Redlock::new(cfg);
    let properties = model.properties();
    let mut builder = model.checker().threads(threads.max(1));
    if depth > 0 {
        builder = builder.target_max_depth(depth);
    }
    if stop_early {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    let mut violations: Vec<_> = checker
        .discoveries()
        .into_iter()
        .filter(|(name, _)| properties.iter().any(|p| p.name == *name))
        .collect();
    violations.sort_by_key(|(name, _)| *name);
    Outcome {
        states: checker.state_count(),
        unique: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed: start.elapsed(),
        violations,
    }
}

/// A counterexample as numbered lines: each step's action and what it changed, in the model's
/// own words (servers, keys `resource=token@expiry`, messages `client->node` on a connection).
pub fn format_trace(cfg: &Config, path: &Path<State, Action>) -> String {
    let model = Redlock::new(cfg.clone());
    let steps = path.clone().into_vec();
    let mut out = String::new();
    for (i, (state, action)) in steps.iter().enumerate() {
        if let Some(action) = action {
            let next = model.next_state(state, *action).expect("replayable");
            let detail = match action {
                Action::Deliver(k) | Action::Lose(k) => {
                    format!("  [{}]", describe_msg(&state.net[*k as usize]))
                }
                _ => String::new(),
            };
            out.push_str(&format!("{:>2}. t={} {}{}\n", i + 1, state.now, action, detail));
            if i + 1 == steps.len() - 1 || steps.len() == 1 {
                out.push_str(&summary(&model, &next));
            }
        }
    }
    out
}

fn describe_msg(m: &model::Msg) -> String {
    use model::Body::*;
    let what = match m.body {
        Acquire { token } => format!("acquire token {token}"),
        Release { token } => format!("release token {token}"),
        Extend { token } => format!("extend token {token}"),
        Raise { token, fence } => format!("fence write-back {fence} (token {token})"),
        AcquireReply {
            token,
            granted,
            fence,
        } => {
            format!(
                "acquire reply token {token}: {}",
                if granted {
                    format!("granted, fence {fence}")
                } else {
                    "refused".into()
                }
            )
        }
        ReleaseReply { token } => format!("release reply token {token}"),
        ExtendReply { token, ok } => format!("extend reply token {token}: {ok}"),
        RaiseReply { token } => format!("write-back reply token {token}"),
    };
    if m.body.is_request_pub() {
        format!(
            "client {} -> node {} conn {} sent t={}: {what}",
            m.client, m.node, m.conn, m.sent
        )
    } else {
        format!("client {} <- node {} conn {}: {what}", m.client, m.node, m.conn)
    }
}

/// The end state in a few lines: who holds what, and what each server stores.
pub fn summary(model: &Redlock, s: &State) -> String {
    let mut out = format!("    end: t={}\n", s.now);
    for (c, cl) in s.clients.iter().enumerate() {
        out.push_str(&format!(
            "    client {c}: {:?} token {} t0={} until={} fence={} holds={} finished={:?}\n",
            cl.phase,
            cl.token,
            cl.t0,
            cl.until,
            cl.fence,
            model.holds(s, c),
            cl.finished
        ));
    }
    for (k, n) in s.nodes.iter().enumerate() {
        let keys: Vec<String> = n
            .keys
            .iter()
            .enumerate()
            .filter_map(|(r, key)| key.map(|key| format!("r{r}={}@{}", key.token, key.exp)))
            .collect();
        out.push_str(&format!(
            "    server {k}: {} keys [{}] fences {:?} tombs {:?}\n",
            if n.up { "up" } else { "down" },
            keys.join(" "),
            n.fences,
            n.tombs.iter().map(|t| t.token).collect::<Vec<_>>()
        ));
    }
    out
}
