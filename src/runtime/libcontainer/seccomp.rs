//! Seccomp profiles for `securityContext.seccompProfile`: the runtime's default profile
//! (`RuntimeDefault`) and `Localhost` profiles, turned into an OCI `linux.seccomp` object.
//!
//! The default profile is moby's `profiles/seccomp/default.json`
//! (<https://github.com/moby/moby>, Apache-2.0, Copyright Docker, Inc.), vendored unchanged in
//! meaning as `seccomp_default.json`; containerd's `contrib/seccomp` generates the same
//! profile. Both are written in Docker's profile format, whose rules may depend on the
//! architecture (`arches`), the container's capabilities (`caps`) and the kernel
//! (`minKernel`); [`to_oci`] resolves those conditions the way moby's `setupSeccomp` does
//! and leaves an OCI profile. A profile already in OCI form passes through unchanged, so
//! `Localhost` profiles may be written in either format.
//!
//! Everything here is pure (JSON in, JSON out), so it is tested without root.

use serde_json::{Value, json};

/// moby's default profile, in Docker's format.
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// What went wrong making a container's seccomp profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    /// The `Localhost` profile cannot be read (containerd's message).
    #[error("failed to generate seccomp spec opts: cannot load seccomp profile {path:?}: {reason}")]
    Load {
        /// The profile's path on the node.
        path: String,
        /// Why it could not be read or parsed.
        reason: String,
    },
}

/// Where the container runs, for the profile's conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// Go's name for the architecture (`amd64`, `arm64`), as the profile's `arches` use it.
    pub arch: &'a str,
    /// The kernel's version as (major, minor).
    pub kernel: (u32, u32),
    /// The container's capabilities, `CAP_`-prefixed (the bounding set).
    pub caps: &'a [String],
}

/// Go's architecture name for the one this binary was built for.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The running kernel's (major, minor), from `uname -r` (`6.1.0-18-amd64`).
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The OCI `linux.seccomp` of the runtime's default profile for `target`.
pub fn runtime_default(target: &Target<'_>) -> Value {
    let profile: Value = serde_json::from_str(DEFAULT_PROFILE).expect("vendored profile is JSON");
    to_oci(&profile, target)
}

/// The OCI `linux.seccomp` of a `Localhost` profile read from `path` (Docker or OCI format).
pub fn localhost(path: &std::path::Path, target: &Target<'_>) -> Result<Value, SeccompError> {
    let error = |reason: String| SeccompError::Load {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| error(format!("open {}: {e}", path.display())))?;
    let profile: Value = serde_json::from_str(&text)
        .map_err(|e| error(format!("decoding seccomp profile failed: {e}")))?;
    Ok(to_oci(&profile, target))
}

