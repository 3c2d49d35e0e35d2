//! Node URLs: parsing, TLS settings, and the redacted form used in messages. The node's side
//! of the configuration: the builder hands each URL here and gets back the address shown in
//! errors and the redis-rs client that connects to it.

use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::IntoConnectionInfo;

use crate::errors::error::Error;

/// What one member URL names: one redis-server, or a whole Redis Cluster
/// (`redis+cluster://h1:p1,h2:p2`), which counts as one member of the quorum.
// One per member, made once: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Endpoint {
    Single(redis::Client),
    Cluster {
        client: ClusterClient,
        /// One plain client per seed address: the duplicate check compares them, and the
        /// release subscriber connects to the first (a cluster broadcasts `PUBLISH` to every
        /// shard).
        seeds: Vec<redis::Client>,
    },
}

impl Endpoint {
    /// The addresses given for this member.
    pub(crate) fn addrs(&self) -> Vec<&redis::ConnectionAddr> {
        match self {
            Self::Single(c) => vec![c.get_connection_info().addr()],
            Self::Cluster { seeds, .. } => seeds.iter().map(|c| c.get_connection_info().addr()).collect(),
        }
    }

    /// A plain client for this member's own connections (the release subscriber).
    pub(crate) fn plain(&self) -> &redis::Client {
        match self {
            Self::Single(c) => c,
            Self::Cluster { seeds, .. } => &seeds[0],
        }
    }
}

/// Redirections and re-sends redis-rs may make for one request to a cluster member. A `MOVED`
/// or `ASK` (a slot moving between shards) must be followed; a re-send after a broken
/// connection may repeat a request that was applied, which the scripts make harmless (an
/// acquire already granted to its token is granted again; a release always leaves a
/// tombstone on cluster members). Every call stays bounded by the node timeout whatever this is.
const CLUSTER_RETRIES: u32 = 4;

/// Parses one member URL: a single server ([`parse_node`]) or a cluster.
pub(crate) fn parse_member(
    index: usize,
    raw: &str,
    tls: &TlsOptions,
    timeout: Duration,
) -> Result<(String, Endpoint), Error> {
    let plain_scheme = match raw.split_once("://") {
        Some(("redis+cluster", _)) => "redis",
        Some(("rediss+cluster", _)) => "rediss",
        _ => {
            let (addr, client) = parse_node(index, raw, tls)?;
            return Ok((addr, Endpoint::Single(client)));
        }
    };
    let (scheme, rest) = raw.split_once("://").unwrap_or_default();
    // Authority up to the first '/', '?' or '#'; credentials before its last '@'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (auth, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let shown = format!("{scheme}://{}{hosts}", if auth.is_empty() { "" } else { "***@" });
    let fail = |what: &str| Error::config(format!("node {index} ({shown}): {what}"));
    if tail.contains("tls_") {
        return Err(fail(
            "TLS files of a cluster member are given with the builder's TLS options, not in its URL",
        ));
    }
    let mut seeds = Vec::new();
    let mut infos = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(fail("an empty address in the cluster's address list"));
        }
        let (_, client) = parse_node(index, &format!("{plain_scheme}://{auth}{host}{tail}"), tls)?;
        if client.get_connection_info().redis_settings().db() != 0 {
            return Err(fail("a Redis Cluster has only database 0"));
        }
        infos.push(client.get_connection_info().clone());
        seeds.push(client);
    }
    let mut builder = ClusterClient::builder(infos)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(CLUSTER_RETRIES);
    if plain_scheme == "rediss" && (tls.ca_pem.is_some() || tls.client.is_some()) {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: tls
                .client
                .clone()
                .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: tls.ca_pem.clone(),
        });
    }
    let client = builder
        .build()
        .map_err(|e| fail(e.detail().unwrap_or("invalid cluster configuration")))?;
    let addr = format!("{scheme}://{hosts}");
    Ok((addr, Endpoint::Cluster { client, seeds }))
}

/// TLS settings shared by every `rediss://` node (a node's URL may override the files).
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) accept_invalid: bool,
}

