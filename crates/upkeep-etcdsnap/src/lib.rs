//! What an etcd snapshot file is, and how to check one: pure functions over
//! its bytes.
//!
//! A snapshot (`etcdctl snapshot save`, or `kubectl backup etcd save`) is the
//! member's bbolt database followed by the sha256 of that database: the
//! server streams the database, then one last message holding the digest
//! (etcd `server/etcdserver/api/v3rpc/maintenance.go` `Snapshot`).

pub mod bolt;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};
use serde::Serialize;
use sha2::{Digest, Sha256};

use bolt::{Db, Source, Visit};

/// Length of the digest appended to a snapshot.
pub const SHA256_LEN: usize = 32;

/// Whether a file of `len` bytes carries the appended digest: a bbolt file is
/// a whole number of pages, so the remainder modulo 512 is the digest
/// (etcd `etcdutl/snapshot/v3_snapshot.go` `hasChecksum`).
pub fn has_checksum(len: u64) -> bool {
    len % 512 == SHA256_LEN as u64
}

/// How the file's integrity was established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Integrity {
    /// The appended sha256 matches the database.
    Verified { sha256: String },
    /// No digest appended (a `member/snap/db` copied from a data directory).
    NoChecksum,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a snapshot into its database and checks the appended digest,
/// as `etcdutl snapshot restore` does before it touches anything
/// (`copyAndVerifyDB`). A mismatch is an error naming both digests.
pub fn verify_checksum(file: &[u8]) -> Result<(&[u8], Integrity)> {
    if !has_checksum(file.len() as u64) {
        return Ok((file, Integrity::NoChecksum));
    }
    let (db, stored) = file.split_at(file.len() - SHA256_LEN);
    let integrity = check_digest(stored, &Sha256::digest(db))?;
    Ok((db, integrity))
}

/// What `etcdutl snapshot status` reports, plus what we checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// crc32 (Castagnoli) over every bucket name, key and value, in order.
    pub hash: u32,
    /// The main revision of the newest key revision in the `key` bucket.
    pub revision: i64,
    /// Entries over all buckets (etcdutl counts them all, not only `key`).
    pub total_key: u64,
    /// The database size (pages in use x page size).
    pub total_size: u64,
    /// Entries per bucket (`key` holds one entry per key revision).
    pub buckets: BTreeMap<String, u64>,
    pub integrity: Integrity,
    /// Bytes in the file (database + appended digest).
    pub file_size: u64,
}

/// One key of etcd's `key` bucket: 8-byte big-endian main revision, `_`,
/// 8-byte sub revision, and a trailing `t` for a deletion (etcd
/// `server/storage/mvcc/revision.go` `BytesToRev`).
pub fn revision_of(key: &[u8]) -> Result<i64> {
    ensure!(
        key.len() >= 17 && key[8] == b'_',
        "the key bucket holds a malformed revision key {}",
        hex(key)
    );
    Ok(i64::from_be_bytes(key[0..8].try_into().expect("8 bytes")))
}

/// Checks a snapshot held in memory and computes its status, matching
/// `etcdutl snapshot status` (see [`status_of_db`]).
pub fn status(file: &[u8]) -> Result<SnapshotStatus> {
    let (db_bytes, integrity) = verify_checksum(file)?;
    let db = Db::open(db_bytes).context("the snapshot is not a readable etcd database")?;
    status_of_db(&db, integrity, file.len() as u64)
}

/// Checks a snapshot file in bounded memory: one sequential pass for the
/// sha256, then a page-by-page walk of the database (a few pages and one bit
/// per page held at a time), so an 8 GB snapshot needs megabytes, not
/// gigabytes. Names what is wrong when the path is not a snapshot at all (a
/// directory, a device such as /dev/null, an empty file).
pub fn status_of_file(path: &Path) -> Result<SnapshotStatus> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("could not read {}", path.display()))?;
    ensure!(!meta.is_dir(), "it is a directory, not a snapshot file");
    ensure!(
        meta.is_file(),
        "it is not a regular file (a device or a pipe), so it holds no snapshot"
    );
    ensure!(meta.len() > 0, "the file is empty (0 bytes)");
    let len = meta.len();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let integrity = if has_checksum(len) {
        let db_len = len - SHA256_LEN as u64;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = db_len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            file.read_exact(&mut buf[..want])
                .with_context(|| format!("could not read {}", path.display()))?;
            hasher.update(&buf[..want]);
            left -= want as u64;
        }
        let mut stored = [0u8; SHA256_LEN];
        file.read_exact(&mut stored)
            .with_context(|| format!("could not read {}", path.display()))?;
        check_digest(&stored, &hasher.finalize())?
    } else {
        Integrity::NoChecksum
    };
    let db_len = match integrity {
        Integrity::Verified { .. } => len - SHA256_LEN as u64,
        Integrity::NoChecksum => len,
    };
    let db = Db::open_file(file, db_len).context("the snapshot is not a readable etcd database")?;
    status_of_db(&db, integrity, len)
}

