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

pub mod grants;
pub mod model;

use std::time::{Duration, Instant};

use stateright::{Checker, Chooser, Expectation, HasDiscoveries, Model, Path};

pub use model::{
    Action, Bug, Config, Redlock, State, W_FENCE_AFTER_FENCE, W_FOREIGN_KEY, W_RECOMPUTED, W_TOMBSTONE,
    W_TWO_HOLDERS,
};

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

    /// [`quiet()`] with fencing, server 0's clock two ticks ahead, fence counters that expire
    /// after 4 ticks (more than the offset plus the drift), and time up to tick 4: a counter
    /// written at the start can expire and be recomputed by a later grant.
    pub fn quiet_fencing() -> Config {
        Config {
            fencing: true,
            offsets: vec![2, 0, 0],
            fence_horizon: 4,
            horizon: 4,
            ..quiet()
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
            // Fence counters expire 4 ticks after their last write: more than the largest
            // clock offset (2 ticks) plus the drift (1 tick).
            fence_horizon: 4,
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
            // Fence counters expire 4 ticks after their last write: more than the largest
            // clock offset (2 ticks) plus the drift (1 tick).
            fence_horizon: 4,
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
            // Fence counters expire 4 ticks after their last write: more than the largest
            // clock offset (2 ticks) plus the drift (1 tick).
            fence_horizon: 4,
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
            ("quiet-fencing", quiet_fencing()),
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
        Bug::FenceHorizonBelowOffset => (configs::quiet_fencing(), G6),
    };
    (cfg.with_bug(bug), prop)
}

/// What one check found.
#[derive(Debug)]
pub struct Outcome {
    pub states: usize,
    pub unique: usize,
    /// The most actions on any path whose end state had its properties evaluated (breadth-first:
    /// every state reachable in at most this many actions was evaluated).
    pub depth: usize,
    /// Whether the search ended because the state space was exhausted (no depth bound hit).
    pub complete: bool,
    pub elapsed: Duration,
    /// Property name and its counterexample (`always` broken, `eventually` not reached).
    pub violations: Vec<(&'static str, Path<State, Action>)>,
    /// Witness (`sometimes`) properties found, with the length in actions of the shortest path.
    pub witnesses: Vec<(&'static str, usize)>,
    /// Witness properties of the configuration that the search did not reach.
    pub missing: Vec<&'static str>,
}

/// Breadth-first check of `cfg`: every state reachable in at most `depth` actions (0: every
/// reachable state) has its properties evaluated, on `threads` threads. With `stop_early` the
/// search ends at the first violation.
///
/// Stateright's `target_max_depth` counts the initial state as depth 1 and skips a state whose
/// depth has reached the target *before* evaluating its properties, so a target of `depth + 2`
/// evaluates exactly the states of at most `depth` actions.
pub fn check(cfg: Config, depth: usize, threads: usize, stop_early: bool) -> Outcome {
    let start = Instant::now();
    let model = Redlock::new(cfg);
    let properties = model.properties();
    let mut builder = model.checker().threads(threads.max(1));
    if depth > 0 {
        builder = builder.target_max_depth(depth + 2);
    }
    if stop_early {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    let mut o = sort_discoveries(&properties, checker.discoveries());
    // `max_depth` counts states (the initial one is 1) and includes the skipped ones.
    let reached = checker.max_depth();
    o.complete = depth == 0 || reached < depth + 2;
    o.depth = if o.complete {
        reached.saturating_sub(1)
    } else {
        depth
    };
    o.states = checker.state_count();
    o.unique = checker.unique_state_count();
    o.elapsed = start.elapsed();
    o
}

/// The random walks' choice: every enabled action has a chance, progress (deliveries, a
/// holder's release or extension, re-sent releases) eight times the chance of a fault, of time
/// passing or of an attempt starting, so that walks get through two fenced acquisitions before
/// a fault ends them, and attempts start at every tick. Seeded, so reproducible.
#[derive(Clone)]
pub struct ProgressChooser;

impl Chooser<Redlock> for ProgressChooser {
    type State = u64;

    fn new_state(&self, seed: u64) -> u64 {
        seed ^ 0x9e37_79b9_7f4a_7c15
    }

    fn choose_initial_state(&self, rng: &mut u64, initial: &[State]) -> usize {
        (next(rng) % initial.len() as u64) as usize
    }

    fn choose_action(&self, rng: &mut u64, _state: &State, actions: &[Action]) -> usize {
        let weight = |a: &Action| match a {
            Action::Deliver(_) | Action::Release(_) | Action::Extend(_) | Action::Resend(..) => 8,
            _ => 1,
        };
        let total: u64 = actions.iter().map(weight).sum();
        let mut pick = next(rng) % total;
        for (i, a) in actions.iter().enumerate() {
            if pick < weight(a) {
                return i;
            }
            pick -= weight(a);
        }
        actions.len() - 1
    }
}

/// splitmix64.
fn next(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeded random walks of `cfg` (stateright's simulation checker, choice by [`ProgressChooser`],
/// one thread so a seed gives the same walks): walks from the initial state
/// until none of the successors is new on that walk or time ends, until `states` states have
/// been visited in all. Every state on a walk has its properties evaluated. Not exhaustive: it
/// reaches the deep situations (the witnesses) that a breadth-first search cannot afford.
/// `depth` is the longest walk, in actions.
pub fn simulate(cfg: Config, states: usize, seed: u64, stop_early: bool) -> Outcome {
    let start = Instant::now();
    let model = Redlock::new(cfg);
    let properties = model.properties();
    let mut builder = model.checker().threads(1).target_state_count(states.max(1));
    if stop_early {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_simulation(seed, ProgressChooser).join();
    let mut o = sort_discoveries(&properties, checker.discoveries());
    o.states = checker.state_count();
    o.unique = 0;
    o.depth = checker.max_depth();
    o.complete = false;
    o.elapsed = start.elapsed();
    o
}

fn sort_discoveries(
    properties: &[stateright::Property<Redlock>],
    discoveries: std::collections::HashMap<&'static str, Path<State, Action>>,
) -> Outcome {
    let mut violations = Vec::new();
    let mut witnesses = Vec::new();
    let mut missing = Vec::new();
    for p in properties {
        let found = discoveries.get(p.name);
        match p.expectation {
            Expectation::Sometimes => match found {
                Some(path) => witnesses.push((p.name, path.clone().into_actions().len())),
                None => missing.push(p.name),
            },
            _ => {
                if let Some(path) = found {
                    violations.push((p.name, path.clone()));
                }
            }
        }
    }
    violations.sort_by_key(|(name, _)| *name);
    Outcome {
        states: 0,
        unique: 0,
        depth: 0,
        complete: false,
        elapsed: Duration::ZERO,
        violations,
        witnesses,
        missing,
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
            ..
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
