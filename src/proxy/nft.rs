//! The effectful half of kube-proxy: hands nft scripts to the `nft` tool (`nft -f -`, the script
//! on stdin, one atomic transaction), optionally inside a named network namespace (`ip netns
//! exec`, for tests and benchmarks), and removes a cluster's tables.
//!
//! Why the tool and not a crate: the Rust nftables crates either wrap the same binary through
//! its JSON syntax (`nftables`), which is slower to produce and parse for 10,000 chains and no
//! more atomic, or speak raw netlink with an unstable, partly documented API (`rustables`).
//! `nft -f -` gives one kernel transaction per sync, the same text an operator reads with
//! `nft list table`, and error messages that point at the offending line.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::ProxyError;

/// The command that runs `nft` (in `netns` when given).
fn command(netns: Option<&str>) -> std::process::Command {
    match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => std::process::Command::new("nft"),
    }
}

/// The first lines of nft's complaint (it quotes the offending line of a long script).
fn complaint(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().take(6).collect();
    lines.join(" | ")
}

/// Applies `script` as one transaction (`nft -f -`): all of it or nothing.
pub async fn apply(script: &str, netns: Option<&str>) -> Result<(), ProxyError> {
    let mut command = tokio::process::Command::from(command(netns));
    command
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(spawn_error)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or(ProxyError::Io(std::io::Error::other("nft: no stdin")))?;
    let write = stdin.write_all(script.as_bytes());
    // Write while nft reads; a failure to write shows as nft's own error below.
    let _ = write.await;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(ProxyError::Io)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Apply(complaint(&out.stderr)))
    }
}

fn spawn_error(e: std::io::Error) -> ProxyError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ProxyError::NftMissing
    } else {
        ProxyError::Io(e)
    }
}

/// Whether the `nft` tool is there and works.
pub fn check_nft() -> Result<(), ProxyError> {
    let out = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .map_err(spawn_error)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Apply(complaint(&out.stderr)))
    }
}

/// The names of the `ip` tables (in `netns` when given).
pub fn list_tables(netns: Option<&str>) -> Result<Vec<String>, ProxyError> {
    let out = command(netns)
        .args(["list", "tables", "ip"])
        .output()
        .map_err(spawn_error)?;
    if !out.status.success() {
        return Err(ProxyError::Apply(complaint(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table ip "))
        .map(|n| n.trim().to_owned())
        .collect())
}

/// Deletes every `ip` table whose name starts with `prefix` (`orrery_<cluster>_`): what
/// `orrery down` and a start after a crash call. Returns the tables deleted.
pub fn remove_tables(prefix: &str) -> Result<Vec<String>, ProxyError> {
    remove_tables_in(prefix, None)
}

/// [`remove_tables`] inside network namespace `netns`.
pub fn remove_tables_in(prefix: &str, netns: Option<&str>) -> Result<Vec<String>, ProxyError> {
    if prefix.is_empty() {
        return Err(ProxyError::Config(
            "an empty table prefix would match every table".into(),
        ));
    }
    let tables: Vec<String> = list_tables(netns)?
        .into_iter()
        .filter(|t| t.starts_with(prefix))
        .collect();
    if tables.is_empty() {
        return Ok(tables);
    }
    let mut script = String::new();
    for t in &tables {
        script.push_str(&format!("delete table ip {t}\n"));
    }
    let mut child = command(netns)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(ProxyError::Io)?;
    if out.status.success() {
        Ok(tables)
    } else {
        Err(ProxyError::Apply(complaint(&out.stderr)))
    }
}
