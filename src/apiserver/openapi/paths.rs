//! The paths of a document: for each served resource the operations kube-apiserver's installer
//! registers (`k8s.io/apiserver/pkg/endpoints/installer.go`) and a custom resource's the
//! CustomResourceDefinition OpenAPI builder registers, with upstream's operation IDs
//! (`listCoreV1NamespacedPod`), descriptions, tags, parameters, `x-kubernetes-action` and
//! `x-kubernetes-group-version-kind`, written as OpenAPI v2 or v3.

use serde_json::{Map, Value, json};

use super::definitions::Definitions;
use super::{Gvk, Version};
use crate::apiserver::resources::{self, Resource};

/// A subresource: its name, the kind its requests and answers carry, and its verbs.
#[derive(Debug, Clone)]
pub(crate) struct Subresource {
    pub(crate) name: String,
    pub(crate) gvk: Gvk,
    pub(crate) verbs: &'static [&'static str],
}

/// What the paths of one resource are made from.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) kind: String,
    pub(crate) namespaced: bool,
    pub(crate) subresources: Vec<Subresource>,
    /// Only `create` (the access reviews).
    pub(crate) create_only: bool,
    /// A custom resource: the CRD builder's operations (no watch paths, no connect).
    pub(crate) custom: bool,
}

impl Shape {
    pub(crate) fn of(r: &Resource) -> Self {
        Shape {
            group: r.group.to_owned(),
            version: r.version.to_owned(),
            plural: r.plural.to_owned(),
            kind: r.kind.to_owned(),
            namespaced: r.namespaced,
            subresources: r
                .subresources
                .iter()
                .map(|sub| {
                    let (group, version, kind) = resources::subresource_kind(r, sub);
                    Subresource {
                        name: (*sub).to_owned(),
                        gvk: Gvk::new(group, version, kind),
                        verbs: resources::verbs(sub),
                    }
                })
                .collect(),
            create_only: r.verbs() == ["create"],
            custom: false,
        }
    }

    fn gvk(&self) -> Gvk {
        Gvk::new(&self.group, &self.version, &self.kind)
    }

    /// `/api/v1` or `/apis/apps/v1`.
    fn root(&self) -> String {
        gv_root(&self.group, &self.version)
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub(super) fn gv_root(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Upstream's `ToValidOperationID`: letters and digits (not first), the letter after anything
/// else capitalised.
fn operation_id_part(s: &str, capitalize_first: bool) -> String {
    let mut out = String::new();
    let mut capitalize = capitalize_first;
    for (i, c) in s.chars().enumerate() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_ascii_digit()) {
            if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        } else {
            capitalize = true;
        }
    }
    out
}

/// The operation ID's group-version part (`CoreV1`, `RbacAuthorizationV1`) and the tag
/// (`core_v1`, `rbacAuthorization_v1`).
pub(super) fn gv_names(group: &str, version: &str) -> (String, String) {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    (
        operation_id_part(group, true) + &operation_id_part(version, true),
        format!(
            "{}_{}",
            operation_id_part(group, false),
            operation_id_part(version, false)
        ),
    )
}

fn title(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `a` or `an`, as upstream's `GetArticleForNoun` picks it.
fn article(noun: &str) -> &'static str {
    if noun.starts_with(['A', 'E', 'I', 'O', 'U', 'a', 'e', 'i', 'o', 'u']) {
        " an "
    } else {
        " a "
    }
}

/// A parameter's type.
#[derive(Clone, Copy)]
enum Type {
    String,
    Boolean,
    Integer,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Integer => "integer",
        }
    }
}

#[derive(Clone)]
struct Param {
    name: &'static str,
    path: bool,
    ty: Type,
    description: String,
}

fn query(name: &'static str, ty: Type, description: impl Into<String>) -> Param {
    Param {
        name,
        path: false,
        ty,
        description: description.into(),
    }
}

fn path_param(name: &'static str, description: impl Into<String>) -> Param {
    Param {
        name,
        path: true,
        ty: Type::String,
        description: description.into(),
    }
}

