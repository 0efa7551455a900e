//! `gateway.tls` (issue 25): HTTPS without a proxy. rustls with the ring
//! provider reqwest already brings, HTTP/2 and HTTP/1.1 by ALPN, the PEM
//! certificate chain and key read at start and again on SIGHUP (a failed
//! reload keeps the certificate in use and says why).

use crate::config::TlsFiles;
use std::sync::{Arc, RwLock};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The certificate in use, swapped whole on reload.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<TlsAcceptor>,
}

impl Tls {
    /// Reads the PEM files; the error names the file and what is wrong.
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        Ok(Tls {
            current: RwLock::new(TlsAcceptor::from(Arc::new(server_config(files)?))),
            files: files.clone(),
        })
    }

    /// The acceptor for a new connection (the certificate as of now).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again; on success new connections get the new
    /// certificate, open ones keep theirs.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = TlsAcceptor::from(Arc::new(server_config(&self.files)?));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads on every SIGHUP, saying on stderr what happened.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        let tls = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let msg = match tls.reload() {
                    Ok(()) => format!("reloaded the TLS certificate {}", tls.files.cert.display()),
                    Err(e) => format!("TLS reload failed, keeping the certificate in use: {e}"),
                };
                crate::say(msg);
            }
        });
    }
}

/// A server config from the PEM files, with ALPN h2 then http/1.1.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let cert_path = files.cert.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("gateway.tls.cert {cert_path}: cannot read a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "gateway.tls.cert {cert_path}: no CERTIFICATE block in the file"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "gateway.tls.key {}: cannot read a PEM private key: {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("gateway.tls: the key does not fit the certificate {cert_path}: {e}")
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
