//! Service account tokens: bound JWTs signed with the cluster's service account key
//! (`<state-dir>/pki/sa.key`, ES256), as kube-apiserver's `--service-account-signing-key-file`
//! signs them. [`Tokens::issue`] makes one for the TokenRequest subresource
//! (`kubectl create token`, the kubelet's projected token volumes); [`authenticate`] checks a
//! bearer token: signature, time, audience, and that what it is bound to still exists with the
//! uid it names (deleting the pod invalidates its token), as upstream's legacy-free validator.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::UserInfo;
use crate::apiserver::ApiServer;
use crate::apiserver::errors::{ApiError, Cause};

/// The issuer and default audience: kube-apiserver's `--service-account-issuer` as kubeadm
/// sets it.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The shortest and the default life of a requested token (upstream's 10 minutes and 1 hour).
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;
/// The longest a token may be asked for (2^32 seconds, upstream's limit).
const MAX_EXPIRATION: i64 = 1 << 32;

/// The `kubernetes.io` claim: what the token is bound to.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Private {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: Ref,
    /// The pod it is bound to, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<Ref>,
    /// The Secret it is bound to, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<Ref>,
    /// The node it is bound to (or the pod's node), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<Ref>,
}

/// An object a token names.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// A token's claims, as upstream's `serviceaccount.Claims`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Issuer.
    pub iss: String,
    /// Its id.
    pub jti: String,
    /// What it is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Private,
    /// Not before.
    pub nbf: i64,
    /// `system:serviceaccount:<ns>:<name>`.
    pub sub: String,
}

/// The cluster's signing and checking keys.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// What went wrong with the service account key.
#[derive(Debug, thiserror::Error)]
#[error("service account key: {0}")]
pub struct KeyError(String);

impl Tokens {
    /// The keys from a PKCS#8 private key PEM and its public key PEM.
    pub fn new(private_pem: &str, public_pem: &str) -> Result<Tokens, KeyError> {
        Ok(Tokens {
            encoding: EncodingKey::from_ec_pem(private_pem.as_bytes())
                .map_err(|e| KeyError(e.to_string()))?,
            decoding: DecodingKey::from_ec_pem(public_pem.as_bytes())
                .map_err(|e| KeyError(e.to_string()))?,
        })
    }

    /// A signed token of `claims`.
    pub(crate) fn issue(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = None;
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("failed to sign token: {e}")))
    }

    /// The claims of `token` if its signature, issuer and times are good and one of its
    /// audiences is in `audiences`.
    fn verify(&self, token: &str, audiences: &[String]) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(audiences);
        validation.leeway = 0;
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

async fn get(
    api: &ApiServer,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let resource = crate::apiserver::resources::find("", "v1", plural).expect("served");
    let kv = api
        .store()
        .get(&resource.key(namespace, name))
        .await
        .map_err(|e| crate::apiserver::errors::from_store(e, plural, name))?;
    kv.map(|kv| crate::apiserver::decode(&kv)).transpose()
}

