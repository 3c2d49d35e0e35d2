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

    /// `EVALSHA sha 1 key args...`
    pub(crate) fn evalsha(&self, key: &[u8], args: &[&[u8]]) -> redis::Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(&self.sha).arg(1).arg(key);
        for a in args {
            c.arg(*a);
        }
        c
    }

    /// `EVAL text 1 key args...`, the fallback after `NOSCRIPT`.
    pub(crate) fn eval(&self, key: &[u8], args: &[&[u8]]) -> redis::Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(self.text).arg(1).arg(key);
        for a in args {
            c.arg(*a);
        }
        c
    }
}

/// Compare-and-delete: 1 deleted, 0 not ours.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("release.lua")));

/// Compare-and-PEXPIRE: 1 extended, 0 not ours. Never creates a key.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("extend.lua")));
