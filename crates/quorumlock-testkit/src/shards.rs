//! Members that are Redis Clusters ([`ClusterOptions::shards`]): forming each cluster with
//! `redis-cli --cluster create`, waiting until it has settled, and per-shard process control.
//!
//! Shard `s` of a member is a group of processes: the one started as its primary and its
//! replicas. Process control ([`LocalCluster::kill_shard`] and friends) acts on the process
//! started as the primary, which after a failover may be a replica; [`LocalCluster::primary_of`]
//! and [`LocalCluster::serving_port`] say who serves a slot now.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{log_tail, ClusterOptions, Error, LocalCluster};
use crate::resp::{Conn, Reply};
use crate::spawner;

/// Node timeout of every shard: failure detection and failover in a second or two.
const NODE_TIMEOUT_MS: u32 = 1000;
/// `redis-cli --cluster create` plus the gossip that follows; generous for a loaded 2-core box.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

pub(crate) fn check_options(options: &ClusterOptions) -> Result<(), Error> {
    let refuse = |why: &str| Err(Error::new(format!("ClusterOptions: {why}")));
    match options.shards {
        0 => refuse("shards(0): a member needs at least one shard"),
        1 if options.replicas > 0 => {
            refuse("replicas need a clustered member: use shards(3) or more with replicas")
        }
        2 => refuse("shards(2): `redis-cli --cluster create` needs at least 3 primaries"),
        k if k > 1 && options.tls.is_some() => {
            refuse("TLS on clustered members is not supported by the test kit")
        }
        _ => Ok(()),
    }
}

pub(crate) fn cluster_args(cmd: &mut Command, dir: &Path, password: Option<&str>) {
    cmd.arg("--cluster-enabled")
        .arg("yes")
        .arg("--cluster-config-file")
        .arg(dir.join("nodes.conf"))
        .arg("--cluster-node-timeout")
        .arg(NODE_TIMEOUT_MS.to_string());
    if let Some(pw) = password {
        // Replicas authenticate to their primary as the default user.
        cmd.arg("--masterauth").arg(pw);
    }
}

