//! TLS (docs/testing.md, "TLS"): `rediss://` nodes with certificates made at test time. A good CA and host
//! name work; an unknown CA, a wrong host name and a missing client certificate fail (as
//! unreachable nodes, never as contention); `#insecure` is refused unless explicitly allowed.

use std::time::Duration;

use quorumlock::{ErrorKind, NodeOutcome, Redlock, RedlockBuilder, Retry};
use quorumlock_testkit::TestPki;

use crate::support::*;

fn tls_cluster(pki: &TestPki, require_client_cert: bool) -> LocalCluster {
    LocalCluster::start_with(3, ClusterOptions::default().tls(pki.server(require_client_cert)))
        .unwrap_or_else(|e| panic!("TLS redis-server: {e}"))
}

fn urls(cluster: &LocalCluster, host: &str, suffix: &str) -> Vec<String> {
    (0..cluster.len())
        .map(|i| format!("{}{suffix}", cluster.tls_url(i, host)))
        .collect()
}

fn tls_builder(urls: Vec<String>) -> RedlockBuilder {
    Redlock::builder()
        .nodes(urls)
        .node_timeout(Duration::from_secs(2))
        .retry(Retry::none())
}

/// Acquires and releases once; the error if acquiring fails.
async fn round_trip(redlock: &Redlock) -> Result<(), quorumlock::Error> {
    let lock = redlock.acquire("tls-resource", Duration::from_secs(10)).await?;
    let report = lock.release().await?;
    // A release returns once a majority deleted; the third completes in the background.
    assert!(report.was_held() && report.deleted() >= 2, "{report:?}");
    Ok(())
}

/// The failure of a TLS handshake: a majority of nodes with an I/O cause naming the problem (the
/// acquisition decides as soon as quorum is impossible, so the last node may still be pending).
fn assert_handshake_failed(e: &quorumlock::Error, needle: &str) {
    assert_eq!(e.kind(), ErrorKind::QuorumUnreachable, "{e}");
    assert!(!e.is_contended());
    let mut failed = 0;
    for (node, outcome) in e.nodes() {
        match outcome {
            NodeOutcome::Io(msg) => {
                assert!(
                    msg.to_ascii_lowercase().contains(needle),
                    "{node}: {msg} (expected {needle:?})"
                );
                failed += 1;
            }
            NodeOutcome::Pending => {}
            other => panic!("{node}: {other:?}"),
        }
    }
    assert!(failed >= 2, "{e}");
}

#[tokio::test]
async fn good_ca_in_builder_or_url_works() {
    let pki = TestPki::generate().unwrap();
    let cluster = tls_cluster(&pki, false);
    let by_builder = tls_builder(urls(&cluster, "localhost", ""))
        .tls_ca_pem(pki.read("ca.pem"))
        .build()
        .unwrap();
    round_trip(&by_builder).await.unwrap();
    let ca = pki.path("ca.pem");
    let by_url = tls_builder(urls(&cluster, "localhost", &format!("?tls_ca={}", ca.display())))
        .build()
        .unwrap();
    round_trip(&by_url).await.unwrap();
}

#[tokio::test]
async fn unknown_ca_and_wrong_host_fail() {
    let pki = TestPki::generate().unwrap();
    let cluster = tls_cluster(&pki, false);
    let unknown = tls_builder(urls(&cluster, "localhost", ""))
        .tls_ca_pem(pki.read("other-ca.pem"))
        .build()
        .unwrap();
    assert_handshake_failed(&round_trip(&unknown).await.unwrap_err(), "certificate");
    // Without a CA, the WebPKI roots apply, which do not know the test CA either.
    let webpki = tls_builder(urls(&cluster, "localhost", "")).build().unwrap();
    assert_handshake_failed(&round_trip(&webpki).await.unwrap_err(), "certificate");
    // The certificate names localhost only.
    let wrong_host = tls_builder(urls(&cluster, "127.0.0.1", ""))
        .tls_ca_pem(pki.read("ca.pem"))
        .build()
        .unwrap();
    assert_handshake_failed(&round_trip(&wrong_host).await.unwrap_err(), "certificate");
}

#[tokio::test]
async fn client_certificates() {
    let pki = TestPki::generate().unwrap();
    let cluster = tls_cluster(&pki, true);
    let without = tls_builder(urls(&cluster, "localhost", ""))
        .tls_ca_pem(pki.read("ca.pem"))
        .build()
        .unwrap();
    let e = round_trip(&without).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuorumUnreachable, "{e}");
    let with = tls_builder(urls(&cluster, "localhost", ""))
        .tls_ca_pem(pki.read("ca.pem"))
        .tls_client_cert(pki.read("client.pem"), pki.read("client.key"))
        .build()
        .unwrap();
    round_trip(&with).await.unwrap();
    let query = format!(
        "?tls_ca={}&tls_cert={}&tls_key={}",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    );
    let by_url = tls_builder(urls(&cluster, "localhost", &query)).build().unwrap();
    round_trip(&by_url).await.unwrap();
}

#[tokio::test]
async fn insecure_fragment_needs_the_named_option() {
    let pki = TestPki::generate().unwrap();
    let cluster = tls_cluster(&pki, false);
    // 127.0.0.1 and no CA: every check would fail; #insecure turns them all off.
    let insecure = urls(&cluster, "127.0.0.1", "#insecure");
    let refused = tls_builder(insecure.clone()).build().unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Config);
    assert!(
        refused.to_string().contains("danger_accept_invalid_tls_certs"),
        "{refused}"
    );
    let allowed = tls_builder(insecure)
        .danger_accept_invalid_tls_certs(true)
        .build()
        .unwrap();
    round_trip(&allowed).await.unwrap();
    // The option does not make other fragments acceptable, nor #insecure on plain redis://.
    for url in ["rediss://localhost:1#other", "redis://localhost:1#insecure"] {
        let e = Redlock::builder()
            .node(url)
            .danger_accept_invalid_tls_certs(true)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{url}");
    }
}

#[tokio::test]
async fn bad_tls_settings_are_config_errors() {
    let pki = TestPki::generate().unwrap();
    let cert = pki.path("client.pem");
    let cases = [
        format!("rediss://localhost:1?tls_cert={}", cert.display()),
        format!("redis://localhost:1?tls_ca={}", cert.display()),
        "rediss://localhost:1?tls_ca=/nonexistent/ca.pem".to_owned(),
    ];
    for url in &cases {
        let e = Redlock::builder().node(url).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
    }
    let e = Redlock::builder()
        .node("rediss://localhost:1")
        .tls_ca_pem(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".to_vec())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}