/// A Docker-format profile resolved for `target` into an OCI one: the architectures from
/// `archMap` (the native one and its sub-architectures), and only the rules whose `includes`
/// hold and whose `excludes` do not (moby's `setupSeccomp`).
pub fn to_oci(profile: &Value, target: &Target<'_>) -> Value {
    let mut oci = json!({
        "defaultAction": profile.get("defaultAction").cloned().unwrap_or(json!("SCMP_ACT_ERRNO")),
    });
    if let Some(errno) = profile.get("defaultErrnoRet").filter(|v| !v.is_null()) {
        oci["defaultErrnoRet"] = errno.clone();
    }
    if let Some(flags) = profile.get("flags").filter(|v| !v.is_null()) {
        oci["flags"] = flags.clone();
    }
    let architectures: Vec<Value> = match profile.get("archMap").and_then(Value::as_array) {
        Some(map) => {
            let native = scmp_arch(target.arch);
            map.iter()
                .filter(|entry| entry["architecture"].as_str() == Some(native))
                .flat_map(|entry| {
                    let mut arches = vec![entry["architecture"].clone()];
                    arches.extend(
                        entry["subArchitectures"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                    arches
                })
                .collect()
        }
        None => profile
            .get("architectures")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    if !architectures.is_empty() {
        oci["architectures"] = Value::Array(architectures);
    }
    let syscalls: Vec<Value> = profile
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rule| applies(rule, target))
        .map(|rule| {
            let mut names: Vec<Value> = rule
                .get("names")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(name) = rule.get("name").filter(|n| n.is_string()) {
                names.push(name.clone());
            }
            let mut out = json!({"names": names, "action": rule["action"]});
            if let Some(args) = rule
                .get("args")
                .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
            {
                out["args"] = args.clone();
            }
            if let Some(errno) = rule.get("errnoRet").filter(|v| !v.is_null()) {
                out["errnoRet"] = errno.clone();
            }
            out
        })
        .collect();
    oci["syscalls"] = Value::Array(syscalls);
    oci
}

/// Whether a rule's `includes` all hold and none of its `excludes` does.
fn applies(rule: &Value, target: &Target<'_>) -> bool {
    let strings = |filter: &Value, key: &str| -> Vec<String> {
        filter
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let has_cap = |cap: &String| target.caps.iter().any(|c| c.eq_ignore_ascii_case(cap));
    if let Some(includes) = rule.get("includes") {
        let arches = strings(includes, "arches");
        if !arches.is_empty() && !arches.iter().any(|a| a == target.arch) {
            return false;
        }
        if !strings(includes, "caps").iter().all(has_cap) {
            return false;
        }
        if let Some(min) = includes.get("minKernel").and_then(Value::as_str)
            && target.kernel < kernel_version(min)
        {
            return false;
        }
    }
    if let Some(excludes) = rule.get("excludes") {
        if strings(excludes, "arches").iter().any(|a| a == target.arch) {
            return false;
        }
        if strings(excludes, "caps").iter().any(has_cap) {
            return false;
        }
        if let Some(min) = excludes.get("minKernel").and_then(Value::as_str)
            && target.kernel >= kernel_version(min)
        {
            return false;
        }
    }
    true
}

/// libseccomp's name for a Go architecture name (moby's `nativeToSeccomp`).
fn scmp_arch(arch: &str) -> &'static str {
    match arch {
        "amd64" => "SCMP_ARCH_X86_64",
        "386" => "SCMP_ARCH_X86",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "mips64" => "SCMP_ARCH_MIPS64",
        "mips64n32" => "SCMP_ARCH_MIPS64N32",
        "mipsel64" => "SCMP_ARCH_MIPSEL64",
        "mipsel64n32" => "SCMP_ARCH_MIPSEL64N32",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    }

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn default_profile_denies_by_default_and_allows_the_common_syscalls() {
        let default_caps = caps(&super::super::spec::DEFAULT_CAPABILITIES)
            .into_iter()
            .map(|c| format!("CAP_{c}"))
            .collect::<Vec<_>>();
        let target = Target {
            arch: "amd64",
            kernel: (6, 1),
            caps: &default_caps,
        };
        let profile = runtime_default(&target);
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(profile["defaultErrnoRet"], 1);
        assert_eq!(
            profile["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let allowed = names(&profile);
        for call in [
            "read",
            "write",
            "execve",
            "openat",
            "arch_prctl",
            "ptrace",
            "chroot",
        ] {
            assert!(allowed.contains(&call.to_owned()), "{call} allowed");
        }
        // Without CAP_SYS_ADMIN: no mount, unshare or setns; clone only without namespace
        // flags; clone3 fails with ENOSYS so libc falls back to clone.
        for call in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "bpf",
            "s390_runtime_instr",
        ] {
            assert!(!allowed.contains(&call.to_owned()), "{call} denied");
        }
        let clone: Vec<&Value> = profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"] == json!(["clone"]))
            .collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert!(
            profile["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["names"] == json!(["clone3"]) && r["errnoRet"] == 38)
        );
        // The result is a valid OCI profile.
        let _: libcontainer::oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(profile).unwrap();
    }

    #[test]
    fn rules_follow_capabilities_and_kernel() {
        let admin = caps(&["CAP_SYS_ADMIN"]);
        let target = Target {
            arch: "amd64",
            kernel: (6, 1),
            caps: &admin,
        };
        let profile = runtime_default(&target);
        let allowed = names(&profile);
        assert!(allowed.contains(&"mount".to_owned()));
        assert!(!allowed.contains(&"chroot".to_owned()));
        assert!(
            !profile["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["names"] == json!(["clone3"]))
        );
        let old = Target {
            arch: "amd64",
            kernel: (4, 4),
            caps: &[],
        };
        assert!(!names(&runtime_default(&old)).contains(&"ptrace".to_owned()));
        assert_eq!(kernel_version("6.1.0-18-amd64"), (6, 1));
        assert_eq!(kernel_version("4.8"), (4, 8));
    }

    #[test]
    fn localhost_profiles_load_in_either_format_or_fail_as_containerd_does() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target {
            arch: "amd64",
            kernel: (6, 1),
            caps: &[],
        };
        let oci = json!({"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_X86_64"],
                         "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
        let path = dir.path().join("audit.json");
        std::fs::write(&path, oci.to_string()).unwrap();
        assert_eq!(localhost(&path, &target).unwrap(), oci);
        let missing = dir.path().join("missing.json");
        let error = localhost(&missing, &target).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "failed to generate seccomp spec opts: cannot load seccomp profile {:?}: open {}: ",
                missing.display().to_string(),
                missing.display()
            )),
            "{error}"
        );
    }
}