const PRETTY: &str = "If 'true', then the output is pretty printed.";
const NAMESPACE: &str = "object name and auth scope, such as for teams and projects";
const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed";
const FIELD_MANAGER: &str = "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.";
const FIELD_MANAGER_PATCH: &str = " This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).";
const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";
const FORCE: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.";
const ALLOW_WATCH_BOOKMARKS: &str = "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.";
const CONTINUE: &str = "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize. If the specified continue value is no longer valid whether due to expiration (generally five to fifteen minutes) or a configuration change on the server, the server will respond with a 410 ResourceExpired error together with a continue token. If the client needs a consistent list, it must restart their list without the continue field. Otherwise, the client may send another list request with the token received with the 410 error, the server will respond with a list starting from the next key, but from the latest snapshot, which is inconsistent from the previous list results - objects that are created, modified, or deleted after the first list request will be included in the response, as long as their keys are after the \"next key\".\n\nThis field is not supported when watch is true. Clients may start a watch from the last resourceVersion value returned by the server and not miss any modifications.";
const FIELD_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.";
const LABEL_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.";
const LIMIT: &str = "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results. Setting a limit may return fewer than the requested amount of items (up to zero items) in the event all requested objects are filtered out and clients should only use the presence of the continue field to determine whether more results are available. Servers may choose not to support the limit argument and will return all of the available results. If limit is specified and the continue field is empty, clients may assume that no more results are available. This field is not supported if watch is true.\n\nThe server guarantees that the objects returned when using continue will be identical to issuing a single list call without a limit - that is, no objects created, modified, or deleted after the first request is issued will be included in any subsequent continued requests. This is sometimes referred to as a consistent snapshot, and ensures that a client that is using limit to receive smaller chunks of a very large result can ensure they see all possible objects. If objects are updated during a chunked list the version of the object that was present at the time the first list result was calculated is returned.";
const RESOURCE_VERSION: &str = "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset";
const RESOURCE_VERSION_MATCH: &str = "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset";
const SEND_INITIAL_EVENTS: &str = "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event  will be sent. The bookmark will report the ResourceVersion (RV) corresponding to the set of objects, and be marked with `\"k8s.io/initial-events-end\": \"true\"` annotation. Afterwards, the watch stream will proceed as usual, sending watch events corresponding to changes (subsequent to the RV) to objects watched.\n\nWhen `sendInitialEvents` option is set, we require `resourceVersionMatch` option to also be set. The semantic of the watch request is as following: - `resourceVersionMatch` = NotOlderThan\n  is interpreted as \"data at least as new as the provided `resourceVersion`\"\n  and the bookmark event is send when the state is synced\n  to a `resourceVersion` at least as fresh as the one provided by the ListOptions.\n  If `resourceVersion` is unset, this is interpreted as \"consistent read\" and the\n  bookmark event is send when the state is synced at least to the moment\n  when request started being processed.\n- `resourceVersionMatch` set to any other value or unset\n  Invalid error is returned.\n\nDefaults to true if `resourceVersion=\"\"` or `resourceVersion=\"0\"` (for backward compatibility reasons) and to false otherwise.";
const TIMEOUT_SECONDS: &str = "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.";
const WATCH: &str = "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.";

fn list_params() -> Vec<Param> {
    vec![
        query("allowWatchBookmarks", Type::Boolean, ALLOW_WATCH_BOOKMARKS),
        query("continue", Type::String, CONTINUE),
        query("fieldSelector", Type::String, FIELD_SELECTOR),
        query("labelSelector", Type::String, LABEL_SELECTOR),
        query("limit", Type::Integer, LIMIT),
        query("resourceVersion", Type::String, RESOURCE_VERSION),
        query("resourceVersionMatch", Type::String, RESOURCE_VERSION_MATCH),
        query("sendInitialEvents", Type::Boolean, SEND_INITIAL_EVENTS),
        query("timeoutSeconds", Type::Integer, TIMEOUT_SECONDS),
        query("watch", Type::Boolean, WATCH),
    ]
}

fn write_params(patch: bool) -> Vec<Param> {
    let mut params = vec![query("dryRun", Type::String, DRY_RUN)];
    params.push(query(
        "fieldManager",
        Type::String,
        if patch {
            format!("{FIELD_MANAGER}{FIELD_MANAGER_PATCH}")
        } else {
            FIELD_MANAGER.to_owned()
        },
    ));
    params.push(query("fieldValidation", Type::String, FIELD_VALIDATION));
    if patch {
        params.push(query("force", Type::Boolean, FORCE));
    }
    params
}

