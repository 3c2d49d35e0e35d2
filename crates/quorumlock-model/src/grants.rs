//! The grant rules of the coordination primitives of issue 24 (a semaphore of K permits, a
//! read-write lock) over N independent nodes, checked at the level of grants.
//!
//! Each node decides alone whether to grant a request; a client holds once a quorum of nodes
//! has granted it the same thing. The question this model answers is whether the per-node rule
//! and the quorum together bound the holders: at most K permit holders, and a writer alone. It
//! is the majority-intersection argument of G1, made for rules other than "the key is free".
//!
//! What is abstracted, and why it is sound for these properties (the full argument is in
//! docs/design.md, "Coordination primitives"): time, messages and faults are left out. A holder
//! is counted from its decision until its release or the end of its validity; Redlock's
//! validity (`ttl - elapsed - drift`, with the clock started before the first request) ends
//! before any of its grants can expire on a node, so while a client holds, every grant it
//! counted is still on its node, which is what a grant in this model is. A lost or late
//! release, or a grant that lands after the decision, only keeps a node occupied longer, which
//! can refuse more requests and never admit more. A node that loses its keys (a restart
//! without persistence) is outside these guarantees as it is outside G1's.

use stateright::{Model, Property};

/// Which primitive, and which grant rule on each node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Design {
    /// K permit slots, each a quorum mutex: a node grants slot `s` when no other client has
    /// it there; a client holds when a majority granted it the same slot.
    Slots,
    /// A node grants while fewer than K clients hold a permit there; a client holds when a
    /// quorum of `q > K·N/(K+1)` nodes granted it.
    LargeQuorum,
    /// **Broken on purpose** (a negative control): [`Design::LargeQuorum`]'s per-node count
    /// with a plain majority. With N = 3 and K = 2, three clients each win two nodes while no
    /// node counts more than two.
    NaiveCount,
    /// Read-write lock: a node grants a read when no writer holds there, a write when nobody
    /// else holds there; a client holds when a majority granted it.
    ReadWrite,
    /// **Broken on purpose** (a negative control): [`Design::ReadWrite`] with a node that
    /// grants a read without looking for a writer.
    ReaderBesideWriter,
}

/// One configuration: a design, the nodes, the clients and the permits.
#[derive(Clone, Debug)]
pub struct Grants {
    pub design: Design,
    pub nodes: usize,
    pub clients: usize,
    /// Permits (the semaphore designs; ignored by the read-write lock).
    pub permits: usize,
    /// Attempts each client makes (each ends in a hold and a release, or in giving up).
    pub attempts: u8,
}

