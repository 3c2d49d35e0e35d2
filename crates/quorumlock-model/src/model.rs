//! The protocol as a [`stateright::Model`]: clients, nodes, network and time in one state.
//!
//! Everything is explicit and small: time is a tick counter, tokens are small integers (one per
//! attempt, never reused), a node is a key-value store with expiry, tombstones and fence
//! counters. docs/model.md explains each abstraction and why it is sound.

use std::fmt;

use stateright::{Model, Property};

/// Most configured nodes the state holds (arrays are this long).
pub const MAX_NODES: usize = 3;
/// Resources: 0 and 1 (a multi-resource lock takes both).
pub const RESOURCES: usize = 2;
/// Server clock units per tick. Fence counters advance by 1 per grant while server time
/// advances by this much per tick, as microseconds outrun grants on a real server; without the
/// scale a burst of grants in one tick would look like a clock far ahead of real time.
pub const CLOCK_SCALE: u16 = 8;

/// A deliberate fault in the protocol (negative control) or in its assumptions. Each must be
/// caught by the checker: `tests/controls.rs` asserts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// Quorum = N/2 instead of N/2 + 1.
    QuorumHalf,
    /// Validity = ttl - drift, measured from the decision: elapsed time ignored.
    IgnoreElapsed,
    /// On failure, release only on nodes whose grant was seen (not on timed-out or pending ones).
    ReleaseOnlyGranted,
    /// Fencing without the write-back of the maximum fence to a majority.
    NoWriteBack,
    /// Configured node 2 is the same server as node 1, and is counted as a separate vote.
    DuplicateServer,
    /// Releases write no tombstone, acquires check none: late SET bytes re-create the key.
    NoTombstone,
    /// A node without persistence may restart at once (no delayed-restart rule).
    ImmediateRestart,
    /// Node clocks may step forward: a key may expire at any moment.
    ClockStep,
    /// Release obligations end at `t0 + ttl + drift`, ignoring extensions and requests still in
    /// the network (the model's finding, see docs/model.md).
    ObligationBoundFromT0,
    /// Fence counters expire after a horizon no longer than the clock offset between servers
    /// (the largest offset, in ticks): a counter raised by a write-back from a server whose
    /// clock is ahead expires before this server's clock has passed its value.
    FenceHorizonBelowOffset,
}

impl Bug {
    pub const ALL: [Bug; 10] = [
        Bug::QuorumHalf,
        Bug::IgnoreElapsed,
        Bug::ReleaseOnlyGranted,
        Bug::NoWriteBack,
        Bug::DuplicateServer,
        Bug::NoTombstone,
        Bug::ImmediateRestart,
        Bug::ClockStep,
        Bug::ObligationBoundFromT0,
        Bug::FenceHorizonBelowOffset,
    ];
}

/// What the model explores. See [`Config::base`] and the presets in `crate::configs`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Configured nodes (votes). At most [`MAX_NODES`].
    pub nodes: usize,
    /// Clients (2 or 3).
    pub clients: usize,
    /// Attempts per client (each a fresh token).
    pub attempts: u8,
    /// Lock TTL in ticks.
    pub ttl: u8,
    /// Drift allowance in ticks: a node's expiry of a key set at `s` happens in real time within
    /// `[s + ttl - drift, s + ttl + drift)`.
    pub drift: u8,
    /// Time stops at this tick: the bound that makes the state space finite.
    pub horizon: u8,
    /// A request not delivered within this many ticks of its send is lost (the connection gave
    /// up). Tombstones with the lock's TTL cover delays up to `ttl - drift - 1`.
    pub max_delay: u8,
    /// Resource set of each client, as a bit mask over resources.
    pub locks: Vec<u8>,
    /// Fencing tokens (opt-in in the library).
    pub fencing: bool,
    /// A holder may extend its lock once.
    pub extend: bool,
    /// Requests may be lost in the network.
    pub lossy: bool,
    /// Clients may replace a connection that still carries a request (late bytes).
    pub resets: bool,
    /// A client may time out on a node whose answer is still on its way (a late grant). Without
    /// it, a timeout happens only when no answer can come any more.
    pub early_timeouts: bool,
    /// Nodes may crash and restart.
    pub crashes: bool,
    /// Which servers may crash (bit mask), when `crashes` is on.
    pub crashable: u8,
    /// Nodes run AOF with fsync always: a crash keeps the data.
    pub persistent: bool,
    /// Server clock offset per node, in ticks (a node ahead of the others).
    pub offsets: Vec<u8>,
    /// Fence counter horizon `H` in ticks (issue 20): every write of a counter (a grant, a
    /// write-back that raises it) gives it an expiry `write + H`, which happens within the same
    /// drift window as a key's. Must exceed the largest offset plus the drift.
    pub fence_horizon: u8,
    /// Client `c > 0` starts only after client `c - 1` has returned (holds, or is finished):
    /// "A returned before B began", the premise of G6. Used to reach the controls' traces
    /// quickly; the correct model is also checked with full concurrency.
    pub sequential: bool,
    /// Liveness run: one contender, no loss, a node from `down_at_start` down for good, and the
    /// network and client faster than a tick (time only passes when nothing else can happen).
    pub liveness: bool,
    /// The fault being controlled for, if any.
    pub bug: Option<Bug>,
}

