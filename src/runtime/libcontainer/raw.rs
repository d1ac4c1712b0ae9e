//! `orrery bench raw-container`: the floor under a pod's start. It creates and starts the same
//! container the runtime helper would (the image's layers under an overlay root, the same OCI
//! spec from [`super::spec`], new PID, mount, UTS and IPC namespaces, an existing network
//! namespace joined by path, a cgroup) directly through libcontainer, with no helper, kubelet or
//! API server in between, and prints the p50 and p99 of create+start in microseconds. Like the
//! helper it must run single-threaded (libcontainer clones without exec), so the CLI calls it
//! before any async runtime exists.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;

use super::helper::{mount_overlay, unmount_container_dir};
use super::protocol::{ContainerSpec, ResourceSpec, SecuritySpec};
use super::spec::{self, Namespaces, User};
use crate::images::ImageStore;

/// Creates and starts `runs` containers of `image` (already in the store under `state_dir`),
/// one at a time; returns every create+start time.
pub fn measure(state_dir: &Path, image: &str, runs: u32) -> Result<Vec<Duration>, String> {
    let store = ImageStore::open(&state_dir.join("images")).map_err(|e| e.to_string())?;
    let image = store
        .get(image)
        .ok_or_else(|| format!("image {image:?} is not in the store; run a pod of it first"))?;
    let args = spec::process_args(&image.config.entrypoint, &image.config.cmd, &[], &[])
        .map_err(|e| e.to_string())?;
    let root = tempfile::Builder::new()
        .prefix("raw-container")
        .tempdir_in(state_dir)
        .map_err(|e| e.to_string())?;
    let container = ContainerSpec {
        name: "raw".into(),
        image_id: image.id.clone(),
        image: image.reference.clone(),
        layers: image.layers.clone(),
        args,
        env: spec::merge_env(&image.config.env, &[]),
        cwd: image.config.working_dir.clone().unwrap_or_default(),
        security: SecuritySpec {
            no_new_privileges: true,
            ..Default::default()
        },
        resources: ResourceSpec::default(),
        ..Default::default()
    };
    let user = User {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
    };
    let namespaces = Namespaces::Sandbox {
        netns: format!("/proc/{}/ns/net", std::process::id()).into(),
        hostname: "raw".into(),
    };
    let mut samples = Vec::new();
    for run in 0..runs {
        let id = format!("raw-{}-{run}", std::process::id());
        let dir = root.path().join(&id);
        mount_overlay(&dir, &container.layers)?;
        let cgroups = format!("/orrery/bench-raw-{}/{run}", std::process::id());
        let result = (|| -> Result<Duration, String> {
            let oci = spec::oci_spec(
                &container,
                &user,
                &dir.join("rootfs"),
                &namespaces,
                None,
                &cgroups,
                spec::host_capabilities(),
            )
            .map_err(|e| e.to_string())?;
            std::fs::write(dir.join("config.json"), oci.to_string()).map_err(|e| e.to_string())?;
            let null = || std::fs::File::open("/dev/null").map(OwnedFd::from);
            let (stdin, stdout, stderr) = (
                null().map_err(|e| e.to_string())?,
                std::fs::File::create(dir.join("out.log"))
                    .map(OwnedFd::from)
                    .map_err(|e| e.to_string())?,
                null().map_err(|e| e.to_string())?,
            );
            let started = Instant::now();
            let mut created = ContainerBuilder::new(id.clone(), SyscallType::default())
                .with_root_path(root.path().join("state"))
                .map_err(|e| e.to_string())?
                .with_stdin(stdin)
                .with_stdout(stdout)
                .with_stderr(stderr)
                .as_init(&dir)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(|e| format!("create: {e}"))?;
            created.start().map_err(|e| format!("start: {e}"))?;
            let took = started.elapsed();
            if let Some(pid) = created.pid() {
                let pid = nix::unistd::Pid::from_raw(pid.as_raw());
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
            let _ = created.delete(true);
            Ok(took)
        })();
        unmount_container_dir(&dir);
        for hierarchy in super::helper::cgroup_hierarchies() {
            let _ = std::fs::remove_dir(hierarchy.join(cgroups.trim_start_matches('/')));
            let _ = std::fs::remove_dir(
                hierarchy.join(format!("orrery/bench-raw-{}", std::process::id())),
            );
        }
        samples.push(result?);
    }
    Ok(samples)
}