/// `DeleteOptions`' query parameters, described as the definition describes its fields.
fn delete_params(definitions: &Definitions) -> Vec<Param> {
    let described = |name: &'static str, ty: Type| {
        let description = definitions
            .property_description("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", name)
            .unwrap_or_default();
        query(name, ty, description)
    };
    vec![
        described("dryRun", Type::String),
        described("gracePeriodSeconds", Type::Integer),
        described(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            Type::Boolean,
        ),
        described("orphanDependents", Type::Boolean),
        described("propagationPolicy", Type::String),
    ]
}

fn log_params() -> Vec<Param> {
    vec![
        query(
            "container",
            Type::String,
            "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
        ),
        query(
            "follow",
            Type::Boolean,
            "Follow the log stream of the pod. Defaults to false.",
        ),
        query(
            "insecureSkipTLSVerifyBackend",
            Type::Boolean,
            "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.  This will make the HTTPS connection between the apiserver and the backend insecure. This means the apiserver cannot verify the log data it is receiving came from the real kubelet.  If the kubelet is configured to verify the apiserver's TLS credentials, it does not mean the connection to the real kubelet is vulnerable to a man in the middle attack (e.g. an attacker could not intercept the actual log data coming from the real kubelet).",
        ),
        query(
            "limitBytes",
            Type::Integer,
            "If set, the number of bytes to read from the server before terminating the log output. This may not display a complete final line of logging, and may return slightly more or slightly less than the specified limit.",
        ),
        query(
            "previous",
            Type::Boolean,
            "Return previous terminated container logs. Defaults to false.",
        ),
        query(
            "sinceSeconds",
            Type::Integer,
            "A relative time in seconds before the current time from which to show logs. If this value precedes the time a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs will be returned. Only one of sinceSeconds or sinceTime may be specified.",
        ),
        query(
            "stream",
            Type::String,
            "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\". If not specified, \"All\" is used, and both stdout and stderr are returned interleaved. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".",
        ),
        query(
            "tailLines",
            Type::Integer,
            "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the creation of the container or sinceSeconds or sinceTime. Note that when \"TailLines\" is specified, \"Stream\" can only be set to nil or \"All\".",
        ),
        query(
            "timestamps",
            Type::Boolean,
            "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
        ),
    ]
}

fn connect_params(subresource: &str) -> Vec<Param> {
    match subresource {
        "exec" => vec![
            query(
                "command",
                Type::String,
                "Command is the remote command to execute. argv array. Not executed within a shell.",
            ),
            query(
                "container",
                Type::String,
                "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
            ),
            query(
                "stderr",
                Type::Boolean,
                "Redirect the standard error stream of the pod for this call.",
            ),
            query(
                "stdin",
                Type::Boolean,
                "Redirect the standard input stream of the pod for this call. Defaults to false.",
            ),
            query(
                "stdout",
                Type::Boolean,
                "Redirect the standard output stream of the pod for this call.",
            ),
            query(
                "tty",
                Type::Boolean,
                "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
            ),
        ],
        "attach" => vec![
            query(
                "container",
                Type::String,
                "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
            ),
            query(
                "stderr",
                Type::Boolean,
                "Stderr if true indicates that stderr is to be redirected for the attach call. Defaults to true.",
            ),
            query(
                "stdin",
                Type::Boolean,
                "Stdin if true, redirects the standard input stream of the pod for this call. Defaults to false.",
            ),
            query(
                "stdout",
                Type::Boolean,
                "Stdout if true indicates that stdout is to be redirected for the attach call. Defaults to true.",
            ),
            query(
                "tty",
                Type::Boolean,
                "TTY if true indicates that a tty will be allocated for the attach call. This is passed through the container runtime so the tty is allocated on the worker node by the container runtime. Defaults to false.",
            ),
        ],
        "portforward" => vec![query(
            "ports",
            Type::Integer,
            "List of ports to forward Required when using WebSockets",
        )],
        "proxy" => vec![query(
            "path",
            Type::String,
            "Path is the URL path to use for the current proxy request to node.",
        )],
        _ => Vec::new(),
    }
}

/// What an operation answers or reads.
#[derive(Clone)]
enum Payload {
    Definition(String),
    Text,
}