/// What a client asks for: a slot (`Slots`), a permit (`0`, the count designs), or
/// [`READ`] / [`WRITE`].
pub type Want = u8;
pub const READ: Want = 0;
pub const WRITE: Want = 1;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    Idle {
        attempts_left: u8,
    },
    /// Asked the nodes in `asked`; those in `granted` said yes.
    Trying {
        want: Want,
        asked: u8,
        granted: u8,
        attempts_left: u8,
    },
    /// Holds `want`; `refused` keeps whether a node it asked refused it (for a witness).
    Holding {
        want: Want,
        refused: bool,
        attempts_left: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GrantState {
    /// `held[n][c]`: what node `n` has granted client `c`, if anything.
    pub held: Vec<Vec<Option<Want>>>,
    pub clients: Vec<Client>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GrantAction {
    Start(usize, Want),
    Ask(usize, usize),
    /// A quorum granted: the client holds.
    Hold(usize),
    /// A quorum can no longer grant: the client releases what it got and stops this attempt.
    GiveUp(usize),
    Release(usize),
}

pub const AT_MOST_K: &str = "at most K permit holders at once";
pub const WRITER_ALONE: &str = "a writer holds alone";
pub const W_K_HOLDERS: &str = "witness: K permit holders at once";
pub const W_TWO_READERS: &str = "witness: two readers at once";
pub const W_WRITER: &str = "witness: a writer holds";
pub const W_CONTESTED: &str = "witness: a node refused a client that then held";

impl Grants {
    fn is_semaphore(&self) -> bool {
        matches!(
            self.design,
            Design::Slots | Design::LargeQuorum | Design::NaiveCount
        )
    }

    /// Grants a client needs to hold.
    pub fn quorum(&self) -> usize {
        match self.design {
            // The least q with (K+1)·q > K·N: K+1 holders would need more grants than the N
            // nodes can give while each gives at most K.
            Design::LargeQuorum => self.permits * self.nodes / (self.permits + 1) + 1,
            _ => self.nodes / 2 + 1,
        }
    }

    fn wants(&self) -> Vec<Want> {
        match self.design {
            Design::Slots => (0..self.permits as Want).collect(),
            Design::LargeQuorum | Design::NaiveCount => vec![0],
            Design::ReadWrite | Design::ReaderBesideWriter => vec![READ, WRITE],
        }
    }

    /// Whether node `n` grants `want` to client `c`: the per-node rule of each design.
    fn grants(&self, node: &[Option<Want>], c: usize, want: Want) -> bool {
        let others = node.iter().enumerate().filter(|(o, _)| *o != c);
        match self.design {
            Design::Slots => others.clone().all(|(_, h)| *h != Some(want)),
            Design::LargeQuorum | Design::NaiveCount => {
                node.iter().filter(|h| h.is_some()).count() < self.permits
            }
            Design::ReadWrite if want == READ => others.clone().all(|(_, h)| *h != Some(WRITE)),
            Design::ReaderBesideWriter if want == READ => true,
            Design::ReadWrite | Design::ReaderBesideWriter => others.clone().all(|(_, h)| h.is_none()),
        }
    }

    fn holders(state: &GrantState) -> impl Iterator<Item = Want> + '_ {
        state.clients.iter().filter_map(|c| match c {
            Client::Holding { want, .. } => Some(*want),
            _ => None,
        })
    }

    fn release(state: &mut GrantState, c: usize) {
        for node in &mut state.held {
            node[c] = None;
        }
    }
}

impl Model for Grants {
    type State = GrantState;
    type Action = GrantAction;

    fn init_states(&self) -> Vec<GrantState> {
        vec![GrantState {
            held: vec![vec![None; self.clients]; self.nodes],
            clients: vec![
                Client::Idle {
                    attempts_left: self.attempts
                };
                self.clients
            ],
        }]
    }

    fn actions(&self, state: &GrantState, actions: &mut Vec<GrantAction>) {
        let q = self.quorum();
        for (c, client) in state.clients.iter().enumerate() {
            match *client {
                Client::Idle { attempts_left } if attempts_left > 0 => {
                    actions.extend(self.wants().into_iter().map(|w| GrantAction::Start(c, w)));
                }
                Client::Idle { .. } => {}
                Client::Trying { asked, granted, .. } => {
                    let refused = (asked & !granted).count_ones() as usize;
                    if granted.count_ones() as usize >= q {
                        actions.push(GrantAction::Hold(c));
                    } else if refused > self.nodes - q {
                        actions.push(GrantAction::GiveUp(c));
                    } else {
                        actions.extend(
                            (0..self.nodes)
                                .filter(|n| asked & (1 << n) == 0)
                                .map(|n| GrantAction::Ask(c, n)),
                        );
                    }
                }
                Client::Holding { .. } => actions.push(GrantAction::Release(c)),
            }
        }
    }

    fn next_state(&self, last: &GrantState, action: GrantAction) -> Option<GrantState> {
        let mut s = last.clone();
        match action {
            GrantAction::Start(c, want) => {
                let Client::Idle { attempts_left } = s.clients[c] else {
                    return None;
                };
                s.clients[c] = Client::Trying {
                    want,
                    asked: 0,
                    granted: 0,
                    attempts_left: attempts_left - 1,
                };
            }
            GrantAction::Ask(c, n) => {
                let Client::Trying {
                    want,
                    asked,
                    granted,
                    attempts_left,
                } = s.clients[c]
                else {
                    return None;
                };
                let yes = self.grants(&s.held[n], c, want);
                if yes {
                    s.held[n][c] = Some(want);
                }
                s.clients[c] = Client::Trying {
                    want,
                    asked: asked | 1 << n,
                    granted: if yes { granted | 1 << n } else { granted },
                    attempts_left,
                };
            }
            GrantAction::Hold(c) => {
                let Client::Trying {
                    want,
                    asked,
                    granted,
                    attempts_left,
                } = s.clients[c]
                else {
                    return None;
                };
                let refused = asked & !granted != 0;
                s.clients[c] = Client::Holding {
                    want,
                    refused,
                    attempts_left,
                };
            }
            GrantAction::GiveUp(c) => {
                let Client::Trying { attempts_left, .. } = s.clients[c] else {
                    return None;
                };
                Self::release(&mut s, c);
                s.clients[c] = Client::Idle { attempts_left };
            }
            GrantAction::Release(c) => {
                let Client::Holding { attempts_left, .. } = s.clients[c] else {
                    return None;
                };
                Self::release(&mut s, c);
                s.clients[c] = Client::Idle { attempts_left };
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        if self.is_semaphore() {
            vec![
                Property::always(AT_MOST_K, |m: &Grants, s: &GrantState| {
                    Grants::holders(s).count() <= m.permits
                }),
                Property::sometimes(W_K_HOLDERS, |m: &Grants, s: &GrantState| {
                    Grants::holders(s).count() >= m.permits
                }),
                Property::sometimes(W_CONTESTED, contested),
            ]
        } else {
            vec![
                Property::always(WRITER_ALONE, |_, s: &GrantState| {
                    let holders: Vec<Want> = Grants::holders(s).collect();
                    !holders.contains(&WRITE) || holders.len() == 1
                }),
                Property::sometimes(W_TWO_READERS, |_, s: &GrantState| {
                    Grants::holders(s).filter(|w| *w == READ).count() >= 2
                }),
                Property::sometimes(W_WRITER, |_, s: &GrantState| {
                    Grants::holders(s).any(|w| w == WRITE)
                }),
                Property::sometimes(W_CONTESTED, contested),
            ]
        }
    }
}

/// A client holds although one of the nodes it asked refused it: the rule was exercised, not
/// only the free path.
fn contested(_: &Grants, s: &GrantState) -> bool {
    s.clients
        .iter()
        .any(|c| matches!(c, Client::Holding { refused: true, .. }))
}
