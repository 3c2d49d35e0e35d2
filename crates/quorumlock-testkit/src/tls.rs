//! Certificates made at test time with the `openssl` command (installed with Debian's base
//! system and by `scripts/ensure-redis.sh`): a CA, a server certificate for `localhost` only, a
//! client certificate, and a second, unrelated CA.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    /// CA. Takes about 100 ms (EC P-256 keys).
    ///
    /// # Errors
    /// When `openssl` is missing or fails.
    pub fn generate() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("quorumlock-pki-")
            .tempdir()
            .map_err(|e| Error::new(format!("temp dir: {e}")))?;
        let d = dir.path();
        let ext = d.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| Error::new(e.to_string()))?;
        let client_ext = d.join("client.ext");
        std::fs::write(&client_ext, "extendedKeyUsage=clientAuth\n")
            .map_err(|e| Error::new(e.to_string()))?;
        for ca in ["ca", "other-ca"] {
            ec_key(d, &format!("{ca}.key"))?;
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    &format!("{ca}.key"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=quorumlock test {ca}"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            )?;
        }
        for (name, ext) in [("server", &ext), ("client", &client_ext)] {
            ec_key(d, &format!("{name}.key.ec"))?;
            // rustls reads PKCS#8 and SEC1; PKCS#8 is the form every reader takes.
            openssl(
                d,
                &[
                    "pkcs8",
                    "-topk8",
                    "-nocrypt",
                    "-in",
                    &format!("{name}.key.ec"),
                    "-out",
                    &format!("{name}.key"),
                ],
            )?;
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-subj",
                    &format!("/CN={name}"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            )?;
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    ext.to_str().unwrap_or_default(),
                    "-out",
                    &format!("{name}.pem"),
                ],
            )?;
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

/// A new P-256 key in `file`.
fn ec_key(dir: &Path, file: &str) -> Result<(), Error> {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            file,
        ],
    )
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), Error> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| Error::new(format!("openssl: {e} (Debian: apt-get install -y openssl)")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
