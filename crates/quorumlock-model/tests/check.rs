//! The bounded check that runs in CI (`cargo test --workspace`): the correct model passes in
//! every configuration, and every negative control is caught with the property it breaks.

use quorumlock_model::{check, configs, control, format_trace, Bug, Config, LIVENESS};

/// Steps explored per configuration of the correct model. Depth 9 takes about 20 s for all six
/// configurations together on one core; `docs/model.md` records longer runs.
const DEPTH: usize = 9;

fn passes(name: &str, cfg: Config, depth: usize) {
    let o = check(cfg.clone(), depth, 1, false);
    let traces: Vec<String> = o
        .violations
        .iter()
        .map(|(p, path)| format!("{p}:\n{}", format_trace(&cfg, path)))
        .collect();
    assert!(
        traces.is_empty(),
        "{name}: the correct model is violated:\n{}",
        traces.join("\n")
    );
    assert!(o.unique > 100, "{name}: only {} states explored", o.unique);
    eprintln!(
        "{name}: {} unique states to depth {}, {:.1?}",
        o.unique, o.max_depth, o.elapsed
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

/// The liveness configuration is small enough to check completely (no depth bound).
#[test]
fn correct_liveness_complete() {
    passes("liveness", configs::liveness(), 0);
}

/// The controls' configurations with the fault switched off pass as deep as their
/// counterexamples go, so each control's violation comes from its switch alone.
#[test]
fn controls_configurations_pass_without_the_fault() {
    for bug in Bug::ALL {
        let (mut cfg, _) = control(bug);
        cfg.bug = None;
        let depth = if cfg.liveness { 0 } else { 9 };
        passes(&format!("{bug:?} without the fault"), cfg, depth);
    }
}

fn caught(bug: Bug, max_steps: usize) {
    let (cfg, prop) = control(bug);
    let o = check(cfg.clone(), 0, 1, true);
    let (_, path) = o
        .violations
        .iter()
        .find(|(p, _)| *p == prop)
        .unwrap_or_else(|| panic!("{bug:?} not caught: {prop} holds over {} states", o.unique));
    let steps = path.clone().into_actions().len();
    eprintln!(
        "{bug:?}: {prop} after {steps} steps\n{}",
        format_trace(&cfg, path)
    );
    assert!(
        steps <= max_steps,
        "{bug:?}: trace of {steps} steps, expected at most {max_steps}"
    );
    if prop != LIVENESS {
        // A safety trace ends in the violating state, which the last line summarises.
        assert!(format_trace(&cfg, path).contains("end: t="));
    }
}

#[test]
fn control_quorum_half_breaks_g1() {
    caught(Bug::QuorumHalf, 7);
}

#[test]
fn control_ignoring_elapsed_time_breaks_g1() {
    caught(Bug::IgnoreElapsed, 13);
}

#[test]
fn control_release_only_where_granted_breaks_g5() {
    caught(Bug::ReleaseOnlyGranted, 5);
}

#[test]
fn control_no_fence_write_back_breaks_g6() {
    caught(Bug::NoWriteBack, 12);
}

#[test]
fn control_one_server_counted_twice_breaks_liveness() {
    caught(Bug::DuplicateServer, 30);
}

#[test]
fn control_no_tombstone_breaks_g5() {
    caught(Bug::NoTombstone, 7);
}

#[test]
fn control_immediate_restart_breaks_g1() {
    caught(Bug::ImmediateRestart, 12);
}

#[test]
fn control_clock_step_breaks_g1() {
    caught(Bug::ClockStep, 11);
}

#[test]
fn control_obligation_bound_from_t0_breaks_g5() {
    caught(Bug::ObligationBoundFromT0, 9);
}

/// One server counted twice does not break exclusion in the model: the alias answers "held
/// elsewhere" to our own second SET, and weighted majorities still intersect. What breaks is
/// liveness (the control above). Bounded like the correct model.
#[test]
fn one_server_counted_twice_keeps_g1_and_g5() {
    let cfg = configs::core().with_bug(Bug::DuplicateServer);
    let o = check(cfg, DEPTH, 1, false);
    let names: Vec<_> = o.violations.iter().map(|(p, _)| *p).collect();
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