/// One operation of a path.
struct Op {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    gvk: Option<Gvk>,
    params: Vec<Param>,
    /// The request body and whether it is required.
    body: Option<(Payload, bool)>,
    consumes: &'static [&'static str],
    produces: &'static [&'static str],
    /// Status code, description, what is answered.
    responses: Vec<(u16, &'static str, Payload)>,
}

/// One path and its operations.
pub(super) struct PathItem {
    pub(super) path: String,
    params: Vec<Param>,
    ops: Vec<Op>,
    tag: String,
}

const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const PRODUCES_LIST: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const PRODUCES_CUSTOM: &[&str] = &["application/json", "application/yaml"];
const PRODUCES_LOG: &[&str] = &[
    "text/plain",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const ANY: &[&str] = &["*/*"];
const CONSUMES_PATCH: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const CONSUMES_PATCH_CUSTOM: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];
const CONSUMES_CUSTOM: &[&str] = &["application/json", "application/yaml"];

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";

/// Builds the operations of one resource. `lookup` names the definition of a kind.
struct Builder<'a> {
    shape: &'a Shape,
    definitions: &'a Definitions,
    lookup: &'a dyn Fn(&Gvk) -> Option<String>,
    gv_id: String,
    tag: String,
    namespaced: &'static str,
}

