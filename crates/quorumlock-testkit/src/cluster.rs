use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::spawner;

/// How a node keeps its data across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// No persistence (`save ""`, `appendonly no`): a restarted node is empty.
    None,
    /// AOF with `appendfsync always`: every acknowledged write survives a kill -9.
    AofAlways,
    /// AOF with `appendfsync everysec`.
    AofEverysec,
}

/// Options for [`LocalCluster::start_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// Persistence profile of every node. Default: [`Persistence::None`].
    pub persistence: Persistence,
    /// `requirepass` for every node. Default: none.
    pub password: Option<String>,
    /// Further `--name value` settings passed to every node.
    pub extra: Vec<(String, String)>,
    /// A TLS port on every node, next to the plain one. Default: none.
    pub tls: Option<crate::tls::ServerTls>,
    /// An ACL user (name, password, rules) that [`LocalCluster::url`] connects as; the default
    /// user stays for [`LocalCluster::admin_url`]. Default: none.
    pub user: Option<(String, String, String)>,
    /// Primary shards per member: 1 (the default) is one plain `redis-server`; 3 or more make
    /// each member a Redis Cluster of that many primaries ([`ClusterOptions::shards`]).
    pub shards: usize,
    /// Replicas per shard of a clustered member. Default: 0.
    pub replicas: usize,
    /// Keys under this prefix that every running process is audited for when the cluster is
    /// dropped ([`ClusterOptions::audit_on_drop`]). Default: `quorumlock:` against
    /// [`crate::audit::TEST_BOUNDS`]; [`ClusterOptions::without_audit`] turns it off.
    pub audit: Option<(String, crate::audit::Bounds)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            persistence: Persistence::None,
            password: None,
            extra: Vec::new(),
            tls: None,
            user: None,
            shards: 1,
            replicas: 0,
            audit: Some(("quorumlock:".to_owned(), crate::audit::TEST_BOUNDS)),
        }
    }
}

impl ClusterOptions {
    /// Sets the persistence profile.
    pub fn persistence(mut self, p: Persistence) -> Self {
        self.persistence = p;
        self
    }

    /// Makes dropping the cluster audit every key under `prefix` on every running process
    /// against `bounds` ([`crate::audit::check`]) and panic with the findings, so that every
    /// test's teardown checks the whole keyspace it wrote, whatever else it checks. A test
    /// that is already panicking is not audited (its own failure is the one to read).
    pub fn audit_on_drop(mut self, prefix: impl Into<String>, bounds: crate::audit::Bounds) -> Self {
        self.audit = Some((prefix.into(), bounds));
        self
    }

    /// No audit when the cluster is dropped: for a test that leaves keys outside the bounds
    /// on purpose (and says why).
    pub fn without_audit(mut self) -> Self {
        self.audit = None;
        self
    }

    /// Sets `requirepass` on every node.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Opens a TLS port on every node ([`LocalCluster::tls_url`]) with these files.
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Creates the ACL user `name` with `password` and `rules` (ACL SETUSER syntax, such as
    /// `~app:* -@all +get`) on every node at start, and makes [`LocalCluster::url`] connect as
    /// that user.
    pub fn user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        rules: impl Into<String>,
    ) -> Self {
        self.user = Some((name.into(), password.into(), rules.into()));
        self
    }

    /// Makes every member a Redis Cluster of `k` primary shards on loopback instead of one
    /// server (`k` = 1, the default, keeps the single server). Redis Cluster needs at least 3
    /// primaries; TLS is not supported on clustered members. The shards run with
    /// `cluster-node-timeout 1000` (override it with [`config`](Self::config)); the password
    /// and persistence options apply to every shard. See [`LocalCluster::shard_port`].
    pub fn shards(mut self, k: usize) -> Self {
        self.shards = k;
        self
    }

    /// Gives every shard of a clustered member `r` replicas (default 0), so that a primary can
    /// fail over ([`LocalCluster::wait_for_failover`]).
    pub fn replicas(mut self, r: usize) -> Self {
        self.replicas = r;
        self
    }

    /// Adds a `--name value` server setting.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }
}

/// A test kit failure, with the node's log tail when there is one.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

