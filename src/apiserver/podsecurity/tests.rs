//! Each check allowed and refused in upstream's words (the cases of upstream's
//! `policy/check_*_test.go`), the labels' parsing, and the aggregate messages.

use serde_json::{Value, json};

use super::*;

const LATEST: Version = Version::Latest;

fn lv(level: Level) -> LevelVersion {
    LevelVersion {
        level,
        version: LATEST,
    }
}

/// One check run on a pod spec (and annotations) at the latest version.
fn check(f: CheckFn, spec: Value) -> Option<(String, String)> {
    check_at(f, json!({}), spec, u32::MAX)
}

fn check_at(f: CheckFn, meta: Value, spec: Value, minor: u32) -> Option<(String, String)> {
    f(&meta, &spec, minor).map(|v| (v.reason, v.detail))
}

fn refused(reason: &str, detail: &str) -> Option<(String, String)> {
    Some((reason.to_owned(), detail.to_owned()))
}

fn c(name: &str, sc: Value) -> Value {
    if sc.is_null() {
        json!({"name": name})
    } else {
        json!({"name": name, "securityContext": sc})
    }
}

/// A container restricted admits.
fn good(name: &str) -> Value {
    c(
        name,
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        }),
    )
}

#[test]
fn allow_privilege_escalation_must_be_false() {
    let spec = json!({"containers": [
        c("a", Value::Null),
        c("b", json!({})),
        c("c", json!({"allowPrivilegeEscalation": true})),
        c("d", json!({"allowPrivilegeEscalation": false})),
    ]});
    assert_eq!(
        check(allow_privilege_escalation, spec.clone()),
        refused(
            "allowPrivilegeEscalation != false",
            r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#
        )
    );
    let windows = json!({"os": {"name": "windows"}, "containers": [c("a", Value::Null)]});
    assert_eq!(check(allow_privilege_escalation, windows.clone()), None);
    // Before v1.25 a Windows pod is checked like any other; before v1.8 not at all.
    assert!(check_at(allow_privilege_escalation, json!({}), windows, 24).is_some());
    let v1_7 = LevelVersion {
        level: Level::Restricted,
        version: Version::V1(7),
    };
    assert!(
        !forbidden_reason(&evaluate(v1_7, &json!({}), &spec)).contains("allowPrivilegeEscalation")
    );
    assert_eq!(
        check(
            allow_privilege_escalation,
            json!({"containers": [good("a")]})
        ),
        None
    );
}

#[test]
fn app_armor_profiles_runtime_default_or_localhost() {
    assert_eq!(
        check_at(
            app_armor_profile,
            json!({"annotations": {
                "container.apparmor.security.beta.kubernetes.io/a": "",
                "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                "container.apparmor.security.beta.kubernetes.io/c": "localhost/foo",
                "container.apparmor.security.beta.kubernetes.io/d": "unconfined",
                "container.apparmor.security.beta.kubernetes.io/e": "bar",
            }}),
            json!({}),
            u32::MAX
        ),
        refused(
            "forbidden AppArmor profiles",
            r#"annotations must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/d="unconfined"", "container.apparmor.security.beta.kubernetes.io/e="bar"""#
        )
    );
    assert_eq!(
        check(
            app_armor_profile,
            json!({
                "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                "containers": [
                    c("a", json!({"appArmorProfile": {"type": "Unconfined"}})),
                    c("b", json!({"appArmorProfile": {"type": "RuntimeDefault"}})),
                    c("c", json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": "x"}})),
                ],
            })
        ),
        refused(
            "forbidden AppArmor profile",
            r#"pod and container "a" must not set AppArmor profile type to "Unconfined""#
        )
    );
    assert_eq!(
        check(
            app_armor_profile,
            json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}})
        ),
        None
    );
}

