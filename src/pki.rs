//! The cluster's certificates, laid out as kubeadm lays out `/etc/kubernetes/pki`, and the TLS
//! configurations made from them. `<state-dir>/pki` (owner-only) holds:
//!
//! - `ca.crt`, `ca.key`: the cluster's certificate authority (`CN=orrery-ca`): basicConstraints
//!   critical `CA:TRUE`, keyUsage critical (certificate and CRL signing), a Subject Key Identifier.
//! - `apiserver.crt`: the API server's serving certificate (`CN=kube-apiserver`; SANs `localhost`,
//!   `kubernetes`, `kubernetes.default...`, `127.0.0.1`, `10.96.0.1`).
//! - `admin.crt`: the admin client (`CN=kubernetes-admin, O=system:masters`), in the kubeconfig.
//! - `apiserver-kubelet-client.crt`: what the API server shows the kubelets
//!   (`CN=kube-apiserver-kubelet-client, O=kubeadm:cluster-admins`, kubeadm's, given to
//!   kube-apiserver as `--kubelet-client-certificate`).
//!
//! Each kubelet's serving certificate is `<state-dir>/kubelet/<node>/pki/kubelet.crt`
//! (`CN=system:node:<node>, O=system:nodes`, SANs the node's name and address), where the real
//! kubelet keeps it (`/var/lib/kubelet/pki`), signed by the same CA.
//!
//! Every leaf carries what strict verifiers require (OpenSSL's `X509_V_FLAG_X509_STRICT`, which
//! urllib3 2 and Python 3.13 turn on): basicConstraints critical `CA:FALSE`, keyUsage critical,
//! extendedKeyUsage, and an Authority Key Identifier naming the CA's key. A leaf found on disk that
//! falls short (an earlier Orrery made leaves without the Authority Key Identifier), names
//! something else, or was not signed by the CA on disk is made again; the CA is kept unless it
//! falls short itself, so whatever trusts it keeps working.
//!
//! [`ServerTls`] serves with a certificate and asks every client for one, taking any in the
//! handshake (the client must still prove it holds the key): whether it is trusted, and whom it
//! names ([`ServerTls::identity`]), is decided per request, so that an untrusted client gets an
//! HTTP 401 in Kubernetes' words rather than a TLS alert, as kube-apiserver and the kubelet
//! answer. [`Pki::kubelet_client`] is the API server's side of its connections to kubelets.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// The user the API server's kubelet client certificate names: the only one the kubelets serve.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The group kubeadm puts the API server's kubelet client certificate in.
const KUBELET_CLIENT_GROUP: &str = "kubeadm:cluster-admins";

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
        name: String,
        /// What failed.
        message: String,
    },
}

/// The PEM files of a cluster's certificates.
#[derive(Clone)]
pub struct Pki {
    /// The CA certificate (what clients trust).
    pub ca_cert: String,
    /// The CA's private key: signs the kubelets' serving certificates.
    ca_key: String,
    /// The API server's certificate.
    pub server_cert: String,
    /// The API server's private key.
    pub server_key: String,
    /// The admin client certificate (`O=system:masters`).
    pub admin_cert: String,
    /// The admin client's private key.
    pub admin_key: String,
    /// The service account signing key (PKCS#8 PEM): kubeadm's `sa.key`.
    pub sa_key: String,
    /// Its public key (PEM): kubeadm's `sa.pub`.
    pub sa_public: String,
    /// The API server's client certificate for the kubelets.
    pub kubelet_client_cert: String,
    /// Its private key.
    pub kubelet_client_key: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
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

/// Writes a certificate (0644) or a private key (0600), whatever mode the file had before.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_error(path))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error(path))?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(io_error(path))
}

/// Makes `dir` (and any missing parent) readable by its owner only; an existing `dir` (made
/// 0755 by an earlier version) is tightened to 0700 too.
fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))
}

fn cert_error(name: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Certificate {
        name: name.to_owned(),
        message: e.to_string(),
    }
}

/// Valid from well before today for a century: a local cluster's certificates never expire
/// under it.
fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
}

