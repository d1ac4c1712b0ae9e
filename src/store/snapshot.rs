//! Store snapshots: every key and value at one revision, in one file, for `orrery store snapshot
//! save|restore` on either backend.
//!
//! The file format (version 1), all integers little-endian:
//!
//! ```text
//! magic      16 bytes   "orrery-snapshot\n"
//! version    u32        1
//! revision   u64        the store's revision the keys were read at
//! count      u64        how many keys follow
//! count times:
//!   key      u32 length, then the key's bytes (UTF-8; keys in ascending order, each once)
//!   value    u32 length, then the value's bytes (at most the store's 1.5 MiB)
//! checksum   32 bytes   SHA-256 of every byte before it
//! ```
//!
//! [`take`] reads the keys in pages at one revision (a consistent picture while the cluster
//! writes on); [`Snapshot::decode`] checks everything (magic, version, lengths, order, checksum)
//! before a restore touches the store, so a damaged file changes nothing. Restoring is
//! [`Store::restore`]: the snapshot's keys become the store's whole content at a new revision,
//! and history is compacted there.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{MAX_VALUE_BYTES, RangeRequest, Result, Revision, Store};

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 16] = b"orrery-snapshot\n";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// How many keys [`take`] reads per page.
const PAGE: usize = 1000;
/// The bytes a file has besides its keys: magic, version, revision, count and checksum.
const FRAME: usize = 16 + 4 + 8 + 8 + 32;
/// bbolt's magic number at the start of its meta page: an etcd snapshot (`etcdctl snapshot
/// save`) is a bbolt file.
const BBOLT_MAGIC: u32 = 0xED0C_DAED;

/// Every key and value of a store at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The revision the keys were read at.
    pub revision: Revision,
    /// The keys and values, in ascending key order.
    pub kvs: Vec<(String, Bytes)>,
}

/// Why a file is not a snapshot this code can restore. Nothing was changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// An etcd (bbolt) snapshot, made with `etcdctl snapshot save`.
    #[error(
        "this is an etcd snapshot (etcdctl snapshot save), not an Orrery one: restore it with \
         `etcdctl snapshot restore` into a new etcd data directory"
    )]
    Etcd,
    /// Not a snapshot at all.
    #[error(
        "not an Orrery store snapshot (it does not start with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    NotASnapshot,
    /// A later format.
    #[error("snapshot format version {0} is not supported (this orrery reads version {VERSION})")]
    Version(u32),
    /// The file ends early.
    #[error("the snapshot is truncated: {0}")]
    Truncated(String),
    /// The checksum does not match the content.
    #[error(
        "the snapshot is damaged: its SHA-256 checksum is {recorded} but its content's is \
         {computed}"
    )]
    Checksum {
        /// The checksum the file records.
        recorded: String,
        /// The checksum of the content.
        computed: String,
    },
    /// Well framed, but with content no store could have written.
    #[error("the snapshot is invalid: {0}")]
    Invalid(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Snapshot {
    /// The snapshot as a file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .kvs
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
            + FRAME;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            // Keys and values are bounded far below 4 GiB by the store.
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Reads a snapshot file's bytes, checking all of it.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        if bytes.len() >= 20
            && u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) == BBOLT_MAGIC
        {
            return Err(SnapshotError::Etcd);
        }
        if bytes.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
                SnapshotError::Truncated(format!("{} bytes, not even a header", bytes.len()))
            } else {
                SnapshotError::NotASnapshot
            });
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let mut reader = Reader {
            bytes,
            at: MAGIC.len(),
        };
        let version = reader.u32("the format version")?;
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let revision = reader.u64("the revision")?;
        let count = reader.u64("the key count")?;
        // The keys run over everything after the header; a whole file then has exactly its
        // 32-byte checksum left.
        let parsed = Self::entries(&mut reader, count);
        let left = bytes.len() - reader.at.min(bytes.len());
        let checksum_ok = || {
            bytes.len() >= FRAME
                && bytes[bytes.len() - 32..] == Sha256::digest(&bytes[..bytes.len() - 32])[..]
        };
        let damaged = || {
            let body = bytes.len().saturating_sub(32);
            SnapshotError::Checksum {
                recorded: hex(&bytes[body..]),
                computed: hex(&Sha256::digest(&bytes[..body])),
            }
        };
        match parsed {
            Err(truncated @ SnapshotError::Truncated(_)) => Err(truncated),
            Err(_) if !checksum_ok() => Err(damaged()),
            Err(invalid) => Err(invalid),
            Ok(_) if left < 32 => Err(SnapshotError::Truncated(format!(
                "its checksum needs 32 bytes after the last key, there are {left}"
            ))),
            Ok(_) if !checksum_ok() => Err(damaged()),
            Ok(_) if left > 32 => Err(SnapshotError::Invalid(format!(
                "{} bytes after the last key",
                left - 32
            ))),
            Ok(kvs) => Ok(Snapshot { revision, kvs }),
        }
    }

    fn entries(reader: &mut Reader<'_>, count: u64) -> Result<Vec<(String, Bytes)>, SnapshotError> {
        // Each key takes at least 8 bytes: a damaged count cannot make a huge allocation.
        let room = (reader.bytes.len() - reader.at) / 8;
        let mut kvs: Vec<(String, Bytes)> =
            Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(room));
        for index in 0..count {
            let what = |part: &str| format!("key {} of {count}: its {part}", index + 1);
            let key = reader.chunk(&what("key"))?;
            let key = std::str::from_utf8(key)
                .map_err(|_| SnapshotError::Invalid(format!("{} is not UTF-8", what("key"))))?
                .to_owned();
            if key.is_empty() {
                return Err(SnapshotError::Invalid(format!("{} is empty", what("key"))));
            }
            let value = reader.chunk(&what("value"))?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(SnapshotError::Invalid(format!(
                    "the value of {key:?} is {} bytes, over the store's {MAX_VALUE_BYTES}",
                    value.len()
                )));
            }
            if let Some((last, _)) = kvs.last()
                && last.as_str() >= key.as_str()
            {
                return Err(SnapshotError::Invalid(format!(
                    "keys out of order or repeated: {key:?} after {last:?}"
                )));
            }
            kvs.push((key, Bytes::copy_from_slice(value)));
        }
        Ok(kvs)
    }

    /// The SHA-256 checksum its file carries.
    pub fn checksum(bytes: &[u8]) -> Option<String> {
        (bytes.len() >= 32).then(|| hex(&bytes[bytes.len() - 32..]))
    }
}

