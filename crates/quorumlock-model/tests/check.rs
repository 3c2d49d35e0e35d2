//! The bounded check that runs in CI (`cargo test --workspace`): the correct model passes in
//! every configuration *and reaches the situations its safety properties guard* (the witness
//! properties), and every negative control is caught, with the property it breaks, in the same
//! configuration and under the same bound.
//!
//! The bound has two parts (docs/model.md, "How deep the check goes"):
//! - breadth-first, every behaviour of at most [`DEPTH`] actions (exhaustive but shallow: the
//!   shortest second holder takes 12 actions, a fence after a written-back fence about 18);
//! - [`WALK_STATES`] states of seeded random walks ([`quorumlock_model::simulate`]), which run
//!   to the end of time and reach every witness (not exhaustive).
//!
//! A run that does not reach every witness of its configuration fails: a check that never saw
//! two holders in turn says nothing about G1.

use quorumlock_model::{check, configs, control, format_trace, simulate, Bug, Config, Outcome, G6, LIVENESS};

/// Breadth-first: every state reachable in at most this many actions is evaluated.
const DEPTH: usize = 7;
/// States visited by the random walks per configuration (about 2 s each on one core).
const WALK_STATES: usize = 2_000_000;
/// The walks' seed: fixed, so a run is reproducible.
const SEED: u64 = 1;

/// Breadth-first to `depth` (0: complete), then the random walks unless the configuration was
/// searched completely.
fn run(cfg: &Config, depth: usize, stop_early: bool) -> (Outcome, Option<Outcome>) {
    let bfs = check(cfg.clone(), depth, 1, stop_early);
    let walks = if bfs.complete || (stop_early && !bfs.violations.is_empty()) {
        None
    } else {
        Some(simulate(cfg.clone(), WALK_STATES, SEED, stop_early))
    };
    (bfs, walks)
}

fn passes(name: &str, cfg: Config, depth: usize) {
    let (bfs, walks) = run(&cfg, depth, false);
    let runs: Vec<&Outcome> = std::iter::once(&bfs).chain(walks.as_ref()).collect();
    let traces: Vec<String> = runs
        .iter()
        .flat_map(|o| o.violations.iter())
        .map(|(p, path)| format!("{p}:\n{}", format_trace(&cfg, path)))
        .collect();
    assert!(
        traces.is_empty(),
        "{name}: the correct model is violated:\n{}",
        traces.join("\n")
    );
    assert!(bfs.unique > 100, "{name}: only {} states explored", bfs.unique);
    let missing: Vec<&str> = bfs
        .missing
        .iter()
        .copied()
        .filter(|w| runs.iter().all(|o| o.missing.contains(w)))
        .collect();
    eprintln!(
        "{name}: breadth-first {} unique states, {} {} actions, {:.1?}; witnesses {:?}",
        bfs.unique,
        if bfs.complete {
            "complete, longest"
        } else {
            "every path up to"
        },
        bfs.depth,
        bfs.elapsed,
        bfs.witnesses
    );
    if let Some(w) = &walks {
        eprintln!(
            "{name}: walks {} states, longest {} actions, {:.1?}; witnesses {:?}",
            w.states, w.depth, w.elapsed, w.witnesses
        );
    }
    assert!(
        missing.is_empty(),
        "{name}: the check never reached {missing:?}, so it says nothing about what they guard"
    );
}

#[test]
fn correct_core() {
    passes("core", configs::core(), DEPTH);
}

#[test]
fn correct_extension() {
    passes("extension", configs::extension(), DEPTH);
}

#[test]
fn correct_crash_fencing() {
    passes("crash-fencing", configs::crash_fencing(), DEPTH);
}

#[test]
fn correct_persistent() {
    passes("persistent", configs::persistent(), DEPTH);
}

#[test]
fn correct_multi() {
    passes("multi", configs::multi(), DEPTH);
}

#[test]
fn correct_quiet_fencing() {
    passes("quiet-fencing", configs::quiet_fencing(), DEPTH);
}

/// The liveness configuration is small enough to check completely (no depth bound).
#[test]
fn correct_liveness_complete() {
    passes("liveness", configs::liveness(), 0);
}

fn depth_of(cfg: &Config) -> usize {
    if cfg.liveness {
        0
    } else {
        DEPTH
    }
}

/// The controls' configurations with the fault switched off pass under the bound in which the
/// controls are caught, and reach their witnesses, so each control's violation comes from its
/// switch alone.
#[test]
fn controls_configurations_pass_without_the_fault() {
    for bug in Bug::ALL {
        let (mut cfg, _) = control(bug);
        cfg.bug = None;
        let depth = depth_of(&cfg);
        passes(&format!("{bug:?} without the fault"), cfg, depth);
    }
}

