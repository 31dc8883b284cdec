//! The lab's PKI: a CA made at start, a serving certificate for the loopback names, and the
//! rustls server configuration (HTTP/1.1 only, since port-forward upgrades need it).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Failures while making certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters or the key.
    #[error("generating the lab certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("building the TLS server configuration")]
    Config(#[from] rustls::Error),
}

/// The CA and serving identity of one lab.
pub struct LabPki {
    /// PEM of the CA certificate, for kubeconfigs.
    pub ca_pem: String,
    /// The rustls configuration for the API server.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl LabPki {
    /// A new CA and a serving certificate valid for `sans` (IP addresses or DNS names).
    pub fn generate(sans: &[String]) -> Result<Self, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kubeway-lab-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut params = CertificateParams::new(sans.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;

        let chain = vec![
            CertificateDer::from(cert.der().to_vec()),
            CertificateDer::from(ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            server_config: Arc::new(cfg),
        })
    }
}