/// A cursor over a file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], SnapshotError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                SnapshotError::Truncated(format!(
                    "{what} needs {n} bytes at offset {}, past the end",
                    self.at
                ))
            })?;
        let chunk = &self.bytes[self.at..end];
        self.at = end;
        Ok(chunk)
    }

    fn u32(&mut self, what: &str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    /// A length-prefixed chunk.
    fn chunk(&mut self, what: &str) -> Result<&[u8], SnapshotError> {
        let length = self.u32(what)? as usize;
        self.take(length, what)
    }
}

/// Reads every key of `store` at one revision (its current one), a page at a time.
pub async fn take(store: &dyn Store) -> Result<Snapshot> {
    let mut kvs = Vec::new();
    let mut request = RangeRequest {
        limit: Some(PAGE),
        ..RangeRequest::default()
    };
    let mut revision = None;
    // Each page moves past at least one key: bounded by the number of keys.
    loop {
        request.at_revision = revision;
        let page = store.range(&request).await?;
        revision = Some(page.revision);
        request.start_after = page.kvs.last().map(|kv| kv.key.clone());
        kvs.extend(page.kvs.into_iter().map(|kv| (kv.key, kv.value)));
        if !page.more || request.start_after.is_none() {
            break;
        }
    }
    Ok(Snapshot {
        revision: revision.unwrap_or_default(),
        kvs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            revision: 42,
            kvs: vec![
                (
                    "/registry/configmaps/default/a".into(),
                    Bytes::from("{\"a\":1}"),
                ),
                (
                    "/registry/pods/default/web".into(),
                    Bytes::from(vec![0u8, 1, 2, 255]),
                ),
                ("/registry/z".into(), Bytes::new()),
            ],
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let bytes = sample().encode();
        assert_eq!(&bytes[..16], MAGIC);
        assert_eq!(Snapshot::decode(&bytes), Ok(sample()));
        let empty = Snapshot::default().encode();
        assert_eq!(empty.len(), FRAME);
        assert_eq!(Snapshot::decode(&empty), Ok(Snapshot::default()));
        assert_eq!(
            Snapshot::checksum(&bytes).unwrap(),
            hex(&Sha256::digest(&bytes[..bytes.len() - 32]))
        );
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        let good = sample().encode();
        let check = |bytes: &[u8], want: &str| {
            let error = Snapshot::decode(bytes).unwrap_err().to_string();
            assert!(error.contains(want), "{want:?} not in {error:?}");
        };
        // Cut anywhere: truncated (or, inside the magic, not even a header).
        for cut in [0, 5, 16, 20, 40, 60, good.len() - 33, good.len() - 1] {
            let error = Snapshot::decode(&good[..cut]).unwrap_err();
            assert!(
                matches!(
                    error,
                    SnapshotError::Truncated(_) | SnapshotError::NotASnapshot
                ),
                "cut at {cut}: {error}"
            );
        }
        check(&good[..40], "truncated");
        check(&good[..good.len() - 1], "truncated");
        // One byte changed inside a value (the first value starts at 74): the checksum says so.
        let mut flipped = good.clone();
        flipped[75] ^= 1;
        check(&flipped, "damaged: its SHA-256 checksum is");
        check(
            b"hello, world, this is not a snapshot at all",
            "not an Orrery store snapshot",
        );
        check(b"", "not an Orrery store snapshot");
        // A later version.
        let mut later = good.clone();
        later[16..20].copy_from_slice(&2u32.to_le_bytes());
        check(
            &later,
            "version 2 is not supported (this orrery reads version 1)",
        );
        // An etcd snapshot: bbolt's meta page after its 16-byte page header.
        let mut bolt = vec![0u8; 4096];
        bolt[16..20].copy_from_slice(&BBOLT_MAGIC.to_le_bytes());
        check(&bolt, "etcdctl snapshot restore");
        // Well framed but out of order, re-checksummed.
        let unordered = Snapshot {
            revision: 1,
            kvs: vec![("/b".into(), Bytes::new()), ("/a".into(), Bytes::new())],
        };
        check(
            &unordered.encode(),
            "out of order or repeated: \"/a\" after \"/b\"",
        );
    }

    #[tokio::test]
    async fn take_reads_every_page_at_one_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        for i in 0..(PAGE + 5) {
            store
                .create(&format!("/k/{i:05}"), Bytes::from(i.to_string()))
                .await
                .unwrap();
        }
        let snapshot = take(&store).await.unwrap();
        assert_eq!(snapshot.kvs.len(), PAGE + 5);
        assert_eq!(snapshot.revision, store.current_revision().await.unwrap());
        assert_eq!(
            snapshot.kvs[PAGE + 4].1,
            Bytes::from((PAGE + 4).to_string())
        );
    }
}
