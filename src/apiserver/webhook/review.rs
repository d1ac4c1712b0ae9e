//! The `AdmissionReview` a webhook is sent and what is read of its answer, as upstream's
//! `webhook/request` builds and verifies them (`CreateV1AdmissionReview`,
//! `CreateV1beta1AdmissionReview`, `VerifyAdmissionResponse`), and a refusal as
//! `webhookerrors.ToStatusErr` words it. The request is written in Go's field order, the
//! objects through [`crate::apimachinery::wire`] as kube-apiserver encodes them.

use serde::Deserialize;
use serde_json::{Value, json};

use super::Operation;
use crate::apimachinery::wire;
use crate::apiserver::auth::UserInfo;

/// `(group, version, name)`: a kind or a resource.
pub(crate) type Gvx<'a> = (&'a str, &'a str, &'a str);

/// Everything an `AdmissionRequest` carries.
pub(crate) struct Request<'a> {
    pub(crate) uid: &'a str,
    /// `v1` or `v1beta1`: the `admission.k8s.io` version sent.
    pub(crate) version: &'a str,
    /// The kind and resource the webhook matched (an equivalent's, for `Equivalent`).
    pub(crate) kind: Gvx<'a>,
    pub(crate) resource: Gvx<'a>,
    pub(crate) subresource: &'a str,
    /// The kind and resource the client asked for.
    pub(crate) request_kind: Gvx<'a>,
    pub(crate) request_resource: Gvx<'a>,
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) operation: Operation,
    pub(crate) user: &'a UserInfo,
    pub(crate) object: Option<&'a Value>,
    pub(crate) old_object: Option<&'a Value>,
    pub(crate) dry_run: bool,
    /// `CreateOptions`, `UpdateOptions` or `DeleteOptions`.
    pub(crate) options: &'a Value,
}

/// The version of `AdmissionReview` to send: the first of the webhook's that this server
/// knows, as `CreateAdmissionObjects` picks it.
pub(crate) fn review_version(versions: &[String]) -> Option<&'static str> {
    versions.iter().find_map(|v| match v.as_str() {
        "v1" => Some("v1"),
        "v1beta1" => Some("v1beta1"),
        _ => None,
    })
}

fn member(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    wire::string(key, out);
    out.push(b':');
}

fn gvx(out: &mut Vec<u8>, last: &str, (group, version, name): Gvx<'_>) {
    out.extend_from_slice(b"{\"group\":");
    wire::string(group, out);
    out.extend_from_slice(b",\"version\":");
    wire::string(version, out);
    out.push(b',');
    wire::string(last, out);
    out.push(b':');
    wire::string(name, out);
    out.push(b'}');
}

