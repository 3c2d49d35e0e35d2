//! The one public error type. Its kinds and operations are in `kind.rs`, the per-node evidence
//! it carries in `outcome.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

// What an error is made of lives in its own modules; named from here too, as one family.
pub use crate::errors::kind::{ErrorKind, Operation};
pub use crate::errors::outcome::{NodeId, NodeOutcome};

/// The error of every fallible operation in this crate.
///
/// Cheap to clone (one `Arc`), `Send + Sync + 'static`. Branch on [`kind`](Error::kind) or the
/// `is_*` predicates; read the evidence with [`nodes`](Error::nodes).
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    op: Operation,
    message: Option<String>,
    resource: Option<Box<str>>,
    nodes: Vec<(NodeId, NodeOutcome)>,
    elapsed: Option<Duration>,
    attempts: u32,
    last_cause: Option<ErrorKind>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, op: Operation) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                op,
                message: None,
                resource: None,
                nodes: Vec::new(),
                elapsed: None,
                attempts: 0,
                last_cause: None,
            }),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, Operation::Build).with_message(message)
    }

    pub(crate) fn invalid_input(op: Operation, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, op).with_message(message)
    }

    /// The error for a call made outside a tokio runtime: a clear message instead of tokio's
    /// "there is no reactor running" panic (issue 12 §2.3).
    pub(crate) fn no_runtime(op: Operation) -> Self {
        Self::new(ErrorKind::NoRuntime, op).with_message(
            "quorumlock runs on tokio: call it inside a tokio runtime with the time and I/O \
             drivers enabled (#[tokio::main] or runtime::Builder::enable_all())",
        )
    }

    /// `Ok` when a tokio runtime with its time driver is running on this thread. Called at the
    /// start of every public async operation, before anything touches tokio. (A runtime
    /// without its I/O driver is caught when connecting: `link::without_driver_panic`.)
    pub(crate) fn require_runtime(op: Operation) -> Result<(), Self> {
        tokio::runtime::Handle::try_current().map_err(|_| Self::no_runtime(op))?;
        // tokio cannot be asked whether its time driver is on, and a timer made without it
        // panics (issue 21, G7): one is made and dropped, never registered (nanoseconds).
        let timers = std::panic::catch_unwind(|| drop(tokio::time::sleep(std::time::Duration::ZERO)));
        timers.map_err(|_| {
            Self::new(ErrorKind::NoRuntime, op).with_message(
                "the tokio runtime has no time driver: build it with runtime::Builder::enable_all() \
                 (quorumlock needs the time and I/O drivers)",
            )
        })
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        // Errors are built before they are shared, so this never clones in practice.
        f(Arc::make_mut(&mut self.inner));
        self
    }

    pub(crate) fn with_message(self, message: impl Into<String>) -> Self {
        let message = message.into();
        self.edit(|i| i.message = Some(message))
    }

    pub(crate) fn with_resource(self, resource: &str) -> Self {
        self.edit(|i| i.resource = Some(resource.into()))
    }

    pub(crate) fn with_nodes(self, nodes: Vec<(NodeId, NodeOutcome)>) -> Self {
        self.edit(|i| i.nodes = nodes)
    }

    pub(crate) fn with_elapsed(self, elapsed: Duration) -> Self {
        self.edit(|i| i.elapsed = Some(elapsed))
    }

    pub(crate) fn with_attempts(self, attempts: u32) -> Self {
        self.edit(|i| i.attempts = attempts)
    }

    /// Wraps the last attempt's error when the retry deadline ends the acquisition.
    pub(crate) fn deadline(last: Error, elapsed: Duration, attempts: u32) -> Self {
        let last_cause = Some(last.kind());
        let nodes = last.inner.nodes.clone();
        let resource = last.inner.resource.clone();
        Self::new(ErrorKind::DeadlineExceeded, last.inner.op).edit(|i| {
            i.nodes = nodes;
            i.resource = resource;
            i.elapsed = Some(elapsed);
            i.attempts = attempts;
            i.last_cause = last_cause;
        })
    }

    /// The coarse cause.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        self.inner.op
    }

    /// For [`ErrorKind::DeadlineExceeded`], the kind of the last attempt's failure.
    pub fn last_cause(&self) -> Option<ErrorKind> {
        self.inner.last_cause
    }

    fn is(&self, kind: ErrorKind) -> bool {
        self.inner.kind == kind || self.inner.last_cause == Some(kind)
    }

    /// Another owner holds the resource (also when the deadline passed while it did).
    pub fn is_contended(&self) -> bool {
        self.is(ErrorKind::Contended)
    }

    /// Fewer than a majority of nodes were usable (also when the deadline passed while so).
    pub fn is_quorum_unreachable(&self) -> bool {
        self.is(ErrorKind::QuorumUnreachable)
    }

    /// The retry deadline passed.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::DeadlineExceeded
    }

    /// Too few nodes accepted our credentials or permissions (`WRONGPASS`, `NOAUTH`, `NOPERM`):
    /// an operator has to fix the password or the ACL; retrying cannot help.
    pub fn is_unauthorized(&self) -> bool {
        self.is(ErrorKind::Unauthorized)
    }

    /// The call was made outside a tokio runtime ([`ErrorKind::NoRuntime`]).
    pub fn is_no_runtime(&self) -> bool {
        self.inner.kind == ErrorKind::NoRuntime
    }

    /// The lock is no longer held.
    pub fn is_lost(&self) -> bool {
        self.inner.kind == ErrorKind::Lost
    }

    /// Whether trying again later may succeed with nothing changed: the resource was held, too
    /// few nodes were reachable, the quorum came too late, the deadline passed, the lock was
    /// lost. `false` means someone has to fix something first: the arguments, the
    /// configuration, the credentials or ACL, the runtime, or the machine's randomness. The
    /// branch a service wants between "503, retry later" and "page an operator".
    ///
    /// ```
    /// use quorumlock::{Error, ErrorKind};
    /// fn status(e: &Error) -> u16 {
    ///     if e.is_transient() { 503 } else { 500 }
    /// }
    /// # let _ = status;
    /// ```
    pub fn is_transient(&self) -> bool {
        match self.inner.kind {
            ErrorKind::Contended
            | ErrorKind::QuorumUnreachable
            | ErrorKind::ValidityExhausted
            | ErrorKind::DeadlineExceeded
            | ErrorKind::Lost => true,
            ErrorKind::InvalidInput
            | ErrorKind::Config
            | ErrorKind::Unauthorized
            | ErrorKind::Entropy
            | ErrorKind::NoRuntime => false,
        }
    }

    /// Bad arguments or configuration: fix the call, do not retry it.
    pub fn is_invalid(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::InvalidInput | ErrorKind::Config)
    }

    /// Each node's outcome in the (last) attempt, in the order the nodes were configured.
    /// Empty for errors raised before any node was contacted.
    pub fn nodes(&self) -> &[(NodeId, NodeOutcome)] {
        &self.inner.nodes
    }

    /// The resource the failed operation was about, if any.
    pub fn resource(&self) -> Option<&str> {
        self.inner.resource.as_deref()
    }

    /// Time spent by the failed operation, retries included.
    pub fn elapsed(&self) -> Option<Duration> {
        self.inner.elapsed
    }

    /// Number of attempts made (0 when none was made).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// Whether another attempt could succeed without a change of configuration.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Contended | ErrorKind::QuorumUnreachable | ErrorKind::ValidityExhausted
        )
    }
}

