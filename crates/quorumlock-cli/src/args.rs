//! Command-line arguments.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

// The exit codes as literals (macros), so that the top-level help and each command's help
// show the same text: `concat!` takes literals, not consts. docs/cli.md lists the same codes
// (checked by tests/rough_edges.rs).
macro_rules! run_exit_codes {
    () => {
        "\
Exit codes of run: the command's own code, or 128+N if it died from signal N; 64 bad arguments;
69 nodes unreachable (no majority answered); 70 internal error; 75 not acquired (held
elsewhere); 76 the command's group was stopped because the lock could not be renewed or
--max-hold was reached; 77 permission denied by the nodes; 78 bad configuration; 126 command not
executable; 127 command not found."
    };
}

macro_rules! status_exit_codes {
    () => {
        "\
Exit codes of status: 0 a majority of the nodes answered; 64 bad arguments; 69 fewer than a
majority answered; 70 internal error; 78 bad configuration."
    };
}

const AFTER_HELP: &str = concat!(
    "\
Examples:
  # Run a nightly job on at most one of several hosts at a time:
  export QUORUMLOCK_NODES=redis://10.0.0.1:6379,redis://10.0.0.2:6379,redis://10.0.0.3:6379
  quorumlock run --resource nightly-report --ttl 30s --no-wait -- ./report.sh

  # Wait up to a minute for the lock, and pass a fencing token to the command:
  quorumlock run --resource ledger --ttl 10s --wait 1m --fencing -- \\
      sh -c 'ledger-import --fence \"$QUORUMLOCK_FENCE\"'

  # Who holds it, on every node:
  quorumlock status ledger
  quorumlock --json status ledger | jq .holder

The lock is held until the command and every process left in its process group have exited.

",
    run_exit_codes!(),
    "\n\n",
    status_exit_codes!()
);

