use super::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn parse(doc: &Document) -> Value {
    serde_json::from_slice(&doc.json()).expect("a document is JSON")
}

fn v3(path: &str) -> Value {
    parse(
        &v3_document(path, &served(), &[])
            .expect("builds")
            .expect("served"),
    )
}

/// Every `$ref` of a document names one of its definitions.
fn assert_refs_resolve(doc: &Value, version: Version) {
    let defs = match version {
        Version::V2 => &doc["definitions"],
        Version::V3 => &doc["components"]["schemas"],
    };
    let refs = definitions::refs(doc, version.prefix());
    assert!(!refs.is_empty());
    for name in refs {
        assert!(defs.get(&name).is_some(), "dangling $ref {name}");
    }
}

fn has_gvk(schema: &Value, gvk: &Gvk) -> bool {
    definitions::gvks(schema).contains(gvk)
}

#[test]
fn every_served_resource_has_a_definition_with_its_kind() {
    let v2 = parse(&v2_document(&served(), &[]).unwrap());
    let v2_definitions = v2["definitions"].as_object().unwrap();
    let mut group_versions: Vec<String> = RESOURCES
        .iter()
        .map(|r| v3_path(r.group, r.version))
        .collect();
    group_versions.dedup();
    group_versions.sort();
    group_versions.dedup();
    for path in group_versions {
        let doc = v3(&path);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in RESOURCES
            .iter()
            .filter(|r| v3_path(r.group, r.version) == path)
        {
            let mut kinds = vec![Gvk::new(r.group, r.version, r.kind)];
            if r.verbs() != ["create"] {
                kinds.push(Gvk::new(r.group, r.version, &format!("{}List", r.kind)));
            }
            for gvk in kinds {
                assert!(
                    schemas.values().any(|s| has_gvk(s, &gvk)),
                    "no v3 definition of {gvk:?} in {path}"
                );
                assert!(
                    v2_definitions.values().any(|s| has_gvk(s, &gvk)),
                    "no v2 definition of {gvk:?}"
                );
            }
        }
    }
}

#[test]
fn documents_hold_only_what_their_paths_reach() {
    let core = v3("api/v1");
    assert_refs_resolve(&core, Version::V3);
    let schemas = core["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
    assert!(!schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
    let v2 = parse(&v2_document(&served(), &[]).unwrap());
    assert_refs_resolve(&v2, Version::V2);
    let definitions = v2["definitions"].as_object().unwrap();
    assert!(definitions.contains_key("io.k8s.api.apps.v1.Deployment"));
    // Served: ValidatingWebhookConfigurations. Not served: FlowSchemas, ValidatingAdmissionPolicies.
    assert!(
        definitions
            .contains_key("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration")
    );
    assert!(!definitions.contains_key("io.k8s.api.flowcontrol.v1.FlowSchema"));
    assert!(
        !definitions.contains_key("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy")
    );
    assert_eq!(v2["swagger"], "2.0");
    assert_eq!(core["openapi"], "3.0.0");
}

#[test]
fn schemas_are_upstreams() {
    let core = v3("api/v1");
    let spec = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"];
    assert_eq!(spec["description"], "PodSpec is a description of a pod.");
    let containers = &spec["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    assert_eq!(spec["required"], json!(["containers"]));
    let int_or_string =
        &core["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(int_or_string["format"], "int-or-string");
    assert_eq!(int_or_string["type"], "string");
}

#[test]
fn paths_are_upstreams() {
    let core = v3("api/v1");
    let pod = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    let patch = &pod["patch"];
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Pod", "version": "v1"})
    );
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
    assert_eq!(pod["get"]["description"], "read the specified Pod");
    let list = &core["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(list["get"]["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(
        list["delete"]["operationId"],
        "deleteCoreV1CollectionNamespacedPod"
    );
    assert_eq!(
        core["paths"]["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert_eq!(
        core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["operationId"],
        "connectCoreV1PostNamespacedPodExec"
    );
    assert_eq!(
        core["paths"]["/api/v1/watch/namespaces/{namespace}/pods"]["get"]["operationId"],
        "watchCoreV1NamespacedPodList"
    );
    let apps = v3("apis/apps/v1");
    let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["get"]["operationId"],
        "readAppsV1NamespacedDeploymentScale"
    );
    assert_eq!(
        scale["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    assert_eq!(
        apps["paths"]["/apis/apps/v1/"]["get"]["operationId"],
        "getAppsV1APIResources"
    );
    let authz = v3("apis/authorization.k8s.io/v1");
    let review = &authz["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
    assert_eq!(
        review["post"]["operationId"],
        "createAuthorizationV1SelfSubjectAccessReview"
    );
    assert!(review.get("get").is_none(), "reviews are only created");
    let v2 = parse(&v2_document(&served(), &[]).unwrap());
    let op = &v2["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["post"];
    assert_eq!(op["operationId"], "createRbacAuthorizationV1ClusterRole");
    assert_eq!(op["tags"], json!(["rbacAuthorization_v1"]));
    assert_eq!(op["responses"]["401"]["description"], "Unauthorized");
    assert_eq!(op["parameters"][0]["in"], "body");
}

#[test]
fn an_unserved_group_version_has_no_document() {
    assert!(
        v3_document("apis/flowcontrol.apiserver.k8s.io/v1", &served(), &[])
            .unwrap()
            .is_none()
    );
}

fn crontab() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A cron tab.",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["cronSpec", "note"],
                            "properties": {
                                "cronSpec": {"type": "string", "description": "When it runs."},
                                "replicas": {"type": "integer", "default": 1, "minimum": 1},
                                "note": {"type": "string", "nullable": true},
                                "port": {"x-kubernetes-int-or-string": true},
                                "either": {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
                                "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                    },
                }},
            }],
        },
    }))
    .unwrap()
}