/// A URL with user name and password replaced by `***`, for messages. Input that does not parse
/// as a URL is not echoed at all: it could be a password pasted in the wrong place.
pub(crate) fn redact(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("redis+cluster://")
        .or_else(|| url.strip_prefix("rediss+cluster://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let hosts = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let hosts = &hosts[..hosts.find(['/', '?', '#']).unwrap_or(hosts.len())];
        let auth = if rest.contains('@') { "***@" } else { "" };
        return format!("{scheme}{auth}{hosts}");
    }
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("***");
                let _ = u.set_password(None);
            }
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// Our own URL query parameters (TLS files); removed before redis-rs sees the URL.
const TLS_PARAMS: [&str; 3] = ["tls_ca", "tls_cert", "tls_key"];

/// Parses one node URL into its display address and a redis-rs client.
pub(crate) fn parse_node(
    index: usize,
    raw: &str,
    tls: &TlsOptions,
) -> Result<(String, redis::Client), Error> {
    let shown = redact(raw);
    let fail = |what: String| Error::config(format!("node {index} ({shown}): {what}"));
    if !raw.contains("://") && !raw.starts_with("unix:") && !raw.starts_with("redis+unix:") {
        // `127.0.0.1:6379` is a relative URL to the parser, and `localhost:6379` a URL of scheme
        // "localhost": say what is missing instead (issue 21). The text is not echoed: without a
        // scheme nothing tells a host from a password pasted in the wrong place (G8).
        return Err(Error::config(format!(
            "node {index} has no scheme (a URL starts with redis://, rediss://, unix:// or \
             redis+cluster://): write host:port as redis://host:port"
        )));
    }
    let mut url =
        url::Url::parse(raw).map_err(|e| Error::config(format!("node {index}: not a valid URL ({e})")))?;
    let is_tls = match url.scheme() {
        "redis" | "unix" | "redis+unix" => false,
        "rediss" => true,
        other => {
            return Err(fail(format!(
                "unsupported scheme {other:?}; use redis, rediss, unix or redis+unix"
            )))
        }
    };
    match url.fragment() {
        None => {}
        Some("insecure") if is_tls && tls.accept_invalid => {}
        Some("insecure") if is_tls => {
            return Err(fail(
                "#insecure turns off TLS certificate checks; it is refused unless \
                 danger_accept_invalid_tls_certs(true) is set"
                    .into(),
            ))
        }
        Some(_) => return Err(fail("URL fragments are refused".into())),
    }
    // Split off our TLS file parameters; the rest of the query goes to redis-rs unchanged.
    let mut files: [Option<String>; 3] = Default::default();
    let rest: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| match TLS_PARAMS.iter().position(|p| *p == k) {
            Some(i) => {
                files[i] = Some(v.into_owned());
                None
            }
            None => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    if files.iter().any(Option::is_some) {
        if !is_tls {
            return Err(fail("tls_ca, tls_cert and tls_key need a rediss:// URL".into()));
        }
        url.set_query(None);
        if !rest.is_empty() {
            url.query_pairs_mut().extend_pairs(rest);
        }
    }
    let read = |path: &str| std::fs::read(path).map_err(|e| fail(format!("cannot read {path}: {e}")));
    let [ca_file, cert_file, key_file] = files;
    let ca = match ca_file {
        Some(path) => Some(read(&path)?),
        None => tls.ca_pem.clone(),
    };
    let client_cert = match (cert_file, key_file) {
        (Some(c), Some(k)) => Some((read(&c)?, read(&k)?)),
        (None, None) => tls.client.clone(),
        _ => return Err(fail("tls_cert and tls_key go together".into())),
    };
    if is_tls {
        // redis-rs builds rustls configs from the process-wide provider. Installing fails only if
        // the application already installed one, which we then use.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let info = url
        .as_str()
        .into_connection_info()
        .map_err(|e| fail(e.detail().unwrap_or("invalid Redis URL").to_owned()))?;
    let db = info.redis_settings().db();
    // CLIENT SETINFO costs a round trip per connection and an ACL permission the lock user
    // does not otherwise need.
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let mut addr = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        redis::ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        _ => shown.clone(),
    };
    if db != 0 {
        addr.push_str(&format!("/{db}"));
    }
    let info = info.set_redis_settings(settings);
    let client = if is_tls && (ca.is_some() || client_cert.is_some()) {
        let certs = redis::TlsCertificates {
            client_tls: client_cert.map(|(client_cert, client_key)| redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
            root_cert: ca,
        };
        redis::Client::build_with_tls(info, certs)
    } else {
        redis::Client::open(info)
    };
    let client = client.map_err(|e| fail(e.detail().map_or_else(|| e.to_string(), str::to_owned)))?;
    Ok((addr, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_credentials() {
        assert_eq!(
            redact("redis://alice:s3cret@host:7000/2"),
            "redis://***@host:7000/2"
        );
        assert_eq!(redact("redis://:s3cret@host:7000"), "redis://***@host:7000");
        assert_eq!(redact("redis://host:7000"), "redis://host:7000");
        assert_eq!(redact("not a url s3cret"), "<unparseable URL>");
    }
}
