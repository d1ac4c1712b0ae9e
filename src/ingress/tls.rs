//! TLS for the HTTPS listener: an SNI resolver over the certificates of the served Ingresses'
//! `spec.tls[]` (from `kubernetes.io/tls` Secrets' `tls.crt`/`tls.key`), with a generated
//! self-signed fallback for unknown names, as ingress-nginx's "Kubernetes Ingress Controller
//! Fake Certificate".

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::IngressError;

/// The certificates by host name (exact, or `*.example.com`), swapped whole on each sync.
#[derive(Debug)]
pub(crate) struct SniResolver {
    by_host: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
    fallback: Arc<CertifiedKey>,
}

impl SniResolver {
    /// A resolver with no certificates yet and a freshly generated fallback.
    pub(crate) fn new() -> Result<Self, IngressError> {
        Ok(SniResolver {
            by_host: RwLock::new(Arc::new(HashMap::new())),
            fallback: Arc::new(fake_certificate()?),
        })
    }

    /// Replaces the certificates.
    pub(crate) fn set(&self, certs: HashMap<String, Arc<CertifiedKey>>) {
        *self.by_host.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certs);
    }

    /// The certificate for `name`: exact, then the wildcard one label up, then the fallback.
    pub(crate) fn lookup(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let certs = self
            .by_host
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(name) = name.map(|n| n.to_ascii_lowercase()) else {
            return self.fallback.clone();
        };
        if let Some(cert) = certs.get(&name) {
            return cert.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(cert) = certs.get(&format!("*.{parent}"))
        {
            return cert.clone();
        }
        self.fallback.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

/// A certificate chain and key from PEM (a Secret's `tls.crt` and `tls.key`).
pub(crate) fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, IngressError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| IngressError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(IngressError::Certificate(
            "no certificate in tls.crt".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| IngressError::Certificate(format!("tls.key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| IngressError::Certificate(format!("tls.key: {e}")))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// ingress-nginx's default certificate: self-signed, `CN=Kubernetes Ingress Controller Fake
/// Certificate, O=Acme Co`, for `ingress.local`.
fn fake_certificate() -> Result<CertifiedKey, IngressError> {
    let failed = |e: rcgen::Error| IngressError::Certificate(e.to_string());
    let mut params =
        rcgen::CertificateParams::new(vec!["ingress.local".to_owned()]).map_err(failed)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Kubernetes Ingress Controller Fake Certificate",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

/// The rustls configuration of the HTTPS listener: certificates by SNI, h2 and HTTP/1.1.
pub(crate) fn server_config(resolver: Arc<SniResolver>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_find_their_certificates_and_others_the_fake_one() {
        let resolver = SniResolver::new().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["foo.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let foo =
            Arc::new(certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap());
        resolver.set(HashMap::from([
            ("foo.com".to_owned(), foo.clone()),
            ("*.bar.com".to_owned(), foo.clone()),
        ]));
        assert!(Arc::ptr_eq(&resolver.lookup(Some("FOO.com")), &foo));
        assert!(Arc::ptr_eq(&resolver.lookup(Some("a.bar.com")), &foo));
        assert!(!Arc::ptr_eq(&resolver.lookup(Some("bar.com")), &foo));
        assert!(!Arc::ptr_eq(&resolver.lookup(None), &foo));
        assert!(certified_key(b"junk", b"junk").is_err());
    }
}
