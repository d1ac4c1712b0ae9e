//! What kube-apiserver does to CertificateSigningRequests (`certificates.k8s.io/v1`) before it
//! stores them: the strategy (`pkg/registry/certificates/certificates`: on create the requester's
//! identity in `spec.username`, `uid`, `groups` and `extra`, whatever the client sent, and an
//! empty status; the main resource, `status` and `approval` each changing only their part),
//! validation in upstream's words (`pkg/apis/certificates/validation`: the request's PEM and
//! signature, the signer name, `expirationSeconds`, usages, conditions, who may set the
//! certificate or the approval), and the admission plugins `CertificateApproval` (approving
//! needs `approve` on the signer), `CertificateSigning` (issuing needs `sign`) and
//! `CertificateSubjectRestriction` (no `system:masters` client certificates).

use base64::Engine;
use serde_json::{Value, json};

use super::ApiServer;
use super::errors::{ApiError, Cause};
use super::registry::store::UpdateKind;
use super::resources::Resource;
use crate::apimachinery::certificates::{
    self as certs, APPROVED, DENIED, FAILED, KNOWN_USAGES, KUBE_APISERVER_CLIENT, LEGACY_UNKNOWN,
};

const RESOURCE: &str = "certificatesigningrequests.certificates.k8s.io";