impl Config {
    /// The smallest configuration with every safety-relevant fault of the core protocol: two
    /// clients, three nodes, loss, resets and late bytes, one attempt each.
    pub fn base() -> Self {
        Self {
            nodes: 3,
            clients: 2,
            attempts: 1,
            ttl: 3,
            drift: 1,
            horizon: 6,
            max_delay: 1,
            locks: vec![0b01, 0b01, 0b01],
            fencing: false,
            extend: false,
            lossy: true,
            resets: true,
            early_timeouts: true,
            crashes: false,
            crashable: 0b111,
            persistent: false,
            offsets: vec![0, 0, 0],
            fence_horizon: 4,
            sequential: false,
            liveness: false,
            bug: None,
        }
    }

    pub fn with_bug(mut self, bug: Bug) -> Self {
        self.bug = Some(bug);
        self
    }

    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// Votes needed.
    pub fn quorum(&self) -> usize {
        if self.has(Bug::QuorumHalf) {
            (self.nodes / 2).max(1)
        } else {
            self.nodes / 2 + 1
        }
    }

    /// The physical server behind configured node `n`.
    fn server(&self, n: usize) -> usize {
        if self.has(Bug::DuplicateServer) && n == 2 {
            1
        } else {
            n
        }
    }

    /// The fence counters' horizon in effect: with [`Bug::FenceHorizonBelowOffset`] the largest
    /// clock offset between servers.
    pub fn counter_horizon(&self) -> u8 {
        if self.has(Bug::FenceHorizonBelowOffset) {
            let max = self.offsets.iter().max().copied().unwrap_or(0);
            let min = self.offsets.iter().min().copied().unwrap_or(0);
            max - min
        } else {
            self.fence_horizon
        }
    }

    fn servers(&self) -> usize {
        if self.has(Bug::DuplicateServer) {
            2
        } else {
            self.nodes
        }
    }
}

/// A lock key on a node: whose token, and its nominal expiry (node time, in ticks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub token: u8,
    pub exp: u8,
}

/// One server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub up: bool,
    pub down_since: u8,
    pub keys: [Option<Key>; RESOURCES],
    pub fences: [u16; RESOURCES],
    /// Each counter's nominal expiry (node time, in ticks); meaningless while the counter is 0.
    pub fence_exp: [u8; RESOURCES],
    /// Ghost: counters (bit per resource) that expired and have not been written since.
    pub lapsed: u8,
    /// Tombstones: tokens that were released here, with their nominal expiry.
    pub tombs: Vec<Key>,
}

/// Request and reply bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// Acquire script (`SET NX PX` / `acquire_many` / `acquire_fenced`).
    Acquire {
        token: u8,
    },
    /// Compare-and-delete (writes a tombstone when nothing of ours is there).
    Release {
        token: u8,
    },
    /// Compare-and-PEXPIRE.
    Extend {
        token: u8,
    },
    /// Fence write-back (raise only).
    Raise {
        token: u8,
        fence: u16,
    },
    AcquireReply {
        token: u8,
        granted: bool,
        fence: u16,
        /// Ghost: the grant recomputed a counter that had expired.
        recomputed: bool,
    },
    /// A definite release answer (deleted or not ours).
    ReleaseReply {
        token: u8,
    },
    ExtendReply {
        token: u8,
        ok: bool,
    },
    RaiseReply {
        token: u8,
    },
}

impl Body {
    fn token(&self) -> u8 {
        match *self {
            Body::Acquire { token }
            | Body::Release { token }
            | Body::Extend { token }
            | Body::Raise { token, .. }
            | Body::AcquireReply { token, .. }
            | Body::ReleaseReply { token }
            | Body::ExtendReply { token, .. }
            | Body::RaiseReply { token } => token,
        }
    }

    /// Whether this goes from a client to a node.
    pub fn is_request_pub(&self) -> bool {
        self.is_request()
    }

    fn is_request(&self) -> bool {
        matches!(
            self,
            Body::Acquire { .. } | Body::Release { .. } | Body::Extend { .. } | Body::Raise { .. }
        )
    }
}

/// A message between client `client` and configured node `node` on connection `conn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Msg {
    pub client: u8,
    pub node: u8,
    pub conn: u8,
    pub sent: u8,
    pub body: Body,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vote {
    None,
    Pending,
    Yes,
    Refused,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Idle,
    Acquiring,
    WritingBack,
    Holding,
    Extending,
    Done,
}

/// How a release obligation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Obligation {
    Open,
    /// The node answered deleted / not ours.
    Definite,
    /// The key has certainly expired (the bound passed) without an answer.
    Expired,
}

/// A release obligation for `token` on configured node `node`, ending at `bound` at the latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Obl {
    pub token: u8,
    pub node: u8,
    pub bound: u8,
    pub state: Obligation,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub attempts: u8,
    pub phase: Phase,
    pub token: u8,
    pub t0: u8,
    /// Votes of the fan-out in progress.
    pub votes: [Vote; MAX_NODES],
    /// Nodes that answered the acquire with "held elsewhere" (skipped by the clean-up).
    pub refused: u8,
    /// The fence: max over grants, then the lock's.
    pub fence: u16,
    pub until: u8,
    pub released: bool,
    pub ext_start: u8,
    pub extended: bool,
    /// Per node, the last time a request that can set or lengthen our key was sent.
    pub last_write: [u8; MAX_NODES],
    /// G6: the largest fence returned to anyone before this attempt began.
    pub floor: u16,
    pub conns: [u8; MAX_NODES],
    pub obls: Vec<Obl>,
    /// Tokens this client is finished with (failed or released).
    pub finished: Vec<u8>,
    pub held_once: bool,
    /// Ghost: a grant of this attempt recomputed an expired counter.
    pub recomputed: bool,
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub now: u8,
    pub nodes: Vec<Node>,
    pub clients: Vec<Client>,
    /// In flight, in send order (FIFO is per connection).
    pub net: Vec<Msg>,
    /// Ghost: the largest fence returned so far (G6).
    pub returned_max: u16,
    /// Ghost: a fence returned that was not above an earlier returned one (G6).
    pub fence_order_broken: bool,
    /// Ghost: a release or extend changed a key holding another token (G2).
    pub foreign_touched: bool,
    /// Ghost, transient: what the last step did (bits `EV_*`), for the witness properties. It
    /// is cleared by every step, so it splits a state from its twin for one step only.
    pub events: u8,
}

