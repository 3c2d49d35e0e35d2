//! The grant rules of issue 24's primitives (`quorumlock_model::grants`), checked exhaustively:
//! the correct designs bound their holders and reach the situations the bound is about (K
//! holders at once, two readers at once, a holder some node refused); each negative control
//! breaks its bound in the same configuration. docs/model.md, "The grant rules of the
//! coordination primitives".

use quorumlock_model::grants::{
    Design, GrantAction, GrantState, Grants, AT_MOST_K, WRITER_ALONE, W_CONTESTED, W_K_HOLDERS,
    W_TWO_READERS, W_WRITER,
};
use stateright::{Checker, Expectation, Model, Path};

struct Found {
    unique: usize,
    violations: Vec<(&'static str, Path<GrantState, GrantAction>)>,
    witnesses: Vec<&'static str>,
}

/// Breadth-first over every reachable state (the space is finite: each client makes a bounded
/// number of attempts).
fn check(g: Grants) -> Found {
    let properties = g.properties();
    let checker = g.checker().spawn_bfs().join();
    let discoveries = checker.discoveries();
    let mut found = Found {
        unique: checker.unique_state_count(),
        violations: Vec::new(),
        witnesses: Vec::new(),
    };
    for p in properties {
        if let Some(path) = discoveries.get(p.name) {
            if p.expectation == Expectation::Sometimes {
                found.witnesses.push(p.name);
            } else {
                found.violations.push((p.name, path.clone()));
            }
        }
    }
    found
}

/// Three clients; two attempts each with three nodes, one with five (the state space grows by
/// about 10x per node: with five nodes and two attempts it no longer fits a CI run).
fn config(design: Design, nodes: usize, clients: usize, permits: usize) -> Grants {
    let attempts = if nodes > 3 { 1 } else { 2 };
    Grants {
        design,
        nodes,
        clients,
        permits,
        attempts,
    }
}

fn holds(name: &str, g: Grants, guarded: &str, witnesses: &[&str]) {
    // A holder some node refused needs a quorum smaller than the nodes.
    let contested = g.quorum() < g.nodes;
    let f = check(g);
    let broken: Vec<String> = f
        .violations
        .iter()
        .map(|(p, path)| format!("{p}: {:?}", path.clone().into_actions()))
        .collect();
    assert!(broken.is_empty(), "{name}: {broken:#?}");
    for w in witnesses.iter().filter(|w| contested || **w != W_CONTESTED) {
        assert!(
            f.witnesses.contains(w),
            "{name}: the check never reached \"{w}\", so passing says nothing about \"{guarded}\""
        );
    }
    eprintln!("{name}: {} unique states, witnesses {:?}", f.unique, f.witnesses);
}

fn caught(name: &str, g: Grants, property: &str) {
    let f = check(g);
    let hit = f.violations.iter().find(|(p, _)| *p == property);
    let (_, path) = hit.unwrap_or_else(|| panic!("{name}: \"{property}\" was not broken"));
    eprintln!("{name}: caught: {:?}", path.clone().into_actions());
}

#[test]
fn permit_slots_bound_the_holders_by_k() {
    for (nodes, clients, permits) in [(3, 3, 2), (5, 3, 2), (3, 3, 1)] {
        holds(
            &format!("slots N={nodes} clients={clients} K={permits}"),
            config(Design::Slots, nodes, clients, permits),
            AT_MOST_K,
            &[W_K_HOLDERS, W_CONTESTED],
        );
    }
}

#[test]
fn a_large_quorum_bounds_the_holders_by_k() {
    for (nodes, clients, permits) in [(3, 3, 2), (5, 3, 2), (4, 3, 2)] {
        let g = config(Design::LargeQuorum, nodes, clients, permits);
        assert!((permits + 1) * g.quorum() > permits * nodes);
        holds(
            &format!(
                "large quorum N={nodes} clients={clients} K={permits} q={}",
                g.quorum()
            ),
            g,
            AT_MOST_K,
            &[W_K_HOLDERS, W_CONTESTED],
        );
    }
}

#[test]
fn negative_control_counting_permits_per_node_with_a_majority() {
    // The counterexample: N = 3, K = 2, three clients each win two nodes.
    caught(
        "naive count N=3 K=2",
        config(Design::NaiveCount, 3, 3, 2),
        AT_MOST_K,
    );
    caught(
        "naive count N=5 K=2",
        config(Design::NaiveCount, 5, 3, 2),
        AT_MOST_K,
    );
    // ... and in the configuration in which the large quorum passes.
    let large = config(Design::LargeQuorum, 5, 3, 2);
    assert!(check(large).violations.is_empty());
}

#[test]
fn readers_share_and_a_writer_holds_alone() {
    for (nodes, clients) in [(3, 3), (5, 3)] {
        holds(
            &format!("read-write N={nodes} clients={clients}"),
            config(Design::ReadWrite, nodes, clients, 0),
            WRITER_ALONE,
            &[W_TWO_READERS, W_WRITER, W_CONTESTED],
        );
    }
}

#[test]
fn negative_control_a_reader_admitted_beside_a_writer() {
    caught(
        "reader beside writer N=3",
        config(Design::ReaderBesideWriter, 3, 3, 0),
        WRITER_ALONE,
    );
}