/// The service account key pair in `dir` (`sa.key`, owner-only, and `sa.pub`), made if
/// missing or unreadable.
fn service_account_key(dir: &Path) -> Result<(String, String), PkiError> {
    let (key_path, pub_path) = (dir.join("sa.key"), dir.join("sa.pub"));
    if let Some(key) = read(&key_path)?
        && let Ok(pair) = KeyPair::from_pem(&key)
    {
        let public = pair.public_key_pem();
        if read(&pub_path)?.as_deref() != Some(public.as_str()) {
            write(&pub_path, &public, false)?;
        }
        return Ok((key, public));
    }
    let pair = KeyPair::generate().map_err(cert_error("sa"))?;
    let (key, public) = (pair.serialize_pem(), pair.public_key_pem());
    write(&key_path, &key, true)?;
    write(&pub_path, &public, false)?;
    Ok((key, public))
}

/// A client certificate's parameters: CN the user, one O per group, client auth only.
fn client_params(user: &str, groups: &[String]) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for group in groups {
        dn.push(DnType::OrganizationName, group.as_str());
    }
    dn.push(DnType::CommonName, user);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Valid from five minutes ago (clock skew, as upstream's signer backdates) for `valid_for`.
fn client_validity(params: &mut CertificateParams, valid_for: std::time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + valid_for;
}

/// The DER of the first certificate in `pem`.
fn der_of(pem: &str) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("cannot parse it: {e}"))
}

fn subject_key_identifier(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn authority_key_identifier(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

/// Who a certificate names, as kube-apiserver's x509 authenticator reads it: the user is the
/// subject's common name, the groups its organizations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The subject's CN.
    pub user: String,
    /// The subject's O values.
    pub groups: Vec<String>,
}

impl Identity {
    fn of(cert: &X509Certificate<'_>) -> Identity {
        let subject = cert.subject();
        Identity {
            user: subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_owned(),
            groups: subject
                .iter_organization()
                .filter_map(|o| o.as_str().ok().map(str::to_owned))
                .collect(),
        }
    }
}

/// Which way a leaf certificate is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Usage {
    Server,
    Client,
}

/// What a leaf certificate must say: the files it lives in, whom it names, what for, and its
/// subject alternative names.
struct Leaf {
    file: String,
    common_name: String,
    organization: Option<&'static str>,
    usage: Usage,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
}

impl Leaf {
    fn params(&self) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(o) = self.organization {
            dn.push(DnType::OrganizationName, o);
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        // ECDSA keys sign; they encipher nothing (RFC 5480), so no keyEncipherment.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match self.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        for name in &self.dns_names {
            params.subject_alt_names.push(SanType::DnsName(
                name.as_str().try_into().map_err(cert_error(&self.file))?,
            ));
        }
        for ip in &self.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        validity(&mut params);
        Ok(params)
    }

    /// Why `cert` is not this leaf as the CA `ca` would issue it now (`Ok`: it is).
    fn check(&self, cert: &X509Certificate<'_>, ca: &Ca) -> Result<(), String> {
        let ca_der = der_of(&ca.cert)?;
        let ca_cert = parse(&ca_der)?;
        cert.verify_signature(Some(ca_cert.public_key()))
            .map_err(|_| "it is not signed by ca.crt".to_owned())?;
        if authority_key_identifier(cert) != subject_key_identifier(&ca_cert) {
            return Err("it has no Authority Key Identifier naming the CA's key".into());
        }
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.critical && !bc.value.ca => {}
            _ => return Err("it has no critical basicConstraints CA:FALSE".into()),
        }
        match cert.key_usage() {
            Ok(Some(ku)) if ku.critical && ku.value.digital_signature() => {}
            _ => return Err("it has no critical keyUsage digitalSignature".into()),
        }
        let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
        let usage_ok = match self.usage {
            Usage::Server => eku.is_some_and(|e| e.server_auth),
            Usage::Client => eku.is_some_and(|e| e.client_auth),
        };
        if !usage_ok {
            return Err(format!("its extendedKeyUsage is not {:?}", self.usage));
        }
        let identity = Identity::of(cert);
        let groups: Vec<String> = self.organization.iter().map(|o| o.to_string()).collect();
        if identity.user != self.common_name || identity.groups != groups {
            return Err(format!("it names {identity:?}"));
        }
        let mut sans: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(|name| match name {
                        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
                        GeneralName::IPAddress(bytes) => {
                            let ip = <[u8; 4]>::try_from(*bytes)
                                .map(IpAddr::from)
                                .or_else(|_| <[u8; 16]>::try_from(*bytes).map(IpAddr::from));
                            ip.map_or_else(|_| "IP:?".to_owned(), |ip| format!("IP:{ip}"))
                        }
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut wanted: Vec<String> = self
            .dns_names
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(self.ips.iter().map(|ip| format!("IP:{ip}")))
            .collect();
        sans.sort();
        wanted.sort();
        if sans != wanted {
            return Err(format!("its subject alternative names are {sans:?}"));
        }
        Ok(())
    }
}

