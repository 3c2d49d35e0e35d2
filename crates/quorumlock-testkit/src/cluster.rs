use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            persistence: Persistence::None,
            password: None,
            extra: Vec::new(),
            tls: None,
            user: None,
        }
    }
}

impl ClusterOptions {
    /// Sets the persistence profile.
    pub fn persistence(mut self, p: Persistence) -> Self {
        self.persistence = p;
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

struct Node {
    port: u16,
    tls_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// N independent `redis-server` processes on loopback.
pub struct LocalCluster {
    nodes: Vec<Node>,
    options: ClusterOptions,
    binary: PathBuf,
    _root: tempfile::TempDir,
}

impl fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCluster")
            .field("ports", &self.nodes.iter().map(|n| n.port).collect::<Vec<_>>())
            .field("persistence", &self.options.persistence)
            .finish()
    }
}

const START_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_TRIES: usize = 5;

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

fn log_tail(dir: &Path, lines: usize) -> String {
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

    /// Starts `n` nodes with `options`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with(n: usize, options: ClusterOptions) -> Result<Self, Error> {
        let binary = find_binary()?;
        let root = tempfile::Builder::new()
            .prefix("quorumlock-cluster-")
            .tempdir()
            .map_err(|e| Error(format!("temp dir: {e}")))?;
        let mut cluster = Self {
            nodes: Vec::with_capacity(n),
            options,
            binary,
            _root: root,
        };
        for i in 0..n {
            let dir = cluster._root.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).map_err(|e| Error(format!("create {}: {e}", dir.display())))?;
            cluster.nodes.push(Node {
                port: 0,
                tls_port: 0,
                dir,
                child: None,
            });
            let mut last = None;
            for _ in 0..PORT_TRIES {
                cluster.nodes[i].port = free_port()?;
                if cluster.options.tls.is_some() {
                    cluster.nodes[i].tls_port = free_port()?;
                }
                match cluster.launch(i) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) if e.0.contains("Address already in use") => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = last {
                return Err(e);
            }
        }
        Ok(cluster)
    }

    fn launch(&mut self, i: usize) -> Result<(), Error> {
        let node = &self.nodes[i];
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
                self.nodes[i].child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error(format!(
                    "redis-server node {i} on port {port} exited ({status}) at start; log tail:\n{}",
                    log_tail(&dir, 20)
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error(format!(
                    "redis-server node {i} on port {port} did not answer PING within {START_TIMEOUT:?}; log tail:\n{}",
                    log_tail(&dir, 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s port on 127.0.0.1.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Node `i`'s URL for clients: as the [`ClusterOptions::user`] if one is set, else as the
    /// default user (with the password if one is set).
    pub fn url(&self, i: usize) -> String {
        match &self.options.user {
            Some((name, password, _)) => {
                format!("redis://{name}:{password}@127.0.0.1:{}", self.nodes[i].port)
            }
            None => self.admin_url(i),
        }
    }

    /// Node `i`'s URL as the default user, which may run every command: for auditors and fault
    /// injection.
    pub fn admin_url(&self, i: usize) -> String {
        match &self.options.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.nodes[i].port),
            None => format!("redis://127.0.0.1:{}", self.nodes[i].port),
        }
    }

    /// Node `i`'s TLS URL for `host` (which must resolve to 127.0.0.1): `rediss://host:port`.
    ///
    /// # Panics
    /// If the cluster was started without [`ClusterOptions::tls`].
    pub fn tls_url(&self, i: usize, host: &str) -> String {
        assert!(self.options.tls.is_some(), "the cluster has no TLS port");
        format!("rediss://{host}:{}", self.nodes[i].tls_port)
    }

    /// Every node's URL, in order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// Node `i`'s process id, if it is running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        log_tail(&self.nodes[i].dir, lines)
    }

    fn signal(&self, i: usize, sig: libc::c_int) -> Result<(), Error> {
        let pid = self
            .pid(i)
            .ok_or_else(|| Error(format!("node {i} is not running")))?;
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            return Err(Error(format!(
                "kill({pid}, {sig}): {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// SIGKILLs node `i` and reaps it. Killing a node that is down is a no-op.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill(&mut self, i: usize) -> Result<(), Error> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().map_err(|e| Error(format!("kill node {i}: {e}")))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// Starts node `i` again on the same port with its data directory as it is (an AOF profile
    /// reloads its data; [`Persistence::None`] comes back empty).
    ///
    /// # Errors
    /// When the node is still running or does not come up.
    pub fn restart(&mut self, i: usize) -> Result<(), Error> {
        if self.nodes[i].child.is_some() {
            return Err(Error(format!("node {i} is running: kill it first")));
        }
        self.launch(i)
    }

    /// Starts node `i` again on the same port with its data files deleted first: a node that
    /// lost its memory (amnesia), whatever the persistence profile.
    ///
    /// # Errors
    /// As [`restart`](Self::restart).
    pub fn restart_empty(&mut self, i: usize) -> Result<(), Error> {
        let dir = &self.nodes[i].dir;
        for entry in std::fs::read_dir(dir)
            .map_err(|e| Error(e.to_string()))?
            .flatten()
        {
            if entry.file_name() != "redis.log" {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        self.restart(i)
    }

    /// SIGSTOPs node `i`: its socket stays open and requests queue up unanswered.
    ///
    /// # Errors
    /// When the node is not running.
    pub fn pause(&self, i: usize) -> Result<(), Error> {
        self.signal(i, libc::SIGSTOP)
    }

    /// SIGCONTs node `i`.
    ///
    /// # Errors
    /// When the node is not running.
    pub fn resume(&self, i: usize) -> Result<(), Error> {
        self.signal(i, libc::SIGCONT)
    }

    /// Whether node `i` has a running process.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
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
