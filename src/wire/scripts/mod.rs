//! The Lua scripts, one `.lua` file each, hashed once per process.
//!
//! They are constant text: resource names travel in `KEYS[]` and everything else in `ARGV[]`,
//! so nothing a caller passes can change what a script does. Calls use `EVALSHA`; a node that
//! answers `NOSCRIPT` (restarted, or `SCRIPT FLUSH`) gets the same call as `EVAL`, which also
//! caches the script there again.

use std::sync::LazyLock;

/// A script's text and SHA1.
pub(crate) struct Script {
    text: &'static str,
    sha: String,
}

impl Script {
    fn new(text: &'static str) -> Self {
        Self {
            text,
            sha: redis::Script::new(text).get_hash().to_owned(),
        }
    }

    /// `EVALSHA sha n keys... args...`
    pub(crate) fn evalsha(&self, keys: &[Box<[u8]>], args: &[&[u8]]) -> redis::Cmd {
        Self::call("EVALSHA", &self.sha, keys, args)
    }

    /// `EVAL text n keys... args...`, the fallback after `NOSCRIPT`.
    pub(crate) fn eval(&self, keys: &[Box<[u8]>], args: &[&[u8]]) -> redis::Cmd {
        Self::call("EVAL", self.text, keys, args)
    }

    /// `EVALSHA sha n`, with room for `more` arguments of `bytes` bytes in all: the start of a
    /// request, which adds its keys and arguments itself.
    pub(crate) fn evalsha_start(&self, n_keys: usize, more: usize, bytes: usize) -> redis::Cmd {
        let mut c = redis::Cmd::with_capacity(3 + more, 7 + self.sha.len() + 20 + bytes);
        c.arg("EVALSHA").arg(&self.sha).arg(n_keys);
        c
    }

    /// The `EVAL` form of an `EVALSHA` call of this script (made with [`evalsha_start`] or
    /// [`evalsha`]): only built for a node that answered `NOSCRIPT`, so a request carries no
    /// second copy of its arguments for the rare case.
    ///
    /// [`evalsha_start`]: Self::evalsha_start
    /// [`evalsha`]: Self::evalsha
    pub(crate) fn eval_of(&self, evalsha: &redis::Cmd) -> redis::Cmd {
        let rest = evalsha.args_iter().skip(2);
        let bytes: usize = rest
            .clone()
            .map(|a| match a {
                redis::Arg::Simple(a) => a.len(),
                _ => 0,
            })
            .sum();
        let mut c = redis::Cmd::with_capacity(2 + rest.len(), 4 + self.text.len() + bytes);
        c.arg("EVAL").arg(self.text);
        for arg in rest {
            if let redis::Arg::Simple(a) = arg {
                c.arg(a);
            }
        }
        c
    }

    fn call(verb: &str, script: &str, keys: &[Box<[u8]>], args: &[&[u8]]) -> redis::Cmd {
        // Sized up front: growing the argument buffers showed up as reallocations per request
        // in the allocation profile (docs/benchmarks.md).
        let data = verb.len()
            + script.len()
            + 20
            + keys.iter().map(|k| k.len()).sum::<usize>()
            + args.iter().map(|a| a.len()).sum::<usize>();
        let mut c = redis::Cmd::with_capacity(3 + keys.len() + args.len(), data);
        c.arg(verb).arg(script).arg(keys.len());
        for k in keys {
            c.arg(&**k);
        }
        for a in args {
            c.arg(*a);
        }
        c
    }
}

/// `SET NX PX` of one key unless the token has a tombstone: 1 set, 0 not.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("acquire.lua")));

/// `acquire.lua` served in waiting order (wake-on-release): the token when set, 0 not.
pub(crate) static ACQUIRE_QUEUED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("acquire_queued.lua")));

/// A waiter leaves a waiting line: 1.
pub(crate) static QUEUE_LEAVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("queue_leave.lua")));

/// A waiter renews its lease in a waiting line while it pauses: 1 renewed, 0 no entry.
pub(crate) static QUEUE_RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("queue_renew.lua")));

/// All-or-nothing `SET NX PX` of several keys: 1 all set, 0 none (some key existed).
pub(crate) static ACQUIRE_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("acquire_many.lua")));

/// Fenced acquire: the fence (> 0) when all keys were set, 0 when any existed.
pub(crate) static ACQUIRE_FENCED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("acquire_fenced.lua")));

/// Fence write-back: raises counters to at least the fence; 1.
pub(crate) static FENCE_RAISE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("fence_raise.lua")));

/// Compare-and-delete: 1 deleted, 0 not ours (a tombstone for the token is then left).
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("release.lua")));

/// Compare-and-PEXPIRE: 1 extended, 0 not ours. Never creates a key.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("extend.lua")));

/// Read-only view of one resource: lock value, its PTTL and the fence counter.
pub(crate) static INSPECT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("inspect.lua")));

#[cfg(test)]
mod tests {
    use super::*;

    /// A request is written piece by piece and its `EVAL` form derived from it: both must be
    /// byte for byte the calls `evalsha` and `eval` make from the same keys and arguments.
    #[test]
    fn built_calls_match_the_whole_ones() {
        let keys: Vec<Box<[u8]>> = vec![
            b"quorumlock:lock:r".as_slice().into(),
            b"quorumlock:tomb:t".as_slice().into(),
        ];
        let args: [&[u8]; 2] = [b"0123456789abcdef0123456789abcdef", b"30000"];
        let whole = ACQUIRE.evalsha(&keys, &args);
        let mut built = ACQUIRE.evalsha_start(2, 4, 0);
        built.arg(&*keys[0]).arg(&*keys[1]).arg(args[0]).arg(30_000u64);
        assert_eq!(built.get_packed_command(), whole.get_packed_command());
        assert_eq!(
            ACQUIRE.eval_of(&built).get_packed_command(),
            ACQUIRE.eval(&keys, &args).get_packed_command()
        );
    }
}
