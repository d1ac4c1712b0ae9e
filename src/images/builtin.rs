//! The built-in images, generated offline from the `orrery` binary itself, so a cluster runs
//! its sample manifests with no registry at all.
//!
//! Both share one layer: `/orrery` (the binary), the shared libraries it runs with (its ELF
//! interpreter and the `DT_NEEDED` closure, found as the dynamic loader finds them, soname
//! symlinks kept), each at its host path with the symlinks leading to it (`/lib64` →
//! `usr/lib64` on a merged-/usr host), `/etc/passwd` and `/etc/group` with root and nobody, and
//! an empty `/tmp`. `orrery/hello` runs `/orrery hello` (the HTTP server on 8080); `orrery/pause`
//! runs `/orrery pause` as 65535, as the upstream pause image does. The store keys the images
//! on the binary's size and modification time and regenerates them when it changes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::reference::Builtin;

/// The `PATH` the built-in images set.
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What identifies the binary's content: its size and modification time.
pub(crate) fn source_key(binary: &Path) -> io::Result<String> {
    let meta = fs::metadata(binary)?;
    Ok(format!(
        "size={} mtime={}.{:09}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

/// One entry of the layer.
#[derive(Debug)]
enum Item {
    Dir(u32),
    File { source: PathBuf, mode: u32 },
    Symlink(PathBuf),
    Data(Vec<u8>),
}

/// What the dynamic loader reads of an ELF object: its interpreter (`PT_INTERP`), the shared
/// objects it names (`DT_NEEDED`) and where it says to look for them (`DT_RUNPATH`, or the older
/// `DT_RPATH`). Parsed with the `object` crate, through a read cache: the binary is hundreds of
/// MB with its debug information, of which only the headers are read.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Dynamic {
    pub interpreter: Option<PathBuf>,
    pub needed: Vec<String>,
    pub runpath: Vec<String>,
}

/// The dynamic entries of the 64-bit ELF file at `path`; an empty [`Dynamic`] for a file that is
/// not one (a script, a static binary has no entries either).
pub(crate) fn dynamic(path: &Path) -> io::Result<Dynamic> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let invalid = |e: object::read::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let cache = object::ReadCache::new(File::open(path)?);
    let Ok(elf) = ElfFile64::<object::Endianness, _>::parse(&cache) else {
        return Ok(Dynamic::default());
    };
    let endian = elf.endian();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut found = Dynamic::default();
    for header in elf.elf_program_headers() {
        if let Some(name) = header.interpreter(endian, &cache).map_err(invalid)? {
            found.interpreter = Some(PathBuf::from(text(name)));
        }
    }
    let table = elf
        .elf_section_table()
        .dynamic_table(endian, &cache)
        .map_err(invalid)?;
    for entry in &table {
        let value = || table.string(entry).map(text).map_err(invalid);
        match entry.tag {
            object::elf::DT_NEEDED => found.needed.push(value()?),
            object::elf::DT_RUNPATH | object::elf::DT_RPATH => found.runpath.extend(
                value()?
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    Ok(found)
}

/// Where the loader looks for a library no `DT_RUNPATH` finds: the directories
/// `/etc/ld.so.conf.d` lists, then the multiarch and the plain `lib` directories.
fn system_library_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut confs: Vec<PathBuf> = fs::read_dir("/etc/ld.so.conf.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    confs.sort();
    for conf in confs {
        let text = fs::read_to_string(&conf).unwrap_or_default();
        dirs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| l.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    for base in ["/lib", "/usr/lib"] {
        dirs.push(Path::new(base).join(&triple));
    }
    dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(PathBuf::from));
    dirs
}

/// Every shared object `binary` needs to run, as the loader would find them: its `DT_NEEDED`
/// names and theirs in turn, each looked up in the needing object's `DT_RUNPATH` (`$ORIGIN`
/// expanded) and then in `system`; plus the interpreter. The paths are as found (a soname
/// symlink such as `libseccomp.so.2`, which the image keeps with what it points to).
pub(crate) fn needed_libraries(binary: &Path, system: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let own = dynamic(binary)?;
    let mut found: Vec<PathBuf> = own.interpreter.iter().cloned().collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = vec![(binary.to_owned(), own)];
    while let Some((object, entries)) = queue.pop() {
        let origin = object.parent().unwrap_or(Path::new("/")).to_owned();
        let mut dirs: Vec<PathBuf> = entries
            .runpath
            .iter()
            .map(|d| {
                PathBuf::from(
                    d.replace("${ORIGIN}", "$ORIGIN")
                        .replace("$ORIGIN", &origin.to_string_lossy()),
                )
            })
            .collect();
        dirs.extend_from_slice(system);
        for name in entries.needed {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(path) = dirs.iter().map(|d| d.join(&name)).find(|p| p.exists()) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} needs {name}, which is in none of {}",
                        object.display(),
                        dirs.iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            let entries = dynamic(&path)?;
            found.push(path.clone());
            queue.push((path, entries));
        }
    }
    Ok(found)
}

/// Lexically resolves `.` and `..` in an absolute path.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out
}

/// Adds the host file `path` with every directory and symlink on the way to it.
fn add_host_path(items: &mut BTreeMap<PathBuf, Item>, path: &Path, depth: u32) -> io::Result<()> {
    if depth > 40 {
        return Err(io::Error::other(format!(
            "{}: too many levels of symbolic links",
            path.display()
        )));
    }
    let parts: Vec<_> = lexical(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_owned()),
            _ => None,
        })
        .collect();
    let mut current = PathBuf::from("/");
    for (i, part) in parts.iter().enumerate() {
        current.push(part);
        let relative = current.strip_prefix("/").unwrap_or(&current).to_owned();
        let meta = fs::symlink_metadata(&current)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&current)?;
            items.insert(relative, Item::Symlink(target.clone()));
            let mut next = current.parent().unwrap_or(Path::new("/")).join(target);
            for rest in &parts[i + 1..] {
                next.push(rest);
            }
            return add_host_path(items, &next, depth + 1);
        }
        if i + 1 < parts.len() || meta.is_dir() {
            items
                .entry(relative)
                .or_insert(Item::Dir(meta.permissions().mode() & 0o7777));
        } else {
            items.insert(
                relative,
                Item::File {
                    source: current.clone(),
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
        }
    }
    Ok(())
}