/// One `redis-server` process: a single-server member, or one shard primary or replica of a
/// clustered member.
pub(crate) struct Node {
    pub(crate) port: u16,
    tls_port: u16,
    pub(crate) dir: PathBuf,
    pub(crate) child: Option<Child>,
    /// Set between pause and resume, so that cluster queries skip a server that cannot answer.
    pub(crate) paused: AtomicBool,
}

impl Node {
    /// Running and not SIGSTOPped: it can answer a query.
    pub(crate) fn answers(&self) -> bool {
        self.child.is_some() && !self.paused.load(Ordering::Relaxed)
    }
}

/// N independent members on loopback: each one `redis-server` process, or with
/// [`ClusterOptions::shards`] a Redis Cluster of several.
pub struct LocalCluster {
    /// Per member, its processes. Clustered: shard `s`'s primary at `s * (1 + replicas)`,
    /// followed by its replicas.
    pub(crate) members: Vec<Vec<Node>>,
    pub(crate) options: ClusterOptions,
    pub(crate) binary: PathBuf,
    _root: tempfile::TempDir,
}

impl fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LocalCluster");
        d.field(
            "ports",
            &self.members.iter().map(|m| m[0].port).collect::<Vec<_>>(),
        )
        .field("persistence", &self.options.persistence);
        if self.clustered() {
            let all = |m: &Vec<Node>| m.iter().map(|n| n.port).collect::<Vec<_>>();
            d.field("shards", &self.options.shards)
                .field("replicas", &self.options.replicas)
                .field("process_ports", &self.members.iter().map(all).collect::<Vec<_>>());
        }
        d.finish()
    }
}

const START_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_TRIES: usize = 5;
/// Redis Cluster listens on `port + 10000` for its bus.
const BUS_OFFSET: u16 = 10000;

fn find_binary() -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN") {
        return Ok(bin.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")]) {
        let candidate = dir.join("redis-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error(
        "redis-server not found on PATH: install it (Debian: `apt-get install -y redis-server`) \
         or set REDIS_SERVER_BIN to its path"
            .into(),
    ))
}

/// A port that was free a moment ago (bind, read back, close). Redis has no "pick a free port"
/// mode, so a race is possible; starting retries with another port when the server says the
/// address is in use.
fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error(format!("bind 127.0.0.1:0: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| Error(e.to_string()))
}

/// A free port whose cluster bus port (`port + 10000`) is free too. Both are held while checking,
/// so the pair was free at one moment; the same race as [`free_port`] remains.
fn free_cluster_port() -> Result<u16, Error> {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error(format!("bind 127.0.0.1:0: {e}")))?;
        let port = l.local_addr().map_err(|e| Error(e.to_string()))?.port();
        let Some(bus) = port.checked_add(BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error("no free port p with p + 10000 free in 100 tries".into()))
}

pub(crate) fn log_tail(dir: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether the server on `port` answers PING (or says it wants AUTH, which also means up).
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let _ = s.shutdown(Shutdown::Both);
    let reply = &buf[..n];
    reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
}

impl LocalCluster {
    /// Starts `n` nodes without persistence and waits until each answers PING.
    ///
    /// # Errors
    /// When `redis-server` is missing (the message says how to install it) or a node does not
    /// come up (the message holds its log tail).
    pub fn start(n: usize) -> Result<Self, Error> {
        Self::start_with(n, ClusterOptions::default())
    }