/// `redis-cli` next to the server binary (`valkey-server` pairs with `valkey-cli`), else on
/// PATH; `REDIS_CLI_BIN` overrides both.
fn find_cli(server: &Path) -> Result<PathBuf, Error> {
    if let Some(bin) = std::env::var_os("REDIS_CLI_BIN") {
        return Ok(bin.into());
    }
    let name = server.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let sibling = server.with_file_name(name.replace("-server", "-cli"));
    if name.contains("-server") && sibling.is_file() {
        return Ok(sibling);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-cli"))
        .find(|c| c.is_file())
        .ok_or_else(|| {
            Error::new(
                "redis-cli not found (it comes with redis-server: `apt-get install -y redis-server`); \
                 set REDIS_CLI_BIN to its path"
                    .into(),
            )
        })
}

/// Joins every member's processes into a cluster (all members at once: `redis-cli` waits for
/// gossip most of the time), puts each member's processes in shard order and waits until every
/// member has settled.
pub(crate) fn form(cluster: &mut LocalCluster) -> Result<(), Error> {
    let cli = find_cli(&cluster.binary)?;
    let mut running: Vec<(usize, Child, PathBuf)> = Vec::new();
    let spawned = (0..cluster.len()).try_for_each(|i| {
        let log = cluster.members[i][0].dir.join("cluster-create.log");
        let out = std::fs::File::create(&log).map_err(|e| Error::new(format!("{}: {e}", log.display())))?;
        let err = out.try_clone().map_err(|e| Error::new(e.to_string()))?;
        let mut cmd = Command::new(&cli);
        cmd.arg("--cluster").arg("create");
        cmd.args(cluster.members[i].iter().map(|n| format!("127.0.0.1:{}", n.port)));
        cmd.arg("--cluster-replicas")
            .arg(cluster.options.replicas.to_string())
            .arg("--cluster-yes");
        if let Some(pw) = &cluster.options.password {
            // Not `-a`: redis-cli warns on stderr about a password on the command line.
            cmd.env("REDISCLI_AUTH", pw);
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = spawner::spawn(cmd).map_err(|e| Error::new(format!("spawn {}: {e}", cli.display())))?;
        running.push((i, child, log));
        Ok::<_, Error>(())
    });
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut failure = spawned.err();
    for (i, mut child, log) in running {
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        if failure.is_none() && !status.is_some_and(|s| s.success()) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let what = status.map_or_else(
                || format!("did not finish in {SETTLE_TIMEOUT:?}"),
                |s| s.to_string(),
            );
            failure = Some(Error::new(format!(
                "`redis-cli --cluster create` for node {i}: {what}; its output:\n{text}"
            )));
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    for i in 0..cluster.len() {
        order_by_shard(cluster, i)?;
    }
    for i in 0..cluster.len() {
        cluster.wait_for_cluster_ok(i)?;
    }
    Ok(())
}

/// `redis-cli` chooses which replica follows which primary (it shuffles them for
/// anti-affinity), so the shard layout is read back from the processes: primaries in slot
/// order, each followed by its replicas.
fn order_by_shard(cluster: &mut LocalCluster, i: usize) -> Result<(), Error> {
    let (k, r) = (cluster.options.shards, cluster.options.replicas);
    let pw = cluster.options.password.clone();
    let ports: Vec<u16> = cluster.members[i].iter().map(|n| n.port).collect();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let layout = loop {
        let attempt = (|| -> Result<Option<Vec<usize>>, Error> {
            // (first slot, process) per primary; (primary's port, process) per replica.
            let mut primaries = Vec::new();
            let mut replicas = Vec::new();
            for (j, &port) in ports.iter().enumerate() {
                let mut conn = Conn::open(port, pw.as_deref())?;
                let info = conn.text(&["INFO", "replication"])?;
                if info_field(&info, "role") == Some("slave") {
                    let Some(master) = info_field(&info, "master_port").and_then(|p| p.parse::<u16>().ok())
                    else {
                        return Ok(None);
                    };
                    replicas.push((master, j));
                } else {
                    let nodes = conn.text(&["CLUSTER", "NODES"])?;
                    let first = parse_nodes(&nodes)
                        .into_iter()
                        .find(|n| n.flags.iter().any(|f| f == "myself"))
                        .and_then(|n| {
                            n.slots
                                .first()
                                .and_then(|s| s.split('-').next()?.parse::<u16>().ok())
                        });
                    primaries.push((first.unwrap_or(u16::MAX), j));
                }
            }
            if primaries.len() != k || replicas.len() != k * r {
                return Ok(None);
            }
            primaries.sort();
            let mut order = Vec::with_capacity(k * (1 + r));
            for &(_, p) in &primaries {
                order.push(p);
                order.extend(replicas.iter().filter(|(m, _)| *m == ports[p]).map(|&(_, j)| j));
            }
            Ok((order.len() == ports.len()).then_some(order))
        })();
        match attempt {
            Ok(Some(order)) => break order,
            Ok(None) | Err(_) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                return Err(cluster.settle_error(i, "replicas did not all attach to a primary".into()))
            }
            Err(e) => return Err(cluster.settle_error(i, e.to_string())),
        }
    };
    let mut old: Vec<_> = std::mem::take(&mut cluster.members[i])
        .into_iter()
        .map(Some)
        .collect();
    cluster.members[i] = layout.into_iter().filter_map(|j| old[j].take()).collect();
    Ok(())
}

pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
pub(crate) struct NodeLine {
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) flags: Vec<String>,
    /// The primary's id for a replica.
    pub(crate) master: Option<String>,
    /// Slot ranges, and `[slot->-id]` / `[slot-<-id]` for a slot being migrated or imported.
    pub(crate) slots: Vec<String>,
}

impl NodeLine {
    pub(crate) fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }
}