/// Witness of G1: two clients with intersecting lock sets have each held the lock.
pub const W_TWO_HOLDERS: &str = "G1 witness: two holders in turn";
/// Witness of G2: a release or extension reached a node holding another token's key.
pub const W_FOREIGN_KEY: &str = "G2 witness: release or extend meets another token";
/// Witness of G5: a tombstone refused a SET that arrived after its release.
pub const W_TOMBSTONE: &str = "G5 witness: a tombstone refuses a late SET";
/// Witness of G6: a fence returned to an attempt that began after a fence was returned (so
/// after a write-back).
pub const W_FENCE_AFTER_FENCE: &str = "G6 witness: a grant after a written-back fence";
/// Witness of G6 with counter expiry (issue 20): as [`W_FENCE_AFTER_FENCE`], with a grant from
/// a counter that had expired and was recomputed from the server clock.
pub const W_RECOMPUTED: &str = "G6 witness: a fence from an expired, recomputed counter";

/// The last step: a tombstone refused an acquire (late SET bytes made harmless).
pub const EV_TOMB_REFUSED: u8 = 1;
/// The last step: a release or extension reached a node holding another token's key.
pub const EV_FOREIGN_MET: u8 = 2;
/// The last step: a fence was returned to an attempt that began after a fence was returned.
pub const EV_FENCE_AFTER_FENCE: u8 = 4;
/// The last step: as [`EV_FENCE_AFTER_FENCE`], and a grant behind it recomputed an expired
/// counter.
pub const EV_FENCE_FROM_RECOMPUTED: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// One tick of real time passes (a client that does not act meanwhile is paused).
    Tick,
    Start(u8),
    /// Deliver the message at this index of `net`.
    Deliver(u8),
    /// Lose the message at this index.
    Lose(u8),
    Timeout(u8, u8),
    /// The client replaces its connection to a node; requests on the old one may still arrive.
    Reset(u8, u8),
    Release(u8),
    Extend(u8),
    /// Re-send the release of obligation `i` (no release of it is in flight).
    Resend(u8, u8),
    /// Obligation `i` ends: its bound has passed.
    GiveUp(u8, u8),
    Crash(u8),
    Restart(u8),
    /// Server expires its key of a resource (drift window; any time with a clock step).
    Expire(u8, u8),
    ExpireTomb(u8, u8),
    /// Server expires its fence counter of a resource (same drift window as keys).
    ExpireFence(u8, u8),
}

/// The model: a configuration.
#[derive(Clone, Debug)]
pub struct Redlock {
    pub cfg: Config,
}

impl Redlock {
    pub fn new(cfg: Config) -> Self {
        assert!(cfg.nodes <= MAX_NODES && cfg.clients <= cfg.locks.len());
        Self { cfg }
    }

    fn token_of(&self, c: usize, attempt: u8) -> u8 {
        // Never 0; distinct per (client, attempt).
        (c as u8) * self.cfg.attempts + attempt + 1
    }

    fn mask(&self, c: usize) -> u8 {
        self.cfg.locks[c]
    }

    fn conflicts(&self, a: usize, b: usize) -> bool {
        self.mask(a) & self.mask(b) != 0
    }

    /// Whether client `c` believes it holds its lock now (G1's window).
    pub fn holds(&self, s: &State, c: usize) -> bool {
        let cl = &s.clients[c];
        matches!(cl.phase, Phase::Holding | Phase::Extending) && !cl.released && s.now < cl.until
    }

    fn server_clock(&self, s: &State, server: usize) -> u16 {
        (s.now as u16 + self.cfg.offsets[server] as u16) * CLOCK_SCALE
    }

    /// Release obligations' end: the key has certainly expired by then.
    fn bound(&self, cl: &Client, n: usize) -> u8 {
        let c = &self.cfg;
        if c.has(Bug::ObligationBoundFromT0) {
            cl.t0 + c.ttl + c.drift
        } else {
            // The last request that can set or lengthen the key may still be applied up to
            // max_delay after its send, and lives ttl (+ drift) from there.
            cl.last_write[n] + c.max_delay + c.ttl + c.drift
        }
    }

    fn send(&self, s: &mut State, c: usize, n: usize, body: Body) {
        if self.cfg.liveness && !s.nodes[self.cfg.server(n)].up {
            // The liveness run's down nodes are down for good: nothing sent to them arrives, and
            // dropping it here keeps re-sent releases from looping forever at one instant.
            return;
        }
        let conn = s.clients[c].conns[n];
        push(
            s,
            Msg {
                client: c as u8,
                node: n as u8,
                conn,
                sent: s.now,
                body,
            },
        );
    }

