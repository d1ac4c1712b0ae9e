//! Pod Security admission through kubectl, as against kube-apiserver: a namespace labelled
//! `enforce=restricted` refuses a privileged pod with upstream's 403 and admits a compliant
//! one; `warn=baseline` admits with a `Warning`, for pods and for a Deployment's template;
//! tightening `enforce` warns of the pods already there; a bad level is refused.

use crate::common::Cluster;

const PRIVILEGED: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: priv
spec:
  containers:
  - name: c
    image: orrery/hello:1
    securityContext:
      privileged: true
"#;

const COMPLIANT: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: good
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: c
    image: orrery/hello:1
    securityContext:
      allowPrivilegeEscalation: false
      capabilities:
        drop: ["ALL"]
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      hostNetwork: true
      containers:
      - name: c
        image: orrery/hello:1
"#;

#[test]
fn podsecurity_enforce_refuses_and_warn_warns() {
    let c = Cluster::with_nodes(1);

    // enforce=restricted: a privileged pod is forbidden in upstream's words, a compliant one runs.
    c.ok(&["create", "namespace", "locked"]);
    c.ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let refused = c.fails(&["-n", "locked", "create", "-f", "-"], Some(PRIVILEGED));
    assert!(
        refused.contains(concat!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "priv" is forbidden: "#,
            r#"violates PodSecurity "restricted:latest": "#,
            r#"privileged (container "c" must not set securityContext.privileged=true), "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        )),
        "{refused}"
    );
    let out = c.kubectl(&["-n", "locked", "create", "-f", "-"], Some(COMPLIANT), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    c.ok(&[
        "-n",
        "locked",
        "wait",
        "--for=condition=Ready",
        "pod/good",
        "--timeout=60s",
    ]);

    // warn=baseline: admitted, with a Warning header kubectl prints.
    c.ok(&["create", "namespace", "watched"]);
    c.ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
    ]);
    let out = c.kubectl(
        &["-n", "watched", "create", "-f", "-"],
        Some(PRIVILEGED),
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"Warning: would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
        ),
        "{stderr}"
    );
    // A Deployment's template is only warned about.
    let out = c.kubectl(
        &["-n", "watched", "apply", "-f", "-"],
        Some(DEPLOYMENT),
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#
        ),
        "{stderr}"
    );
    // Scaling it is not evaluated.
    let out = c.kubectl(
        &["-n", "watched", "scale", "deployment/web", "--replicas=2"],
        None,
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("PodSecurity"),
        "{out:?}"
    );

    // Tightening enforce names the pods already there that would be refused now.
    let out = c.kubectl(
        &[
            "label",
            "namespace",
            "watched",
            "pod-security.kubernetes.io/enforce=baseline",
        ],
        None,
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"Warning: existing pods in namespace "watched" violate the new PodSecurity enforce level "baseline:latest""#
        ) && stderr.contains("Warning: priv: privileged"),
        "{stderr}"
    );

    // A level that is none of the three is refused.
    let refused = c.fails(
        &[
            "label",
            "namespace",
            "watched",
            "pod-security.kubernetes.io/enforce=strict",
            "--overwrite",
        ],
        None,
    );
    assert!(
        refused.contains(
            r#"Namespace "watched" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        ),
        "{refused}"
    );
}
