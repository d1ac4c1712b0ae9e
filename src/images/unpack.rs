//! Unpacks one image layer (a tar, gzipped or not) into a directory the runtime stacks as an
//! overlay lowerdir, as containerd's overlayfs snapshotter applies a layer.
//!
//! OCI/Docker whiteouts become overlayfs's own: `.wh.<name>` is a character device 0:0 named
//! `<name>`, and `.wh..wh..opq` is the `trusted.overlay.opaque=y` attribute on its directory
//! (both need root). Ownership (as root), modes, mtimes, symlinks and hard links within the
//! layer are kept; device files are skipped without root. No entry may write outside the
//! directory: absolute names, `..` and paths through a symlink are refused. The sha256 of the
//! uncompressed stream is the layer's diff-id, which the caller checks against the config.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use sha2::{Digest, Sha256};

/// What went wrong unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive could not be read.
    #[error("reading the layer: {0}")]
    Read(#[source] io::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An entry would write outside the layer (`..`, an absolute name, a symlinked parent).
    #[error("layer entry {entry:?} refused: {reason}")]
    Unsafe {
        /// The entry's name in the archive.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// A whiteout or opaque directory could not be made (it needs root).
    #[error("cannot make the whiteout for {entry:?} (overlay whiteouts need root): {source}")]
    Whiteout {
        /// The entry's name in the archive.
        entry: String,
        /// The system's error.
        source: io::Error,
    },
    /// The layer is compressed with something other than gzip.
    #[error("unsupported layer compression (only gzip and plain tar are)")]
    Compression,
}

/// How to unpack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Running as root: keep ownership, make devices and whiteouts.
    pub(crate) root: bool,
}

impl Options {
    /// The options for this process.
    pub(crate) fn current() -> Options {
        Options {
            root: nix::unistd::geteuid().is_root(),
        }
    }
}

/// Unpacks the layer `reader` into the directory `dest` (which must exist) and returns its
/// diff-id (`sha256:<hex>` of the uncompressed tar).
pub(crate) fn unpack(
    reader: impl Read,
    dest: &Path,
    options: Options,
) -> Result<String, UnpackError> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let magic = buffered.fill_buf().map_err(UnpackError::Read)?;
    let stream: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(UnpackError::Compression);
    } else {
        Box::new(buffered)
    };
    let mut hashing = Hashing {
        inner: stream,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_preserve_ownerships(options.root);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            apply(&mut entry, dest, options)?;
        }
    }
    // The tar reader stops at the end-of-archive blocks; the diff-id covers every byte.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    Ok(format!("sha256:{:x}", hashing.hasher.finalize()))
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `name` as a path relative to the layer's root, refusing absolute names and `..`.
pub(crate) fn safe_relative(name: &Path) -> Result<PathBuf, UnpackError> {
    let mut relative = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(name, "absolute path"));
            }
            Component::ParentDir => return Err(unsafe_entry(name, "path contains `..`")),
        }
    }
    Ok(relative)
}

fn unsafe_entry(name: &Path, reason: &'static str) -> UnpackError {
    UnpackError::Unsafe {
        entry: name.display().to_string(),
        reason,
    }
}

fn write_error(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Makes sure every directory from `dest` down to `dest/relative` exists and none is a symlink
/// (which could point anywhere on the host).
pub(crate) fn ensure_dirs(dest: &Path, relative: &Path, name: &Path) -> Result<(), UnpackError> {
    let mut path = dest.to_owned();
    for part in relative.components() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(unsafe_entry(name, "a parent directory is a symlink"));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(unsafe_entry(name, "a parent is not a directory")),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(write_error(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(write_error(&path))?;
            }
            Err(error) => return Err(write_error(&path)(error)),
        }
    }
    Ok(())
}

/// Removes whatever is at `path` (a file, a link, a whole directory), if anything.
fn remove_any(path: &Path) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(write_error(path)),
        Ok(_) => fs::remove_file(path).map_err(write_error(path)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(write_error(path)(error)),
    }
}