    fn decided(&self, votes: &[Vote]) -> Option<bool> {
        let q = self.cfg.quorum();
        let yes = votes.iter().filter(|v| **v == Vote::Yes).count();
        let pending = votes.iter().filter(|v| **v == Vote::Pending).count();
        if yes >= q {
            Some(true)
        } else if yes + pending < q {
            Some(false)
        } else {
            None
        }
    }

    fn open_obligation(&self, s: &mut State, c: usize, n: usize) {
        let bound = self.bound(&s.clients[c], n);
        let token = s.clients[c].token;
        s.clients[c].obls.push(Obl {
            token,
            node: n as u8,
            bound,
            state: Obligation::Open,
        });
        self.send(s, c, n, Body::Release { token });
    }

    /// A failed attempt: undo wherever the token may be, then idle or done.
    fn fail(&self, s: &mut State, c: usize, acquire_votes: Option<[Vote; MAX_NODES]>) {
        for n in 0..self.cfg.nodes {
            let may_hold = match acquire_votes {
                Some(v) => match v[n] {
                    Vote::Yes => true,
                    Vote::Refused | Vote::None => false,
                    Vote::Pending | Vote::Failed => !self.cfg.has(Bug::ReleaseOnlyGranted),
                },
                // Failed write-back: every node but the refusers may hold it.
                None => s.clients[c].refused & (1 << n) == 0,
            };
            if may_hold {
                self.open_obligation(s, c, n);
            }
        }
        self.finish_attempt(s, c);
    }

    fn finish_attempt(&self, s: &mut State, c: usize) {
        let cl = &mut s.clients[c];
        cl.finished.push(cl.token);
        cl.votes = [Vote::None; MAX_NODES];
        cl.phase = if cl.attempts < self.cfg.attempts {
            Phase::Idle
        } else {
            Phase::Done
        };
    }

    fn grant(&self, s: &mut State, c: usize) {
        let cfg = &self.cfg;
        let cl = &mut s.clients[c];
        cl.phase = Phase::Holding;
        cl.held_once = true;
        cl.votes = [Vote::None; MAX_NODES];
        cl.until = if cfg.has(Bug::IgnoreElapsed) {
            s.now + cfg.ttl - cfg.drift
        } else {
            cl.t0 + cfg.ttl - cfg.drift
        };
        if cfg.fencing {
            if cl.fence <= cl.floor {
                s.fence_order_broken = true;
            }
            if cl.floor > 0 {
                s.events |= EV_FENCE_AFTER_FENCE;
                if cl.recomputed {
                    s.events |= EV_FENCE_FROM_RECOMPUTED;
                }
            }
            s.returned_max = s.returned_max.max(cl.fence);
        }
    }

    /// Validity left at `now` for a fan-out started at `start`.
    fn valid(&self, s: &State, start: u8) -> bool {
        let c = &self.cfg;
        self.cfg.has(Bug::IgnoreElapsed) || (s.now - start) + c.drift < c.ttl
    }

    /// Re-evaluates client `c`'s fan-out after a vote.
    fn step_decision(&self, s: &mut State, c: usize) {
        let votes = s.clients[c].votes;
        let Some(reached) = self.decided(&votes[..self.cfg.nodes]) else {
            return;
        };
        match s.clients[c].phase {
            Phase::Acquiring => {
                if reached && self.valid(s, s.clients[c].t0) {
                    if self.cfg.fencing && !self.cfg.has(Bug::NoWriteBack) {
                        let cl = &mut s.clients[c];
                        cl.phase = Phase::WritingBack;
                        cl.refused = (0..self.cfg.nodes)
                            .filter(|&n| votes[n] == Vote::Refused)
                            .fold(0, |m, n| m | 1 << n);
                        cl.votes = [Vote::None; MAX_NODES];
                        let (token, fence) = (cl.token, cl.fence);
                        for n in 0..self.cfg.nodes {
                            s.clients[c].votes[n] = Vote::Pending;
                            self.send(s, c, n, Body::Raise { token, fence });
                        }
                    } else {
                        self.grant(s, c);
                    }
                } else {
                    self.fail(s, c, Some(votes));
                }
            }
            Phase::WritingBack => {
                if reached && self.valid(s, s.clients[c].t0) {
                    self.grant(s, c);
                } else {
                    self.fail(s, c, None);
                }
            }
            Phase::Extending => {
                let cl = &mut s.clients[c];
                if reached && self.valid_ext(s.now, cl.ext_start) {
                    cl.until = cl.ext_start + self.cfg.ttl - self.cfg.drift;
                }
                // A failed extension leaves the lock valid until its old end (then lost).
                cl.phase = Phase::Holding;
                cl.votes = [Vote::None; MAX_NODES];
            }
            _ => {}
        }
    }

    fn valid_ext(&self, now: u8, start: u8) -> bool {
        (now - start) + self.cfg.drift < self.cfg.ttl
    }

