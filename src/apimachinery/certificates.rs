//! What the API server and the signer share about CertificateSigningRequests
//! (`certificates.k8s.io/v1`): the well-known signer names, reading a request's PEM as
//! upstream's `ParseCSR` does, the request's conditions (`Approved`, `Denied`, `Failed`), the
//! `kubernetes.io/kube-apiserver-client` signer's usage rules and how long it signs for.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

/// Client certificates for kube-apiserver, signed by the cluster's CA.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Kubelets' client certificates.
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Kubelets' serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The v1beta1 default, never signed by the built-in signers and refused by v1.
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// `Approved`: someone allowed to approve for the signer did.
pub const APPROVED: &str = "Approved";
/// `Denied`: someone allowed to approve for the signer refused.
pub const DENIED: &str = "Denied";
/// `Failed`: the signer could not sign.
pub const FAILED: &str = "Failed";

/// The signer's certificate lifetime without `expirationSeconds`: kube-controller-manager's
/// `--cluster-signing-duration` default, 8760h.
pub const DEFAULT_DURATION: std::time::Duration = std::time::Duration::from_secs(8760 * 3600);
/// The shortest certificate the signer issues (and `expirationSeconds` may ask for): 10 minutes.
pub const MIN_DURATION: std::time::Duration = std::time::Duration::from_secs(600);

/// The usages a CertificateSigningRequest may name (`allValidUsages`), sorted as Go's
/// `sets.String.List` gives them.
pub const KNOWN_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// The first PEM block in `data`, as Go's `pem.Decode` finds it: its type and bytes.
pub fn pem_block(data: &[u8]) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let text = String::from_utf8_lossy(data);
    let mut rest: &str = &text;
    while let Some(at) = rest.find("-----BEGIN ") {
        let after = &rest[at + "-----BEGIN ".len()..];
        let end_of_type = after.find("-----")?;
        let kind = after[..end_of_type].to_owned();
        let body_and_more = &after[end_of_type + 5..];
        let end_line = format!("-----END {kind}-----");
        if !kind.contains('\n')
            && let Some(end) = body_and_more.find(&end_line)
        {
            let body: String = body_and_more[..end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(body) {
                return Some((kind, bytes));
            }
        }
        rest = after;
    }
    None
}

/// What a PKCS#10 request says of its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The subject's common name.
    pub common_name: String,
    /// The subject's organizations (a client certificate's groups).
    pub organizations: Vec<String>,
    /// The request's DER.
    pub der: Vec<u8>,
}

/// `ParseCSR` and `CheckSignature`: the first PEM block must be a `CERTIFICATE REQUEST` that
/// parses and whose signature is its key's. The error is in Go's words where they are known.
pub fn parse_request(pem: &[u8]) -> Result<Request, String> {
    let Some((kind, der)) = pem_block(pem) else {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    };
    if kind != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, request) = X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    request.verify_signature().map_err(|e| match e {
        x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => {
            "x509: cannot verify signature: algorithm unimplemented".to_owned()
        }
        _ => "x509: signature verification failure".to_owned(),
    })?;
    let subject = &request.certification_request_info.subject;
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Ok(Request {
        common_name,
        organizations,
        der,
    })
}

/// The types of a request's conditions whose status is `True` (`Approved`, `Denied` and `Failed`
/// may only be `True`).
fn has_true(conditions: &[(String, String)], kind: &str) -> bool {
    conditions.iter().any(|(t, s)| t == kind && s == "True")
}

/// Where a request stands, from its conditions (type, status) and whether it has a
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Approved and not denied (`IsCertificateRequestApproved`).
    pub approved: bool,
    /// Denied.
    pub denied: bool,
    /// Failed.
    pub failed: bool,
    /// Issued: `status.certificate` is set.
    pub issued: bool,
}

impl Standing {
    /// Reads the conditions as the signer and kubectl do.
    pub fn of(conditions: &[(String, String)], issued: bool) -> Standing {
        let approved = conditions.iter().any(|(t, _)| t == APPROVED);
        let denied = conditions.iter().any(|(t, _)| t == DENIED);
        Standing {
            approved: approved && !denied,
            denied,
            failed: has_true(conditions, FAILED),
            issued,
        }
    }

    /// Whether a built-in signer should sign it now: approved, neither failed nor issued.
    pub fn to_sign(&self) -> bool {
        self.approved && !self.failed && !self.issued
    }