fn op_text(op: Operation) -> &'static str {
    match op {
        Operation::Build => "build",
        Operation::Acquire => "acquire",
        Operation::Extend => "extend",
        Operation::Release => "release",
        Operation::Inspect => "inspect",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        write!(f, "{}", op_text(i.op))?;
        if let Some(r) = &i.resource {
            write!(f, " {r:?}")?;
        }
        write!(f, ": {}", i.kind)?;
        if let Some(cause) = i.last_cause {
            write!(f, " (last attempt: {cause})")?;
        }
        if let Some(m) = &i.message {
            write!(f, ": {m}")?;
        }
        if !i.nodes.is_empty() {
            let granted = i.nodes.iter().filter(|(_, o)| *o == NodeOutcome::Granted).count();
            let n = i.nodes.len();
            write!(f, "; {granted} of {n} nodes granted, {} needed [", n / 2 + 1)?;
            for (k, (node, outcome)) in i.nodes.iter().enumerate() {
                if k > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{node}: {outcome}")?;
            }
            f.write_str("]")?;
        }
        match (i.attempts, i.elapsed) {
            (0, None) => Ok(()),
            (0, Some(e)) => write!(f, " after {e:.1?}"),
            (a, None) => write!(f, " after {a} attempt(s)"),
            (a, Some(e)) => write!(f, " after {a} attempt(s) in {e:.1?}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind).field("operation", &i.op);
        if let Some(c) = &i.last_cause {
            d.field("last_cause", c);
        }
        if let Some(m) = &i.message {
            d.field("message", m);
        }
        if let Some(r) = &i.resource {
            d.field("resource", r);
        }
        if !i.nodes.is_empty() {
            d.field("nodes", &i.nodes);
        }
        if let Some(e) = &i.elapsed {
            d.field("elapsed", e);
        }
        if i.attempts > 0 {
            d.field("attempts", &i.attempts);
        }
        d.finish()
    }
}

/// No `source()`: an error of this crate is one layer, with its evidence in [`Error::nodes`]
/// (each node's outcome, as text) rather than a chain. A [`ErrorKind::DeadlineExceeded`] error
/// describes its last attempt itself ([`Error::last_cause`] and that attempt's nodes), so a
/// reporter that prints sources would print it twice.
impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_send_sync_static_and_clone() {
        fn check<T: Send + Sync + 'static + Clone + std::error::Error>() {}
        check::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn deadline_answers_for_its_last_cause() {
        let last = Error::new(ErrorKind::QuorumUnreachable, Operation::Acquire);
        let e = Error::deadline(last, Duration::from_secs(1), 4);
        assert!(e.is_timeout());
        assert!(e.is_quorum_unreachable());
        assert!(!e.is_contended());
        assert_eq!(e.attempts(), 4);
    }

    #[test]
    fn unauthorized_is_told_apart() {
        let e = Error::new(ErrorKind::Unauthorized, Operation::Acquire).with_nodes(vec![(
            NodeId::new(0, "redis://127.0.0.1:7001".into()),
            NodeOutcome::Denied("WRONGPASS invalid username-password pair".into()),
        )]);
        assert!(e.is_unauthorized());
        assert!(!e.is_contended() && !e.is_quorum_unreachable() && !e.is_invalid());
        assert!(!Error::new(ErrorKind::Contended, Operation::Acquire).is_unauthorized());
        assert!(!Error::new(ErrorKind::QuorumUnreachable, Operation::Extend).is_unauthorized());
    }

    #[test]
    fn no_runtime_says_what_to_do() {
        // A plain #[test] runs on no runtime.
        let e = Error::require_runtime(Operation::Acquire).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoRuntime);
        assert!(e.is_no_runtime() && !e.is_timeout() && !e.is_retryable());
        let text = e.to_string();
        assert!(text.starts_with("acquire: no tokio runtime running: "), "{text}");
        assert!(text.contains("#[tokio::main]") && !text.contains('\n'), "{text}");

        // A runtime without its time driver is refused too (issue 21), one with it is not.
        let bare = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let e = bare.block_on(async { Error::require_runtime(Operation::Release).unwrap_err() });
        assert!(e.to_string().contains("no time driver"), "{e}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { Error::require_runtime(Operation::Release).unwrap() });
    }

    #[test]
    fn display_lists_every_node() {
        let e = Error::new(ErrorKind::QuorumUnreachable, Operation::Acquire)
            .with_resource("orders:42")
            .with_nodes(vec![
                (
                    NodeId::new(0, "redis://127.0.0.1:7001".into()),
                    NodeOutcome::Granted,
                ),
                (
                    NodeId::new(1, "redis://127.0.0.1:7002".into()),
                    NodeOutcome::Io("connection refused".into()),
                ),
                (
                    NodeId::new(2, "redis://127.0.0.1:7003".into()),
                    NodeOutcome::Timeout,
                ),
            ]);
        let s = e.to_string();
        assert!(
            s.starts_with("acquire \"orders:42\": too few nodes reachable; 1 of 3 nodes granted, 2 needed"),
            "{s}"
        );
        for addr in [
            "7001: granted",
            "7002: i/o error: connection refused",
            "7003: timed out",
        ] {
            assert!(s.contains(addr), "{s}");
        }
    }
}