    /// The node-side scripts. Returns the reply body.
    fn apply(&self, s: &mut State, m: &Msg) -> Body {
        let cfg = &self.cfg;
        let server = cfg.server(m.node as usize);
        let mask = self.mask(m.client as usize);
        let now = s.now;
        let clock = self.server_clock(s, server);
        let node = &mut s.nodes[server];
        let before = node.keys;
        let reply = match m.body {
            Body::Acquire { token } => {
                let tomb = !cfg.has(Bug::NoTombstone) && node.tombs.iter().any(|t| t.token == token);
                let taken = (0..RESOURCES).any(|r| mask & (1 << r) != 0 && node.keys[r].is_some());
                if tomb && !taken {
                    s.events |= EV_TOMB_REFUSED;
                }
                if tomb || taken {
                    Body::AcquireReply {
                        token,
                        granted: false,
                        fence: 0,
                        recomputed: false,
                    }
                } else {
                    let mut fence = clock;
                    let mut recomputed = false;
                    for r in (0..RESOURCES).filter(|r| mask & (1 << r) != 0) {
                        node.keys[r] = Some(Key {
                            token,
                            exp: now + cfg.ttl,
                        });
                        fence = fence.max(node.fences[r] + 1);
                    }
                    if cfg.fencing {
                        // The grant writes the counter and refreshes its TTL (acquire_fenced.lua).
                        for r in (0..RESOURCES).filter(|r| mask & (1 << r) != 0) {
                            node.fences[r] = fence;
                            node.fence_exp[r] = now + cfg.counter_horizon();
                            recomputed |= node.lapsed & (1 << r) != 0;
                            node.lapsed &= !(1 << r);
                        }
                    }
                    Body::AcquireReply {
                        token,
                        granted: true,
                        fence: if cfg.fencing { fence } else { 0 },
                        recomputed,
                    }
                }
            }
            Body::Release { token } => {
                let mut deleted = false;
                for r in (0..RESOURCES).filter(|r| mask & (1 << r) != 0) {
                    if node.keys[r].is_some_and(|k| k.token == token) {
                        node.keys[r] = None;
                        deleted = true;
                    }
                }
                if !deleted && !cfg.has(Bug::NoTombstone) && !node.tombs.iter().any(|t| t.token == token) {
                    node.tombs.push(Key {
                        token,
                        exp: now + cfg.ttl,
                    });
                    node.tombs.sort_by_key(|t| (t.token, t.exp));
                }
                Body::ReleaseReply { token }
            }
            Body::Extend { token } => {
                let ours = (0..RESOURCES)
                    .filter(|r| mask & (1 << r) != 0)
                    .all(|r| node.keys[r].is_some_and(|k| k.token == token));
                if ours {
                    for r in (0..RESOURCES).filter(|r| mask & (1 << r) != 0) {
                        node.keys[r] = Some(Key {
                            token,
                            exp: now + cfg.ttl,
                        });
                    }
                }
                Body::ExtendReply { token, ok: ours }
            }
            Body::Raise { token, fence } => {
                // fence_raise.lua: a raise writes the counter and refreshes its TTL; a write-back
                // that does not raise leaves both alone.
                for r in (0..RESOURCES).filter(|r| mask & (1 << r) != 0) {
                    if fence > node.fences[r] {
                        node.fences[r] = fence;
                        node.fence_exp[r] = now + cfg.counter_horizon();
                        node.lapsed &= !(1 << r);
                    }
                }
                Body::RaiseReply { token }
            }
            other => unreachable!("not a request: {other:?}"),
        };
        // G2 ghost: release and extend may only change keys that hold their own token.
        if matches!(m.body, Body::Release { .. } | Body::Extend { .. }) {
            let token = m.body.token();
            if before
                .iter()
                .enumerate()
                .any(|(r, k)| mask & (1 << r) != 0 && k.is_some_and(|k| k.token != token))
            {
                s.events |= EV_FOREIGN_MET;
            }
            let foreign_changed = before
                .iter()
                .zip(&node.keys)
                .any(|(was, is)| was != is && was.is_some_and(|k| k.token != token));
            if foreign_changed {
                s.foreign_touched = true;
            }
        }
        reply
    }

    /// The client side of a reply on its current connection.
    fn receive(&self, s: &mut State, m: &Msg) {
        let c = m.client as usize;
        let n = m.node as usize;
        let cl = &mut s.clients[c];
        let current = m.body.token() == cl.token && cl.votes[n] == Vote::Pending;
        match m.body {
            Body::ReleaseReply { token } => {
                if let Some(o) = cl
                    .obls
                    .iter_mut()
                    .find(|o| o.token == token && o.node as usize == n && o.state == Obligation::Open)
                {
                    o.state = Obligation::Definite;
                }
            }
            Body::AcquireReply {
                granted,
                fence,
                recomputed,
                ..
            } if current && cl.phase == Phase::Acquiring => {
                cl.votes[n] = if granted { Vote::Yes } else { Vote::Refused };
                if granted {
                    cl.fence = cl.fence.max(fence);
                    cl.recomputed |= recomputed;
                }
                self.step_decision(s, c);
            }
            Body::RaiseReply { .. } if current && cl.phase == Phase::WritingBack => {
                cl.votes[n] = Vote::Yes;
                self.step_decision(s, c);
            }
            Body::ExtendReply { ok, .. } if current && cl.phase == Phase::Extending => {
                cl.votes[n] = if ok { Vote::Yes } else { Vote::Refused };
                self.step_decision(s, c);
            }
            // Late answers of a decided fan-out: the obligations already cover them.
            _ => {}
        }
    }

    /// Whether the message at `i` is the oldest in flight on its connection and direction.
    fn deliverable(&self, s: &State, i: usize) -> bool {
        let m = &s.net[i];
        if m.body.is_request() {
            if !s.nodes[self.cfg.server(m.node as usize)].up {
                return false;
            }
        } else if m.conn != s.clients[m.client as usize].conns[m.node as usize] {
            // The client closed that connection: its replies are never read.
            return false;
        }
        !s.net[..i].iter().any(|o| {
            o.client == m.client
                && o.node == m.node
                && o.conn == m.conn
                && o.body.is_request() == m.body.is_request()
        })
    }

