//! TLS on both ports, Faktory's convention: when the config directory holds
//! `public.cert.pem` (the certificate chain) and `private.key.pem`, the protocol port and the
//! Web UI port speak TLS 1.2 or 1.3 only (rustls with the `ring` provider). The sessions are
//! driven by the loop itself ([`super::conn::Conn::read_some`], [`super::conn::Conn::flush`]):
//! no extra thread.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The certificate chain file in the config directory.
pub const CERT_FILE: &str = "public.cert.pem";
/// The private key file in the config directory.
pub const KEY_FILE: &str = "private.key.pem";

/// The TLS configuration from `dir`: `None` when neither file is there; an error naming the
/// file when only one is, or when one cannot be read or used.
pub fn load(dir: &Path) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(format!(
                "{} is there but {} is not: TLS needs both (or neither, for plain TCP)",
                cert_path.display(),
                key_path.display()
            ))
        }
        (false, true) => {
            return Err(format!(
                "{} is there but {} is not: TLS needs both (or neither, for plain TCP)",
                key_path.display(),
                cert_path.display()
            ))
        }
        (true, true) => {}
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", cert_path.display(), key_path.display()))?;
    Ok(Some(Arc::new(config)))
}

/// A server session for a new connection.
pub fn session(config: &Arc<rustls::ServerConfig>) -> Result<rustls::ServerConnection, String> {
    rustls::ServerConnection::new(config.clone()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("werk-unit-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn neither_file_is_plain_tcp_one_file_is_an_error_bad_pem_names_the_file() {
        let d = dir("files");
        assert!(load(&d).unwrap().is_none());
        std::fs::write(d.join(CERT_FILE), "not pem").unwrap();
        let e = load(&d).unwrap_err();
        assert!(e.contains("private.key.pem is not"), "{e}");
        std::fs::write(d.join(KEY_FILE), "not pem either").unwrap();
        let e = load(&d).unwrap_err();
        assert!(e.contains("public.cert.pem"), "{e}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(d.join(CERT_FILE), cert.cert.pem()).unwrap();
        std::fs::write(d.join(KEY_FILE), cert.key_pair.serialize_pem()).unwrap();
        assert!(load(&d).unwrap().is_some());
        // A key that does not belong to the certificate.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        std::fs::write(d.join(KEY_FILE), other.key_pair.serialize_pem()).unwrap();
        assert!(load(&d).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }
}