impl Builder<'_> {
    fn definition(&self, gvk: &Gvk) -> Payload {
        // A kind with no definition is answered as text rather than named wrongly; every served
        // kind has one (a unit test checks).
        (self.lookup)(gvk).map_or(Payload::Text, Payload::Definition)
    }

    fn kind(&self) -> Payload {
        self.definition(&self.shape.gvk())
    }

    fn list(&self) -> Payload {
        let mut gvk = self.shape.gvk();
        gvk.kind.push_str("List");
        self.definition(&gvk)
    }

    fn op(
        &self,
        method: &'static str,
        action: &'static str,
        name: &str,
        description: String,
    ) -> Op {
        let (verb, rest) = split_verb(name);
        Op {
            method,
            action,
            id: format!("{verb}{}{rest}", self.gv_id),
            description,
            gvk: Some(self.shape.gvk()),
            params: Vec::new(),
            body: None,
            consumes: ANY,
            produces: if self.shape.custom {
                PRODUCES_CUSTOM
            } else {
                PRODUCES
            },
            responses: Vec::new(),
        }
    }

    fn item(&self, path: String, mut params: Vec<Param>, ops: Vec<Op>) -> PathItem {
        params.push(query("pretty", Type::String, PRETTY));
        PathItem {
            path,
            params,
            ops,
            tag: self.tag.clone(),
        }
    }

    fn scope_params(&self, named: bool) -> Vec<Param> {
        let mut params = Vec::new();
        if named {
            params.push(path_param(
                "name",
                format!("name of the {}", self.shape.kind),
            ));
        }
        if self.shape.namespaced {
            params.push(path_param("namespace", NAMESPACE));
        }
        params
    }

    fn collection_path(&self) -> String {
        let s = self.shape;
        if s.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", s.root(), s.plural)
        } else {
            format!("{}/{}", s.root(), s.plural)
        }
    }

    fn create(&self, description: String, name: &str) -> Op {
        let custom = self.shape.custom;
        let mut op = self.op("post", "post", name, description);
        op.params = write_params(false);
        op.body = Some((self.kind(), true));
        if custom {
            op.consumes = CONSUMES_CUSTOM;
        }
        op.responses = vec![
            (200, "OK", self.kind()),
            (201, "Created", self.kind()),
            (202, "Accepted", self.kind()),
        ];
        op
    }

    fn collection(&self) -> PathItem {
        let s = self.shape;
        let k = &s.kind;
        let ns = self.namespaced;
        let mut ops = Vec::new();
        if !s.create_only {
            let mut list = self.op(
                "get",
                "list",
                &format!("list{ns}{k}"),
                if s.custom {
                    format!("list objects of kind {k}")
                } else {
                    format!("list or watch objects of kind {k}")
                },
            );
            list.params = list_params();
            list.produces = if s.custom {
                PRODUCES_CUSTOM
            } else {
                PRODUCES_LIST
            };
            list.responses = vec![(200, "OK", self.list())];
            ops.push(list);
        }
        ops.push(self.create(
            format!("create{}{k}", article(k)),
            &format!("create{ns}{k}"),
        ));
        if !s.create_only {
            let mut delete = self.op(
                "delete",
                "deletecollection",
                &format!("deleteCollection{ns}{k}"),
                format!("delete collection of {k}"),
            );
            delete.params = delete_params(self.definitions);
            delete.params.extend(list_params());
            delete.params.sort_by_key(|p| p.name);
            delete.params.dedup_by_key(|p| p.name);
            delete.body = Some((Payload::Definition(DELETE_OPTIONS.to_owned()), false));
            delete.responses = vec![(200, "OK", Payload::Definition(STATUS.to_owned()))];
            ops.push(delete);
        }
        self.item(self.collection_path(), self.scope_params(false), ops)
    }

    fn object(&self) -> PathItem {
        let s = self.shape;
        let k = &s.kind;
        let ns = self.namespaced;
        let mut read = self.op(
            "get",
            "get",
            &format!("read{ns}{k}"),
            format!("read the specified {k}"),
        );
        read.responses = vec![(200, "OK", self.kind())];
        let mut replace = self.op(
            "put",
            "put",
            &format!("replace{ns}{k}"),
            format!("replace the specified {k}"),
        );
        replace.params = write_params(false);
        replace.body = Some((self.kind(), true));
        if s.custom {
            replace.consumes = CONSUMES_CUSTOM;
        }
        replace.responses = vec![(200, "OK", self.kind()), (201, "Created", self.kind())];
        let mut delete = self.op(
            "delete",
            "delete",
            &format!("delete{ns}{k}"),
            format!("delete{}{k}", article(k)),
        );
        delete.params = delete_params(self.definitions);
        delete.body = Some((Payload::Definition(DELETE_OPTIONS.to_owned()), false));
        // Pods and Namespaces answer a delete with the object (graceful deletion, finalizing);
        // the rest with a Status.
        let deleted = if !s.custom && s.group.is_empty() && (k == "Pod" || k == "Namespace") {
            self.kind()
        } else {
            Payload::Definition(STATUS.to_owned())
        };
        delete.responses = vec![(200, "OK", deleted.clone()), (202, "Accepted", deleted)];
        let mut patch = self.patch_op(
            &format!("patch{ns}{k}"),
            format!("partially update the specified {k}"),
            self.kind(),
        );
        patch.gvk = Some(s.gvk());
        let path = format!("{}/{{name}}", self.collection_path());
        self.item(
            path,
            self.scope_params(true),
            vec![read, replace, delete, patch],
        )
    }

    fn patch_op(&self, name: &str, description: String, answer: Payload) -> Op {
        let mut patch = self.op("patch", "patch", name, description);
        patch.params = write_params(true);
        patch.body = Some((Payload::Definition(PATCH.to_owned()), true));
        patch.consumes = if self.shape.custom {
            CONSUMES_PATCH_CUSTOM
        } else {
            CONSUMES_PATCH
        };
        patch.responses = vec![(200, "OK", answer.clone()), (201, "Created", answer)];
        patch
    }

    /// The paths of a subresource (a connect subresource with a `{path}` has two).
    fn subresource(&self, subresource: &Subresource) -> Vec<PathItem> {
        let s = self.shape;
        let k = &s.kind;
        let ns = self.namespaced;
        let sub = subresource.name.as_str();
        let sub_title = title(sub);
        let path = format!("{}/{{name}}/{sub}", self.collection_path());
        let sub_gvk = subresource.gvk.clone();
        let answer = self.definition(&sub_gvk);
        let verbs = subresource.verbs;
        let mut ops = Vec::new();
        match sub {
            "log" => {
                let mut op = self.op(
                    "get",
                    "get",
                    &format!("read{ns}{k}Log"),
                    format!("read log of the specified {k}"),
                );
                op.params = log_params();
                op.produces = PRODUCES_LOG;
                op.responses = vec![(200, "OK", Payload::Text)];
                ops.push(op);
            }
            "exec" | "attach" | "portforward" | "proxy" => {
                let methods: &[(&str, &str)] = if sub == "proxy" {
                    &[
                        ("delete", "Delete"),
                        ("get", "Get"),
                        ("head", "Head"),
                        ("options", "Options"),
                        ("patch", "Patch"),
                        ("post", "Post"),
                        ("put", "Put"),
                    ]
                } else {
                    &[("get", "Get"), ("post", "Post")]
                };
                let make = |with_path: bool| {
                    methods
                        .iter()
                        .map(|(method, upper)| {
                            let suffix = if with_path { "WithPath" } else { "" };
                            let mut op = self.op(
                                method,
                                "connect",
                                &format!("connect{upper}{ns}{k}{sub_title}{suffix}"),
                                format!(
                                    "connect {} requests to {sub} of {k}",
                                    upper.to_uppercase()
                                ),
                            );
                            op.gvk = Some(sub_gvk.clone());
                            op.params = connect_params(sub);
                            if with_path {
                                op.params.retain(|p| p.name != "path");
                            }
                            op.produces = ANY;
                            op.responses = vec![(200, "OK", Payload::Text)];
                            op
                        })
                        .collect::<Vec<_>>()
                };
                if sub == "proxy" {
                    let mut params = self.scope_params(true);
                    params.insert(1, path_param("path", "path to the resource"));
                    let with_path = self.item(format!("{path}/{{path}}"), params, make(true));
                    return vec![
                        self.item(path, self.scope_params(true), make(false)),
                        with_path,
                    ];
                }
                ops = make(false);
            }
            _ => {
                let described = |what: &str| {
                    if verbs == ["create"] {
                        format!("create {sub} of{}{k}", article(k))
                    } else {
                        format!("{what} {sub} of the specified {k}")
                    }
                };
                if verbs.contains(&"get") {
                    let mut op = self.op(
                        "get",
                        "get",
                        &format!("read{ns}{k}{sub_title}"),
                        described("read"),
                    );
                    op.gvk = Some(sub_gvk.clone());
                    op.responses = vec![(200, "OK", answer.clone())];
                    ops.push(op);
                }
                if verbs.contains(&"update") {
                    let mut op = self.op(
                        "put",
                        "put",
                        &format!("replace{ns}{k}{sub_title}"),
                        described("replace"),
                    );
                    op.gvk = Some(sub_gvk.clone());
                    op.params = write_params(false);
                    op.body = Some((answer.clone(), true));
                    if s.custom {
                        op.consumes = CONSUMES_CUSTOM;
                    }
                    op.responses = vec![
                        (200, "OK", answer.clone()),
                        (201, "Created", answer.clone()),
                    ];
                    ops.push(op);
                }
                if verbs.contains(&"patch") {
                    let mut op = self.patch_op(
                        &format!("patch{ns}{k}{sub_title}"),
                        format!("partially update {sub} of the specified {k}"),
                        answer.clone(),
                    );
                    op.gvk = Some(sub_gvk.clone());
                    ops.push(op);
                }
                if verbs.contains(&"create") {
                    let mut op =
                        self.create(described("create"), &format!("create{ns}{k}{sub_title}"));
                    op.gvk = Some(sub_gvk.clone());
                    op.body = Some((answer.clone(), true));
                    op.responses = vec![
                        (200, "OK", answer.clone()),
                        (201, "Created", answer.clone()),
                        (202, "Accepted", answer.clone()),
                    ];
                    ops.push(op);
                }
            }
        }
        if ops.is_empty() {
            return Vec::new();
        }
        vec![self.item(path, self.scope_params(true), ops)]
    }

    /// The deprecated watch paths (`/api/v1/watch/...`).
    fn watches(&self) -> Vec<PathItem> {
        let s = self.shape;
        let k = &s.kind;
        let ns = self.namespaced;
        let watch_root = format!("{}/watch", s.root());
        let watch_op = |name: String, action: &'static str, description: String| {
            let mut op = self.op("get", action, &name, description);
            op.produces = PRODUCES_LIST;
            op.responses = vec![(200, "OK", Payload::Definition(WATCH_EVENT.to_owned()))];
            op
        };
        let list_description = format!(
            "watch individual changes to a list of {k}. deprecated: use the 'watch' parameter with a list operation instead."
        );
        let params = |named: bool| {
            let mut p = self.scope_params(named);
            p.extend(list_params());
            p
        };
        let (collection, object) = if s.namespaced {
            (
                format!("{watch_root}/namespaces/{{namespace}}/{}", s.plural),
                format!(
                    "{watch_root}/namespaces/{{namespace}}/{}/{{name}}",
                    s.plural
                ),
            )
        } else {
            (
                format!("{watch_root}/{}", s.plural),
                format!("{watch_root}/{}/{{name}}", s.plural),
            )
        };
        let mut items = vec![
            self.item(
                collection,
                params(false),
                vec![watch_op(format!("watch{ns}{k}List"), "watchlist", list_description.clone())],
            ),
            self.item(
                object,
                params(true),
                vec![watch_op(
                    format!("watch{ns}{k}"),
                    "watch",
                    format!("watch changes to an object of kind {k}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
                )],
            ),
        ];
        if s.namespaced {
            items.push(self.item(
                format!("{watch_root}/{}", s.plural),
                list_params(),
                vec![watch_op(
                    format!("watch{k}ListForAllNamespaces"),
                    "watchlist",
                    list_description,
                )],
            ));
        }
        items
    }

    fn all_namespaces(&self) -> PathItem {
        let s = self.shape;
        let k = &s.kind;
        let mut list = self.op(
            "get",
            "list",
            &format!("list{k}ForAllNamespaces"),
            if s.custom {
                format!("list objects of kind {k}")
            } else {
                format!("list or watch objects of kind {k}")
            },
        );
        list.produces = if s.custom {
            PRODUCES_CUSTOM
        } else {
            PRODUCES_LIST
        };
        list.responses = vec![(200, "OK", self.list())];
        let mut item = self.item(
            format!("{}/{}", s.root(), s.plural),
            list_params(),
            vec![list],
        );
        if s.custom {
            item.params.retain(|p| p.name == "pretty");
            item.ops[0].params = list_params();
        }
        item
    }
}

