//! The cluster's certificates: a certificate authority, the API server's serving certificate and
//! an admin client certificate, generated on first start under `<state-dir>/pki` (`rcgen`) and
//! served with `rustls`, which asks every client for a certificate signed by the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

/// What went wrong with the certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Generating or loading a certificate failed.
    #[error("certificate {name}: {message}")]
    Certificate {
        /// Which certificate.
        name: &'static str,
        /// What failed.
        message: String,
    },
}

/// The PEM files of a cluster's certificates.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate (what clients trust).
    pub ca_cert: String,
    /// The API server's certificate.
    pub server_cert: String,
    /// The API server's private key.
    pub server_key: String,
    /// The admin client certificate (`O=system:masters`).
    pub admin_cert: String,
    /// The admin client's private key.
    pub admin_key: String,
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(io)
}

fn cert_error(name: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |e| PkiError::Certificate {
        name,
        message: e.to_string(),
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

/// Valid from well before today for a century: a local cluster's certificates never expire
/// under it.
fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
}

impl Pki {
    /// Loads the certificates from `dir`, generating any that are missing (the CA first).
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let ca_cert_path = dir.join("ca.crt");
        let ca_key_path = dir.join("ca.key");
        let ca_params = || {
            let mut params = CertificateParams::default();
            params.distinguished_name = name("orrery-ca", None);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params);
            params
        };
        let (ca_cert, ca_key) = match (read(&ca_cert_path)?, read(&ca_key_path)?) {
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                let key = KeyPair::generate().map_err(cert_error("ca"))?;
                let cert = ca_params().self_signed(&key).map_err(cert_error("ca"))?;
                let (cert, key) = (cert.pem(), key.serialize_pem());
                write(&ca_cert_path, &cert, false)?;
                write(&ca_key_path, &key, true)?;
                (cert, key)
            }
        };
        // The issuer is the CA's own parameters (the same name, hence the same issuer field) and
        // its key (the same key identifier).
        let ca_key = KeyPair::from_pem(&ca_key).map_err(cert_error("ca"))?;
        let issuer = Issuer::new(ca_params(), ca_key);

        let leaf = |file: &str,
                    name_: &'static str,
                    params: CertificateParams|
         -> Result<(String, String), PkiError> {
            let cert_path = dir.join(format!("{file}.crt"));
            let key_path = dir.join(format!("{file}.key"));
            if let (Some(cert), Some(key)) = (read(&cert_path)?, read(&key_path)?) {
                return Ok((cert, key));
            }
            let key = KeyPair::generate().map_err(cert_error(name_))?;
            let cert = params.signed_by(&key, &issuer).map_err(cert_error(name_))?;
            let (cert, key) = (cert.pem(), key.serialize_pem());
            write(&cert_path, &cert, false)?;
            write(&key_path, &key, true)?;
            Ok((cert, key))
        };

        let mut server = CertificateParams::default();
        server.distinguished_name = name("kube-apiserver", None);
        server.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().map_err(cert_error("apiserver"))?),
            SanType::DnsName("kubernetes".try_into().map_err(cert_error("apiserver"))?),
            SanType::DnsName(
                "kubernetes.default"
                    .try_into()
                    .map_err(cert_error("apiserver"))?,
            ),
            SanType::DnsName(
                "kubernetes.default.svc"
                    .try_into()
                    .map_err(cert_error("apiserver"))?,
            ),
            SanType::DnsName(
                "kubernetes.default.svc.cluster.local"
                    .try_into()
                    .map_err(cert_error("apiserver"))?,
            ),
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::IpAddress(std::net::Ipv4Addr::new(10, 96, 0, 1).into()),
        ];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        validity(&mut server);
        let (server_cert, server_key) = leaf("apiserver", "apiserver", server)?;

        let mut admin = CertificateParams::default();
        admin.distinguished_name = name("kubernetes-admin", Some("system:masters"));
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        admin.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        validity(&mut admin);
        let (admin_cert, admin_key) = leaf("admin", "admin", admin)?;

        Ok(Pki {
            ca_cert,
            server_cert,
            server_key,
            admin_cert,
            admin_key,
        })
    }

    /// The API server's TLS: its certificate, and a request for a client certificate that the
    /// handshake takes whatever it is (proving only that the client holds its key), so that a
    /// missing or untrusted certificate can be answered with a 401 in Kubernetes' words, as
    /// kube-apiserver does. [`ServerTls::authenticate`] checks it against the CA.
    pub fn server_tls(&self) -> Result<ServerTls, PkiError> {
        let bad = |message: String| PkiError::Certificate {
            name: "apiserver",
            message,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_cert.as_bytes()) {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(self.server_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_client_cert_verifier(Arc::new(AnyClientCert(verifier.clone())))
            .with_single_cert(certs, key)
            .map_err(|e| bad(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            clients: verifier,
        })
    }
}

/// The API server's TLS configuration and the check of client certificates.
#[derive(Clone)]
pub struct ServerTls {
    /// What the TLS layer serves with.
    pub config: Arc<rustls::ServerConfig>,
    clients: Arc<dyn ClientCertVerifier>,
}

impl ServerTls {
    /// Whether the certificate chain a client presented is signed by the cluster's CA.
    pub fn authenticate(&self, chain: &[CertificateDer<'_>]) -> bool {
        match chain.split_first() {
            Some((leaf, intermediates)) => self
                .clients
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok(),
            None => false,
        }
    }
}

/// Asks for a client certificate and takes any (its holder must still prove it has the key);
/// whether it is trusted is decided per request, so untrusted clients get a 401, not a TLS alert.
#[derive(Debug)]
struct AnyClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
