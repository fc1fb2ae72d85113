//! TLS for the main listener (`wss://` and `https://` on one port): the
//! certificate chain and key come from PEM files and are read again on
//! reload (SIGHUP), so a renewed certificate (Let's Encrypt) is served to
//! new connections without a restart; open connections keep theirs.
//!
//! Also the client side of the command-line tools (`herald trigger`,
//! `herald doctor`): the public roots, plus a private CA when given one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate being served, and where it comes from.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl Certificates {
    /// Reads the files; the error names what is wrong with which.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, String> {
        Ok(Arc::new(Certificates {
            current: ArcSwap::from_pointee(read(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// Reads the files again; on error the served certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        self.current.store(Arc::new(read(&self.cert, &self.key)?));
        Ok(())
    }

    /// A rustls configuration that serves whatever is current.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.clone())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("unusable private key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(certified)
}

/// The environment variable OpenSSL-based tools read for extra trusted
/// CAs; honoured by the command-line clients when `--ca` is not given.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// An HTTP client for the command-line tools that trusts the public roots
/// and, for a Herald whose certificate a private CA signed, the CAs in
/// `ca` (PEM; `--ca`), else those in `SSL_CERT_FILE` when it is set.
pub fn cli_client(ca: Option<&Path>, timeout: std::time::Duration) -> Result<awc::Client, String> {
    let from_env = std::env::var_os(SSL_CERT_FILE).map(PathBuf::from);
    let ca = ca.map(Path::to_path_buf).or(from_env);
    let mut roots = actix_tls::connect::rustls_0_23::webpki_roots_cert_store();
    if let Some(path) = &ca {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(timeout)
        .finish())
}