    fn in_flight_for(&self, s: &State, c: usize, n: usize, token: u8) -> bool {
        s.net
            .iter()
            .any(|m| m.client as usize == c && m.node as usize == n && m.body.token() == token)
    }

    fn request_on_conn(&self, s: &State, c: usize, n: usize) -> bool {
        let conn = s.clients[c].conns[n];
        s.net
            .iter()
            .any(|m| m.client as usize == c && m.node as usize == n && m.conn == conn && m.body.is_request())
    }

    fn release_in_flight(&self, s: &State, c: usize, n: usize, token: u8) -> bool {
        s.net.iter().any(|m| {
            m.client as usize == c
                && m.node as usize == n
                && matches!(m.body, Body::Release { token: t } | Body::ReleaseReply { token: t } if t == token)
        })
    }

    fn can_restart(&self, s: &State, server: usize) -> bool {
        let c = &self.cfg;
        c.persistent || c.has(Bug::ImmediateRestart) || s.now >= s.nodes[server].down_since + c.ttl + c.drift
    }

    fn expire_allowed(&self, s: &State, exp: u8) -> bool {
        self.cfg.has(Bug::ClockStep) || s.now + self.cfg.drift >= exp
    }

    /// Actions other than `Tick` (liveness mode lets time pass only when there are none).
    fn moves(&self, s: &State, out: &mut Vec<Action>) {
        let cfg = &self.cfg;
        let live = cfg.liveness;
        for (c, cl) in s.clients.iter().enumerate().take(cfg.clients) {
            let c8 = c as u8;
            match cl.phase {
                Phase::Idle
                    if cl.attempts < cfg.attempts
                        && (!cfg.sequential
                            || c == 0
                            || matches!(s.clients[c - 1].phase, Phase::Holding | Phase::Done)
                            || s.clients[c - 1].attempts > 0 && s.clients[c - 1].phase == Phase::Idle) =>
                {
                    out.push(Action::Start(c8))
                }
                Phase::Holding if !cl.released => {
                    out.push(Action::Release(c8));
                    if cfg.extend && !cl.extended && s.now < cl.until {
                        out.push(Action::Extend(c8));
                    }
                }
                _ => {}
            }
            for n in 0..cfg.nodes {
                if cl.votes[n] == Vote::Pending {
                    // A timeout may fire at any moment (the node timeout is a client-side bound,
                    // shorter or longer than any delay). In the liveness run only when no answer
                    // can come any more.
                    if (cfg.early_timeouts && !live) || !self.in_flight_for(s, c, n, cl.token) {
                        out.push(Action::Timeout(c8, n as u8));
                    }
                }
                // A connection is replaced while it still carries a request (the case that makes
                // late bytes), after the client gave up on that node (the library replaces a
                // connection after errors or timeouts); at most twice per node, which keeps the
                // counter bounded.
                if cfg.resets
                    && !live
                    && cl.conns[n] < 2
                    && cl.votes[n] != Vote::Pending
                    && self.request_on_conn(s, c, n)
                {
                    out.push(Action::Reset(c8, n as u8));
                }
            }
            for (i, o) in cl.obls.iter().enumerate() {
                if o.state == Obligation::Open {
                    let reachable = !live || s.nodes[cfg.server(o.node as usize)].up;
                    if reachable && !self.release_in_flight(s, c, o.node as usize, o.token) {
                        out.push(Action::Resend(c8, i as u8));
                    }
                    if s.now >= o.bound {
                        out.push(Action::GiveUp(c8, i as u8));
                    }
                }
            }
        }
        for i in 0..s.net.len() {
            if self.deliverable(s, i) {
                out.push(Action::Deliver(i as u8));
            }
            let m = &s.net[i];
            let to_down = m.body.is_request() && !s.nodes[cfg.server(m.node as usize)].up;
            let stale_reply =
                !m.body.is_request() && m.conn != s.clients[m.client as usize].conns[m.node as usize];
            // Replies are not lost on their own: a lost reply is the client's timeout, which is
            // an action of its own; a reply on a replaced connection is dropped.
            if (cfg.lossy && !live && m.body.is_request()) || to_down || stale_reply {
                out.push(Action::Lose(i as u8));
            }
        }
        for (k, node) in s.nodes.iter().enumerate() {
            let k8 = k as u8;
            if cfg.crashes && !live && cfg.crashable & (1 << k) != 0 {
                if node.up {
                    out.push(Action::Crash(k8));
                } else if self.can_restart(s, k) {
                    out.push(Action::Restart(k8));
                }
            }
            for (r, key) in node.keys.iter().enumerate() {
                if key.is_some_and(|key| self.expire_allowed(s, key.exp)) {
                    out.push(Action::Expire(k8, r as u8));
                }
            }
            for (i, t) in node.tombs.iter().enumerate() {
                if self.expire_allowed(s, t.exp) {
                    out.push(Action::ExpireTomb(k8, i as u8));
                }
            }
            for r in 0..RESOURCES {
                if node.fences[r] > 0 && self.expire_allowed(s, node.fence_exp[r]) {
                    out.push(Action::ExpireFence(k8, r as u8));
                }
            }
        }
    }