fn object(out: &mut Vec<u8>, value: Option<&Value>) {
    match value {
        Some(v) => wire::write(v, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// The request body: `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":
/// {...}}`, fields as `AdmissionRequest` orders them (`omitempty` ones left out when empty;
/// `object` and `oldObject` are `null` when there is none, as a nil `RawExtension` writes).
pub(crate) fn encode(request: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"kind\":\"AdmissionReview\",\"apiVersion\":");
    wire::string(&format!("admission.k8s.io/{}", request.version), &mut out);
    out.extend_from_slice(b",\"request\":{");
    let first = &mut true;
    member(&mut out, first, "uid");
    wire::string(request.uid, &mut out);
    member(&mut out, first, "kind");
    gvx(&mut out, "kind", request.kind);
    member(&mut out, first, "resource");
    gvx(&mut out, "resource", request.resource);
    if !request.subresource.is_empty() {
        member(&mut out, first, "subResource");
        wire::string(request.subresource, &mut out);
    }
    member(&mut out, first, "requestKind");
    gvx(&mut out, "kind", request.request_kind);
    member(&mut out, first, "requestResource");
    gvx(&mut out, "resource", request.request_resource);
    if !request.subresource.is_empty() {
        member(&mut out, first, "requestSubResource");
        wire::string(request.subresource, &mut out);
    }
    if !request.name.is_empty() {
        member(&mut out, first, "name");
        wire::string(request.name, &mut out);
    }
    if !request.namespace.is_empty() {
        member(&mut out, first, "namespace");
        wire::string(request.namespace, &mut out);
    }
    member(&mut out, first, "operation");
    wire::string(request.operation.as_str(), &mut out);
    member(&mut out, first, "userInfo");
    user_info(&mut out, request.user);
    member(&mut out, first, "object");
    object(&mut out, request.object);
    member(&mut out, first, "oldObject");
    object(&mut out, request.old_object);
    member(&mut out, first, "dryRun");
    out.extend_from_slice(if request.dry_run { b"true" } else { b"false" });
    member(&mut out, first, "options");
    object(&mut out, Some(request.options));
    out.extend_from_slice(b"}}");
    out
}

/// `authenticationv1.UserInfo`: every field `omitempty`.
fn user_info(out: &mut Vec<u8>, user: &UserInfo) {
    out.push(b'{');
    let first = &mut true;
    if !user.name.is_empty() {
        member(out, first, "username");
        wire::string(&user.name, out);
    }
    if !user.uid.is_empty() {
        member(out, first, "uid");
        wire::string(&user.uid, out);
    }
    if !user.groups.is_empty() {
        member(out, first, "groups");
        out.push(b'[');
        for (i, group) in user.groups.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            wire::string(group, out);
        }
        out.push(b']');
    }
    if !user.extra.is_empty() {
        member(out, first, "extra");
        wire::generic(&json!(user.extra), out);
    }
    out.push(b'}');
}

/// The options object of an operation (`CreateOptions`, `UpdateOptions`), as the handler
/// passes it to admission: the field manager and `dryRun`.
pub(crate) fn write_options(operation: Operation, manager: Option<&str>, dry_run: bool) -> Value {
    let kind = match operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut options = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if dry_run {
        options["dryRun"] = json!(["All"]);
    }
    if let Some(manager) = manager.filter(|m| !m.is_empty()) {
        options["fieldManager"] = json!(manager);
    }
    options
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    response: Option<Response>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    allowed: bool,
    status: Option<Value>,
    patch: Option<String>,
    patch_type: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// What a webhook answered.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Answer {
    pub(crate) allowed: bool,
    /// The `metav1.Status` it gave (`response.status`).
    pub(crate) status: Option<Value>,
    /// A JSONPatch, decoded from base64 (only a mutating webhook's).
    pub(crate) patch: Option<Vec<u8>>,
    pub(crate) warnings: Vec<String>,
}

/// Reads a webhook's answer as `Into` and `VerifyAdmissionResponse` do: the error is the
/// reason upstream gives (`webhook response was absent`, `expected response.uid=...`).
pub(crate) fn decode(
    body: &[u8],
    uid: &str,
    version: &str,
    mutating: bool,
) -> Result<Answer, String> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
    let response = review
        .response
        .ok_or_else(|| "webhook response was absent".to_owned())?;
    let patch = match &response.patch {
        Some(text) if !text.is_empty() => Some(
            crate::apimachinery::bytes::decode(text)
                .map_err(|e| format!("illegal base64 data at input byte {}", e.0))?,
        ),
        _ => None,
    };
    if version == "v1" {
        if response.uid != uid {
            return Err(format!(
                "expected response.uid={uid:?}, got {:?}",
                response.uid
            ));
        }
        let (group, got_version) = review
            .api_version
            .split_once('/')
            .unwrap_or(("", &review.api_version));
        if (group, got_version, review.kind.as_str())
            != ("admission.k8s.io", "v1", "AdmissionReview")
        {
            return Err(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {group}/{got_version}, Kind={}",
                review.kind
            ));
        }
        if mutating {
            if patch.is_some() && response.patch_type.is_none() {
                return Err("webhook returned response.patch but not response.patchType".into());
            }
            if patch.is_none() && response.patch_type.is_some() {
                return Err("webhook returned response.patchType but not response.patch".into());
            }
            if let Some(kind) = response.patch_type.as_deref() {
                if kind.is_empty() {
                    return Err(format!(
                        "webhook returned invalid response.patchType of {kind:?}"
                    ));
                }
                if kind != "JSONPatch" {
                    return Err(format!("unsupported patch type {kind:?}"));
                }
            }
        } else {
            if patch.is_some() {
                return Err("validating webhook may not return response.patch".into());
            }
            if response.patch_type.is_some() {
                return Err("validating webhook may not return response.patchType".into());
            }
        }
    }
    Ok(Answer {
        allowed: response.allowed,
        status: response.status,
        patch: if mutating { patch } else { None },
        warnings: response.warnings,
    })
}

