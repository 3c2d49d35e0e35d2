//! Certificates made at test time in Rust (rcgen, with ring): a CA, a server certificate for
//! `localhost` only, a client certificate, and a second, unrelated CA. No `openssl` command is
//! needed, so users of this kit can run TLS fault tests on any machine that builds it.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::cluster::Error;

/// The files a TLS redis-server needs.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA that client certificates must chain to (PEM).
    pub ca: PathBuf,
    /// `tls-auth-clients yes`: clients must present a certificate signed by `ca`.
    pub require_client_cert: bool,
}

/// A throw-away PKI in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Generates the CA, the `localhost` server certificate (no IP address in it, so
    /// `rediss://127.0.0.1` fails host name verification), a client certificate and an unrelated
    /// CA, with EC P-256 keys, in PEM files (keys in PKCS#8, the form every reader takes).
    /// Takes a few milliseconds.
    ///
    /// The certificates use rcgen's default validity (1975 to 4096): they are throw-away, live
    /// in a directory removed on drop, and a fixed window cannot make a slow test fail on expiry.
    ///
    /// # Errors
    /// When key generation or signing fails, or the files cannot be written.
    pub fn generate() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("quorumlock-pki-")
            .tempdir()
            .map_err(|e| Error::new(format!("temp dir: {e}")))?;
        let write = |name: &str, contents: String| {
            std::fs::write(dir.path().join(name), contents)
                .map_err(|e| Error::new(format!("writing {name}: {e}")))
        };
        let ca = new_ca("ca")?;
        // Only its certificate is written: nothing is ever signed by the unrelated CA.
        let other_ca = new_ca("other-ca")?;
        write("ca.pem", ca.pem)?;
        write("other-ca.pem", other_ca.pem)?;
        for (name, alt_names, usage) in [
            (
                "server",
                vec!["localhost".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().map_err(rcgen_error(name))?;
            let mut params = CertificateParams::new(alt_names).map_err(rcgen_error(name))?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca.issuer).map_err(rcgen_error(name))?;
            write(&format!("{name}.pem"), cert.pem())?;
            write(&format!("{name}.key"), key.serialize_pem())?;
        }
        Ok(Self { dir })
    }

    /// A file of this PKI: `ca.pem`, `other-ca.pem`, `server.pem`, `server.key`, `client.pem`,
    /// `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file's contents.
    ///
    /// # Panics
    /// If the file cannot be read.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("PKI file")
    }

    /// The server side: the `localhost` certificate, trusting this CA for client certificates.
    pub fn server(&self, require_client_cert: bool) -> ServerTls {
        ServerTls {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            ca: self.path("ca.pem"),
            require_client_cert,
        }
    }
}

/// A self-signed CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Result<Ca, Error> {
    let key = KeyPair::generate().map_err(rcgen_error(name))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error(name))?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("quorumlock test {name}"));
    // redis-server (OpenSSL) checks client certificates against this CA: it must say it is one.
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).map_err(rcgen_error(name))?.pem();
    Ok(Ca {
        pem,
        issuer: Issuer::new(params, key),
    })
}

fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::new(format!("test certificate {what}: {e}"))
}