/// The certificate authority: its certificate and key.
struct Ca {
    cert: String,
    key: String,
}

impl Ca {
    fn params() -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "orrery-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        params
    }

    /// Why the CA on disk cannot stay (`Ok`: it can).
    fn check(cert: &str, key: &str) -> Result<(), String> {
        let der = der_of(cert)?;
        let parsed = parse(&der)?;
        match parsed.basic_constraints() {
            Ok(Some(bc)) if bc.critical && bc.value.ca => {}
            _ => return Err("it has no critical basicConstraints CA:TRUE".into()),
        }
        match parsed.key_usage() {
            Ok(Some(ku)) if ku.critical && ku.value.key_cert_sign() => {}
            _ => return Err("it has no critical keyUsage keyCertSign".into()),
        }
        if subject_key_identifier(&parsed).is_none() {
            return Err("it has no Subject Key Identifier".into());
        }
        let key = KeyPair::from_pem(key).map_err(|e| format!("ca.key: {e}"))?;
        if key.subject_public_key_info() != parsed.public_key().raw {
            return Err("ca.key is not its key".into());
        }
        Ok(())
    }

    /// The CA in `dir`, made anew if missing or short of the rules.
    fn load_or_create(dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if let (Some(cert), Some(key)) = (read(&cert_path)?, read(&key_path)?) {
            match Ca::check(&cert, &key) {
                Ok(()) => return Ok(Ca { cert, key }),
                Err(why) => tracing::warn!(
                    "{}: {why}; making a new certificate authority (and every certificate it signs)",
                    cert_path.display()
                ),
            }
        }
        let key = KeyPair::generate().map_err(cert_error("ca"))?;
        let cert = Ca::params().self_signed(&key).map_err(cert_error("ca"))?;
        let (cert, key) = (cert.pem(), key.serialize_pem());
        write(&cert_path, &cert, false)?;
        write(&key_path, &key, true)?;
        Ok(Ca { cert, key })
    }

    /// The leaf `leaf` in `dir`: the one on disk if it is as this CA would issue it now, else a
    /// new key and certificate.
    fn leaf(&self, dir: &Path, leaf: &Leaf) -> Result<(String, String), PkiError> {
        let cert_path = dir.join(format!("{}.crt", leaf.file));
        let key_path = dir.join(format!("{}.key", leaf.file));
        if let (Some(cert), Some(key)) = (read(&cert_path)?, read(&key_path)?) {
            let verdict = der_of(&cert).and_then(|der| {
                let parsed = parse(&der)?;
                leaf.check(&parsed, self)?;
                let pair = KeyPair::from_pem(&key).map_err(|e| e.to_string())?;
                if pair.subject_public_key_info() != parsed.public_key().raw {
                    return Err(format!("{}.key is not its key", leaf.file));
                }
                Ok(())
            });
            match verdict {
                Ok(()) => return Ok((cert, key)),
                Err(why) => tracing::info!("{}: {why}; making it again", cert_path.display()),
            }
        }
        let ca_key = KeyPair::from_pem(&self.key).map_err(cert_error("ca"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert, ca_key).map_err(cert_error("ca"))?;
        let key = KeyPair::generate().map_err(cert_error(&leaf.file))?;
        let cert = leaf
            .params()?
            .signed_by(&key, &issuer)
            .map_err(cert_error(&leaf.file))?;
        let (cert, key) = (cert.pem(), key.serialize_pem());
        write(&cert_path, &cert, false)?;
        write(&key_path, &key, true)?;
        Ok((cert, key))
    }
}