#[test]
fn a_custom_resource_is_named_and_shaped_as_upstream() {
    assert_eq!(
        crd::definition_name("stable.example.com", "v1", "CronTab"),
        "com.example.stable.v1.CronTab"
    );
    let extra = crd::openapi(&crontab(), "v1", Version::V3).unwrap();
    let (name, schema) = &extra.definitions[0];
    assert_eq!(name, "com.example.stable.v1.CronTab");
    assert_eq!(schema["description"], "A cron tab.");
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
    );
    assert_eq!(
        schema["properties"]["metadata"]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(
        schema["properties"]["kind"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Kind is a string value")
    );
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["default"], 1, "v3 keeps defaults");
    assert_eq!(
        spec["port"]["anyOf"],
        json!([{"type": "integer"}, {"type": "string"}])
    );
    assert_eq!(spec["note"]["nullable"], true);
    let template = &spec["template"];
    assert_eq!(template["required"], json!(["kind", "apiVersion"]));
    assert!(template["properties"]["metadata"].is_object());
    let (list_name, list) = &extra.definitions[1];
    assert_eq!(list_name, "com.example.stable.v1.CronTabList");
    assert_eq!(list["description"], "CronTabList is a list of CronTab");
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/com.example.stable.v1.CronTab"
    );

    // Wired into the group-version's document: paths, and the metadata it refers to.
    let doc = parse(
        &v3_document("apis/stable.example.com/v1", &served(), &[extra])
            .unwrap()
            .unwrap(),
    );
    assert_refs_resolve(&doc, Version::V3);
    let list_op =
        &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs"]["get"];
    assert_eq!(
        list_op["operationId"],
        "listStableExampleComV1NamespacedCronTab"
    );
    assert_eq!(list_op["description"], "list objects of kind CronTab");
    let status =
        &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status"];
    assert_eq!(
        status["patch"]["operationId"],
        "patchStableExampleComV1NamespacedCronTabStatus"
    );
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| !p.contains("/watch/")),
        "custom resources have no watch paths"
    );
    assert!(
        doc["components"]["schemas"]
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .is_some()
    );
    assert!(
        doc["components"]["schemas"]
            .get("io.k8s.api.core.v1.Pod")
            .is_none()
    );
}