/// Splits an installer operation name into the verb the ID puts first and the rest
/// (`deleteCollectionNamespacedPod` → `delete`, `CollectionNamespacedPod`).
fn split_verb(name: &str) -> (&str, &str) {
    let at = name
        .find(|c: char| c.is_ascii_uppercase())
        .unwrap_or(name.len());
    name.split_at(at)
}

/// The paths of one resource, in path order.
pub(super) fn for_resource(
    shape: &Shape,
    definitions: &Definitions,
    lookup: &dyn Fn(&Gvk) -> Option<String>,
) -> Vec<PathItem> {
    let (gv_id, tag) = gv_names(&shape.group, &shape.version);
    let b = Builder {
        shape,
        definitions,
        lookup,
        gv_id,
        tag,
        namespaced: if shape.namespaced { "Namespaced" } else { "" },
    };
    let mut items = vec![b.collection()];
    if !shape.create_only {
        items.push(b.object());
        for sub in &shape.subresources {
            items.extend(b.subresource(sub));
        }
        if shape.namespaced {
            items.push(b.all_namespaces());
        }
        if !shape.custom {
            items.extend(b.watches());
        }
    }
    items
}

/// The `/<group-version>/` path: the group-version's resource list.
pub(super) fn resource_list(group: &str, version: &str) -> PathItem {
    let (gv_id, tag) = gv_names(group, version);
    PathItem {
        path: format!("{}/", gv_root(group, version)),
        params: Vec::new(),
        ops: vec![Op {
            method: "get",
            action: "",
            id: format!("get{gv_id}APIResources"),
            description: "get available resources".to_owned(),
            gvk: None,
            params: Vec::new(),
            body: None,
            consumes: PRODUCES,
            produces: PRODUCES,
            responses: vec![(200, "OK", Payload::Definition(API_RESOURCE_LIST.to_owned()))],
        }],
        tag,
    }
}