pub(crate) fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // `ip:port@busport[,hostname]`
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            Some(NodeLine {
                id: f[0].to_owned(),
                port,
                flags: f[2].split(',').map(String::from).collect(),
                master: (f[3] != "-").then(|| f[3].to_owned()),
                slots: f[8..].iter().map(|s| s.to_string()).collect(),
            })
        })
        .collect()
}

/// `CLUSTER SLOTS` as (first slot, last slot, primary's port), sorted.
fn parse_slots(reply: &Reply) -> Option<Vec<(i64, i64, i64)>> {
    let Reply::Array(Some(ranges)) = reply else {
        return None;
    };
    let mut out = Vec::new();
    for range in ranges {
        let Reply::Array(Some(r)) = range else {
            return None;
        };
        let (Some(Reply::Int(a)), Some(Reply::Int(b)), Some(Reply::Array(Some(primary)))) =
            (r.first(), r.get(1), r.get(2))
        else {
            return None;
        };
        let Some(Reply::Int(port)) = primary.get(1) else {
            return None;
        };
        out.push((*a, *b, *port));
    }
    out.sort();
    Some(out)
}

impl LocalCluster {
    /// Primary shards per member: 1 for single-server members.
    pub fn shards(&self) -> usize {
        self.options.shards
    }

    /// Replicas per shard.
    pub fn replicas(&self) -> usize {
        self.options.replicas
    }

    /// Index in `members[i]` of shard `s`'s process `j` (0: started as primary, 1..: replicas).
    fn index_of(&self, s: usize, j: usize) -> usize {
        assert!(s < self.shards(), "shard {s} of {}", self.shards());
        s * (1 + self.replicas()) + j
    }

    /// Port of the process started as shard `s`'s primary of member `i`; shard 0 of a
    /// single-server member is the server. After a failover that process may be a replica:
    /// [`serving_port`](Self::serving_port) says who serves a slot now.
    ///
    /// # Panics
    /// If `s` is not below [`shards`](Self::shards).
    pub fn shard_port(&self, i: usize, s: usize) -> u16 {
        self.members[i][self.index_of(s, 0)].port
    }

    /// Process id of the process started as shard `s`'s primary, if it is running.
    ///
    /// # Panics
    /// As [`shard_port`](Self::shard_port).
    pub fn shard_pid(&self, i: usize, s: usize) -> Option<u32> {
        self.members[i][self.index_of(s, 0)].child.as_ref().map(Child::id)
    }

    /// Port of shard `s`'s (first) replica.
    ///
    /// # Panics
    /// If the cluster has no replicas or `s` is not below [`shards`](Self::shards).
    pub fn replica_port(&self, i: usize, s: usize) -> u16 {
        assert!(self.replicas() > 0, "the cluster was started without replicas");
        self.members[i][self.index_of(s, 1)].port
    }

    /// Process id of shard `s`'s (first) replica, if it is running.
    ///
    /// # Panics
    /// As [`replica_port`](Self::replica_port).
    pub fn replica_pid(&self, i: usize, s: usize) -> Option<u32> {
        assert!(self.replicas() > 0, "the cluster was started without replicas");
        self.members[i][self.index_of(s, 1)].child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the log of the process started as shard `s`'s primary.
    pub fn shard_log_tail(&self, i: usize, s: usize, lines: usize) -> String {
        log_tail(&self.members[i][self.index_of(s, 0)].dir, lines)
    }

    /// SIGKILLs the process started as shard `s`'s primary of member `i` and reaps it; a no-op
    /// when it is down. Without replicas (and with the default `cluster-require-full-coverage
    /// yes`) the whole member then answers `CLUSTERDOWN` once the others notice, about a node
    /// timeout later.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill_shard(&mut self, i: usize, s: usize) -> Result<(), Error> {
        let j = self.index_of(s, 0);
        self.kill_node(i, j)
    }

