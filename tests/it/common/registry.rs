//! Images for tests with no internet, made with independent tools as CONTAINERS.md describes: a
//! real registry (Debian's `docker-registry`) on 127.0.0.1, and a busybox image built with
//! `umoci` from Debian's static busybox and pushed with `skopeo`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry` serving on 127.0.0.1; killed when dropped.
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub host: String,
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Registry {
    /// Starts a registry with its own storage on a free port and waits until it answers.
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry (Debian package docker-registry)");
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            _dir: dir,
            host,
        }
    }

    /// Builds a busybox image (every applet linked in /bin, `CMD ["sh"]`) with umoci and pushes
    /// it as `<host>/busybox:<tag>`; returns that reference.
    pub fn push_busybox(&self, tag: &str) -> String {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        run("umoci", &["init", "--layout", "oci"], dir);
        run("umoci", &["new", "--image", "oci:busybox"], dir);
        run(
            "umoci",
            &["unpack", "--image", "oci:busybox", "bundle"],
            dir,
        );
        let rootfs = dir.join("bundle/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox (Debian package busybox-static)");
        run(
            "chroot",
            &[
                rootfs.to_str().unwrap(),
                "/bin/busybox",
                "--install",
                "-s",
                "/bin",
            ],
            dir,
        );
        run(
            "umoci",
            &["repack", "--image", "oci:busybox", "bundle"],
            dir,
        );
        run(
            "umoci",
            &["config", "--image", "oci:busybox", "--config.cmd", "sh"],
            dir,
        );
        let reference = format!("{}/busybox:{tag}", self.host);
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                "oci:oci:busybox",
                &format!("docker://{reference}"),
            ],
            dir,
        );
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
