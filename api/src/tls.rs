//! TLS for the HTTP listener, through rustls. HTTP/2 is negotiated by ALPN.

use std::io;
use std::path::Path;

use poem::listener::{RustlsCertificate, RustlsConfig};

use crate::settings::TlsSettings;

/// Loads the certificate and key, first creating a self-signed pair for
/// `localhost` when the settings allow it and the files do not exist yet.
pub fn rustls_config(settings: &TlsSettings) -> io::Result<RustlsConfig> {
    if settings.generate_dev_certificate
        && !(settings.cert_path.is_file() && settings.key_path.is_file())
    {
        write_dev_certificate(&settings.cert_path, &settings.key_path)?;
    }
    let cert = std::fs::read(&settings.cert_path)
        .map_err(|err| annotate(err, "http.tls.cert_path", &settings.cert_path))?;
    let key = std::fs::read(&settings.key_path)
        .map_err(|err| annotate(err, "http.tls.key_path", &settings.key_path))?;
    Ok(RustlsConfig::new().fallback(RustlsCertificate::new().cert(cert).key(key)))
}

fn annotate(err: io::Error, key: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("{key} {} could not be read: {err}", path.display()),
    )
}

fn write_dev_certificate(cert_path: &Path, key_path: &Path) -> io::Result<()> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    for path in [cert_path, key_path] {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    std::fs::write(cert_path, certified.cert.pem())?;
    write_private(key_path, certified.key_pair.serialize_pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), "created a self-signed development certificate");
    Ok(())
}

/// Private keys are readable by their owner only.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}