/// The definitions an item names directly (its answers and bodies).
pub(super) fn named_definitions(item: &PathItem) -> impl Iterator<Item = &str> {
    item.ops.iter().flat_map(|op| {
        op.body
            .iter()
            .map(|(p, _)| p)
            .chain(op.responses.iter().map(|(_, _, p)| p))
            .filter_map(|p| match p {
                Payload::Definition(name) => Some(name.as_str()),
                Payload::Text => None,
            })
    })
}

fn reference(name: &str, version: Version) -> Value {
    json!({"$ref": format!("{}{name}", version.prefix())})
}

fn payload_schema(payload: &Payload, version: Version) -> Value {
    match payload {
        Payload::Definition(name) => reference(name, version),
        Payload::Text => json!({"type": "string"}),
    }
}

fn param_value(p: &Param, version: Version) -> Value {
    let mut out = Map::new();
    if !p.description.is_empty() {
        out.insert("description".into(), json!(p.description));
    }
    out.insert("in".into(), json!(if p.path { "path" } else { "query" }));
    out.insert("name".into(), json!(p.name));
    if p.path {
        out.insert("required".into(), json!(true));
    }
    match version {
        Version::V2 => {
            out.insert("type".into(), json!(p.ty.name()));
            out.insert("uniqueItems".into(), json!(true));
        }
        Version::V3 => {
            out.insert(
                "schema".into(),
                json!({"type": p.ty.name(), "uniqueItems": true}),
            );
        }
    }
    Value::Object(out)
}

