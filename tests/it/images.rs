//! The image store from outside: an image built with independent tools (`umoci`, Debian's
//! static busybox), pushed with `skopeo` to a real registry (Debian's `docker-registry`) on
//! 127.0.0.1, then pulled, listed, loaded from `docker save` and OCI archives and removed with
//! `orrery image`; the built-in images; and the `orrery hello` and `orrery pause` programs.
//!
//! Tests that unpack images as the runtime would need root and skip (saying so) without it; CI
//! runs as root. `scripts/test` installs busybox-static, umoci, skopeo and docker-registry.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::registry::Registry;
use orrery::images::ImageStore;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs it)"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn orrery(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("run orrery")
}

fn orrery_ok(state: &Path, args: &[&str]) -> String {
    let output = orrery(state, args);
    assert!(
        output.status.success(),
        "orrery {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A child process killed (and waited for) when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on 127.0.0.1:`port` (bounded).
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..400 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// A GET over plain HTTP/1.1; returns the status line and the body.
fn get(port: u16) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// An OCI layout at `dir/layout` holding `busybox:<tag>`: Debian's static busybox with `sh`
/// and `ls` links, built with umoci.
fn busybox_layout(dir: &Path, tag: &str) -> PathBuf {
    let layout = dir.join("layout");
    let image = format!("{}:{tag}", layout.display());
    let bundle = dir.join("bundle");
    run(
        "umoci",
        &["init", "--layout", &layout.display().to_string()],
    );
    run("umoci", &["new", "--image", &image]);
    run(
        "umoci",
        &["unpack", "--image", &image, &bundle.display().to_string()],
    );
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/ls")).unwrap();
    run(
        "umoci",
        &["repack", "--image", &image, &bundle.display().to_string()],
    );
    run(
        "umoci",
        &["config", "--image", &image, "--config.cmd", "/bin/sh"],
    );
    layout
}

/// The `orrery image ls` rows (header skipped) as columns.
fn image_rows(state: &Path) -> Vec<Vec<String>> {
    let out = orrery_ok(state, &["image", "ls"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    assert_eq!(header, ["IMAGE", "TAG", "IMAGE ID", "SIZE"], "{out}");
    lines
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn images_from_a_registry_and_from_archives() {
    if !is_root() {
        eprintln!("skipping: unpacking images as the runtime does needs root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(work.path(), "v1");
    let registry = Registry::start();
    let remote = format!("{}/busybox", registry.host);
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{remote}:v1"),
        ],
    );
    let state = work.path().join("state");

    // Pull: plain HTTP to 127.0.0.1, listed, unpacked with busybox and its links.
    let pulled = orrery_ok(&state, &["image", "pull", &format!("{remote}:v1")]);
    assert!(pulled.contains(&format!("{remote}:v1")), "{pulled}");
    let rows = image_rows(&state);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], remote);
    assert_eq!(rows[0][1], "v1");
    assert_eq!(rows[0][2].len(), 12);
    let store = ImageStore::open(&orrery::images::store_dir(&state)).unwrap();
    let image = store.get(&format!("{remote}:v1")).expect("pulled image");
    assert_eq!(image.reference, format!("{remote}:v1"));
    assert_eq!(image.config.cmd, ["/bin/sh"]);
    let top = image.layers.last().unwrap();
    let busybox = top.join("bin/busybox");
    assert_eq!(
        std::fs::read(&busybox).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(top.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );

    // A tag the registry lacks fails with the registry's words.
    let missing = orrery(&state, &["image", "pull", &format!("{remote}:nope")]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("manifest unknown"), "{stderr}");
    // An unreachable registry says so.
    let unreachable = orrery(
        &state,
        &[
            "image",
            "pull",
            &format!("127.0.0.1:{}/busybox:v1", free_port()),
        ],
    );
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("cannot reach registry") && stderr.contains("onnection refused"),
        "{stderr}"
    );

    // docker save (docker-archive) and OCI archives (plain and gzipped) load.
    let saved = work.path().join("saved.tar");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker-archive:{}:busybox:saved", saved.display()),
        ],
    );
    let loaded = orrery_ok(&state, &["image", "load", &saved.display().to_string()]);
    assert_eq!(
        loaded.trim(),
        "Loaded image: docker.io/library/busybox:saved"
    );
    let oci_archive = work.path().join("oci.tar.gz");
    run(
        "tar",
        &[
            "-C",
            &layout.display().to_string(),
            "-czf",
            &oci_archive.display().to_string(),
            ".",
        ],
    );
    let no_name = orrery(
        &state,
        &["image", "load", &oci_archive.display().to_string()],
    );
    assert!(!no_name.status.success());
    assert!(
        String::from_utf8_lossy(&no_name.stderr).contains("--repository"),
        "{}",
        String::from_utf8_lossy(&no_name.stderr)
    );
    let loaded = orrery_ok(
        &state,
        &[
            "image",
            "load",
            &oci_archive.display().to_string(),
            "--repository",
            "example.com/tools/busybox",
        ],
    );
    assert_eq!(loaded.trim(), "Loaded image: example.com/tools/busybox:v1");
    let saved_image = store.get("busybox:saved").expect("loaded docker archive");
    let oci_image = store
        .get("example.com/tools/busybox:v1")
        .expect("loaded OCI archive");
    // The same image three ways: one config, one unpacked layer.
    assert_eq!(saved_image.id, image.id);
    assert_eq!(oci_image.id, image.id);
    assert_eq!(saved_image.layers, image.layers);
    let names: Vec<String> = image_rows(&state)
        .iter()
        .map(|row| format!("{}:{}", row[0], row[1]))
        .collect();
    assert_eq!(
        names,
        [
            format!("{remote}:v1"),
            "docker.io/library/busybox:saved".to_owned(),
            "example.com/tools/busybox:v1".to_owned(),
        ]
    );

    // rm removes references; the layer goes with the last one.
    assert_eq!(
        orrery_ok(&state, &["image", "rm", "busybox:saved"]).trim(),
        "Deleted: docker.io/library/busybox:saved"
    );
    assert!(store.get("busybox:saved").is_none());
    assert!(
        !orrery(&state, &["image", "rm", "busybox:saved"])
            .status
            .success()
    );
    assert!(busybox.exists(), "still used by two references");
    orrery_ok(&state, &["image", "rm", &format!("{remote}:v1")]);
    orrery_ok(&state, &["image", "rm", "example.com/tools/busybox:v1"]);
    assert!(image_rows(&state).is_empty());
    assert!(!top.exists(), "the unpacked layer is collected");
    let blobs = std::fs::read_dir(orrery::images::store_dir(&state).join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "every blob is collected");
}

#[test]
fn the_builtin_images_come_from_the_orrery_binary() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_orrery"));
    let store = ImageStore::open(dir.path())
        .unwrap()
        .with_builtin_binary(binary);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hello = runtime.block_on(store.pull("orrery/hello:v1")).unwrap();
    assert_eq!(hello.reference, "docker.io/orrery/hello:v1");
    assert_eq!(hello.config.entrypoint, ["/orrery", "hello"]);
    assert_eq!(hello.layers.len(), 1);
    let layer = &hello.layers[0];
    assert_eq!(
        std::fs::metadata(layer.join("orrery")).unwrap().len(),
        std::fs::metadata(binary).unwrap().len()
    );
    let passwd = std::fs::read_to_string(layer.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:") && passwd.contains("nobody:x:65534"));
    assert!(layer.join("tmp").is_dir());
    // Its shared libraries, at their host paths, resolved through the layer's own links.
    let libc = [
        "lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .iter()
    .any(|path| layer.join(path).exists());
    assert!(libc, "libc is in the layer");

    // Any tag is the same image, present without a pull; pause shares the layer.
    let other = store.get("docker.io/orrery/hello:anything").unwrap();
    assert_eq!(other.id, hello.id);
    let pause = store.get("orrery/pause:3.10").unwrap();
    assert_eq!(pause.config.entrypoint, ["/orrery", "pause"]);
    assert_eq!(pause.layers, hello.layers);
    assert_ne!(pause.id, hello.id);
    let listed: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(
        listed,
        [
            "docker.io/orrery/hello:anything",
            "docker.io/orrery/hello:v1",
            "docker.io/orrery/pause:3.10"
        ]
    );

    if !is_root() {
        eprintln!("skipping the chroot half: chroot needs root");
        return;
    }
    let port = free_port();
    let child = Command::new("chroot")
        .arg(layer)
        .args(["/orrery", "hello"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PORT", port.to_string())
        .env("POD_NAMESPACE", "shop")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Guard(child);
    wait_for_port(port, &mut server.0);
    let (status, body) = get(port);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.starts_with("Hello from ") && body.contains(" in shop at "),
        "{body}"
    );
}

#[test]
fn hello_answers_with_its_pod_and_stops_on_sigterm() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("hello")
        .env("PORT", port.to_string())
        .env("POD_NAMESPACE", "shop")
        .env("POD_IP", "10.244.1.7")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Guard(child);
    wait_for_port(port, &mut server.0);
    let hostname = nix::unistd::gethostname().unwrap();
    let (status, body) = get(port);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        body,
        format!(
            "Hello from {} in shop at 10.244.1.7\n",
            hostname.to_string_lossy()
        )
    );
    let code = stop(&mut server.0);
    assert_eq!(code, Some(0));
    let mut log = String::new();
    server
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("GET / from 127.0.0.1:"), "{log}");
}