fn check_digest(stored: &[u8], actual: &[u8]) -> Result<Integrity> {
    if actual != stored {
        bail!(
            "the snapshot is corrupted: its appended sha256 is {} but the data hashes to {} \
             (the file was changed or damaged after it was saved; take a new snapshot or use another copy)",
            hex(stored),
            hex(actual)
        );
    }
    Ok(Integrity::Verified {
        sha256: hex(actual),
    })
}

/// The status of an open database, matching `etcdutl snapshot status`
/// (`etcdutl/snapshot/v3_snapshot.go` `Status`): a crc32c over each bucket's
/// name, then each key and value in order; the revision from the last key of
/// `key`; every entry of every bucket counted.
pub fn status_of_db<S: Source + ?Sized>(
    db: &Db<S>,
    integrity: Integrity,
    file_size: u64,
) -> Result<SnapshotStatus> {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut digest = crc.digest();
    let mut revision = 0;
    let mut total_key = 0;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut current: Option<String> = None;
    db.walk(&mut |v| {
        match v {
            Visit::Bucket(name) => {
                digest.update(name);
                let name = String::from_utf8_lossy(name).into_owned();
                counts.insert(name.clone(), 0);
                current = Some(name);
            }
            Visit::Entry { key, value } => {
                digest.update(key);
                if let Some(v) = value {
                    digest.update(v);
                }
                let bucket = current.as_deref().unwrap_or_default();
                if bucket == "key" {
                    revision = revision_of(key)?;
                }
                total_key += 1;
                *counts.entry(bucket.to_string()).or_default() += 1;
            }
        }
        Ok(())
    })
    .context("the snapshot failed its integrity check")?;
    ensure!(
        counts.contains_key("key"),
        "the file is a bbolt database but not an etcd one: it has no `key` bucket"
    );
    Ok(SnapshotStatus {
        hash: digest.finalize(),
        revision,
        total_key,
        total_size: db.size(),
        buckets: counts,
        integrity,
        file_size,
    })
}

/// Reassembles a snapshot from the Maintenance API's messages: data chunks
/// down to `remaining_bytes == 0`, then exactly one message with the sha256
/// of everything before it.
#[derive(Debug, Default)]
pub struct Assembler {
    hasher: Sha256,
    data_bytes: u64,
    data_done: bool,
    digest: Option<Vec<u8>>,
}

