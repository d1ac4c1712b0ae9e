//! The test command must work on a fresh machine that has only Rust: every program the code and
//! the tests run, and every file `scripts/test` says a package is there for, must come from a
//! package `scripts/test` installs or from the fresh machine's base (`scripts/base-packages.txt`,
//! the package list of the machines CI and new users start from). A program a developer
//! installed by hand fails here, on their machine, instead of on a new user's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `(package, file)` pairs from the `needs` list of `scripts/test`.
fn needs() -> Vec<(String, String)> {
    needs_of("scripts/test")
}

/// `(package, file)` pairs from the `needs` list of `script` (`scripts/test`, `scripts/up`).
fn needs_of(script: &str) -> Vec<(String, String)> {
    let script = std::fs::read_to_string(Path::new(ROOT).join(script)).unwrap();
    let start = script
        .find("needs=(")
        .expect("the script declares needs=(...)");
    let end = start + script[start..].find("\n)").expect("needs=( ... ) ends");
    script[start..end]
        .lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix('"')?.strip_suffix('"')?;
            let (package, file) = line.split_once(' ')?;
            Some((package.to_owned(), file.to_owned()))
        })
        .collect()
}

fn base() -> BTreeSet<String> {
    std::fs::read_to_string(Path::new(ROOT).join("scripts/base-packages.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The programs the sources start by name: `Command::new("x")`, and the tests' `run("x", ...)`
/// and `stdout("x", ...)` helpers.
fn programs() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    rust_files(&Path::new(ROOT).join("tests"), &mut files);
    let mut programs = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for call in ["Command::new(", " run(", "(run(", " stdout("] {
            for (at, _) in text.match_indices(call) {
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                if text[line_start..at].trim_start().starts_with("//") {
                    continue;
                }
                let Some(rest) = text[at + call.len()..].trim_start().strip_prefix('"') else {
                    continue;
                };
                let name = &rest[..rest.find('"').unwrap_or(0)];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
                {
                    programs.insert(name.to_owned());
                }
            }
        }
    }
    programs
}

/// Where `program` is on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// The Debian package that installed `path` (following symlinks, and Debian's merged `/usr`).
fn owner(path: &Path) -> Option<String> {
    let mut candidates = vec![path.to_owned()];
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real);
    }
    for candidate in candidates.clone() {
        let text = candidate.to_string_lossy().into_owned();
        if let Some(rest) = text.strip_prefix("/usr") {
            candidates.push(PathBuf::from(rest));
        } else {
            candidates.push(PathBuf::from(format!("/usr{text}")));
        }
    }
    candidates.iter().find_map(|candidate| {
        let out = Command::new("dpkg-query")
            .arg("-S")
            .arg(candidate)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let package = text.lines().next()?.split(':').next()?.trim().to_owned();
        (out.status.success() && !package.is_empty()).then_some(package)
    })
}

#[test]
fn every_program_the_tests_run_is_installed_by_the_test_command() {
    let declared: BTreeSet<String> = needs().into_iter().map(|(p, _)| p).collect();
    let base = base();
    assert!(base.len() > 100, "scripts/base-packages.txt lists the base");
    let mut problems = Vec::new();
    let programs = programs();
    for program in ["kubectl", "etcd", "tmux", "ip", "umoci", "skopeo"] {
        assert!(
            programs.contains(program),
            "the scan finds {program}: {programs:?}"
        );
    }
    for program in &programs {
        let Some(path) = which(program) else {
            problems.push(format!("{program}: not on PATH"));
            continue;
        };
        match owner(&path) {
            Some(package) if declared.contains(&package) || base.contains(&package) => {}
            Some(package) => problems.push(format!(
                "{program} ({}) comes from {package}, which scripts/test does not install",
                path.display()
            )),
            None => problems.push(format!(
                "{program} ({}) comes from no Debian package",
                path.display()
            )),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The start command (`scripts/up`) installs what a running cluster needs; the test command must
/// install all of it too, or the tests would pass on a machine where `orrery up` cannot run.
#[test]
fn the_test_command_installs_everything_the_start_command_does() {
    let test = needs();
    let up = needs_of("scripts/up");
    assert!(
        up.iter().any(|(p, _)| p == "libseccomp-dev"),
        "scripts/up installs libseccomp-dev, which the build links against: {up:?}"
    );
    for need in &up {
        assert!(
            test.contains(need),
            "scripts/up needs {need:?}, which scripts/test does not install"
        );
    }
}

#[test]
fn every_needed_file_is_there_from_its_package() {
    let needs = needs();
    assert!(
        needs
            .iter()
            .any(|(p, f)| p == "libprotobuf-dev" && f.ends_with("descriptor.proto")),
        "the etcd feature's protoc needs Google's well-known .proto files"
    );
    for (package, file) in needs {
        assert!(
            Path::new(&file).exists(),
            "{file} (from {package}) is missing: run bash scripts/test"
        );
        assert_eq!(
            owner(Path::new(&file)).as_deref(),
            Some(package.as_str()),
            "{file} should come from {package}"
        );
    }
}