    /// kubectl's CONDITION column (`extractCSRStatus`): `Pending`, `Approved`, `Denied`, then
    /// `,Failed` and `,Issued`.
    pub fn column(conditions: &[String], issued: bool) -> String {
        let has = |t: &str| conditions.iter().any(|c| c == t);
        let mut status = if has(DENIED) {
            "Denied"
        } else if has(APPROVED) {
            "Approved"
        } else {
            "Pending"
        }
        .to_owned();
        if has(FAILED) {
            status.push_str(",Failed");
        }
        if issued {
            status.push_str(",Issued");
        }
        status
    }
}

/// The `kubernetes.io/kube-apiserver-client` signer's check of the usages
/// (`validAPIServerClientUsages`): `client auth` required, `digital signature` and
/// `key encipherment` allowed, nothing else.
pub fn check_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for usage in usages {
        match usage.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

/// How long the signer signs for (`signer.duration`): its own maximum, or less when the request
/// asks (`expirationSeconds`), never under 10 minutes.
pub fn duration(expiration_seconds: Option<i32>, max: std::time::Duration) -> std::time::Duration {
    match expiration_seconds {
        None => max,
        Some(seconds) => {
            let requested = std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
            requested.clamp(MIN_DURATION, max.max(MIN_DURATION))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHmMIGOAgEAMCwxDjAMBgNVBAMMBWNhcm9sMQswCQYDVQQKDAJxYTENMAsGA1UE
CgwEZGV2czBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBs6TwlMk72pYD4a4r6f
5eOAJdtzCXnODGKk6eKzKtrT59va6Af0/dkQvWFepfSst107T/KlkBtP8WhzpJJe
p9SgADAKBggqhkjOPQQDAgNHADBEAiAeg+sv+XbnjaM40kpLc/F+SoOjADkEbvMg
jwPyRu3U1wIgDYLMQPv8pJjzc+96jjk0ppMNQrZzh0QjoodJcutQTu4=
-----END CERTIFICATE REQUEST-----
";

    #[test]
    fn requests_parse_as_upstreams_parse_csr() {
        let parsed = parse_request(REQUEST.as_bytes()).unwrap();
        assert_eq!(parsed.common_name, "carol");
        assert_eq!(parsed.organizations, ["qa", "devs"]);
        let wrong = REQUEST.replace("CERTIFICATE REQUEST", "CERTIFICATE");
        assert_eq!(
            parse_request(wrong.as_bytes()).unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        assert_eq!(
            parse_request(b"not a request").unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        // A flipped bit in the signature.
        let tampered = REQUEST.replace("ppMNQrZz", "ppMNQrZy");
        assert!(
            parse_request(tampered.as_bytes())
                .unwrap_err()
                .starts_with("x509: "),
        );
        // Text before the block is skipped, as pem.Decode skips it.
        let prefixed = format!("junk\n{REQUEST}");
        assert!(parse_request(prefixed.as_bytes()).is_ok());
    }

    #[test]
    fn the_client_signer_checks_usages() {
        let u = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(check_client_usages(&u(&["client auth"])), Ok(()));
        assert_eq!(
            check_client_usages(&u(&[
                "digital signature",
                "key encipherment",
                "client auth"
            ])),
            Ok(())
        );
        assert_eq!(
            check_client_usages(&u(&["digital signature"])),
            Err("missing required usage for client certificate: client auth".into())
        );
        assert_eq!(
            check_client_usages(&u(&["client auth", "server auth"])),
            Err("invalid usage for client certificate: server auth".into())
        );
    }

    #[test]
    fn durations_are_clamped() {
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(duration(None, DEFAULT_DURATION), DEFAULT_DURATION);
        assert_eq!(duration(Some(3600), DEFAULT_DURATION), hour);
        assert_eq!(duration(Some(60), DEFAULT_DURATION), MIN_DURATION);
        assert_eq!(duration(Some(i32::MAX), DEFAULT_DURATION), DEFAULT_DURATION);
    }

    #[test]
    fn standings_read_as_kubectl_and_the_signer() {
        let c = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(Standing::column(&c(&[]), false), "Pending");
        assert_eq!(Standing::column(&c(&[APPROVED]), true), "Approved,Issued");
        assert_eq!(Standing::column(&c(&[DENIED]), false), "Denied");
        assert_eq!(
            Standing::column(&c(&[APPROVED, FAILED]), false),
            "Approved,Failed"
        );
        let t = |kind: &str| (kind.to_owned(), "True".to_owned());
        assert!(Standing::of(&[t(APPROVED)], false).to_sign());
        assert!(!Standing::of(&[t(APPROVED)], true).to_sign());
        assert!(!Standing::of(&[t(APPROVED), t(DENIED)], false).to_sign());
        assert!(!Standing::of(&[t(APPROVED), t(FAILED)], false).to_sign());
        assert!(!Standing::of(&[], false).to_sign());
    }
}
