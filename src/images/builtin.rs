//! The built-in images, generated offline from the `orrery` binary itself, so a cluster runs
//! its sample manifests with no registry at all.
//!
//! Both share one layer: `/orrery` (the binary), the shared libraries it runs with (every
//! shared object this process has mapped, from `/proc/self/maps`, with its soname symlink, and the binary's ELF
//! interpreter), each at its host path with the symlinks leading to it (`/lib64` →
//! `usr/lib64` on a merged-/usr host), `/etc/passwd` and `/etc/group` with root and nobody, and
//! an empty `/tmp`. `orrery/hello` runs `/orrery hello` (the HTTP server on 8080); `orrery/pause`
//! runs `/orrery pause` as 65535, as the upstream pause image does. The store keys the images
//! on the binary's size and modification time and regenerates them when it changes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
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

/// The ELF interpreter (`PT_INTERP`) of a 64-bit little-endian ELF binary, if it has one.
pub(crate) fn interpreter(binary: &Path) -> io::Result<Option<PathBuf>> {
    let mut file = File::open(binary)?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header)?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u64_at = |b: &[u8], at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 0x20),
        u64::from(u16_at(&header, 0x36)),
        u16_at(&header, 0x38),
    );
    for i in 0..u64::from(phnum) {
        let mut ph = [0u8; 56];
        file.seek(SeekFrom::Start(phoff + i * phentsize))?;
        file.read_exact(&mut ph)?;
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_INTERP {
            let (offset, size) = (u64_at(&ph, 8), u64_at(&ph, 32));
            let mut name = vec![0u8; size.min(4096) as usize];
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut name)?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            use std::os::unix::ffi::OsStrExt;
            return Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                &name[..end],
            ))));
        }
    }
    Ok(None)
}

/// The shared objects mapped into this process (`/proc/self/maps`).
pub(crate) fn mapped_libraries(maps: &str) -> Vec<PathBuf> {
    let mut libraries: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .map(PathBuf::from)
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().contains(".so"))
        })
        .collect();
    libraries.sort();
    libraries.dedup();
    libraries
}

/// The shorter names a versioned shared object goes by in its directory, longest first:
/// `libseccomp.so.2.5` and `libseccomp.so.2` for `libseccomp.so.2.5.4` (never the bare
/// `.so`, which only the linker uses).
pub(crate) fn soname_candidates(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let Some(at) = name.find(".so.") else {
        return Vec::new();
    };
    let mut candidates = Vec::new();
    let mut current = name.clone();
    while let Some(dot) = current.rfind('.')
        && dot > at + 3
    {
        current.truncate(dot);
        candidates.push(path.with_file_name(&current));
    }
    candidates
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
    let maps = fs::read_to_string("/proc/self/maps")?;
    let exe = fs::canonicalize(binary)?;
    let own_exe = fs::canonicalize("/proc/self/exe")?;
    let mut needed = mapped_libraries(&maps);
    needed.retain(|path| *path != exe && *path != own_exe);
    if let Some(interpreter) = interpreter(binary)? {
        needed.push(interpreter);
    }
    for path in &needed {
        add_host_path(&mut items, path, 0)?;
        // The loader looks a library up by its soname (`libseccomp.so.2`), a symlink beside
        // the versioned file the maps name (`libseccomp.so.2.5.4`).
        for alias in soname_candidates(path) {
            if fs::symlink_metadata(&alias).is_ok_and(|m| m.file_type().is_symlink()) {
                add_host_path(&mut items, &alias, 0)?;
            }
        }
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
    fn shared_objects_are_read_from_the_maps() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1 /work/target/debug/orrery
7f0000000000-7f0000001000 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000001000-7f0000002000 r--p 00001000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000003000-7f0000004000 rw-p 00000000 00:00 0
7f0000005000-7f0000006000 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0 [stack]
7f0000007000-7f0000008000 r--p 00000000 08:01 4 /usr/lib/locale/C.utf8/LC_CTYPE
";
        assert_eq!(
            mapped_libraries(maps),
            [
                PathBuf::from("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            ]
        );
    }

    #[test]
    fn versioned_libraries_bring_their_sonames() {
        assert_eq!(
            soname_candidates(Path::new("/usr/lib/libseccomp.so.2.5.4")),
            [
                PathBuf::from("/usr/lib/libseccomp.so.2.5"),
                PathBuf::from("/usr/lib/libseccomp.so.2"),
            ]
        );
        assert!(soname_candidates(Path::new("/usr/lib/libc.so.6")).is_empty());
        assert!(soname_candidates(Path::new("/usr/lib/ld-linux-x86-64.so.2")).is_empty());
    }

    #[test]
    fn this_binary_has_an_interpreter_that_exists() {
        let interpreter = interpreter(Path::new("/proc/self/exe")).unwrap();
        if let Some(path) = interpreter {
            assert!(path.is_absolute(), "{}", path.display());
            assert!(path.exists(), "{}", path.display());
        }
        let not_elf = tempfile::NamedTempFile::new().unwrap();
        fs::write(not_elf.path(), [b'#'; 64]).unwrap();
        assert_eq!(super::interpreter(not_elf.path()).unwrap(), None);
    }
}