/// `webhookerrors.ToStatusErr`: the webhook's own Status, its message prefixed with
/// `admission webhook "<name>" denied the request`, its code at least 400.
pub(crate) fn denial(webhook: &str, status: Option<&Value>) -> Value {
    let given = status.cloned().unwrap_or_else(|| json!({}));
    let text = |field: &str| given[field].as_str().unwrap_or_default().to_owned();
    let denied = format!("admission webhook {webhook:?} denied the request");
    let (message, reason) = (text("message"), text("reason"));
    let message = if !message.is_empty() {
        format!("{denied}: {message}")
    } else if !reason.is_empty() {
        format!("{denied}: {reason}")
    } else {
        format!("{denied} without explanation")
    };
    let code = given["code"].as_i64().filter(|c| *c >= 400).unwrap_or(400);
    let status = match text("status").as_str() {
        "" | "Success" => "Failure".to_owned(),
        other => other.to_owned(),
    };
    let mut out = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": status,
        "message": message,
        "code": code,
    });
    if !reason.is_empty() {
        out["reason"] = json!(reason);
    }
    if given["details"].is_object() {
        out["details"] = given["details"].clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            uid: String::new(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            extra: Default::default(),
        }
    }

    #[test]
    fn the_request_is_upstreams_in_go_order() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let options = write_options(Operation::Create, Some("kubectl-create"), false);
        let user = user();
        let request = Request {
            uid: "u-1",
            version: "v1",
            kind: ("", "v1", "Pod"),
            resource: ("", "v1", "pods"),
            subresource: "",
            request_kind: ("", "v1", "Pod"),
            request_resource: ("", "v1", "pods"),
            name: "p",
            namespace: "default",
            operation: Operation::Create,
            user: &user,
            object: Some(&pod),
            old_object: None,
            dry_run: false,
            options: &options,
        };
        let text = String::from_utf8(encode(&request)).unwrap();
        assert!(text.starts_with(
            r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"requestKind":{"group":"","version":"v1","kind":"Pod"},"requestResource":{"group":"","version":"v1","resource":"pods"},"name":"p","namespace":"default","operation":"CREATE","userInfo":{"username":"alice","groups":["devs","system:authenticated"]},"object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"default","creationTimestamp":null},"spec":{"containers":[{"name":"c","image":"i","resources":{}}]},"status":{}},"#
        ), "{text}");
        assert!(text.ends_with(
            r#""oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-create"}}}"#
        ), "{text}");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed["request"]["object"],
            serde_json::from_slice::<Value>(&wire::body(&pod)).unwrap(),
            "the object as Go writes it"
        );

        let status = Request {
            subresource: "status",
            operation: Operation::Update,
            object: Some(&pod),
            old_object: Some(&pod),
            dry_run: true,
            ..request
        };
        let parsed: Value = serde_json::from_slice(&encode(&status)).unwrap();
        assert_eq!(parsed["request"]["subResource"], "status");
        assert_eq!(parsed["request"]["requestSubResource"], "status");
        assert_eq!(parsed["request"]["dryRun"], true);
        assert_eq!(parsed["request"]["oldObject"]["metadata"]["name"], "p");
    }

    #[test]
    fn answers_are_verified_as_upstream_verifies_them() {
        let ok = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"warnings":["w"]}}"#;
        let answer = decode(ok, "u", "v1", false).unwrap();
        assert!(answer.allowed);
        assert_eq!(answer.warnings, vec!["w"]);
        assert_eq!(
            decode(ok, "other", "v1", false).unwrap_err(),
            r#"expected response.uid="other", got "u""#
        );
        assert_eq!(
            decode(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "u",
                "v1",
                false
            )
            .unwrap_err(),
            "webhook response was absent"
        );
        assert_eq!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"uid":"u"}}"#, "u", "v1", false)
                .unwrap_err(),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
        );
        // [{"op":"add","path":"/a","value":1}]
        let patch = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patchType":"JSONPatch","patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"}}"#;
        let answer = decode(patch, "u", "v1", true).unwrap();
        assert_eq!(
            answer.patch.as_deref(),
            Some(&br#"[{"op":"add","path":"/a","value":1}]"#[..])
        );
        assert_eq!(
            decode(patch, "u", "v1", false).unwrap_err(),
            "validating webhook may not return response.patch"
        );
        let untyped = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patch":"W10="}}"#;
        assert_eq!(
            decode(untyped, "u", "v1", true).unwrap_err(),
            "webhook returned response.patch but not response.patchType"
        );
        // v1beta1 answers were never checked for uid or kind.
        let beta = br#"{"response":{"allowed":false}}"#;
        assert!(!decode(beta, "u", "v1beta1", true).unwrap().allowed);
        assert!(decode(b"not json", "u", "v1", true).is_err());
    }

    #[test]
    fn a_denial_keeps_the_webhooks_status() {
        let status = json!({"code": 403, "reason": "Forbidden", "message": "no pods named bad"});
        let out = denial("deny.example.com", Some(&status));
        assert_eq!(
            out["message"],
            "admission webhook \"deny.example.com\" denied the request: no pods named bad"
        );
        assert_eq!(out["code"], 403);
        assert_eq!(out["reason"], "Forbidden");
        let bare = denial("deny.example.com", None);
        assert_eq!(
            bare["message"],
            "admission webhook \"deny.example.com\" denied the request without explanation"
        );
        assert_eq!(bare["code"], 400);
        assert!(bare.get("reason").is_none());
        let reason_only = denial("x.y.z", Some(&json!({"reason": "Nope", "code": 200})));
        assert_eq!(
            reason_only["message"],
            "admission webhook \"x.y.z\" denied the request: Nope"
        );
        assert_eq!(reason_only["code"], 400);
    }
}