/// A distributed lock held by a majority of independent Redis nodes (Redlock): flock(1) across
/// machines.
#[derive(Debug, Parser)]
#[command(name = "quorumlock", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options of every command.
#[derive(Debug, Args)]
pub(crate) struct Global {
    // An attribute rather than a doc comment: rustdoc reads `[user:pass@]` as a link.
    #[arg(
        long,
        env = "QUORUMLOCK_NODES",
        value_delimiter = ',',
        global = true,
        hide_env_values = true,
        help = "Lock nodes, comma-separated URLs: redis://[user:pass@]host:port, rediss://... for TLS, \
                redis+cluster://host:port,host:port for a member that is a Redis Cluster. Use an odd \
                number of independent members (3, 5, 7), never replicas of each other"
    )]
    pub(crate) nodes: Vec<String>,

    /// Bound on each request to one node [default: for run, 1% of the TTL within 50ms..1s; for
    /// status, 500ms].
    #[arg(long, value_parser = duration, global = true)]
    pub(crate) node_timeout: Option<Duration>,

    /// Prefix of the keys on the nodes; all users of a lock must agree on it.
    #[arg(
        long,
        env = "QUORUMLOCK_KEY_PREFIX",
        default_value = "quorumlock:",
        global = true,
        // Without it, clap shows `[env: QUORUMLOCK_KEY_PREFIX=]` when the variable is unset.
        hide_env_values = true
    )]
    pub(crate) key_prefix: String,

    /// Machine-readable output: one JSON object (on stdout for status, on stderr for run, whose
    /// stdout is the command's).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl Global {
    /// The member URLs: the comma-separated pieces, with the address list of a
    /// `redis+cluster://` URL (pieces without a scheme) joined back onto it.
    pub(crate) fn members(&self) -> Vec<String> {
        let mut members: Vec<String> = Vec::new();
        for piece in self.nodes.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            match members.last_mut() {
                Some(last) if !piece.contains("://") && last.contains("+cluster://") => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => members.push(piece.to_owned()),
            }
        }
        members
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    // Fixed usage lines: clap's own, in a usage error, lists every argument that has a value,
    // and a value from QUORUMLOCK_NODES counts, so `--nodes <NODES>` was shown as if it had to
    // be typed although the environment supplies it.
    /// Run a command while holding a lock; stop it if the lock is lost.
    #[command(
        after_help = run_exit_codes!(),
        override_usage = "quorumlock run [OPTIONS] --resource <RESOURCE> -- <COMMAND>..."
    )]
    Run(RunArgs),
    /// Show a resource's lock on every node and the quorum's verdict.
    #[command(
        after_help = status_exit_codes!(),
        override_usage = "quorumlock status [OPTIONS] <RESOURCE>"
    )]
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The resource to lock (any non-empty name).
    #[arg(long, short)]
    pub(crate) resource: String,

    /// Lock time to live. The lock is renewed while the command runs; after a crash of this
    /// process, others wait at most this long. At most 30 days, and at least 215ms with the
    /// default node timeout (the minimum follows --node-timeout; a shorter TTL is refused,
    /// naming it).
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub(crate) ttl: Duration,

    /// How long to keep trying if the lock is held elsewhere: at least this long; the last
    /// attempt and its clean-up may add up to two node timeouts.
    #[arg(long, value_parser = duration, default_value = "10s", conflicts_with = "no_wait")]
    pub(crate) wait: Duration,

    /// Make one attempt only; exit 75 at once if the lock is held elsewhere.
    #[arg(long)]
    pub(crate) no_wait: bool,

    /// Acquire with a fencing token and pass it to the command in QUORUMLOCK_FENCE. All users of
    /// the resource must use this flag.
    #[arg(long)]
    pub(crate) fencing: bool,

    /// How long the command has between SIGTERM and SIGKILL when it must stop (the lock cannot
    /// be renewed, or --max-hold). SIGKILL goes out a kill margin (TTL/10, within 100ms..2s)
    /// before the lock's validity ends, so grace plus that margin must be at most half the TTL,
    /// and the grace shorter than --max-hold [default: 5s, or the most the TTL allows, at most
    /// half of --max-hold].
    #[arg(long, value_parser = duration)]
    pub(crate) grace: Option<Duration>,

    /// Stop the command after this long even if the lock could still be renewed: SIGTERM at
    /// max-hold minus grace, SIGKILL at max-hold at the latest; the lock is released once the
    /// command's process group is gone [default: no limit].
    #[arg(long, value_parser = duration)]
    pub(crate) max_hold: Option<Duration>,

    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub(crate) command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The resource to show.
    pub(crate) resource: String,
}

/// `30s`, `500ms`, `2m`, `1h 30m` (humantime syntax).
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_cluster_members_address_list_stays_one_member() {
        let cli = Cli::try_parse_from([
            "quorumlock",
            "--nodes",
            "redis+cluster://a:1,b:2,redis://c:3,rediss+cluster://d:4,e:5",
            "status",
            "r",
        ])
        .unwrap();
        assert_eq!(
            cli.global.members(),
            [
                "redis+cluster://a:1,b:2",
                "redis://c:3",
                "rediss+cluster://d:4,e:5"
            ]
        );
    }

    #[test]
    fn run_parses_the_command_after_the_separator() {
        let cli = Cli::try_parse_from([
            "quorumlock",
            "--nodes",
            "redis://a:1,redis://b:2",
            "run",
            "-r",
            "job",
            "--ttl",
            "2s",
            "--no-wait",
            "--",
            "echo",
            "--ttl",
        ])
        .unwrap();
        assert_eq!(cli.global.nodes.len(), 2);
        let Command::Run(run) = cli.command else { panic!() };
        assert_eq!(run.ttl, Duration::from_secs(2));
        assert!(run.no_wait);
        assert_eq!(run.command, ["echo", "--ttl"]);
    }

    #[test]
    fn wait_and_no_wait_conflict() {
        let e = Cli::try_parse_from([
            "quorumlock",
            "run",
            "-r",
            "x",
            "--wait",
            "1s",
            "--no-wait",
            "--",
            "true",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