fn uid_of(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

/// Who `token` names, if it is a valid service account token for the API server (`audiences`:
/// the audiences the caller accepts; empty: the API server's own).
pub(crate) async fn authenticate(
    api: &ApiServer,
    token: &str,
    audiences: &[String],
) -> Result<(UserInfo, Vec<String>), String> {
    let Some(tokens) = api.tokens() else {
        return Err("no service account key".into());
    };
    let wanted = if audiences.is_empty() {
        vec![ISSUER.to_owned()]
    } else {
        audiences.to_vec()
    };
    let claims = tokens.verify(token, &wanted)?;
    let private = &claims.kubernetes;
    let namespace = private.namespace.as_str();
    let lookup = |e: ApiError| e.to_string();
    let account = get(
        api,
        "serviceaccounts",
        Some(namespace),
        &private.serviceaccount.name,
    )
    .await
    .map_err(lookup)?
    .ok_or_else(|| {
        format!(
            "service account {}/{} has been deleted",
            namespace, private.serviceaccount.name
        )
    })?;
    if uid_of(&account) != private.serviceaccount.uid {
        return Err(format!(
            "service account UID ({}) does not match claim ({})",
            uid_of(&account),
            private.serviceaccount.uid
        ));
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(pod_ref) = &private.pod {
        let pod = get(api, "pods", Some(namespace), &pod_ref.name)
            .await
            .map_err(lookup)?
            .ok_or_else(|| format!("pod {namespace}/{} has been deleted", pod_ref.name))?;
        if uid_of(&pod) != pod_ref.uid {
            return Err(format!(
                "pod UID ({}) does not match claim ({})",
                uid_of(&pod),
                pod_ref.uid
            ));
        }
        let deleted = pod["metadata"]["deletionTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t.as_second() < now());
        if deleted {
            return Err(format!("pod {namespace}/{} has been deleted", pod_ref.name));
        }
        extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec![pod_ref.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            vec![pod_ref.uid.clone()],
        );
    }
    if let Some(secret_ref) = &private.secret {
        let secret = get(api, "secrets", Some(namespace), &secret_ref.name)
            .await
            .map_err(lookup)?
            .ok_or_else(|| format!("secret {namespace}/{} has been deleted", secret_ref.name))?;
        if uid_of(&secret) != secret_ref.uid {
            return Err("secret UID does not match claim".into());
        }
    }
    if let Some(node) = &private.node {
        extra.insert(
            "authentication.kubernetes.io/node-name".into(),
            vec![node.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/node-uid".into(),
            vec![node.uid.clone()],
        );
    }
    extra.insert(
        "authentication.kubernetes.io/credential-id".into(),
        vec![format!("JTI={}", claims.jti)],
    );
    let mut user = UserInfo::service_account(namespace, &private.serviceaccount.name);
    user.uid = private.serviceaccount.uid.clone();
    user.extra = extra;
    let audiences = claims
        .aud
        .iter()
        .filter(|a| wanted.contains(a))
        .cloned()
        .collect();
    Ok((user, audiences))
}

fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: name.into(),
        causes,
    }
}

/// `POST .../serviceaccounts/<name>/token`: a token for the account, bound to the object the
/// request names (a Pod, Secret or Node that must exist with the uid given).
pub(crate) async fn token_request(
    api: &ApiServer,
    namespace: &str,
    name: &str,
    mut request: Value,
) -> Result<Value, ApiError> {
    let tokens = api.tokens().ok_or_else(|| {
        ApiError::Unavailable("the API server has no service account signing key".into())
    })?;
    let account = get(api, "serviceaccounts", Some(namespace), name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "serviceaccounts".into(),
            name: name.into(),
        })?;
    let spec = request["spec"].clone();
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v.as_i64().unwrap_or(-1),
    };
    let mut causes = Vec::new();
    if expiration < MIN_EXPIRATION {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !causes.is_empty() {
        return Err(invalid(name, causes));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => vec![ISSUER.to_owned()],
    };
    let mut private = Private {
        namespace: namespace.into(),
        serviceaccount: Ref {
            name: name.into(),
            uid: uid_of(&account).into(),
        },
        ..Private::default()
    };
    let bound = &spec["boundObjectRef"];
    if bound.is_object() {
        let kind = bound["kind"].as_str().unwrap_or_default();
        let bound_name = bound["name"].as_str().unwrap_or_default();
        let (plural, scope) = match kind {
            "Pod" => ("pods", Some(namespace)),
            "Secret" => ("secrets", Some(namespace)),
            "Node" => ("nodes", None),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount \"{name}\" to object of type {}",
                    bound["apiVersion"].as_str().unwrap_or("v1").to_owned() + ", Kind=" + kind
                )));
            }
        };
        let object =
            get(api, plural, scope, bound_name)
                .await?
                .ok_or_else(|| ApiError::NotFound {
                    resource: plural.into(),
                    name: bound_name.into(),
                })?;
        let uid = bound["uid"].as_str().unwrap_or_default();
        if !uid.is_empty() && uid != uid_of(&object) {
            return Err(ApiError::Conflict {
                resource: plural.into(),
                name: bound_name.into(),
                detail: format!(
                    "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            });
        }
        let reference = Ref {
            name: bound_name.into(),
            uid: uid_of(&object).into(),
        };
        match kind {
            "Pod" => {
                private.pod = Some(reference);
                if let Some(node) = object["spec"]["nodeName"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    && let Some(node_object) = get(api, "nodes", None, node).await?
                {
                    private.node = Some(Ref {
                        name: node.into(),
                        uid: uid_of(&node_object).into(),
                    });
                }
            }
            "Secret" => private.secret = Some(reference),
            _ => private.node = Some(reference),
        }
    }
    let issued = now();
    let claims = Claims {
        aud: audiences.clone(),
        exp: issued + expiration,
        iat: issued,
        iss: ISSUER.into(),
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: private,
        nbf: issued,
        sub: format!("system:serviceaccount:{namespace}:{name}"),
    };
    let token = tokens.issue(&claims)?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(expiration);
    if !request["spec"]["boundObjectRef"].is_object() {
        request["spec"]["boundObjectRef"] = Value::Null;
    }
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    if !request["metadata"].is_object() {
        request["metadata"] = json!({});
    }
    request["metadata"]["name"] = json!(name);
    request["metadata"]["namespace"] = json!(namespace);
    request["metadata"]["creationTimestamp"] = Value::Null;
    Ok(request)
}

/// The payload of a JWT without checking it: what the kubelet reads of the tokens it wrote, to
/// know when to ask for a new one.
pub fn unverified_times(token: &[u8]) -> Option<(i64, i64)> {
    use base64::Engine;
    let text = std::str::from_utf8(token).ok()?;
    let payload = text.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    Some((claims["iat"].as_i64()?, claims["exp"].as_i64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Tokens {
        let key = rcgen::KeyPair::generate().unwrap();
        Tokens::new(&key.serialize_pem(), &key.public_key_pem()).unwrap()
    }

    fn claims(exp_in: i64, aud: &str) -> Claims {
        let t = now();
        Claims {
            aud: vec![aud.into()],
            exp: t + exp_in,
            iat: t,
            iss: ISSUER.into(),
            jti: "j".into(),
            kubernetes: Private::default(),
            nbf: t,
            sub: "system:serviceaccount:default:default".into(),
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_audience_and_time() {
        let tokens = keys();
        let good = tokens.issue(&claims(600, ISSUER)).unwrap();
        assert!(tokens.verify(&good, &[ISSUER.into()]).is_ok());
        assert!(tokens.verify(&good, &["vault".into()]).is_err());
        let expired = tokens.issue(&claims(-10, ISSUER)).unwrap();
        assert!(tokens.verify(&expired, &[ISSUER.into()]).is_err());
        assert!(keys().verify(&good, &[ISSUER.into()]).is_err());
        let (iat, exp) = unverified_times(good.as_bytes()).unwrap();
        assert_eq!(exp - iat, 600);
    }
}