#[test]
fn a_custom_resource_in_v2_is_made_v2_compatible() {
    let extra = crd::openapi(&crontab(), "v1", Version::V2).unwrap();
    let schema = &extra.definitions[0].1;
    let spec = &schema["properties"]["spec"];
    assert_eq!(
        spec["required"],
        json!(["cronSpec"]),
        "nullable fields are not required"
    );
    let props = &spec["properties"];
    assert!(
        props["replicas"].get("default").is_none(),
        "defaults pruned"
    );
    assert_eq!(props["replicas"]["minimum"].as_f64(), Some(1.0));
    assert!(props["note"].get("type").is_none(), "nullable is untyped");
    assert!(props["either"].get("oneOf").is_none());
    assert!(props["port"].get("anyOf").is_none());
    assert!(
        props["template"].get("properties").is_none(),
        "unknown fields kept: nothing listed"
    );
    assert_eq!(
        schema["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let doc = parse(&v2_document(&served(), &[extra]).unwrap());
    assert_refs_resolve(&doc, Version::V2);
    assert!(
        doc["definitions"]
            .get("com.example.stable.v1.CronTab")
            .is_some()
    );
    assert!(
        doc["paths"]
            .get("/apis/stable.example.com/v1/crontabs")
            .is_some()
    );
}

#[test]
fn a_custom_resource_without_the_version_is_an_error() {
    let err = crd::openapi(&crontab(), "v2", Version::V3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CustomResourceDefinition crontabs.stable.example.com has no version v2"
    );
}

fn get(path: &str, headers: &[(&str, &str)]) -> Response {
    let route = crate::apiserver::path::route(path.split('?').next().unwrap());
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    serve(
        &route,
        &map,
        path.split_once('?').map(|(_, q)| q),
        &Custom::default(),
    )
    .unwrap()
}

#[test]
fn documents_are_served_with_etags_as_kube_openapi_serves_them() {
    let first = get("/openapi/v2", &[("accept", "application/json")]);
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 130, "{etag}");
    let again = get(
        "/openapi/v2",
        &[("accept", "application/json"), ("if-none-match", &etag)],
    );
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let gzipped = get(
        "/openapi/v2",
        &[("accept", "application/json"), ("accept-encoding", "gzip")],
    );
    assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip");
    let protobuf = get(
        "/openapi/v2",
        &[(
            "accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )],
    );
    assert_eq!(protobuf.status(), StatusCode::OK);
    assert_eq!(
        protobuf.headers()[header::CONTENT_TYPE],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert_eq!(protobuf.headers()[header::ETAG].to_str().unwrap(), etag);
    let yaml = get("/openapi/v2", &[("accept", "application/yaml")]);
    assert_eq!(yaml.status(), StatusCode::NOT_ACCEPTABLE);
    let v3_protobuf = get(
        "/openapi/v3/api/v1",
        &[(
            "accept",
            "application/com.github.proto-openapi.spec.v3.v1.0+protobuf",
        )],
    );
    assert_eq!(v3_protobuf.status(), StatusCode::NOT_ACCEPTABLE);

    let index = get("/openapi/v3", &[]);
    assert_eq!(index.status(), StatusCode::OK);
    let body = axum::body::to_bytes(index.into_body(), usize::MAX);
    let body = futures::executor::block_on(body).unwrap();
    let index: Value = serde_json::from_slice(&body).unwrap();
    let url = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let hash = url
        .strip_prefix("/openapi/v3/api/v1?hash=")
        .unwrap()
        .to_owned();
    let document = get("/openapi/v3/api/v1", &[]);
    assert_eq!(
        document.headers()[header::ETAG].to_str().unwrap(),
        format!("\"{hash}\""),
        "the index's hash is the document's ETag"
    );
    let current = get(&format!("/openapi/v3/api/v1?hash={hash}"), &[]);
    assert_eq!(current.status(), StatusCode::OK);
    assert_eq!(
        current.headers()[header::CACHE_CONTROL],
        "public, immutable"
    );
    let stale = get("/openapi/v3/api/v1?hash=ABC", &[]);
    assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        stale.headers()[header::LOCATION].to_str().unwrap(),
        format!("/openapi/v3/api/v1?hash={hash}")
    );
    assert!(matches!(
        serve(
            &Route::OpenApi("apis/nothing.example.com/v1".into()),
            &HeaderMap::new(),
            None,
            &Custom::default(),
        ),
        Err(ApiError::NoSuchPath)
    ));
}

#[test]
fn the_index_hash_follows_the_content() {
    let extra = [crd::openapi(&crontab(), "v1", Version::V3).unwrap()];
    let with = v3_document("apis/stable.example.com/v1", &served(), &extra)
        .unwrap()
        .unwrap();
    let mut changed = crontab();
    changed.spec.names.plural = "crontabz".into();
    let other = v3_document(
        "apis/stable.example.com/v1",
        &served(),
        &[crd::openapi(&changed, "v1", Version::V3).unwrap()],
    )
    .unwrap()
    .unwrap();
    assert_ne!(with.etag, other.etag);
    let again = v3_document("apis/stable.example.com/v1", &served(), &extra)
        .unwrap()
        .unwrap();
    assert_eq!(with.etag, again.etag, "the same content, the same hash");
    let index: Value = serde_json::from_slice(&v3_index(&served(), &extra).unwrap()).unwrap();
    assert_eq!(
        index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"],
        format!("/openapi/v3/apis/stable.example.com/v1?hash={}", with.etag)
    );
    assert!(index["paths"]["api/v1"].is_object());
    assert!(index["paths"]["apis/apps/v1"].is_object());
}

/// gnostic's `openapi.v2.<name>`, from `openapi/OpenAPIv2.proto`.
fn gnostic(name: &str) -> protobuf::reflect::MessageDescriptor {
    use protobuf::Message as _;
    static SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapiv2.fds"));
    let set = protobuf::descriptor::FileDescriptorSet::parse_from_bytes(SET).unwrap();
    let files = protobuf::reflect::FileDescriptor::new_dynamic_fds(set.file, &[]).unwrap();
    files
        .iter()
        .find_map(|f| f.message_by_full_name(&format!(".openapi.v2.{name}")))
        .unwrap()
}

#[test]
fn the_protobuf_v2_document_reads_back_as_gnostics() {
    let json = v2_document(
        &served(),
        &[crd::openapi(&crontab(), "v1", Version::V2).unwrap()],
    )
    .unwrap();
    let bytes = v2_protobuf(&json).unwrap().json();
    let document = gnostic("Document").parse_from_bytes(&bytes).unwrap();
    // The protobuf as JSON (protobuf's own mapping of the message), to read it field by field.
    let read: Value =
        serde_json::from_str(&protobuf_json_mapping::print_to_string(&*document).unwrap()).unwrap();
    assert_eq!(read["swagger"], "2.0");
    let definitions = read["definitions"]["additionalProperties"]
        .as_array()
        .unwrap();
    let named = |name: &str| {
        definitions
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let pod = named("io.k8s.api.core.v1.Pod");
    assert_eq!(pod["value"]["type"]["value"], json!(["object"]));
    let gvk = pod["value"]["vendorExtension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "x-kubernetes-group-version-kind")
        .unwrap();
    let yaml: Value = serde_yaml::from_str(gvk["value"]["yaml"].as_str().unwrap()).unwrap();
    assert_eq!(yaml, json!([{"group": "", "kind": "Pod", "version": "v1"}]));
    let containers =
        named("io.k8s.api.core.v1.PodSpec")["value"]["properties"]["additionalProperties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "containers")
            .unwrap();
    assert_eq!(
        containers["value"]["items"]["schema"][0]["Ref"],
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    named("com.example.stable.v1.CronTab");
    let paths = read["paths"]["path"].as_array().unwrap();
    let pods = paths
        .iter()
        .find(|p| p["name"] == "/api/v1/namespaces/{namespace}/pods/{name}")
        .unwrap();
    let patch = &pods["value"]["patch"];
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            p["parameter"]["nonBodyParameter"]["queryParameterSubSchema"]["name"].as_str()
        })
        .collect();
    assert!(names.contains(&"fieldValidation"), "{names:?}");
    let name =
        &pods["value"]["parameters"][0]["parameter"]["nonBodyParameter"]["pathParameterSubSchema"];
    assert_eq!(name["name"], "name");
    assert_eq!(name["required"], true);
    assert_eq!(name["type"], "string");
}