    /// Starts `n` members with `options`. With [`ClusterOptions::shards`] above 1, every member
    /// is a Redis Cluster, joined with `redis-cli --cluster create`; this returns once every
    /// process of every member reports `cluster_state:ok`, all agree on the slot map and on who
    /// replicates whom, and every replica's link to its primary is up.
    ///
    /// # Errors
    /// As [`start`](Self::start); for clustered members also when the options are not possible
    /// (fewer than 3 shards, replicas without shards, TLS), `redis-cli` is missing or fails, or
    /// the cluster does not settle in time (the message holds log tails).
    pub fn start_with(n: usize, options: ClusterOptions) -> Result<Self, Error> {
        crate::shards::check_options(&options)?;
        let binary = find_binary()?;
        let root = tempfile::Builder::new()
            .prefix("quorumlock-cluster-")
            .tempdir()
            .map_err(|e| Error(format!("temp dir: {e}")))?;
        let per_member = if options.shards > 1 {
            options.shards * (1 + options.replicas)
        } else {
            1
        };
        let mut cluster = Self {
            members: Vec::with_capacity(n),
            options,
            binary,
            _root: root,
        };
        for i in 0..n {
            cluster.members.push(Vec::with_capacity(per_member));
            for j in 0..per_member {
                let dir = if per_member == 1 {
                    cluster._root.path().join(format!("node{i}"))
                } else {
                    cluster._root.path().join(format!("node{i}-{j}"))
                };
                std::fs::create_dir_all(&dir).map_err(|e| Error(format!("create {}: {e}", dir.display())))?;
                cluster.members[i].push(Node {
                    port: 0,
                    tls_port: 0,
                    dir,
                    child: None,
                    paused: AtomicBool::new(false),
                });
                cluster.start_node(i, j)?;
            }
        }
        if cluster.clustered() {
            crate::shards::form(&mut cluster)?;
        }
        Ok(cluster)
    }

    /// Whether members are Redis Clusters.
    pub(crate) fn clustered(&self) -> bool {
        self.options.shards > 1
    }

    /// Picks a port (a retry takes another one if the server found it in use) and launches.
    fn start_node(&mut self, i: usize, j: usize) -> Result<(), Error> {
        let mut last = None;
        for _ in 0..PORT_TRIES {
            let port = if self.clustered() {
                free_cluster_port()?
            } else {
                free_port()?
            };
            self.members[i][j].port = port;
            if self.options.tls.is_some() {
                self.members[i][j].tls_port = free_port()?;
            }
            // A failed start may have written a node id of its own.
            let _ = std::fs::remove_file(self.members[i][j].dir.join("nodes.conf"));
            match self.launch(i, j) {
                Ok(()) => return Ok(()),
                Err(e) if e.0.contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error("no port tried".into())))
    }

    /// "node 2" for a single server, "node 2 process 4" for a process of a clustered member.
    pub(crate) fn label(&self, i: usize, j: usize) -> String {
        if self.clustered() {
            format!("node {i} process {j}")
        } else {
            format!("node {i}")
        }
    }