#[test]
fn capabilities_baseline_only_the_default_set() {
    let spec = json!({"containers": [
        c("a", Value::Null),
        c("b", json!({"capabilities": {}})),
        c("c", json!({"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]}})),
        c("d", json!({"capabilities": {"add": ["FOO", "CHOWN"]}})),
        c("e", json!({"capabilities": {"add": ["BAR", "NET_RAW"]}})),
    ]});
    assert_eq!(
        check(capabilities_baseline, spec),
        refused(
            "non-default capabilities",
            r#"containers "d", "e" must not include "BAR", "FOO", "NET_RAW" in securityContext.capabilities.add"#
        )
    );
    assert_eq!(
        check(
            capabilities_baseline,
            json!({"containers": [c("a", json!({"capabilities": {"add": ["KILL"]}}))]})
        ),
        None
    );
}

#[test]
fn capabilities_restricted_drop_all_add_only_net_bind_service() {
    let spec = json!({"containers": [
        c("a", Value::Null),
        c("b", json!({"capabilities": {}})),
        c("c", json!({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})),
        c("d", json!({"capabilities": {"drop": ["ALL"], "add": ["FOO"]}})),
        c("e", json!({"capabilities": {"drop": ["KILL"], "add": ["BAR", "FOO"]}})),
    ]});
    assert_eq!(
        check(capabilities_restricted, spec),
        refused(
            "unrestricted capabilities",
            r#"containers "a", "b", "e" must set securityContext.capabilities.drop=["ALL"]; containers "d", "e" must not include "BAR", "FOO" in securityContext.capabilities.add"#
        )
    );
    assert_eq!(
        check(
            capabilities_restricted,
            json!({"containers": [c("a", Value::Null)]})
        ),
        refused(
            "unrestricted capabilities",
            r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#
        )
    );
    assert_eq!(
        check(
            capabilities_restricted,
            json!({"os": {"name": "windows"}, "containers": [c("a", Value::Null)]})
        ),
        None
    );
}

#[test]
fn host_namespaces_are_refused() {
    assert_eq!(
        check(
            host_namespaces,
            json!({"hostNetwork": true, "hostIPC": true, "hostPID": true})
        ),
        refused(
            "host namespaces",
            "hostNetwork=true, hostPID=true, hostIPC=true"
        )
    );
    assert_eq!(check(host_namespaces, json!({"hostNetwork": false})), None);
}

#[test]
fn host_path_volumes_are_refused() {
    assert_eq!(
        check(
            host_path_volumes,
            json!({"volumes": [
                {"name": "a", "hostPath": {"path": "/"}},
                {"name": "b", "emptyDir": {}},
                {"name": "c", "hostPath": {"path": "/etc"}},
            ]})
        ),
        refused("hostPath volumes", r#"volumes "a", "c""#)
    );
    assert_eq!(
        check(
            host_path_volumes,
            json!({"volumes": [{"name": "a", "hostPath": {"path": "/"}}]})
        ),
        refused("hostPath volumes", r#"volume "a""#)
    );
}

#[test]
fn host_ports_are_refused() {
    assert_eq!(
        check(
            host_ports,
            json!({"containers": [
                {"name": "a", "ports": [{"containerPort": 80}]},
                {"name": "b", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 10000}]},
                {"name": "c", "ports": [{"containerPort": 82, "hostPort": 8081}]},
            ]})
        ),
        refused(
            "hostPort",
            r#"containers "b", "c" use hostPorts 10000, 8080, 8081"#
        )
    );
    assert_eq!(
        check(
            host_ports,
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]})
        ),
        refused("hostPort", r#"container "a" uses hostPort 80"#)
    );
}

#[test]
fn privileged_is_refused() {
    assert_eq!(
        check(
            privileged,
            json!({
                "initContainers": [c("i", json!({"privileged": true}))],
                "containers": [c("a", json!({"privileged": false})), c("b", json!({"privileged": true}))],
                "ephemeralContainers": [c("e", json!({"privileged": true}))],
            })
        ),
        refused(
            "privileged",
            r#"containers "i", "b", "e" must not set securityContext.privileged=true"#
        )
    );
    assert_eq!(
        check(privileged, json!({"containers": [c("a", Value::Null)]})),
        None
    );
}

#[test]
fn proc_mount_default_only() {
    assert_eq!(
        check(
            proc_mount,
            json!({"containers": [
                c("a", Value::Null),
                c("b", json!({"procMount": "Default"})),
                c("c", json!({"procMount": "Unmasked"})),
                c("d", json!({"procMount": "other"})),
            ]})
        ),
        refused(
            "procMount",
            r#"containers "c", "d" must not set securityContext.procMount to "Unmasked", "other""#
        )
    );
}

#[test]
fn restricted_volume_types() {
    assert_eq!(
        check(
            restricted_volumes,
            json!({"volumes": [
                {"name": "a", "configMap": {}},
                {"name": "b", "csi": {"driver": "x"}},
                {"name": "c", "downwardAPI": {}},
                {"name": "d", "emptyDir": {}},
                {"name": "e", "ephemeral": {}},
                {"name": "f", "persistentVolumeClaim": {"claimName": "x"}},
                {"name": "g", "projected": {}},
                {"name": "h", "secret": {}},
                {"name": "i", "hostPath": {"path": "/"}},
                {"name": "j", "nfs": {"server": "s", "path": "/"}},
                {"name": "k", "hostPath": {"path": "/x"}},
                {"name": "l"},
            ]})
        ),
        refused(
            "restricted volume types",
            r#"volumes "i", "j", "k", "l" use restricted volume types "hostPath", "nfs", "unknown""#
        )
    );
    assert_eq!(
        check(
            restricted_volumes,
            json!({"volumes": [{"name": "i", "hostPath": {"path": "/"}}]})
        ),
        refused(
            "restricted volume types",
            r#"volume "i" uses restricted volume type "hostPath""#
        )
    );
}

#[test]
fn run_as_non_root_on_pod_or_every_container() {
    assert_eq!(
        check(
            run_as_non_root,
            json!({"securityContext": {"runAsNonRoot": false}, "containers": [
                c("a", Value::Null),
                c("b", json!({"runAsNonRoot": false})),
                c("c", json!({"runAsNonRoot": true})),
            ]})
        ),
        refused(
            "runAsNonRoot != true",
            r#"pod and container "b" must not set securityContext.runAsNonRoot=false"#
        )
    );
    assert_eq!(
        check(
            run_as_non_root,
            json!({"containers": [
                c("a", Value::Null),
                c("b", json!({})),
                c("c", json!({"runAsNonRoot": true})),
            ]})
        ),
        refused(
            "runAsNonRoot != true",
            r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#
        )
    );
    assert_eq!(
        check(
            run_as_non_root,
            json!({"securityContext": {"runAsNonRoot": true}, "containers": [c("a", Value::Null)]})
        ),
        None
    );
}

#[test]
fn run_as_user_never_root() {
    assert_eq!(
        check(
            run_as_user,
            json!({"securityContext": {"runAsUser": 0}, "containers": [
                c("a", json!({"runAsUser": 1000})),
                c("b", json!({"runAsUser": 0})),
                c("c", json!({"runAsUser": 0})),
            ]})
        ),
        refused(
            "runAsUser=0",
            r#"pod and containers "b", "c" must not set runAsUser=0"#
        )
    );
    assert_eq!(
        check(run_as_user, json!({"securityContext": {"runAsUser": 1}})),
        None
    );
    // Only from v1.23.
    let root = json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": true}, "containers": [good("c")]});
    let at = |minor| LevelVersion {
        level: Level::Restricted,
        version: Version::V1(minor),
    };
    assert!(evaluate(at(22), &json!({}), &root).is_empty());
    assert_eq!(
        forbidden_detail(&evaluate(at(23), &json!({}), &root)),
        "runAsUser=0 (pod must not set runAsUser=0)"
    );
}

#[test]
fn se_linux_options_types_user_role() {
    assert_eq!(
        check(
            se_linux_options,
            json!({
                "securityContext": {"seLinuxOptions": {"type": "foo", "user": "u", "role": "r"}},
                "containers": [
                    c("a", json!({"seLinuxOptions": {"type": "container_t"}})),
                    c("b", json!({"seLinuxOptions": {"type": "bar"}})),
                ],
            })
        ),
        refused(
            "seLinuxOptions",
            r#"pod and container "b" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#
        )
    );
    assert_eq!(
        check(
            se_linux_options,
            json!({"securityContext": {"seLinuxOptions": {"user": "u"}}})
        ),
        refused(
            "seLinuxOptions",
            "pod set forbidden securityContext.seLinuxOptions: user may not be set"
        )
    );
    let engine = json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}});
    assert_eq!(check(se_linux_options, engine.clone()), None);
    assert_eq!(
        check_at(se_linux_options, json!({}), engine, 30),
        refused(
            "seLinuxOptions",
            r#"pod set forbidden securityContext.seLinuxOptions: type "container_engine_t""#
        )
    );
}