fn caught(bug: Bug) {
    let (cfg, prop) = control(bug);
    let (bfs, walks) = run(&cfg, depth_of(&cfg), true);
    let (how, path) = std::iter::once(("breadth-first", &bfs))
        .chain(walks.as_ref().map(|w| ("random walks", w)))
        .find_map(|(how, o)| {
            o.violations
                .iter()
                .find(|(p, _)| *p == prop)
                .map(|(_, path)| (how, path))
        })
        .unwrap_or_else(|| panic!("{bug:?} not caught: {prop} holds within the bound"));
    let steps = path.clone().into_actions().len();
    let trace = format_trace(&cfg, path);
    eprintln!("{bug:?}: {prop} after {steps} steps ({how})\n{trace}");
    if prop != LIVENESS {
        // A safety trace ends in the violating state, which the last line summarises.
        assert!(trace.contains("end: t="));
    }
}

#[test]
fn control_quorum_half_breaks_g1() {
    caught(Bug::QuorumHalf);
}

#[test]
fn control_ignoring_elapsed_time_breaks_g1() {
    caught(Bug::IgnoreElapsed);
}

#[test]
fn control_release_only_where_granted_breaks_g5() {
    caught(Bug::ReleaseOnlyGranted);
}

#[test]
fn control_no_fence_write_back_breaks_g6() {
    caught(Bug::NoWriteBack);
}

#[test]
fn control_one_server_counted_twice_breaks_liveness() {
    caught(Bug::DuplicateServer);
}

#[test]
fn control_no_tombstone_breaks_g5() {
    caught(Bug::NoTombstone);
}

#[test]
fn control_immediate_restart_breaks_g1() {
    caught(Bug::ImmediateRestart);
}

#[test]
fn control_clock_step_breaks_g1() {
    caught(Bug::ClockStep);
}

#[test]
fn control_obligation_bound_from_t0_breaks_g5() {
    caught(Bug::ObligationBoundFromT0);
}

#[test]
fn control_fence_horizon_below_offset_breaks_g6() {
    caught(Bug::FenceHorizonBelowOffset);
}

/// The boundary of the fence horizon (issue 20): a counter expires within the drift window of
/// `write + H`, so H must exceed the largest clock offset *plus the drift*. With H equal to that
/// sum a recomputed fence can equal one already returned: G6 breaks, in the configuration and
/// bound in which H one tick longer passes.
#[test]
fn fence_horizon_must_exceed_offset_plus_drift() {
    let cfg = configs::quiet_fencing();
    let max_offset = cfg.offsets.iter().max().copied().unwrap();
    assert!(cfg.fence_horizon > max_offset + cfg.drift);
    let at_boundary = Config {
        fence_horizon: max_offset + cfg.drift,
        ..cfg
    };
    let (bfs, walks) = run(&at_boundary, DEPTH, true);
    let path = std::iter::once(&bfs)
        .chain(walks.as_ref())
        .find_map(|o| o.violations.iter().find(|(p, _)| *p == G6))
        .map(|(_, path)| path)
        .expect("a fence horizon of offset + drift lets a recomputed fence repeat");
    eprintln!("{}", format_trace(&at_boundary, path));
}

/// One server counted twice does not break exclusion in the model: the alias answers "held
/// elsewhere" to our own second SET, and weighted majorities still intersect. What breaks is
/// liveness (the control above). Same bound as the correct model.
#[test]
fn one_server_counted_twice_keeps_g1_and_g5() {
    let cfg = configs::core().with_bug(Bug::DuplicateServer);
    let (bfs, walks) = run(&cfg, DEPTH, false);
    let names: Vec<_> = std::iter::once(&bfs)
        .chain(walks.as_ref())
        .flat_map(|o| o.violations.iter().map(|(p, _)| *p))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// The boundary of tombstones: they live one lock TTL, so they cover SET bytes delayed up to
/// `ttl - drift - 1` ticks after the attempt began (the configurations above use exactly that).
/// One tick more and a late SET lands after its tombstone expired, leaving a key behind.
#[test]
fn tombstones_cover_delays_below_ttl_minus_drift_only() {
    // One client is enough for a leak of its own token, and keeps the search short.
    let cfg = Config {
        max_delay: 2,
        clients: 1,
        ..configs::core()
    };
    let o = check(cfg.clone(), 0, 1, true);
    let (_, path) = o
        .violations
        .iter()
        .find(|(p, _)| *p == quorumlock_model::G5)
        .expect("a SET delayed ttl - drift ticks outlives its tombstone");
    eprintln!("{}", format_trace(&cfg, path));
}