    fn tick(&self, s: &mut State) {
        let cfg = &self.cfg;
        s.now += 1;
        let now = s.now;
        // Drift window closed: the key is gone on every clock within the bound.
        for node in &mut s.nodes {
            for key in &mut node.keys {
                if key.is_some_and(|k| now >= k.exp + cfg.drift) {
                    *key = None;
                }
            }
            node.tombs.retain(|t| now < t.exp + cfg.drift);
            for r in 0..RESOURCES {
                if node.fences[r] > 0 && now >= node.fence_exp[r] + cfg.drift {
                    expire_counter(node, r);
                }
            }
        }
        s.net
            .retain(|m| !m.body.is_request() || now <= m.sent + cfg.max_delay);
    }
}

impl Model for Redlock {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let cfg = &self.cfg;
        let node = Node {
            up: true,
            down_since: 0,
            keys: [None; RESOURCES],
            fences: [0; RESOURCES],
            fence_exp: [0; RESOURCES],
            lapsed: 0,
            tombs: Vec::new(),
        };
        let client = Client {
            attempts: 0,
            phase: Phase::Idle,
            token: 0,
            t0: 0,
            votes: [Vote::None; MAX_NODES],
            refused: 0,
            fence: 0,
            until: 0,
            released: false,
            ext_start: 0,
            extended: false,
            last_write: [0; MAX_NODES],
            floor: 0,
            conns: [0; MAX_NODES],
            obls: Vec::new(),
            finished: Vec::new(),
            held_once: false,
            recomputed: false,
        };
        let base = State {
            now: 0,
            nodes: vec![node; cfg.servers()],
            clients: vec![client; cfg.clients],
            net: Vec::new(),
            returned_max: 0,
            fence_order_broken: false,
            foreign_touched: false,
            events: 0,
        };
        if !cfg.liveness {
            return vec![base];
        }
        // Liveness: no node down, or any one configured node down for good (a minority).
        let mut states = vec![base.clone()];
        for n in 0..cfg.nodes {
            let mut s = base.clone();
            s.nodes[cfg.server(n)].up = false;
            states.push(s);
        }
        states
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        self.moves(s, out);
        if s.now < self.cfg.horizon && (!self.cfg.liveness || out.is_empty()) {
            out.push(Action::Tick);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let cfg = &self.cfg;
        let mut s = last.clone();
        s.events = 0;
        match action {
            Action::Tick => self.tick(&mut s),
            Action::Start(c) => {
                let c = c as usize;
                let token = self.token_of(c, s.clients[c].attempts);
                let (now, floor) = (s.now, s.returned_max);
                let cl = &mut s.clients[c];
                cl.attempts += 1;
                cl.phase = Phase::Acquiring;
                cl.token = token;
                cl.t0 = now;
                cl.fence = 0;
                cl.floor = floor;
                cl.released = false;
                cl.extended = false;
                cl.refused = 0;
                cl.recomputed = false;
                cl.last_write = [now; MAX_NODES];
                for n in 0..cfg.nodes {
                    s.clients[c].votes[n] = Vote::Pending;
                    self.send(&mut s, c, n, Body::Acquire { token });
                }
            }
            Action::Deliver(i) => {
                let m = s.net.remove(i as usize);
                if m.body.is_request() {
                    let reply = self.apply(&mut s, &m);
                    // A reply's send time plays no part (only requests expire in the network).
                    push(
                        &mut s,
                        Msg {
                            body: reply,
                            sent: 0,
                            ..m
                        },
                    );
                } else {
                    self.receive(&mut s, &m);
                }
            }
            Action::Lose(i) => {
                s.net.remove(i as usize);
            }
            Action::Timeout(c, n) => {
                s.clients[c as usize].votes[n as usize] = Vote::Failed;
                self.step_decision(&mut s, c as usize);
            }
            Action::Reset(c, n) => {
                s.clients[c as usize].conns[n as usize] += 1;
            }
            Action::Release(c) => {
                let c = c as usize;
                s.clients[c].released = true;
                for n in 0..cfg.nodes {
                    self.open_obligation(&mut s, c, n);
                }
                self.finish_attempt(&mut s, c);
            }
            Action::Extend(c) => {
                let c = c as usize;
                let now = s.now;
                let cl = &mut s.clients[c];
                cl.phase = Phase::Extending;
                cl.extended = true;
                cl.ext_start = now;
                let token = cl.token;
                for n in 0..cfg.nodes {
                    s.clients[c].votes[n] = Vote::Pending;
                    s.clients[c].last_write[n] = now;
                    self.send(&mut s, c, n, Body::Extend { token });
                }
            }
            Action::Resend(c, i) => {
                let o = s.clients[c as usize].obls[i as usize];
                self.send(
                    &mut s,
                    c as usize,
                    o.node as usize,
                    Body::Release { token: o.token },
                );
            }
            Action::GiveUp(c, i) => {
                s.clients[c as usize].obls[i as usize].state = Obligation::Expired;
            }
            Action::Crash(k) => {
                let k = k as usize;
                let now = s.now;
                let node = &mut s.nodes[k];
                node.up = false;
                node.down_since = now;
                if !cfg.persistent {
                    node.keys = [None; RESOURCES];
                    node.fences = [0; RESOURCES];
                    node.fence_exp = [0; RESOURCES];
                    node.lapsed = 0;
                    node.tombs.clear();
                }
                // The server's sockets are gone: requests not yet read are lost.
                s.net
                    .retain(|m| !(m.body.is_request() && cfg.server(m.node as usize) == k));
            }
            Action::Restart(k) => s.nodes[k as usize].up = true,
            Action::Expire(k, r) => s.nodes[k as usize].keys[r as usize] = None,
            Action::ExpireTomb(k, i) => {
                s.nodes[k as usize].tombs.remove(i as usize);
            }
            Action::ExpireFence(k, r) => expire_counter(&mut s.nodes[k as usize], r as usize),
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut props = vec![
            Property::always("G1 mutual exclusion", |m: &Redlock, s: &State| {
                (0..m.cfg.clients).all(|a| {
                    (a + 1..m.cfg.clients).all(|b| !(m.conflicts(a, b) && m.holds(s, a) && m.holds(s, b)))
                })
            }),
            Property::always("G2 ownership", |_, s: &State| !s.foreign_touched),
            Property::always("G5 no leaks", |m: &Redlock, s: &State| g5_holds(m, s)),
            Property::always("G6 fence order", |_, s: &State| !s.fence_order_broken),
            Property::eventually("liveness", |m: &Redlock, s: &State| {
                !m.cfg.liveness || s.clients[0].held_once
            }),
        ];
        // Witnesses: the situations the safety properties guard, which a check must reach for
        // its "no violation" to mean anything. Only those the configuration can produce.
        let cfg = &self.cfg;
        let pairs = (0..cfg.clients).any(|a| (a + 1..cfg.clients).any(|b| self.conflicts(a, b)));
        if pairs && !cfg.liveness {
            props.push(Property::sometimes(W_TWO_HOLDERS, |m: &Redlock, s: &State| {
                (0..m.cfg.clients).any(|a| {
                    (a + 1..m.cfg.clients)
                        .any(|b| m.conflicts(a, b) && s.clients[a].held_once && s.clients[b].held_once)
                })
            }));
            props.push(Property::sometimes(W_FOREIGN_KEY, |_, s: &State| {
                s.events & EV_FOREIGN_MET != 0
            }));
        }
        if cfg.resets && !cfg.liveness && !cfg.has(Bug::NoTombstone) {
            props.push(Property::sometimes(W_TOMBSTONE, |_, s: &State| {
                s.events & EV_TOMB_REFUSED != 0
            }));
        }
        if cfg.fencing && pairs {
            props.push(Property::sometimes(W_FENCE_AFTER_FENCE, |_, s: &State| {
                s.events & EV_FENCE_AFTER_FENCE != 0
            }));
            if cfg.horizon + cfg.drift >= cfg.counter_horizon() {
                props.push(Property::sometimes(W_RECOMPUTED, |_, s: &State| {
                    s.events & EV_FENCE_FROM_RECOMPUTED != 0
                }));
            }
        }
        props
    }

    fn within_boundary(&self, _s: &State) -> bool {
        true
    }
}

/// A fence counter's TTL ran out: the key is gone, the next grant recomputes it from the clock.
fn expire_counter(node: &mut Node, r: usize) {
    node.fences[r] = 0;
    node.fence_exp[r] = 0;
    node.lapsed |= 1 << r;
}

/// Adds a message, keeping `net` in a canonical order: sorted by connection and direction, and
/// in send order within one (which is all FIFO needs). Two interleavings that sent the same
/// messages are then one state.
fn push(s: &mut State, m: Msg) {
    let key = |m: &Msg| (m.client, m.node, m.conn, m.body.is_request());
    let at = s.net.partition_point(|o| key(o) <= key(&m));
    s.net.insert(at, m);
}

/// G5 as the model states it: once a client is finished with a token (its attempt failed or its
/// lock was released), a server on which no release obligation for that token is open keeps no
/// key with that token, up or (with persistence) down. So: a definite release answer leaves no
/// key behind, late bytes included; an obligation ends on its bound only when the key is
/// certainly gone; and a node that gets no obligation holds nothing of ours.
fn g5_holds(m: &Redlock, s: &State) -> bool {
    s.clients.iter().all(|cl| {
        cl.finished.iter().all(|&token| {
            s.nodes.iter().enumerate().all(|(server, node)| {
                let open = cl.obls.iter().any(|o| {
                    o.token == token && o.state == Obligation::Open && m.cfg.server(o.node as usize) == server
                });
                open || node.keys.iter().flatten().all(|k| k.token != token)
            })
        })
    })
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Tick => write!(f, "tick"),
            Action::Start(c) => write!(f, "client {c} starts an attempt"),
            Action::Deliver(i) => write!(f, "deliver message #{i}"),
            Action::Lose(i) => write!(f, "lose message #{i}"),
            Action::Timeout(c, n) => write!(f, "client {c} times out on node {n}"),
            Action::Reset(c, n) => write!(f, "client {c} replaces its connection to node {n}"),
            Action::Release(c) => write!(f, "client {c} releases"),
            Action::Extend(c) => write!(f, "client {c} extends"),
            Action::Resend(c, i) => write!(f, "client {c} re-sends release obligation {i}"),
            Action::GiveUp(c, i) => write!(f, "client {c} ends obligation {i} (bound passed)"),
            Action::Crash(k) => write!(f, "server {k} crashes"),
            Action::Restart(k) => write!(f, "server {k} restarts"),
            Action::Expire(k, r) => write!(f, "server {k} expires resource {r}"),
            Action::ExpireTomb(k, i) => write!(f, "server {k} expires tombstone {i}"),
            Action::ExpireFence(k, r) => write!(f, "server {k} expires fence counter {r}"),
        }
    }
}