    pub(crate) fn launch(&mut self, i: usize, j: usize) -> Result<(), Error> {
        let label = self.label(i, j);
        let node = &self.members[i][j];
        let (port, tls_port, dir) = (node.port, node.tls_port, node.dir.clone());
        let mut cmd = Command::new(&self.binary);
        let (appendonly, fsync) = match self.options.persistence {
            Persistence::None => ("no", "everysec"),
            Persistence::AofAlways => ("yes", "always"),
            Persistence::AofEverysec => ("yes", "everysec"),
        };
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(appendonly)
            .arg("--appendfsync")
            .arg(fsync)
            .arg("--enable-debug-command")
            .arg("local");
        if self.clustered() {
            crate::shards::cluster_args(&mut cmd, &dir, self.options.password.as_deref());
        }
        if let Some(pw) = &self.options.password {
            cmd.arg("--requirepass").arg(pw);
        }
        if let Some(tls) = &self.options.tls {
            cmd.arg("--tls-port")
                .arg(tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .arg("--tls-auth-clients")
                .arg(if tls.require_client_cert { "yes" } else { "no" });
        }
        if let Some((name, password, rules)) = &self.options.user {
            // One config line `user <name> on ><password> <rules...>`, passed as separate words.
            cmd.arg("--user").arg(name).arg("on").arg(format!(">{password}"));
            cmd.args(rules.split_whitespace());
        }
        for (k, v) in &self.options.extra {
            cmd.arg(format!("--{k}")).arg(v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child =
            spawner::spawn(cmd).map_err(|e| Error(format!("spawn {}: {e}", self.binary.display())))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if answers_ping(port) {
                let node = &mut self.members[i][j];
                node.child = Some(child);
                node.paused.store(false, Ordering::Relaxed);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error(format!(
                    "redis-server {label} on port {port} exited ({status}) at start; log tail:\n{}",
                    log_tail(&dir, 20)
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error(format!(
                    "redis-server {label} on port {port} did not answer PING within {START_TIMEOUT:?}; log tail:\n{}",
                    log_tail(&dir, 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Number of nodes (members).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Node `i`'s port on 127.0.0.1; for a clustered member, shard 0's.
    pub fn port(&self, i: usize) -> u16 {
        self.members[i][0].port
    }

    /// Node `i`'s URL for clients: as the [`ClusterOptions::user`] if one is set, else as the
    /// default user (with the password if one is set).
    ///
    /// A clustered member's URL lists the ports its shards' primaries were started on, with the
    /// credentials on the first host: `redis+cluster://:pw@127.0.0.1:p1,127.0.0.1:p2,...`.
    pub fn url(&self, i: usize) -> String {
        if self.clustered() {
            let hosts: Vec<String> = (0..self.options.shards)
                .map(|s| format!("127.0.0.1:{}", self.shard_port(i, s)))
                .collect();
            let auth = match (&self.options.user, &self.options.password) {
                (Some((name, password, _)), _) => format!("{name}:{password}@"),
                (None, Some(pw)) => format!(":{pw}@"),
                (None, None) => String::new(),
            };
            return format!("redis+cluster://{auth}{}", hosts.join(","));
        }
        match &self.options.user {
            Some((name, password, _)) => {
                format!("redis://{name}:{password}@127.0.0.1:{}", self.port(i))
            }
            None => self.admin_url(i),
        }
    }

    /// Node `i`'s URL as the default user, which may run every command: for auditors and fault
    /// injection. For a clustered member: a plain `redis://` URL of shard 0's first primary.
    pub fn admin_url(&self, i: usize) -> String {
        match &self.options.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port(i)),
            None => format!("redis://127.0.0.1:{}", self.port(i)),
        }
    }

    /// Node `i`'s TLS URL for `host` (which must resolve to 127.0.0.1): `rediss://host:port`.
    ///
    /// # Panics
    /// If the cluster was started without [`ClusterOptions::tls`].
    pub fn tls_url(&self, i: usize, host: &str) -> String {
        assert!(self.options.tls.is_some(), "the cluster has no TLS port");
        format!("rediss://{host}:{}", self.members[i][0].tls_port)
    }

    /// Every node's URL, in order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// Node `i`'s process id, if it is running; for a clustered member, shard 0's primary's.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i][0].child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of node `i`'s log; for a clustered member, shard 0's.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        log_tail(&self.members[i][0].dir, lines)
    }

    pub(crate) fn signal_node(&self, i: usize, j: usize, sig: libc::c_int) -> Result<(), Error> {
        let node = &self.members[i][j];
        let pid = node
            .child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| Error(format!("{} is not running", self.label(i, j))))?;
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            return Err(Error(format!(
                "kill({pid}, {sig}): {}",
                std::io::Error::last_os_error()
            )));
        }
        match sig {
            libc::SIGSTOP => node.paused.store(true, Ordering::Relaxed),
            libc::SIGCONT => node.paused.store(false, Ordering::Relaxed),
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn kill_node(&mut self, i: usize, j: usize) -> Result<(), Error> {
        if let Some(mut child) = self.members[i][j].child.take() {
            child
                .kill()
                .map_err(|e| Error(format!("kill {}: {e}", self.label(i, j))))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// SIGKILLs node `i` and reaps it (every process of a clustered member, replicas included).
    /// Killing a node that is down is a no-op.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill(&mut self, i: usize) -> Result<(), Error> {
        for j in 0..self.members[i].len() {
            self.kill_node(i, j)?;
        }
        Ok(())
    }

    /// Starts node `i` again on the same port with its data directory as it is (an AOF profile
    /// reloads its data; [`Persistence::None`] comes back empty).
    ///
    /// A clustered member starts each of its processes that is down (they rejoin with their
    /// `nodes.conf`) and waits until the cluster settles, as [`start_with`](Self::start_with)
    /// does.
    ///
    /// # Errors
    /// When the node is still running (for a clustered member: every process is) or does not
    /// come up.
    pub fn restart(&mut self, i: usize) -> Result<(), Error> {
        if self.is_running(i) {
            return Err(Error(format!("node {i} is running: kill it first")));
        }
        for j in 0..self.members[i].len() {
            if self.members[i][j].child.is_none() {
                self.launch(i, j)?;
            }
        }
        if self.clustered() {
            self.wait_for_cluster_ok(i)?;
        }
        Ok(())
    }

    /// Starts node `i` again on the same port with its data files deleted first: a node that
    /// lost its memory (amnesia), whatever the persistence profile. A clustered member keeps its
    /// `nodes.conf`, so it loses its keys but not its place in the cluster; only the processes
    /// that are down are wiped.
    ///
    /// # Errors
    /// As [`restart`](Self::restart).
    pub fn restart_empty(&mut self, i: usize) -> Result<(), Error> {
        for node in self.members[i].iter().filter(|n| n.child.is_none()) {
            for entry in std::fs::read_dir(&node.dir)
                .map_err(|e| Error(e.to_string()))?
                .flatten()
            {
                if entry.file_name() != "redis.log" && entry.file_name() != "nodes.conf" {
                    let p = entry.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        self.restart(i)
    }

    /// SIGSTOPs node `i` (every process of a clustered member): its socket stays open and
    /// requests queue up unanswered.
    ///
    /// # Errors
    /// When the node is not running.
    pub fn pause(&self, i: usize) -> Result<(), Error> {
        (0..self.members[i].len()).try_for_each(|j| self.signal_node(i, j, libc::SIGSTOP))
    }

    /// SIGCONTs node `i` (every process of a clustered member).
    ///
    /// # Errors
    /// When the node is not running.
    pub fn resume(&self, i: usize) -> Result<(), Error> {
        (0..self.members[i].len()).try_for_each(|j| self.signal_node(i, j, libc::SIGCONT))
    }

    /// Whether node `i` has a running process (for a clustered member: every process runs).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].iter().all(|n| n.child.is_some())
    }
}

impl LocalCluster {
    /// Every key under `prefix` on every running process that answers, with its PTTL, as
    /// audit samples (member index, key, PTTL). A process that does not answer (paused, say)
    /// is skipped: the audit reads what it can.
    pub fn keyspace(&self, prefix: &str) -> Vec<crate::audit::Sample> {
        let mut out = Vec::new();
        let pattern = format!("{prefix}*");
        for (i, member) in self.members.iter().enumerate() {
            for node in member.iter().filter(|n| n.child.is_some()) {
                let Ok(mut conn) = crate::resp::Conn::open(node.port, self.options.password.as_deref())
                else {
                    continue;
                };
                let Ok(crate::Reply::Array(Some(keys))) = conn.call(&[b"KEYS", pattern.as_bytes()]) else {
                    continue;
                };
                for key in keys {
                    let crate::Reply::Bulk(Some(key)) = key else {
                        continue;
                    };
                    if let Ok(crate::Reply::Int(pttl)) = conn.call(&[b"PTTL", &key]) {
                        out.push(crate::audit::Sample::new(i, String::from_utf8_lossy(&key), pttl));
                    }
                }
            }
        }
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let findings = match &self.options.audit {
            Some((prefix, bounds)) if !std::thread::panicking() => {
                crate::audit::check(prefix, bounds, self.keyspace(prefix)).err()
            }
            _ => None,
        };
        for node in self.members.iter_mut().flatten() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(found) = findings {
            let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
            panic!(
                "the key audit at the cluster's drop found keys outside their bounds:\n{}",
                lines.join("\n")
            );
        }
    }
}

/// The lock nodes for a demo or a test: the comma-separated URLs in the environment variable
/// `var` if it is set, otherwise a fresh `LocalCluster` of `n` nodes (returned too, so it lives
/// as long as the caller needs it).
///
/// # Errors
/// When no variable is set and the cluster cannot start.
pub fn nodes_from_env_or_local(var: &str, n: usize) -> Result<(Vec<String>, Option<LocalCluster>), Error> {
    match std::env::var(var) {
        Ok(list) => Ok((
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            None,
        )),
        Err(_) => {
            let cluster = LocalCluster::start(n)?;
            Ok((cluster.urls(), Some(cluster)))
        }
    }
}