#[test]
fn seccomp_baseline_never_unconfined() {
    assert_eq!(
        check(
            seccomp_profile_baseline,
            json!({
                "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [
                    c("a", Value::Null),
                    c("b", json!({"seccompProfile": {"type": "RuntimeDefault"}})),
                    c("c", json!({"seccompProfile": {"type": "Unconfined"}})),
                ],
            })
        ),
        refused(
            "seccompProfile",
            r#"pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined""#
        )
    );
    assert_eq!(
        check(
            seccomp_profile_baseline,
            json!({"containers": [c("a", Value::Null)]})
        ),
        None
    );
    // Before v1.19, the alpha annotations.
    assert_eq!(
        check_at(
            seccomp_profile_baseline,
            json!({"annotations": {
                "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                "container.seccomp.security.alpha.kubernetes.io/a": "docker/default",
            }}),
            json!({"containers": [c("a", Value::Null)]}),
            18
        ),
        refused(
            "seccompProfile",
            r#"forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined""#
        )
    );
}

#[test]
fn seccomp_restricted_runtime_default_or_localhost() {
    assert_eq!(
        check(
            seccomp_profile_restricted,
            json!({"containers": [
                c("a", Value::Null),
                c("b", json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "x"}})),
                c("c", json!({})),
            ]})
        ),
        refused(
            "seccompProfile",
            r#"pod or containers "a", "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
        )
    );
    assert_eq!(
        check(
            seccomp_profile_restricted,
            json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [
                c("a", Value::Null),
                c("b", json!({"seccompProfile": {"type": "Unconfined"}})),
            ]})
        ),
        refused(
            "seccompProfile",
            r#"container "b" must not set securityContext.seccompProfile.type to "Unconfined""#
        )
    );
    assert_eq!(
        check(
            seccomp_profile_restricted,
            json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [c("a", Value::Null)]})
        ),
        None
    );
}