    /// Starts shard `s`'s process again on the same port and data directory. Its `nodes.conf`
    /// is kept, so it rejoins the cluster by itself (as a replica if its replica took over);
    /// waits until the member reports `cluster_state:ok` everywhere (see
    /// [`wait_for_cluster_ok`](Self::wait_for_cluster_ok)).
    ///
    /// # Errors
    /// When the process is running, does not come up, or the cluster does not settle.
    pub fn restart_shard(&mut self, i: usize, s: usize) -> Result<(), Error> {
        let j = self.index_of(s, 0);
        if self.members[i][j].child.is_some() {
            return Err(Error::new(format!(
                "{} is running: kill it first",
                self.label(i, j)
            )));
        }
        self.launch(i, j)?;
        if self.clustered() {
            self.wait_for_cluster_ok(i)?;
        }
        Ok(())
    }

    /// SIGSTOPs the process started as shard `s`'s primary.
    ///
    /// # Errors
    /// When it is not running.
    pub fn pause_shard(&self, i: usize, s: usize) -> Result<(), Error> {
        self.signal_node(i, self.index_of(s, 0), libc::SIGSTOP)
    }

    /// SIGCONTs the process started as shard `s`'s primary.
    ///
    /// # Errors
    /// When it is not running.
    pub fn resume_shard(&self, i: usize, s: usize) -> Result<(), Error> {
        self.signal_node(i, self.index_of(s, 0), libc::SIGCONT)
    }

    /// Sends one command to the server on 127.0.0.1:`port` (any process of this cluster) as the
    /// default user, and returns its reply; an error reply (`-MOVED`, `-ASK`, ...) is an
    /// `Ok(Reply::Error)`. Redirections are not followed: this is for looking at one shard.
    ///
    /// # Errors
    /// When the server cannot be reached or the password is refused.
    pub fn command<A: AsRef<[u8]>>(&self, port: u16, args: &[A]) -> Result<Reply, Error> {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        Conn::open(port, self.options.password.as_deref())?.call(&args)
    }