fn apply<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    options: Options,
) -> Result<(), UnpackError> {
    let name = entry.path().map_err(UnpackError::Read)?.into_owned();
    let relative = safe_relative(&name)?;
    let Some(file_name) = relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        // The archive's root (`./`): the layer directory itself.
        return Ok(());
    };
    let parent = relative.parent().unwrap_or(Path::new(""));
    ensure_dirs(dest, parent, &name)?;
    let whiteout_error = |source| UnpackError::Whiteout {
        entry: name.display().to_string(),
        source,
    };
    if file_name == ".wh..wh..opq" {
        // An opaque directory: nothing below it in lower layers shows through.
        return xattr::set(dest.join(parent), "trusted.overlay.opaque", b"y")
            .map_err(whiteout_error);
    }
    if let Some(hidden) = file_name.strip_prefix(".wh.") {
        let target = dest.join(parent).join(hidden);
        remove_any(&target)?;
        return mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|errno| whiteout_error(io::Error::from(errno)));
    }
    let target = dest.join(&relative);
    let header = entry.header();
    let kind = header.entry_type();
    let existing = fs::symlink_metadata(&target).ok();
    if existing
        .as_ref()
        .is_some_and(|meta| !(meta.is_dir() && kind.is_dir()))
    {
        remove_any(&target)?;
    }
    match kind {
        tar::EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(UnpackError::Read)?
                .ok_or_else(|| unsafe_entry(&name, "hard link without a target"))?
                .into_owned();
            let link_relative = safe_relative(&link)?;
            let link_parent = link_relative.parent().unwrap_or(Path::new(""));
            ensure_dirs(dest, link_parent, &name)?;
            let source = dest.join(&link_relative);
            if fs::symlink_metadata(&source).is_err() {
                return Err(unsafe_entry(&name, "hard link to a file not in this layer"));
            }
            fs::hard_link(&source, &target).map_err(write_error(&target))
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let file_type = match kind {
                tar::EntryType::Char => SFlag::S_IFCHR,
                tar::EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            if file_type != SFlag::S_IFIFO && !options.root {
                tracing::debug!(entry = %name.display(), "device file skipped: not root");
                return Ok(());
            }
            let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            mknod(
                &target,
                file_type,
                Mode::from_bits_truncate(mode),
                makedev(u64::from(major), u64::from(minor)),
            )
            .map_err(|errno| write_error(&target)(io::Error::from(errno)))?;
            if options.root {
                let uid = header.uid().map_err(UnpackError::Read)?;
                let gid = header.gid().map_err(UnpackError::Read)?;
                std::os::unix::fs::lchown(&target, Some(uid as u32), Some(gid as u32))
                    .map_err(write_error(&target))?;
            }
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(write_error(&target))
        }
        _ => entry
            .unpack(&target)
            .map(drop)
            .map_err(write_error(&target)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    }

    /// A header whose name is written raw, so names `append_data` would refuse get through.
    fn raw_file(builder: &mut tar::Builder<Vec<u8>>, name: &str) {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
    }

    #[test]
    fn plain_files_links_and_modes_are_kept_and_the_diff_id_is_the_tar_sha256() {
        let tar = layer(|b| {
            file(b, "bin/busybox", b"binary", 0o755);
            let mut link = tar::Header::new_gnu();
            link.set_entry_type(tar::EntryType::Symlink);
            link.set_size(0);
            link.set_mode(0o777);
            b.append_link(&mut link, "bin/sh", "busybox").unwrap();
            let mut hard = tar::Header::new_gnu();
            hard.set_entry_type(tar::EntryType::Link);
            hard.set_size(0);
            hard.set_mode(0o755);
            b.append_link(&mut hard, "bin/ls", "bin/busybox").unwrap();
            file(b, "./etc/motd", b"hi\n", 0o600);
        });
        let dir = tempfile::tempdir().unwrap();
        let diff_id = unpack(&tar[..], dir.path(), Options { root: false }).unwrap();
        assert_eq!(diff_id, format!("sha256:{:x}", Sha256::digest(&tar)));
        let busybox = dir.path().join("bin/busybox");
        assert_eq!(fs::read(&busybox).unwrap(), b"binary");
        assert_eq!(fs::metadata(&busybox).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read_link(dir.path().join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let ls = fs::metadata(dir.path().join("bin/ls")).unwrap();
        assert_eq!(ls.ino(), fs::metadata(&busybox).unwrap().ino());
        assert_eq!(
            fs::metadata(dir.path().join("etc/motd")).unwrap().mode() & 0o7777,
            0o600
        );

        // The same layer gzipped has the same diff-id.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let again = tempfile::tempdir().unwrap();
        assert_eq!(
            unpack(&gz[..], again.path(), Options { root: false }).unwrap(),
            diff_id
        );
        assert_eq!(
            fs::read(again.path().join("bin/busybox")).unwrap(),
            b"binary"
        );
    }

    #[test]
    fn path_traversal_is_refused() {
        for name in ["../escape", "a/../../escape", "/etc/escape"] {
            let tar = layer(|b| raw_file(b, name));
            let dir = tempfile::tempdir().unwrap();
            let inner = dir.path().join("layer");
            fs::create_dir(&inner).unwrap();
            let error = unpack(&tar[..], &inner, Options { root: false }).unwrap_err();
            assert!(
                matches!(error, UnpackError::Unsafe { .. }),
                "{name}: {error}"
            );
            assert!(!dir.path().join("escape").exists());
        }
        // A symlink to outside, then a file through it.
        let outside = tempfile::tempdir().unwrap();
        let tar = layer(|b| {
            let mut link = tar::Header::new_gnu();
            link.set_entry_type(tar::EntryType::Symlink);
            link.set_size(0);
            b.append_link(&mut link, "evil", outside.path()).unwrap();
            file(b, "evil/planted", b"x", 0o644);
        });
        let dir = tempfile::tempdir().unwrap();
        let error = unpack(&tar[..], dir.path(), Options { root: false }).unwrap_err();
        assert!(matches!(error, UnpackError::Unsafe { .. }), "{error}");
        assert!(!outside.path().join("planted").exists());
        // A hard link to a host file.
        let tar = layer(|b| {
            let mut hard = tar::Header::new_gnu();
            hard.set_entry_type(tar::EntryType::Link);
            hard.set_size(0);
            b.append_link(&mut hard, "passwd", "../../../../etc/passwd")
                .unwrap();
        });
        let error = unpack(&tar[..], dir.path(), Options { root: false }).unwrap_err();
        assert!(matches!(error, UnpackError::Unsafe { .. }), "{error}");
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let tar = layer(|b| {
            file(b, "etc/.wh.removed", b"", 0o644);
            file(b, "var/cache/.wh..wh..opq", b"", 0o644);
            file(b, "var/cache/kept", b"k", 0o644);
        });
        let dir = tempfile::tempdir().unwrap();
        let result = unpack(&tar[..], dir.path(), Options::current());
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the whiteout half: not root (overlay whiteouts need mknod)");
            assert!(matches!(result, Err(UnpackError::Whiteout { .. })));
            return;
        }
        result.unwrap();
        let whiteout = fs::symlink_metadata(dir.path().join("etc/removed")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
        assert!(!dir.path().join("etc/.wh.removed").exists());
        assert_eq!(
            xattr::get(dir.path().join("var/cache"), "trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!dir.path().join("var/cache/.wh..wh..opq").exists());
        assert_eq!(fs::read(dir.path().join("var/cache/kept")).unwrap(), b"k");
    }
}