#[test]
fn sysctls_only_the_safe_set() {
    let spec = json!({"securityContext": {"sysctls": [
        {"name": "a", "value": "1"},
        {"name": "kernel.shm_rmid_forced", "value": "1"},
        {"name": "b", "value": "1"},
        {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"},
    ]}});
    assert_eq!(
        check(sysctls, spec.clone()),
        refused("forbidden sysctls", "a, b")
    );
    assert_eq!(
        check_at(sysctls, json!({}), spec, 31),
        refused("forbidden sysctls", "a, b, net.ipv4.tcp_rmem")
    );
}

#[test]
fn windows_host_process_is_refused() {
    let host = json!({"windowsOptions": {"hostProcess": true}});
    assert_eq!(
        check(
            windows_host_process,
            json!({"securityContext": host, "containers": [c("a", host.clone()), c("b", json!({})), c("c", host.clone())]})
        ),
        refused(
            "hostProcess",
            r#"pod and containers "a", "c" must not set securityContext.windowsOptions.hostProcess=true"#
        )
    );
}

#[test]
fn levels_run_their_checks_in_upstreams_order() {
    let plain = json!({"containers": [c("c", Value::Null)]});
    let meta = json!({});
    assert!(evaluate(lv(Level::Privileged), &meta, &plain).is_empty());
    assert!(evaluate(lv(Level::Baseline), &meta, &plain).is_empty());
    assert_eq!(
        format!(
            "violates PodSecurity \"{}\": {}",
            lv(Level::Restricted),
            forbidden_detail(&evaluate(lv(Level::Restricted), &meta, &plain))
        ),
        r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    let privileged_pod = json!({
        "hostNetwork": true,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [c("c", json!({"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}))],
    });
    // Baseline: its checks by ID.
    assert_eq!(
        forbidden_detail(&evaluate(lv(Level::Baseline), &meta, &privileged_pod)),
        r#"non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true), hostPath volumes (volume "root"), privileged (container "c" must not set securityContext.privileged=true)"#
    );
    // Restricted: baseline's (but those a restricted check overrides), then restricted's.
    assert_eq!(
        forbidden_reason(&evaluate(lv(Level::Restricted), &meta, &privileged_pod)),
        "host namespaces, privileged, allowPrivilegeEscalation != false, unrestricted capabilities, restricted volume types, runAsNonRoot != true, seccompProfile"
    );
    let compliant = json!({"containers": [good("c")], "initContainers": [good("i")]});
    assert!(evaluate(lv(Level::Restricted), &meta, &compliant).is_empty());
    // Before v1.22 no restricted check stands in for baseline's capabilities check.
    let v1_21 = LevelVersion {
        level: Level::Restricted,
        version: Version::V1(21),
    };
    assert_eq!(
        forbidden_reason(&evaluate(v1_21, &meta, &privileged_pod)),
        "non-default capabilities, host namespaces, privileged, allowPrivilegeEscalation != false, restricted volume types, runAsNonRoot != true, seccompProfile"
    );
}

fn labels(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

#[test]
fn labels_choose_the_policy() {
    let (policy, causes) = policy_of(&Map::new());
    assert_eq!(policy, DEFAULT_POLICY);
    assert!(causes.is_empty());
    let (policy, causes) = policy_of(&labels(&[
        ("pod-security.kubernetes.io/enforce", "baseline"),
        ("pod-security.kubernetes.io/enforce-version", "v1.24"),
        ("pod-security.kubernetes.io/warn", "restricted"),
    ]));
    assert!(causes.is_empty());
    assert_eq!(policy.enforce.to_string(), "baseline:v1.24");
    assert_eq!(policy.warn.to_string(), "restricted:latest");
    assert_eq!(policy.audit.to_string(), "privileged:latest");
    // Bad values: enforce fails closed (restricted), warn and audit open, versions to latest.
    let (policy, causes) = policy_of(&labels(&[
        ("pod-security.kubernetes.io/enforce", "strict"),
        ("pod-security.kubernetes.io/enforce-version", "v1.05"),
        ("pod-security.kubernetes.io/warn", "nope"),
        ("pod-security.kubernetes.io/audit-version", "1.2"),
    ]));
    assert_eq!(policy.enforce.to_string(), "restricted:latest");
    assert_eq!(policy.warn.to_string(), "privileged:latest");
    let messages: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    assert_eq!(
        messages,
        [
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "v1.05": must be "latest" or "v1.x""#,
            r#"metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "1.2": must be "latest" or "v1.x""#,
            r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "nope": must be one of privileged, baseline, restricted"#,
        ]
    );
    assert_eq!(Version::parse("v1.0"), Ok(Version::V1(0)));
    assert_eq!(Version::parse("v1.33"), Ok(Version::V1(33)));
    assert!(Version::parse("v2.1").is_err());
}

#[test]
fn enforce_refuses_and_warn_warns() {
    let policy = Policy {
        enforce: lv(Level::Baseline),
        audit: lv(Level::Privileged),
        warn: lv(Level::Restricted),
    };
    let meta = json!({});
    let privileged_pod = json!({"containers": [c("c", json!({"privileged": true}))]});
    assert_eq!(
        evaluate_pod(&policy, &meta, &privileged_pod, true),
        Err(r#"violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#.to_owned())
    );
    // A workload's template is never refused, only warned about.
    assert_eq!(
        evaluate_pod(&policy, &meta, &privileged_pod, false).unwrap(),
        [
            r#"would violate PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        ]
    );
    let plain = json!({"containers": [c("c", Value::Null)]});
    assert_eq!(evaluate_pod(&policy, &meta, &plain, true).unwrap().len(), 1);
    let compliant = json!({"containers": [good("c")]});
    assert!(
        evaluate_pod(&policy, &meta, &compliant, true)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn only_significant_pod_updates_are_evaluated() {
    let pod = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let mut relabelled = pod.clone();
    relabelled["metadata"]["labels"]["a"] = json!("c");
    assert!(!is_significant_pod_update(&relabelled, &pod));
    let mut new_image = pod.clone();
    new_image["spec"]["containers"][0]["image"] = json!("y");
    assert!(is_significant_pod_update(&new_image, &pod));
    let mut debugged = pod.clone();
    debugged["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "x"}]);
    assert!(is_significant_pod_update(&debugged, &pod));
    assert!(!is_significant_pod_update(&debugged, &debugged));
}

#[test]
fn tightening_enforce_warns_of_existing_pods() {
    let pod = |name: &str, owner: Option<&str>, spec: Value| {
        let mut p = json!({"metadata": {"name": name}, "spec": spec});
        if let Some(uid) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
        }
        p
    };
    let plain = json!({"containers": [c("c", Value::Null)]});
    let privileged_pod = json!({"containers": [c("c", json!({"privileged": true}))]});
    let compliant = json!({"containers": [good("c")]});
    let pods = [
        pod("web-b", Some("u1"), plain.clone()),
        pod("web-a", Some("u1"), plain.clone()),
        pod("solo", None, plain),
        pod("root", None, privileged_pod),
        pod("fine", None, compliant),
    ];
    assert_eq!(
        existing_pod_warnings("x", lv(Level::Restricted), &pods),
        [
            r#"existing pods in namespace "x" violate the new PodSecurity enforce level "restricted:latest""#,
            "root: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
            "solo (and 2 other pods): allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
        ]
    );
    assert!(existing_pod_warnings("x", lv(Level::Baseline), &pods[..3]).is_empty());
}

#[test]
fn scale_writes_are_not_evaluated() {
    let d = json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 1, "template": {}}});
    let mut scaled = d.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["metadata"]["generation"] = json!(2);
    assert!(only_replicas_changed(&scaled, &d));
    let mut relabelled = scaled.clone();
    relabelled["metadata"]["labels"] = json!({"a": "b"});
    assert!(!only_replicas_changed(&relabelled, &d));
}