    /// Port of the process that serves `slot` of member `i` now, from `CLUSTER SLOTS` of the
    /// first of its processes that is running and not paused.
    ///
    /// # Errors
    /// On a single-server member, when no process answers, or when no process serves the slot.
    pub fn serving_port(&self, i: usize, slot: u16) -> Result<u16, Error> {
        if !self.clustered() {
            return Err(Error::new(format!("node {i} is a single server, not a cluster")));
        }
        let mut last = Error::new(format!("no process of node {i} is running"));
        for node in self.members[i].iter().filter(|n| n.answers()) {
            let reply = Conn::open(node.port, self.options.password.as_deref())
                .and_then(|mut c| c.ok(&[b"CLUSTER", b"SLOTS"]));
            match reply.map(|r| parse_slots(&r)) {
                Ok(Some(map)) => {
                    let slot = i64::from(slot);
                    return map
                        .iter()
                        .find(|&&(a, b, _)| a <= slot && slot <= b)
                        .map(|&(_, _, port)| port as u16)
                        .ok_or_else(|| Error::new(format!("slot {slot} of node {i} is not served")));
                }
                Ok(None) => {
                    last = Error::new(format!("127.0.0.1:{}: unexpected CLUSTER SLOTS reply", node.port))
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Which shard of member `i` serves `slot` now (whichever process of the shard is its
    /// primary): `0` for every slot of a single-server member.
    ///
    /// # Errors
    /// As [`serving_port`](Self::serving_port), except for single-server members.
    pub fn primary_of(&self, i: usize, slot: u16) -> Result<usize, Error> {
        if !self.clustered() {
            return Ok(0);
        }
        let port = self.serving_port(i, slot)?;
        self.members[i]
            .iter()
            .position(|n| n.port == port)
            .map(|j| j / (1 + self.replicas()))
            .ok_or_else(|| Error::new(format!("slot {slot} is served by 127.0.0.1:{port}, not node {i}")))
    }

    /// Index in `members[i]` of the process of shard `s` that is a primary now.
    pub(crate) fn current_primary(&self, i: usize, s: usize) -> Result<usize, Error> {
        for j in self.index_of(s, 0)..=self.index_of(s, self.replicas()) {
            let node = &self.members[i][j];
            if !node.answers() {
                continue;
            }
            let info =
                Conn::open(node.port, self.options.password.as_deref())?.text(&["INFO", "replication"])?;
            if info_field(&info, "role") == Some("master") {
                return Ok(j);
            }
        }
        Err(Error::new(format!(
            "shard {s} of node {i} has no running primary"
        )))
    }

    /// Waits until a replica of shard `s` of member `i` has become its primary (after
    /// [`kill_shard`](Self::kill_shard) or [`pause_shard`](Self::pause_shard)) and the member has
    /// settled as [`wait_for_cluster_ok`](Self::wait_for_cluster_ok) describes. Returns the new
    /// primary's port. With the kit's 1 s node timeout a failover takes about 2 to 3 s.
    ///
    /// # Errors
    /// When the cluster has no replicas, or no failover happens within 30 s (the message holds
    /// log tails).
    pub fn wait_for_failover(&self, i: usize, s: usize) -> Result<u16, Error> {
        if self.replicas() == 0 {
            return Err(Error::new(
                "wait_for_failover: the cluster was started without replicas".into(),
            ));
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let why = match self.current_primary(i, s) {
                Ok(j) if j != self.index_of(s, 0) => match self.settled(i) {
                    Ok(()) => return Ok(self.members[i][j].port),
                    Err(why) => why,
                },
                Ok(_) => format!("shard {s}'s first process is still its primary"),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(self.settle_error(i, format!("no failover of shard {s}: {why}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until each running replica of shard `s` of member `i` has received everything its
    /// primary had written when this was called: the replica's `slave_repl_offset` reaches the
    /// primary's `master_repl_offset`. Replication is asynchronous, so a test that kills a
    /// primary to see a replica take over calls this first when what was written before must
    /// survive. `WAIT` from [`command`](Self::command) does not do this: it waits for the offset
    /// of its own connection's writes, and a fresh connection has none, so it answers at once.
    ///
    /// # Errors
    /// When the shard has no running primary, or a replica has not caught up within 10 s.
    pub fn wait_for_replication(&self, i: usize, s: usize) -> Result<(), Error> {
        let password = self.options.password.as_deref();
        let offset = |j: usize, field: &str| -> Result<u64, Error> {
            let info = Conn::open(self.members[i][j].port, password)?.text(&["INFO", "replication"])?;
            info_field(&info, field)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::new(format!("{}: no {field} in INFO replication", self.label(i, j))))
        };
        let primary = self.current_primary(i, s)?;
        let written = offset(primary, "master_repl_offset")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        for j in self.index_of(s, 0)..=self.index_of(s, self.replicas()) {
            if j == primary || !self.members[i][j].answers() {
                continue;
            }
            loop {
                match offset(j, "slave_repl_offset") {
                    Ok(got) if got >= written => break,
                    got if Instant::now() > deadline => {
                        return Err(Error::new(format!(
                            "{}: replication offset {got:?} below the primary's {written} after 10 s",
                            self.label(i, j)
                        )))
                    }
                    _ => std::thread::sleep(POLL),
                }
            }
        }
        Ok(())
    }

    /// Waits until every running, unpaused process of member `i` reports `cluster_state:ok`,
    /// they agree on the slot map (`CLUSTER SLOTS`) and on each other's role, none is marked
    /// failing or has a slot migrating or importing, and every replica's link to its primary is
    /// up. A no-op for single-server members.
    ///
    /// # Errors
    /// When that does not happen within 30 s (the message says what was missing last and holds
    /// the log tails).
    pub fn wait_for_cluster_ok(&self, i: usize) -> Result<(), Error> {
        if !self.clustered() {
            return Ok(());
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            match self.settled(i) {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() > deadline => return Err(self.settle_error(i, why)),
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    pub(crate) fn settle_error(&self, i: usize, why: String) -> Error {
        let mut msg = format!("node {i}'s cluster did not settle in {SETTLE_TIMEOUT:?}: {why}");
        for (j, node) in self.members[i].iter().enumerate() {
            msg.push_str(&format!(
                "\n--- {} (127.0.0.1:{}) log tail:\n{}",
                self.label(i, j),
                node.port,
                log_tail(&node.dir, 8)
            ));
        }
        let create = self.members[i][0].dir.join("cluster-create.log");
        if let Ok(text) = std::fs::read_to_string(create) {
            msg.push_str(&format!("\n--- redis-cli --cluster create:\n{text}"));
        }
        Error::new(msg)
    }

    /// Why member `i` has not settled yet, or `Ok`.
    fn settled(&self, i: usize) -> Result<(), String> {
        let pw = self.options.password.as_deref();
        let live: Vec<u16> = self.members[i]
            .iter()
            .filter(|n| n.answers())
            .map(|n| n.port)
            .collect();
        if live.is_empty() {
            return Err(format!("no process of node {i} is running"));
        }
        let mut maps = Vec::new();
        let mut views = Vec::new();
        for &port in &live {
            let mut conn = Conn::open(port, pw).map_err(|e| e.to_string())?;
            let info = conn.text(&["CLUSTER", "INFO"]).map_err(|e| e.to_string())?;
            if info_field(&info, "cluster_state") != Some("ok") {
                return Err(format!("127.0.0.1:{port}: cluster_state is not ok"));
            }
            let slots = conn.ok(&[b"CLUSTER", b"SLOTS"]).map_err(|e| e.to_string())?;
            maps.push((port, parse_slots(&slots).ok_or("unexpected CLUSTER SLOTS reply")?));
            let nodes = parse_nodes(&conn.text(&["CLUSTER", "NODES"]).map_err(|e| e.to_string())?);
            let me = nodes
                .iter()
                .find(|n| n.flags.iter().any(|f| f == "myself"))
                .ok_or_else(|| format!("127.0.0.1:{port}: no `myself` in CLUSTER NODES"))?;
            if me.slots.iter().any(|s| s.starts_with('[')) {
                return Err(format!("127.0.0.1:{port}: a slot is migrating or importing"));
            }
            if !me.is_master() {
                let repl = conn.text(&["INFO", "replication"]).map_err(|e| e.to_string())?;
                if info_field(&repl, "master_link_status") != Some("up") {
                    return Err(format!(
                        "127.0.0.1:{port}: replica's link to its primary is not up"
                    ));
                }
            }
            views.push(nodes);
        }
        if let Some((port, _)) = maps.iter().find(|(_, m)| *m != maps[0].1) {
            return Err(format!(
                "127.0.0.1:{port} and 127.0.0.1:{} disagree on the slot map",
                maps[0].0
            ));
        }
        // Each live process as it sees itself; every other live process must see it so too.
        let selves: HashMap<&str, &crate::shards::NodeLine> = views
            .iter()
            .filter_map(|v| v.iter().find(|n| n.flags.iter().any(|f| f == "myself")))
            .map(|n| (n.id.as_str(), n))
            .collect();
        for (view, &port) in views.iter().zip(&live) {
            for (id, me) in &selves {
                let Some(seen) = view.iter().find(|n| n.id == *id) else {
                    return Err(format!("127.0.0.1:{port} does not know 127.0.0.1:{}", me.port));
                };
                let bad = ["fail", "fail?", "handshake", "noaddr"];
                if seen.flags.iter().any(|f| bad.contains(&f.as_str()))
                    || seen.is_master() != me.is_master()
                    || seen.master != me.master
                {
                    return Err(format!(
                        "127.0.0.1:{port} sees 127.0.0.1:{} as {:?} {:?}, it is {:?} {:?}",
                        me.port, seen.flags, seen.master, me.flags, me.master
                    ));
                }
            }
        }
        Ok(())
    }
}
