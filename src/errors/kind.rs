//! [`ErrorKind`]: what went wrong, coarsely; and [`Operation`]: which call it was.

/// What went wrong, coarsely: the thing a caller branches on.
///
/// Finer detail (which node said what) is in [`Error::nodes`](crate::Error::nodes). `Display` gives the short text
/// used in [`Error`](crate::Error)'s own message ("held elsewhere", "too few nodes reachable", ...).
// thiserror writes the Display impl from the texts below; it also makes ErrorKind a
// std::error::Error, which costs nothing and lets a kind stand alone where an error is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument of a call was unusable: empty resource, zero or too large TTL, a TTL too short
    /// to leave any validity after the drift allowance. Retrying the same call cannot help.
    #[error("invalid argument")]
    InvalidInput,
    /// The builder was given an unusable configuration: no nodes, duplicate or malformed URLs, an
    /// unknown scheme, a drift factor outside `[0, 1)`, zero attempts.
    #[error("invalid configuration")]
    Config,
    /// An acquisition found quorum impossible because enough nodes answered that another owner
    /// holds the resource. (An extension that finds the key gone is [`ErrorKind::Lost`]; a
    /// release of an expired lock succeeds, see [`ReleaseReport::was_held`](crate::ReleaseReport::was_held).)
    #[error("held elsewhere")]
    Contended,
    /// Fewer than a majority of nodes gave a usable answer (timeouts, I/O errors, error
    /// replies), so quorum was impossible whatever the holder situation.
    #[error("too few nodes reachable")]
    QuorumUnreachable,
    /// Fewer than a majority of nodes accepted our credentials or permissions (`WRONGPASS`,
    /// `NOAUTH`, `NOPERM`). Not retried: it needs an operator.
    #[error("too few nodes accepted our credentials")]
    Unauthorized,
    /// A quorum answered, but too late: the time spent plus the drift allowance used up the TTL,
    /// so the lock would already be invalid. Use a longer TTL or a shorter node timeout.
    #[error("quorum reached too late, no validity left")]
    ValidityExhausted,
    /// The retry policy's deadline passed before an attempt succeeded. The last attempt's cause
    /// is in [`Error::last_cause`](crate::Error::last_cause), and the predicates such as [`Error::is_contended`](crate::Error::is_contended) answer
    /// for it too.
    #[error("deadline passed")]
    DeadlineExceeded,
    /// The lock is no longer held: its validity ran out, or a majority of nodes no longer hold
    /// its token.
    #[error("lock lost")]
    Lost,
    /// The operating system's random number generator failed, so no token could be drawn.
    #[error("no randomness from the operating system")]
    Entropy,
    /// No tokio runtime is running on this thread. quorumlock needs one, with its time and I/O
    /// drivers enabled (`#[tokio::main]`, or `tokio::runtime::Builder::enable_all`): its
    /// connections, timeouts and background releases are tokio's. Under another executor
    /// (`futures::executor::block_on`, async-std, smol) run the call inside a tokio runtime.
    #[error("no tokio runtime running")]
    NoRuntime,
}

/// Which operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Building the client.
    Build,
    /// `acquire` or `try_acquire`.
    Acquire,
    /// `Lock::extend`.
    Extend,
    /// `Lock::release`.
    Release,
    /// `Redlock::inspect`.
    Inspect,
}