impl Pki {
    /// Loads the certificates from `dir` (created owner-only if missing), making any that are
    /// missing or short of the rules, the CA first.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        create_private_dir(dir)?;
        let ca = Ca::load_or_create(dir)?;
        let server = Leaf {
            file: "apiserver".into(),
            common_name: "kube-apiserver".into(),
            organization: None,
            usage: Usage::Server,
            dns_names: [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .map(str::to_owned)
            .to_vec(),
            ips: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv4Addr::new(10, 96, 0, 1).into(),
            ],
        };
        let (server_cert, server_key) = ca.leaf(dir, &server)?;
        let admin = Leaf {
            file: "admin".into(),
            common_name: "kubernetes-admin".into(),
            organization: Some("system:masters"),
            usage: Usage::Client,
            dns_names: vec![],
            ips: vec![],
        };
        let (admin_cert, admin_key) = ca.leaf(dir, &admin)?;
        let kubelet_client = Leaf {
            file: "apiserver-kubelet-client".into(),
            common_name: KUBELET_CLIENT_USER.into(),
            organization: Some(KUBELET_CLIENT_GROUP),
            usage: Usage::Client,
            dns_names: vec![],
            ips: vec![],
        };
        let (kubelet_client_cert, kubelet_client_key) = ca.leaf(dir, &kubelet_client)?;
        let (sa_key, sa_public) = service_account_key(dir)?;
        Ok(Pki {
            sa_key,
            sa_public,
            ca_cert: ca.cert,
            ca_key: ca.key,
            server_cert,
            server_key,
            admin_cert,
            admin_key,
            kubelet_client_cert,
            kubelet_client_key,
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key).map_err(cert_error("ca"))?;
        Issuer::from_ca_cert_pem(&self.ca_cert, ca_key).map_err(cert_error("ca"))
    }

    /// A new client key and certificate naming `user` (CN) in `groups` (O), signed by the
    /// cluster's CA and valid for `valid_for` from now: a kubeconfig user, as
    /// `kubeadm kubeconfig user` makes one.
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[String],
        valid_for: std::time::Duration,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(cert_error(user))?;
        let mut params = client_params(user, groups)?;
        client_validity(&mut params, valid_for);
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(cert_error(user))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs a PKCS#10 request (PEM) as the `kubernetes.io/kube-apiserver-client` signer does:
    /// the request's subject and key, client auth only, valid for `valid_for` from now.
    pub fn sign_client_request(
        &self,
        request_pem: &str,
        valid_for: std::time::Duration,
    ) -> Result<String, PkiError> {
        self.sign_client_request_for(
            request_pem,
            valid_for,
            &["digital signature", "client auth"],
        )
    }