#[test]
fn pause_sleeps_until_sigterm() {
    let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("pause")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pause = Guard(child);
    assert_eq!(pause.0.try_wait().unwrap(), None, "pause keeps running");
    assert_eq!(stop(&mut pause.0), Some(0));
}

/// Whether the process catches SIGTERM (`/proc/<pid>/status`) or waits for signals in
/// sigtimedwait (which unblocks the signals it waits for, so its mask shows none) yet.
fn handles_sigterm(pid: u32) -> bool {
    if std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .is_ok_and(|wchan| wchan.contains("sigtimedwait"))
    {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let sigterm = 1u64 << (15 - 1);
    status
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(key, "SigBlk" | "SigCgt")
                .then(|| u64::from_str_radix(value.trim(), 16).ok())?
        })
        .any(|mask| mask & sigterm != 0)
}

/// Sends SIGTERM once the child handles it and waits for its exit code.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn stop(child: &mut Child) -> Option<i32> {
    for _ in 0..200 {
        if handles_sigterm(child.id()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(handles_sigterm(child.id()), "SIGTERM is never handled");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no exit within 10 s of SIGTERM");
}

#[test]
fn builtin_images_are_regenerated_when_the_binary_changes() {
    // Any ELF stands in for the orrery binary here: generation copies it, it does not run it.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("orrery-copy");
    std::fs::copy("/bin/true", &binary).unwrap();
    let store = ImageStore::open(&dir.path().join("images"))
        .unwrap()
        .with_builtin_binary(&binary);
    let first = store
        .get("orrery/hello:v1")
        .expect("generated on first use");
    let pause = store
        .get("orrery/pause:v1")
        .expect("generated on first use");
    assert_eq!(
        store.get("orrery/hello:v1").unwrap(),
        first,
        "kept while unchanged"
    );
    let old_layer = first.layers[0].clone();

    // A rebuilt binary (here: newer mtime) moves every built-in reference to new images, and
    // the old layer is collected.
    let file = std::fs::File::options().write(true).open(&binary).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    drop(file);
    let second = store.get("orrery/hello:v1").unwrap();
    assert_ne!(second.id, first.id);
    assert_ne!(second.layers, first.layers);
    assert!(!old_layer.exists(), "the old layer is collected");
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let pause_now = listed
        .iter()
        .find(|image| image.reference == "docker.io/orrery/pause:v1")
        .unwrap();
    assert_ne!(pause_now.id, pause.id, "pause moved to the new binary too");
    assert_eq!(store.get("orrery/pause:v1").unwrap().layers, second.layers);
}