/// Whether `resource` is CertificateSigningRequests.
pub(crate) fn is_csr(resource: &Resource) -> bool {
    (resource.group, resource.kind) == ("certificates.k8s.io", "CertificateSigningRequest")
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `PrepareForCreate`: the requester's identity, never the client's, and no status (a request
/// cannot be created approved).
pub(crate) fn prepare_for_create(object: &mut Value) {
    let spec = &mut object["spec"];
    if let Some(spec) = spec.as_object_mut() {
        for field in ["username", "uid", "groups", "extra"] {
            spec.remove(field);
        }
        if let Some(user) = super::auth::requester() {
            spec.insert("username".into(), json!(user.name));
            if !user.uid.is_empty() {
                spec.insert("uid".into(), json!(user.uid));
            }
            if !user.groups.is_empty() {
                spec.insert("groups".into(), json!(user.groups));
            }
            if !user.extra.is_empty() {
                spec.insert("extra".into(), json!(user.extra));
            }
        }
    }
    object["status"] = json!({});
}

fn conditions(object: &Value) -> Vec<Value> {
    object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn indices(conditions: &[Value], kind: &str) -> Vec<usize> {
    (0..conditions.len())
        .filter(|i| conditions[*i]["type"] == kind)
        .collect()
}

/// `preserveConditionInstances`: the old instances of `kind` stand in for the new ones, when
/// there are as many (otherwise validation refuses the change).
fn preserve(new: &mut [Value], old: &[Value], kind: &str) {
    let (old_at, new_at) = (indices(old, kind), indices(new, kind));
    if old_at.len() == new_at.len() {
        for (o, n) in old_at.into_iter().zip(new_at) {
            new[n] = old[o].clone();
        }
    }
}

/// `populateConditionTimestamps`: a condition without `lastUpdateTime` gets now; one without
/// `lastTransitionTime` gets the old one of the same type and status, else now.
fn populate_timestamps(new: &mut [Value], old: &[Value]) {
    let now = now();
    for c in new.iter_mut() {
        if c["lastUpdateTime"].as_str().is_none_or(str::is_empty) {
            c["lastUpdateTime"] = json!(now);
        }
        if c["lastTransitionTime"].as_str().is_none_or(str::is_empty) {
            let earlier = old
                .iter()
                .find(|o| {
                    o["type"] == c["type"]
                        && o["status"] == c["status"]
                        && o["lastTransitionTime"]
                            .as_str()
                            .is_some_and(|t| !t.is_empty())
                })
                .map(|o| o["lastTransitionTime"].clone());
            c["lastTransitionTime"] = earlier.unwrap_or_else(|| json!(now));
        }
    }
}

fn set_conditions(object: &mut Value, conditions: Vec<Value>) {
    if conditions.is_empty() {
        if let Some(status) = object["status"].as_object_mut() {
            status.remove("conditions");
        }
    } else {
        object["status"]["conditions"] = Value::Array(conditions);
    }
}

/// `PrepareForUpdate` of the main resource and of the `status` and `approval` subresources,
/// on `new` as the generic update made it: the spec never changes; through `status` the
/// certificate and conditions but `Approved` and `Denied`; through `approval` the conditions
/// but `Failed`.
pub(crate) fn prepare_for_update(kind: UpdateKind, new: &mut Value, old: &Value) {
    new["spec"] = old["spec"].clone();
    match kind {
        UpdateKind::Status => {
            let mut wanted = conditions(new);
            let before = conditions(old);
            preserve(&mut wanted, &before, APPROVED);
            preserve(&mut wanted, &before, DENIED);
            populate_timestamps(&mut wanted, &before);
            set_conditions(new, wanted);
        }
        UpdateKind::Approval => {
            let mut wanted = conditions(new);
            let before = conditions(old);
            preserve(&mut wanted, &before, FAILED);
            populate_timestamps(&mut wanted, &before);
            new["status"] = old["status"].clone();
            if !new["status"].is_object() {
                new["status"] = json!({});
            }
            set_conditions(new, wanted);
        }
        _ => new["status"] = old["status"].clone(),
    }
}

/// A `[]byte` field's bytes (base64 in JSON).
fn bytes_of(value: &Value) -> Vec<u8> {
    value
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// A `[]byte` as Go's `%#v` prints it: `[]byte{0x2d, 0x2d}`, or `[]byte(nil)`.
fn go_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "[]byte(nil)".into();
    }
    let items: Vec<String> = bytes.iter().map(|b| format!("{b:#x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

/// `validateCertificate`: every PEM block a parseable `CERTIFICATE`, at least one.
fn certificate_problem(mut pem: &[u8]) -> Option<String> {
    if pem.is_empty() {
        return None;
    }
    let mut blocks = 0;
    loop {
        let text = String::from_utf8_lossy(pem);
        let Some((kind, der)) = certs::pem_block(pem) else {
            break;
        };
        if kind != "CERTIFICATE" {
            return Some(format!(
                "only CERTIFICATE PEM blocks are allowed, found {kind:?}"
            ));
        }
        blocks += 1;
        if x509_parser::parse_x509_certificate(&der).is_err() {
            return Some("x509: malformed certificate".into());
        }
        let end = format!("-----END {kind}-----");
        match text.find(&end) {
            Some(at) => pem = &pem[(at + end.len()).min(pem.len())..],
            None => break,
        }
    }
    if blocks == 0 {
        return Some("must contain at least one CERTIFICATE PEM block".into());
    }
    None
}

const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// `IsDNS1123Label`'s errors.
fn label_errors(label: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if label.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    if !super::admission::is_dns1123_label(&label[..label.len().min(63)]) || label.is_empty() {
        errors.push(LABEL_RULE.to_owned());
    }
    errors
}

/// `IsDNS1123Subdomain`'s errors.
fn subdomain_errors(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > 253 {
        errors.push("must be no more than 253 characters".to_owned());
    }
    if !name.split('.').all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    }) {
        errors.push(super::admission::DNS1123_SUBDOMAIN.to_owned());
    }
    errors
}

fn too_long(field: &str, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooLong",
        field: field.into(),
        message: format!("Too long: may not be more than {max} bytes"),
    }
}

/// `ValidateCertificateSigningRequestSignerName`.
fn signer_name_causes(field: &str, signer: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if signer.is_empty() {
        causes.push(Cause::required_because(
            field,
            "signerName must be provided",
        ));
        return causes;
    }
    let segments: Vec<&str> = signer.split('/').collect();
    let [domain, path] = segments.as_slice() else {
        causes.push(Cause::invalid(
            field,
            &json!(signer),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return causes;
    };
    if domain.len() > 253 {
        causes.push(too_long(field, 253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for label in &labels {
        let errors = label_errors(label);
        if !errors.is_empty() {
            for e in errors {
                causes.push(Cause::invalid(
                    field,
                    &json!(domain),
                    format!("validating label {label:?}: {e}"),
                ));
            }
            break;
        }
    }
    if labels.len() < 2 {
        causes.push(Cause::invalid(
            field,
            &json!(domain),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for label in path.split('.') {
        let errors = subdomain_errors(label);
        if !errors.is_empty() {
            for e in errors {
                causes.push(Cause::invalid(
                    field,
                    &json!(path),
                    format!("validating label {label:?}: {e}"),
                ));
            }
            break;
        }
    }
    let max = 253 + (253 + 63 + 1) + 1;
    if signer.len() > max {
        causes.push(too_long(field, max));
    }
    causes
}

fn condition_types(object: &Value) -> Vec<String> {
    conditions(object)
        .iter()
        .map(|c| c["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn has_duplicates<T: PartialEq>(items: &[T]) -> bool {
    items
        .iter()
        .enumerate()
        .any(|(i, a)| items[..i].contains(a))
}

fn usages(object: &Value) -> Vec<String> {
    object["spec"]["usages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| u.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `validateCertificateSigningRequest` and, given the stored object, its update rules, for a
/// write through the main resource or the `status` or `approval` subresource. What the stored
/// object already breaks is tolerated, as upstream's validation options tolerate it.
pub(crate) fn validate(new: &Value, old: Option<&Value>, kind: UpdateKind) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &new["spec"];
    let request = bytes_of(&spec["request"]);
    if let Err(e) = certs::parse_request(&request) {
        causes.push(Cause::invalid_shown("spec.request", &go_bytes(&request), e));
    }
    let wanted_usages = usages(new);
    if wanted_usages.is_empty() {
        causes.push(Cause::required_because(
            "spec.usages",
            "usages must be provided",
        ));
    }
    let old_usages = old.map(usages).unwrap_or_default();
    if !old_usages
        .iter()
        .any(|u| !KNOWN_USAGES.contains(&u.as_str()))
    {
        for (i, usage) in wanted_usages.iter().enumerate() {
            if !KNOWN_USAGES.contains(&usage.as_str()) {
                causes.push(Cause::unsupported(
                    format!("spec.usages[{i}]"),
                    &json!(usage),
                    KNOWN_USAGES,
                ));
            }
        }
    }
    if !has_duplicates(&old_usages) {
        for (i, usage) in wanted_usages.iter().enumerate() {
            if wanted_usages[..i].contains(usage) {
                causes.push(Cause::duplicate(format!("spec.usages[{i}]"), &json!(usage)));
            }
        }
    }
    let signer = spec["signerName"].as_str().unwrap_or_default();
    let legacy_allowed = old.is_some_and(|o| o["spec"]["signerName"] == LEGACY_UNKNOWN);
    if signer == LEGACY_UNKNOWN && !legacy_allowed {
        causes.push(Cause::invalid(
            "spec.signerName",
            &json!(signer),
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        causes.extend(signer_name_causes("spec.signerName", signer));
    }
    if let Some(seconds) = spec["expirationSeconds"].as_i64()
        && seconds < 600
    {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(seconds),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    validate_conditions(new, old, &mut causes);
    let certificate = bytes_of(&new["status"]["certificate"]);
    let old_certificate = old.map(|o| bytes_of(&o["status"]["certificate"]));
    let arbitrary_allowed = old_certificate.as_deref() == Some(&certificate[..])
        || old_certificate
            .as_deref()
            .is_some_and(|c| certificate_problem(c).is_some());
    if !arbitrary_allowed && let Some(problem) = certificate_problem(&certificate) {
        causes.push(Cause::invalid(
            "status.certificate",
            &json!("<certificate data>"),
            problem,
        ));
    }
    let Some(old) = old else {
        return causes;
    };
    let (now_conditions, then_conditions) = (conditions(new), conditions(old));
    let of = |all: &[Value], t: &str| -> Vec<Value> {
        all.iter().filter(|c| c["type"] == t).cloned().collect()
    };
    for t in [APPROVED, DENIED, FAILED] {
        if of(&now_conditions, t).len() < of(&then_conditions, t).len() {
            causes.push(Cause::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if kind != UpdateKind::Approval {
        for t in [APPROVED, DENIED] {
            let (now, then) = (of(&now_conditions, t), of(&then_conditions, t));
            if now.len() > then.len() {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    format!("updates may not add a condition of type {t:?}"),
                ));
            } else if now.len() == then.len() && now != then {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    format!(
                        "updates may not modify a condition of type {t:?}\n{}",
                        condition_diff(&then, &now)
                    ),
                ));
            }
        }
    }
    if Some(&certificate[..]) != old_certificate.as_deref() {
        if kind != UpdateKind::Status {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if old_certificate.as_ref().is_some_and(|c| !c.is_empty()) {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
    causes
}

/// The changed conditions, as JSON (upstream prints Go's `diff.ObjectDiff`).
fn condition_diff(old: &[Value], new: &[Value]) -> String {
    format!("object A: {}\nobject B: {}", json!(old), json!(new))
}

/// `validateConditions`.
fn validate_conditions(new: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let old_types = old.map(condition_types).unwrap_or_default();
    let allow_empty = old_types.iter().any(String::is_empty);
    let allow_duplicates = has_duplicates(&old_types);
    let allow_both =
        old_types.iter().any(|t| t == APPROVED) && old_types.iter().any(|t| t == DENIED);
    let (mut approved, mut denied) = (false, false);
    let mut seen: Vec<String> = Vec::new();
    for (i, c) in conditions(new).iter().enumerate() {
        let t = c["type"].as_str().unwrap_or_default();
        if !allow_empty && t.is_empty() {
            causes.push(Cause::required(format!("status.conditions[{i}].type")));
        }
        let status = c["status"].as_str().unwrap_or_default();
        let allowed: &[&str] = if [APPROVED, DENIED, FAILED].contains(&t) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if status.is_empty() {
            causes.push(Cause::required(format!("status.conditions[{i}].status")));
        } else if !allowed.contains(&status) {
            causes.push(Cause::unsupported(
                format!("status.conditions[{i}].status"),
                &json!(status),
                allowed,
            ));
        }
        if !allow_both {
            let clash = match t {
                APPROVED => {
                    approved = true;
                    denied
                }
                DENIED => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if clash {
                causes.push(Cause::invalid(
                    format!("status.conditions[{i}].type"),
                    &json!(t),
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
        }
        if !allow_duplicates {
            if seen.iter().any(|s| s == t) {
                causes.push(Cause::duplicate(
                    format!("status.conditions[{i}].type"),
                    &json!(t),
                ));
            }
            seen.push(t.to_owned());
        }
    }
}

/// `IsAuthorizedForSignerName`: `verb` on `signers` named the signer, or its domain's `/*`.
async fn authorized_for_signer(api: &ApiServer, verb: &str, signer: &str) -> bool {
    let Some(user) = super::auth::requester() else {
        return true;
    };
    let domain = signer.split('/').next().unwrap_or_default();
    for name in [signer.to_owned(), format!("{domain}/*")] {
        let attributes =
            super::auth::Attributes::resource(verb, "certificates.k8s.io", "signers", "")
                .named(&name);
        if api
            .authorizer
            .authorize(&api.store, &user, &attributes)
            .await
            .allowed
        {
            return true;
        }
    }
    false
}

/// The admission plugins on a write of a CertificateSigningRequest (`old`: the stored object,
/// on an update): `CertificateSubjectRestriction` on create, `CertificateApproval` through
/// `approval`, `CertificateSigning` when `status` changes the certificate.
pub(crate) async fn admit(
    api: &ApiServer,
    kind: UpdateKind,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = new["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let forbidden = |detail: String| ApiError::Forbidden {
        resource: RESOURCE.into(),
        name: name.clone(),
        detail,
    };
    let Some(old) = old else {
        let signer = new["spec"]["signerName"].as_str().unwrap_or_default();
        if signer != KUBE_APISERVER_CLIENT {
            return Ok(());
        }
        let request = certs::parse_request(&bytes_of(&new["spec"]["request"]))
            .map_err(|e| forbidden(format!("failed to parse CSR: {e}")))?;
        if request.organizations.iter().any(|o| o == "system:masters") {
            return Err(forbidden(format!(
                "use of {signer} signer with system:masters group is not allowed"
            )));
        }
        return Ok(());
    };
    match kind {
        UpdateKind::Approval => {
            let signer = new["spec"]["signerName"].as_str().unwrap_or_default();
            if !authorized_for_signer(api, "approve", signer).await {
                return Err(forbidden(format!(
                    "user not permitted to approve requests with signerName {signer:?}"
                )));
            }
        }
        UpdateKind::Status if new["status"]["certificate"] != old["status"]["certificate"] => {
            let signer = old["spec"]["signerName"].as_str().unwrap_or_default();
            if !authorized_for_signer(api, "sign", signer).await {
                return Err(forbidden(format!(
                    "user not permitted to sign requests with signerName {signer:?}"
                )));
            }
        }
        _ => {}
    }
    Ok(())
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

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn csr() -> Value {
        json!({
            "metadata": {"name": "carol"},
            "spec": {
                "request": b64(REQUEST),
                "signerName": KUBE_APISERVER_CLIENT,
                "usages": ["client auth"],
                "expirationSeconds": 3600,
            },
            "status": {},
        })
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn check(object: &Value, want: &[&str]) {
        assert_eq!(
            messages(&validate(object, None, UpdateKind::Main)),
            want,
            "{object}"
        );
    }

    #[test]
    fn creates_are_validated_in_upstreams_words() {
        check(&csr(), &[]);
        let mut bad = csr();
        bad["spec"]["request"] = json!(b64("--"));
        check(
            &bad,
            &[
                "spec.request: Invalid value: []byte{0x2d, 0x2d}: PEM block type must be CERTIFICATE REQUEST",
            ],
        );
        let mut bad = csr();
        bad["spec"]["signerName"] = json!("");
        bad["spec"]["usages"] = json!([]);
        bad["spec"]["expirationSeconds"] = json!(599);
        check(
            &bad,
            &[
                "spec.usages: Required value: usages must be provided",
                "spec.signerName: Required value: signerName must be provided",
                "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)",
            ],
        );
        let mut bad = csr();
        bad["spec"]["signerName"] = json!("example/signer");
        bad["spec"]["usages"] = json!(["client auth", "bogus", "client auth"]);
        let got = messages(&validate(&bad, None, UpdateKind::Main));
        assert!(got[0].starts_with("spec.usages[1]: Unsupported value: \"bogus\": supported values: \"any\", \"cert sign\""), "{got:?}");
        assert_eq!(
            got[1..],
            [
                "spec.usages[2]: Duplicate value: \"client auth\"",
                "spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots",
            ]
        );
        let mut bad = csr();
        bad["spec"]["signerName"] = json!(LEGACY_UNKNOWN);
        check(
            &bad,
            &[
                "spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version",
            ],
        );
        let mut bad = csr();
        bad["spec"]["signerName"] = json!("a/b/c");
        check(
            &bad,
            &[
                "spec.signerName: Invalid value: \"a/b/c\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
            ],
        );
        let mut bad = csr();
        bad["status"]["conditions"] = json!([
            {"type": "Approved", "status": "True"},
            {"type": "Denied", "status": "False"},
            {"type": "Approved", "status": "True"},
        ]);
        check(
            &bad,
            &[
                "status.conditions[1].status: Unsupported value: \"False\": supported values: \"True\"",
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
                "status.conditions[2].type: Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive",
                "status.conditions[2].type: Duplicate value: \"Approved\"",
            ],
        );
        let mut bad = csr();
        bad["status"]["certificate"] = json!(b64(REQUEST));
        check(
            &bad,
            &[
                "status.certificate: Invalid value: \"<certificate data>\": only CERTIFICATE PEM blocks are allowed, found \"CERTIFICATE REQUEST\"",
            ],
        );
    }

    #[test]
    fn each_write_changes_only_its_part() {
        let old = csr();
        let mut approved = old.clone();
        approved["status"]["conditions"] =
            json!([{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]);
        approved["status"]["certificate"] = json!("c2VjcmV0");
        approved["spec"]["username"] = json!("mallory");

        // Through the main resource nothing of spec or status changes.
        let mut new = approved.clone();
        prepare_for_update(UpdateKind::Main, &mut new, &old);
        assert_eq!(new, old);

        // Through approval only the conditions, with their times.
        let mut new = approved.clone();
        prepare_for_update(UpdateKind::Approval, &mut new, &old);
        assert_eq!(new["spec"], old["spec"]);
        assert!(new["status"]["certificate"].is_null());
        assert_eq!(new["status"]["conditions"][0]["reason"], "KubectlApprove");
        assert!(new["status"]["conditions"][0]["lastUpdateTime"].is_string());
        assert_eq!(
            messages(&validate(&new, Some(&old), UpdateKind::Approval)),
            Vec::<String>::new()
        );

        // Through status an approval is refused: the condition is added.
        let mut new = approved.clone();
        new["status"].as_object_mut().unwrap().remove("certificate");
        prepare_for_update(UpdateKind::Status, &mut new, &old);
        assert_eq!(
            messages(&validate(&new, Some(&old), UpdateKind::Status)),
            ["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]
        );

        // Only status sets a certificate, and only once.
        let mut stored = old.clone();
        stored["status"]["certificate"] = json!(b64("x"));
        let mut new = stored.clone();
        new["status"]["certificate"] = json!(b64("y"));
        let got = messages(&validate(&new, Some(&stored), UpdateKind::Main));
        assert!(
            got.contains(
                &"status.certificate: Forbidden: updates may not set certificate content"
                    .to_owned()
            ),
            "{got:?}"
        );
        let got = messages(&validate(&new, Some(&stored), UpdateKind::Status));
        assert!(
            got.contains(&"status.certificate: Forbidden: updates may not modify existing certificate content".to_owned()),
            "{got:?}"
        );

        // No condition of the three goes once there.
        let mut denied = old.clone();
        denied["status"]["conditions"] = json!([{"type": "Denied", "status": "True"}]);
        let got = messages(&validate(&old, Some(&denied), UpdateKind::Approval));
        assert_eq!(
            got,
            ["status.conditions: Forbidden: updates may not remove a condition of type \"Denied\""]
        );
    }

    #[test]
    fn creation_takes_the_requester_not_the_client() {
        let mut object = csr();
        object["spec"]["username"] = json!("mallory");
        object["spec"]["groups"] = json!(["system:masters"]);
        object["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        prepare_for_create(&mut object);
        assert!(object["spec"]["username"].is_null());
        assert!(object["spec"]["groups"].is_null());
        assert_eq!(object["status"], json!({}));
    }
}