    /// [`Pki::sign_client_request`] with the key usages a CertificateSigningRequest names
    /// (`digital signature`, `key encipherment`, `client auth`), as upstream's signer copies
    /// them into the certificate (none named: no keyUsage extension). Other usages are the
    /// caller's to refuse first.
    pub fn sign_client_request_for(
        &self,
        request_pem: &str,
        valid_for: std::time::Duration,
        usages: &[&str],
    ) -> Result<String, PkiError> {
        let bad = |message: String| PkiError::Certificate {
            name: "certificatesigningrequest".into(),
            message,
        };
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| bad(e.to_string()))?;
        let subject = request.params.distinguished_name.clone();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        for usage in usages {
            match *usage {
                "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                other => return Err(bad(format!("unsupported usage {other:?}"))),
            }
        }
        params.use_authority_key_identifier_extension = true;
        client_validity(&mut params, valid_for);
        request.params = params;
        let cert = request
            .signed_by(&self.issuer()?)
            .map_err(|e| bad(e.to_string()))?;
        Ok(cert.pem())
    }

    /// The API server's TLS: its certificate, and a request for a client certificate that the
    /// handshake takes whatever it is, so that a missing or untrusted certificate can be answered
    /// with a 401 in Kubernetes' words, as kube-apiserver does.
    pub fn server_tls(&self) -> Result<ServerTls, PkiError> {
        ServerTls::new(
            "apiserver",
            &self.ca_cert,
            &self.server_cert,
            &self.server_key,
            &[b"h2", b"http/1.1"],
        )
    }

    /// Node `node`'s kubelet serving TLS, from `dir/kubelet.crt` and `kubelet.key` (made or made
    /// again as the other leaves are; `dir` is created owner-only): a certificate for the node's
    /// name and `address`, signed by the cluster's CA, and the CA to check clients against.
    /// HTTP/1.1 only: exec, attach and port-forward are connection upgrades.
    pub fn kubelet_serving(
        &self,
        node: &str,
        address: IpAddr,
        dir: &Path,
    ) -> Result<ServerTls, PkiError> {
        create_private_dir(dir)?;
        let ca = Ca {
            cert: self.ca_cert.clone(),
            key: self.ca_key.clone(),
        };
        let leaf = Leaf {
            file: "kubelet".into(),
            common_name: format!("system:node:{node}"),
            organization: Some("system:nodes"),
            usage: Usage::Server,
            dns_names: vec![node.to_owned()],
            ips: vec![address],
        };
        let (cert, key) = ca.leaf(dir, &leaf)?;
        ServerTls::new("kubelet", &self.ca_cert, &cert, &key, &[b"http/1.1"])
    }

    /// The API server's TLS towards the kubelets (kube-apiserver's `--kubelet-client-certificate`
    /// and `--kubelet-certificate-authority`): it shows its kubelet client certificate and checks
    /// each kubelet's serving certificate against the cluster's CA.
    pub fn kubelet_client(&self) -> Result<Arc<rustls::ClientConfig>, PkiError> {
        let bad = |message: String| PkiError::Certificate {
            name: "apiserver-kubelet-client".into(),
            message,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = roots(&self.ca_cert).map_err(bad)?;
        let certs = CertificateDer::pem_slice_iter(self.kubelet_client_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.kubelet_client_key.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| bad(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn roots(ca_cert: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_cert.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

/// A server's TLS configuration and the check of its clients' certificates.
#[derive(Clone)]
pub struct ServerTls {
    /// What the TLS layer serves with.
    pub config: Arc<rustls::ServerConfig>,
    clients: Arc<dyn ClientCertVerifier>,
}

impl ServerTls {
    fn new(
        name: &str,
        ca_cert: &str,
        cert: &str,
        key: &str,
        alpn: &[&[u8]],
    ) -> Result<ServerTls, PkiError> {
        let bad = |message: String| PkiError::Certificate {
            name: name.to_owned(),
            message,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = roots(ca_cert).map_err(bad)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_client_cert_verifier(Arc::new(AnyClientCert(verifier.clone())))
            .with_single_cert(certs, key)
            .map_err(|e| bad(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(ServerTls {
            config: Arc::new(config),
            clients: verifier,
        })
    }

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

    /// Who the client is, if the certificate chain it presented is signed by the cluster's CA.
    pub fn identity(&self, chain: &[CertificateDer<'_>]) -> Option<Identity> {
        if !self.authenticate(chain) {
            return None;
        }
        let leaf = chain.first()?;
        parse(leaf).ok().map(|cert| Identity::of(&cert))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A leaf as Orrery made them before: no Authority Key Identifier, no basicConstraints.
    fn old_leaf(dir: &Path, file: &str, cn: &str) {
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
        let issuer = Issuer::new(Ca::params(), ca_key);
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    }

    #[test]
    fn signed_requests_carry_the_usages_they_name() {
        let root = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&root.path().join("pki")).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "carol");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "qa");
        let request = params.serialize_request(&key).unwrap().pem().unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let pem = pki
            .sign_client_request_for(&request, hour, &["key encipherment", "client auth"])
            .unwrap();
        let der = der_of(&pem).unwrap();
        let cert = parse(&der).unwrap();
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.key_encipherment() && !usage.digital_signature());
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        assert_eq!(
            Identity::of(&cert),
            Identity {
                user: "carol".into(),
                groups: vec!["qa".into()],
            }
        );
        let lifetime = cert.validity().not_after.timestamp()
            - time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((3500..=3600).contains(&lifetime), "{lifetime}");
        assert!(
            pki.sign_client_request_for(&request, hour, &["server auth"])
                .is_err()
        );
    }

    #[test]
    fn leaves_name_the_cas_key_and_short_ones_are_made_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state/pki");
        let first = Pki::load_or_create(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir.join("apiserver.crt")), 0o644);
        let ca_der = der_of(&first.ca_cert).unwrap();
        let ca = parse(&ca_der).unwrap();
        let ski = subject_key_identifier(&ca).expect("the CA has a Subject Key Identifier");
        for pem in [
            &first.server_cert,
            &first.admin_cert,
            &first.kubelet_client_cert,
        ] {
            let der = der_of(pem).unwrap();
            let leaf = parse(&der).unwrap();
            assert_eq!(authority_key_identifier(&leaf).as_ref(), Some(&ski));
            leaf.verify_signature(Some(ca.public_key())).unwrap();
        }
        let kubelet_client = parse(&der_of(&first.kubelet_client_cert).unwrap())
            .map(|c| Identity::of(&c))
            .unwrap();
        assert_eq!(
            kubelet_client,
            Identity {
                user: "kube-apiserver-kubelet-client".into(),
                groups: vec!["kubeadm:cluster-admins".into()],
            }
        );

        // Loading again keeps everything.
        let again = Pki::load_or_create(&dir).unwrap();
        assert_eq!(again.server_cert, first.server_cert);
        assert_eq!(again.admin_key, first.admin_key);

        // An earlier version's leaf (no Authority Key Identifier) is made again; the CA stays.
        old_leaf(&dir, "apiserver", "kube-apiserver");
        let old = std::fs::read_to_string(dir.join("apiserver.crt")).unwrap();
        let upgraded = Pki::load_or_create(&dir).unwrap();
        assert_eq!(upgraded.ca_cert, first.ca_cert);
        assert_ne!(upgraded.server_cert, old);
        let der = der_of(&upgraded.server_cert).unwrap();
        assert_eq!(
            authority_key_identifier(&parse(&der).unwrap()).as_ref(),
            Some(&ski)
        );
        assert_eq!(upgraded.admin_cert, first.admin_cert);

        // A leaf signed by another CA is made again too.
        let other = tempfile::tempdir().unwrap();
        let foreign = Pki::load_or_create(other.path()).unwrap();
        std::fs::write(dir.join("admin.crt"), &foreign.admin_cert).unwrap();
        std::fs::write(dir.join("admin.key"), &foreign.admin_key).unwrap();
        let mended = Pki::load_or_create(&dir).unwrap();
        assert_ne!(mended.admin_cert, foreign.admin_cert);
        let der = der_of(&mended.admin_cert).unwrap();
        parse(&der)
            .unwrap()
            .verify_signature(Some(ca.public_key()))
            .unwrap();
    }

    #[test]
    fn kubelet_serving_certificates_name_the_node_and_its_address() {
        let root = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&root.path().join("pki")).unwrap();
        let dir = root.path().join("kubelet/node-1/pki");
        pki.kubelet_serving("node-1", std::net::Ipv4Addr::LOCALHOST.into(), &dir)
            .unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("kubelet.key")), 0o600);
        let pem = std::fs::read_to_string(dir.join("kubelet.crt")).unwrap();
        let der = der_of(&pem).unwrap();
        let cert = parse(&der).unwrap();
        assert_eq!(
            Identity::of(&cert),
            Identity {
                user: "system:node:node-1".into(),
                groups: vec!["system:nodes".into()],
            }
        );
        // Another address makes it again.
        pki.kubelet_serving("node-1", std::net::Ipv4Addr::new(10, 0, 0, 1).into(), &dir)
            .unwrap();
        assert_ne!(
            std::fs::read_to_string(dir.join("kubelet.crt")).unwrap(),
            pem
        );
    }
}