fn op_value(op: &Op, tag: &str, version: Version) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), json!(op.description));
    out.insert("operationId".into(), json!(op.id));
    let mut params: Vec<Value> = Vec::new();
    match (&op.body, version) {
        (Some((payload, required)), Version::V2) => {
            let mut body =
                json!({"in": "body", "name": "body", "schema": payload_schema(payload, version)});
            if *required {
                body["required"] = json!(true);
            }
            params.push(body);
        }
        (Some((payload, required)), Version::V3) => {
            let content: Map<String, Value> = op
                .consumes
                .iter()
                .filter(|c| **c != "*/*")
                .map(|c| {
                    (
                        (*c).to_owned(),
                        json!({"schema": payload_schema(payload, version)}),
                    )
                })
                .collect();
            let content = if content.is_empty() {
                ["application/json", "application/yaml"]
                    .iter()
                    .map(|c| {
                        (
                            (*c).to_owned(),
                            json!({"schema": payload_schema(payload, version)}),
                        )
                    })
                    .collect()
            } else {
                content
            };
            let mut body = json!({"content": content});
            if *required {
                body["required"] = json!(true);
            }
            out.insert("requestBody".into(), body);
        }
        (None, _) => {}
    }
    params.extend(op.params.iter().map(|p| param_value(p, version)));
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    let mut responses = Map::new();
    for (code, description, payload) in &op.responses {
        let response = match version {
            Version::V2 => {
                json!({"description": description, "schema": payload_schema(payload, version)})
            }
            Version::V3 => {
                let content: Map<String, Value> = op
                    .produces
                    .iter()
                    .map(|p| {
                        (
                            (*p).to_owned(),
                            json!({"schema": payload_schema(payload, version)}),
                        )
                    })
                    .collect();
                json!({"content": content, "description": description})
            }
        };
        responses.insert(code.to_string(), response);
    }
    if version == Version::V2 {
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        out.insert("consumes".into(), json!(op.consumes));
        out.insert("produces".into(), json!(op.produces));
        out.insert("schemes".into(), json!(["https"]));
    }
    out.insert("responses".into(), Value::Object(responses));
    out.insert("tags".into(), json!([tag]));
    if !op.action.is_empty() {
        out.insert("x-kubernetes-action".into(), json!(op.action));
    }
    if let Some(gvk) = &op.gvk {
        out.insert(
            "x-kubernetes-group-version-kind".into(),
            json!({"group": gvk.group, "kind": gvk.kind, "version": gvk.version}),
        );
    }
    Value::Object(out)
}

impl PathItem {
    /// The path item as OpenAPI v2 or v3 writes it.
    pub(super) fn value(&self, version: Version) -> Value {
        let mut out = Map::new();
        for op in &self.ops {
            out.insert(op.method.to_owned(), op_value(op, &self.tag, version));
        }
        if !self.params.is_empty() {
            out.insert(
                "parameters".into(),
                Value::Array(
                    self.params
                        .iter()
                        .map(|p| param_value(p, version))
                        .collect(),
                ),
            );
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_and_tags_are_upstreams() {
        assert_eq!(gv_names("", "v1"), ("CoreV1".into(), "core_v1".into()));
        assert_eq!(
            gv_names("rbac.authorization.k8s.io", "v1"),
            ("RbacAuthorizationV1".into(), "rbacAuthorization_v1".into())
        );
        assert_eq!(
            gv_names("stable.example.com", "v1beta1"),
            (
                "StableExampleComV1beta1".into(),
                "stableExampleCom_v1beta1".into()
            )
        );
        assert_eq!(
            split_verb("deleteCollectionNamespacedPod"),
            ("delete", "CollectionNamespacedPod")
        );
        assert_eq!(article("Ingress"), " an ");
        assert_eq!(article("Pod"), " a ");
    }
}