/// What to do with one received message.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Database bytes: write them.
    Data,
    /// The trailing digest, verified: write it too.
    Digest,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts one message; errors on a digest mismatch or a stream shape
    /// etcd never sends.
    pub fn push(&mut self, blob: &[u8], remaining: u64) -> Result<Chunk> {
        if self.digest.is_some() {
            bail!("the server sent data after the snapshot's checksum");
        }
        if !self.data_done {
            self.hasher.update(blob);
            self.data_bytes += blob.len() as u64;
            if remaining == 0 {
                self.data_done = true;
            }
            return Ok(Chunk::Data);
        }
        ensure!(
            blob.len() == SHA256_LEN,
            "the snapshot stream ended with {} bytes where a sha256 was expected",
            blob.len()
        );
        let actual = self.hasher.clone().finalize();
        if actual.as_slice() != blob {
            bail!(
                "the snapshot received does not match the checksum etcd sent (sent {}, received data hashes to {}): \
                 the transfer was damaged; run save again",
                hex(blob),
                hex(&actual)
            );
        }
        self.digest = Some(blob.to_vec());
        Ok(Chunk::Digest)
    }

    /// The verified digest once the stream has ended; an error if it ended early.
    pub fn finish(&self) -> Result<String> {
        match &self.digest {
            Some(d) => Ok(hex(d)),
            None if self.data_done => {
                bail!("the snapshot stream ended without the trailing sha256 checksum")
            }
            None => bail!(
                "the snapshot stream ended early after {} bytes (the server closed it before remaining_bytes reached 0)",
                self.data_bytes
            ),
        }
    }

    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::bolt::testdb;
    use super::*;

    fn rev_key(main: i64, sub: i64) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend(sub.to_be_bytes());
        k
    }

    fn snapshot_of(db: &[u8]) -> Vec<u8> {
        let mut file = db.to_vec();
        file.extend(Sha256::digest(db));
        file
    }

    fn sample_db() -> Vec<u8> {
        testdb::build(&[
            ("imeta", vec![(b"consistent_index".to_vec(), vec![0, 7])]),
            (
                "key",
                vec![
                    (rev_key(2, 0), b"v-a".to_vec()),
                    (rev_key(3, 0), b"v-b".to_vec()),
                ],
            ),
        ])
    }

    #[test]
    fn checksum_shape_follows_etcd() {
        assert!(has_checksum(4096 * 3 + 32));
        assert!(!has_checksum(4096 * 3));
        assert!(!has_checksum(4096 * 3 + 31));
    }

    #[test]
    fn status_matches_etcdutl_rules() {
        let db = sample_db();
        let st = status(&snapshot_of(&db)).unwrap();
        assert_eq!(st.revision, 3);
        assert_eq!(st.total_key, 3, "entries of every bucket count");
        assert_eq!(st.buckets["key"], 2);
        assert_eq!(st.total_size, 4 * 4096);
        assert!(matches!(st.integrity, Integrity::Verified { .. }));
        // The crc32c, written out by hand in etcdutl's order: bucket names
        // sorted ("imeta" < "key"), each followed by its keys and values.
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let mut d = crc.digest();
        d.update(b"imeta");
        d.update(b"consistent_index");
        d.update(&[0, 7]);
        d.update(b"key");
        d.update(&rev_key(2, 0));
        d.update(b"v-a");
        d.update(&rev_key(3, 0));
        d.update(b"v-b");
        assert_eq!(st.hash, d.finalize());
        // crc32c's published check value, so the table is really Castagnoli.
        assert_eq!(crc.checksum(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_file_reads_as_the_same_bytes_do_and_non_snapshots_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("snap.db");
        let bytes = snapshot_of(&sample_db());
        std::fs::write(&good, &bytes).unwrap();
        assert_eq!(status_of_file(&good).unwrap(), status(&bytes).unwrap());
        let why = |p: &Path| format!("{:#}", status_of_file(p).unwrap_err());
        assert!(why(dir.path()).contains("directory"));
        assert!(why(Path::new("/dev/null")).contains("not a regular file"));
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        assert!(why(&empty).contains("empty"));
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, b"hello, not a database\n".repeat(100)).unwrap();
        assert!(why(&garbage).contains("not a readable etcd database"));
        let mut flipped = bytes.clone();
        flipped[3 * 4096 + 100] ^= 0xff;
        let bad = dir.path().join("bad.db");
        std::fs::write(&bad, &flipped).unwrap();
        assert!(why(&bad).contains("corrupted"));
    }

    #[test]
    fn a_raw_db_has_no_checksum_but_still_reads() {
        let st = status(&sample_db()).unwrap();
        assert_eq!(st.integrity, Integrity::NoChecksum);
        assert_eq!(st.revision, 3);
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let mut file = snapshot_of(&sample_db());
        file[3 * 4096 + 100] ^= 0xff;
        let err = status(&file).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("snapshot is corrupted"), "{msg}");
        assert!(msg.contains("appended sha256"), "{msg}");
    }

    #[test]
    fn malformed_revision_keys_are_reported() {
        let db = testdb::build(&[("key", vec![(b"short".to_vec(), vec![])])]);
        let err = status(&snapshot_of(&db)).unwrap_err();
        assert!(format!("{err:#}").contains("malformed revision key"));
        let db = testdb::build(&[("other", vec![])]);
        let err = status(&snapshot_of(&db)).unwrap_err();
        assert!(format!("{err:#}").contains("no `key` bucket"));
    }

    #[test]
    fn assembler_accepts_etcds_stream_and_checks_the_digest() {
        let data = b"0123456789abcdef".repeat(10);
        let digest = Sha256::digest(&data);
        let mut a = Assembler::new();
        assert_eq!(a.push(&data[..100], 60).unwrap(), Chunk::Data);
        assert_eq!(a.push(&data[100..], 0).unwrap(), Chunk::Data);
        assert_eq!(a.push(&digest, 0).unwrap(), Chunk::Digest);
        assert_eq!(a.finish().unwrap(), hex(&digest));
        assert!(a.push(b"more", 0).is_err());

        let mut bad = Assembler::new();
        bad.push(&data, 0).unwrap();
        let mut wrong = digest.to_vec();
        wrong[0] ^= 1;
        let err = bad.push(&wrong, 0).unwrap_err();
        assert!(format!("{err:#}").contains("does not match"));

        let mut short = Assembler::new();
        short.push(&data[..10], 150).unwrap();
        assert!(format!("{:#}", short.finish().unwrap_err()).contains("ended early"));
        let mut no_digest = Assembler::new();
        no_digest.push(&data, 0).unwrap();
        assert!(format!("{:#}", no_digest.finish().unwrap_err()).contains("without the trailing"));
    }
}
