//! TLS to PostgreSQL with rustls, following libpq's `sslmode`: `disable`, `prefer` (the default: TLS when the
//! server offers it), `require` (encrypted, server not checked), `verify-ca` (certificate chain checked) and
//! `verify-full` (chain and host name checked). Roots come from `sslrootcert`, `~/.postgresql/root.crt`, or
//! the system's store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

use crate::error::{Error, ErrorKind, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<TlsMode> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(Error::new(ErrorKind::Usage, format!("unknown sslmode {other:?}"))
                    .with_hint("use disable, prefer, require, verify-ca or verify-full"))
            }
        })
    }

    /// What tokio-postgres negotiates; certificate checks are the connector's job.
    pub fn ssl_mode(self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        }
    }
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query (tokio-postgres does not know the verify modes),
/// falling back to `PGSSLMODE` and `PGSSLROOTCERT`. Returns the rest of the URL and the settings.
pub fn split_settings(url: &str) -> Result<(String, TlsSettings)> {
    let (mut mode, mut root_cert) = (std::env::var("PGSSLMODE").ok(), std::env::var("PGSSLROOTCERT").ok());
    let rest = match url.split_once('?') {
        Some((base, query)) => {
            let mut kept = Vec::new();
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("sslmode", value)) => mode = Some(value.to_string()),
                    Some(("sslrootcert", value)) => root_cert = Some(value.to_string()),
                    _ => kept.push(pair),
                }
            }
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        None => url.to_string(),
    };
    let mode = mode.as_deref().map(TlsMode::parse).transpose()?.unwrap_or(TlsMode::Prefer);
    Ok((rest, TlsSettings { mode, root_cert: root_cert.map(PathBuf::from) }))
}

/// The rustls connector for `settings`.
pub fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect> {
    let setup_error = |err: &dyn std::fmt::Display| Error::new(ErrorKind::Usage, format!("TLS setup failed: {err}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match settings.mode {
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = Arc::new(root_store(settings.root_cert.as_deref())?);
            Some(WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build().map_err(|e| setup_error(&e))?)
        }
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => None,
    };
    let verifier = LibpqVerifier { chain, check_name: settings.mode == TlsMode::VerifyFull, provider: provider.clone() };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_error(&e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(root_cert: Option<&Path>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let default_file =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".postgresql/root.crt")).filter(|p| p.exists());
    match root_cert.map(Path::to_path_buf).or(default_file) {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|err| {
                    Error::new(ErrorKind::Usage, format!("cannot read root certificates from {}: {err}", path.display()))
                        .with_hint("sslrootcert must name a PEM file of CA certificates")
                })?;
            store.add_parsable_certificates(certificates);
        }
        None => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    if store.is_empty() {
        return Err(Error::new(ErrorKind::Usage, "no root certificates to verify PostgreSQL's certificate with")
            .with_hint("pass sslrootcert=/path/ca.pem in the URL, or install the system's CA certificates"));
    }
    Ok(store)
}

/// The server check libpq's modes ask for: none (`prefer`, `require`: encrypted, identity unchecked), the
/// certificate chain (`verify-ca`), or the chain and the host name (`verify-full`).
///
/// Handshake signatures are always checked, as OpenSSL does for libpq whatever the mode: the server must hold the
/// key of the certificate it sent, which keeps SCRAM channel binding (a hash of that certificate) meaningful. Under
/// `prefer` and `require` the certificate is not judged at all: webpki refuses forms OpenSSL accepts (X.509 v1,
/// which Citus and many `openssl x509 -req` setups make), so there the signature is checked with the public key
/// read from the certificate, not through webpki's certificate parser.
#[derive(Debug)]
struct LibpqVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        match self.chain {
            Some(_) => rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms),
            None => verify_tls12_with_certificate_key(message, cert, dss, algorithms),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        match self.chain {
            Some(_) => rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms),
            None => rustls::crypto::verify_tls13_signature_with_raw_key(message, &public_key_info(cert)?, dss, algorithms),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks a TLS 1.2 handshake signature with the public key of `cert`, read without judging the certificate's
/// version, extensions or validity (which the modes that use it do not check). rustls has this for TLS 1.3 only
/// (`verify_tls13_signature_with_raw_key`); this is its TLS 1.2 loop over the scheme's algorithms.
fn verify_tls12_with_certificate_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
    let spki = public_key_info(cert)?;
    let key = webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad_certificate(CertificateError::BadEncoding))?;
    let candidates = algorithms.mapping.iter().find(|(scheme, _)| *scheme == dss.scheme).map_or(&[][..], |(_, algs)| *algs);
    if candidates.is_empty() {
        return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    // A scheme may have several algorithms (one per key kind); the key's own kind decides.
    for algorithm in candidates {
        match key.verify_signature(*algorithm, message, dss.signature()) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
            Err(_) => return Err(bad_certificate(CertificateError::BadSignature)),
        }
    }
    Err(bad_certificate(CertificateError::BadSignature))
}

/// The DER SubjectPublicKeyInfo of a certificate of any X.509 version.
fn public_key_info(cert: &CertificateDer<'_>) -> std::result::Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    let parsed = Certificate::from_der(cert.as_ref()).map_err(|_| bad_certificate(CertificateError::BadEncoding))?;
    let spki =
        parsed.tbs_certificate.subject_public_key_info.to_der().map_err(|_| bad_certificate(CertificateError::BadEncoding))?;
    Ok(SubjectPublicKeyInfoDer::from(spki))
}

fn bad_certificate(error: CertificateError) -> rustls::Error {
    rustls::Error::InvalidCertificate(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_are_taken_out_of_the_url() {
        let (rest, settings) =
            split_settings("postgres://u@h/db?sslmode=verify-full&application_name=x&sslrootcert=/ca.pem").unwrap();
        assert_eq!(rest, "postgres://u@h/db?application_name=x");
        assert_eq!(settings, TlsSettings { mode: TlsMode::VerifyFull, root_cert: Some("/ca.pem".into()) });
        assert!(split_settings("postgres://u@h/db?sslmode=sometimes").is_err());
    }
}