/// When the built-in images were made: the binary's modification time.
pub(crate) fn created(binary: &Path) -> io::Result<jiff::Timestamp> {
    let mtime = fs::metadata(binary)?.mtime();
    Ok(jiff::Timestamp::from_second(mtime).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Writes the built-in layer (an uncompressed tar) from `binary` to `out`.
pub(crate) fn write_layer(binary: &Path, out: &Path) -> io::Result<()> {
    let meta = fs::metadata(binary)?;
    let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
    let mut items = BTreeMap::new();
    items.insert(
        PathBuf::from("orrery"),
        Item::File {
            source: binary.to_owned(),
            mode: 0o755,
        },
    );
    for path in needed_libraries(binary, &system_library_dirs())? {
        add_host_path(&mut items, &path, 0)?;
    }
    items.insert(PathBuf::from("etc"), Item::Dir(0o755));
    items.insert(
        PathBuf::from("etc/passwd"),
        Item::Data(
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                .to_vec(),
        ),
    );
    items.insert(
        PathBuf::from("etc/group"),
        Item::Data(b"root:x:0:\nnobody:x:65534:\n".to_vec()),
    );
    items.insert(PathBuf::from("tmp"), Item::Dir(0o1777));

    let mut builder = tar::Builder::new(BufWriter::new(File::create(out)?));
    for (path, item) in &items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::Dir(mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder.append_data(&mut header, path, io::empty())?;
            }
            Item::File { source, mode } => {
                let file = File::open(source)?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(file.metadata()?.len());
                builder.append_data(&mut header, path, file)?;
            }
            Item::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
            Item::Data(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, &data[..])?;
            }
        }
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

/// The image config of a built-in image whose one layer has diff-id `layer`.
pub(crate) fn config(kind: Builtin, layer: &str, created: jiff::Timestamp) -> Vec<u8> {
    let entrypoint = kind.entrypoint();
    let extra = match kind {
        Builtin::Hello => serde_json::json!({"ExposedPorts": {"8080/tcp": {}}}),
        Builtin::Pause => serde_json::json!({"User": "65535:65535"}),
    };
    let mut runtime = serde_json::json!({
        "Entrypoint": entrypoint,
        "Env": [PATH],
        "WorkingDir": "/",
    });
    if let (Some(runtime), Some(extra)) = (runtime.as_object_mut(), extra.as_object()) {
        runtime.extend(extra.clone());
    }
    serde_json::json!({
        "created": created.to_string(),
        "architecture": super::go_arch(),
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [layer]},
        "history": [{
            "created": created.to_string(),
            "created_by": format!("orrery: the built-in {} image, from the orrery binary", kind.repository()),
        }],
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_needs_libc_and_its_interpreter_found_where_they_are() {
        let exe = fs::canonicalize("/proc/self/exe").unwrap();
        let own = dynamic(&exe).unwrap();
        let interpreter = own
            .interpreter
            .clone()
            .expect("a dynamically linked test binary");
        assert!(
            interpreter.is_absolute() && interpreter.exists(),
            "{interpreter:?}"
        );
        assert!(own.needed.iter().any(|n| n == "libc.so.6"), "{own:?}");
        let libraries = needed_libraries(&exe, &system_library_dirs()).unwrap();
        assert_eq!(libraries[0], interpreter);
        assert!(
            libraries
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n == "libc.so.6") && p.exists()),
            "{libraries:?}"
        );
        // Nowhere to look: the need is named in the error.
        let error = needed_libraries(&exe, &[]).unwrap_err();
        assert!(error.to_string().contains("needs lib"), "{error}");
        let not_elf = tempfile::NamedTempFile::new().unwrap();
        fs::write(not_elf.path(), [b'#'; 64]).unwrap();
        assert_eq!(dynamic(not_elf.path()).unwrap(), Dynamic::default());
    }
}
