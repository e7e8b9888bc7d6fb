//! A small, read-only reader of bbolt database files: the format of an etcd
//! snapshot (go.etcd.io/bbolt `page.go`, `node.go`, `bucket.go`, `db.go`).
//!
//! Why not a crate: the one published Rust bbolt port (`bbolt-rs`) is a whole
//! read-write engine with file locking and states no license; `snapshot
//! status` needs only to walk the pages of an untrusted file, with every
//! offset bounds-checked, so that a corrupted file is an error, never a panic.
//!
//! Layout (all integers little-endian, as bbolt writes them on amd64/arm64):
//! - every page starts with a 16-byte header: `id u64, flags u16, count u16,
//!   overflow u32`; a page spans `overflow + 1` pages.
//! - pages 0 and 1 are meta pages: `magic u32, version u32, pageSize u32,
//!   flags u32, root bucket {root u64, sequence u64}, freelist u64, pgid u64,
//!   txid u64, checksum u64` (FNV-1a 64 over the bytes before the checksum);
//!   the valid meta with the higher txid is the current one (`db.meta()`).
//! - branch elements: `pos u32, ksize u32, pgid u64`; leaf elements: `flags
//!   u32, pos u32, ksize u32, vsize u32`; `pos` is relative to the element.
//! - a leaf value flagged as a bucket is a bucket header `{root u64, sequence
//!   u64}`; with `root == 0` the bucket is inline: its page follows the header.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use anyhow::{Context as _, Result, bail, ensure};

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const BUCKET_LEAF_FLAG: u32 = 0x01;
/// Offset of the checksum inside the meta (bbolt `meta.sum64`).
const META_CHECKSUM_AT: usize = 56;
/// The largest page run (a page and its overflow) read at once. etcd's values
/// are bounded by `--max-request-bytes` (1.5 MiB by default), so a real
/// snapshot never comes near it; a corrupted overflow count cannot make the
/// reader allocate the whole file.
const MAX_RUN: u64 = 64 << 20;

/// Where the database bytes come from: memory (tests, small files) or a
/// file read page by page, so a multi-gigabyte snapshot is walked in
/// bounded memory.
pub trait Source {
    /// Bytes of the database (the appended digest excluded).
    fn byte_len(&self) -> u64;
    /// Fills `buf` from `offset`; an error past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

impl Source for [u8] {
    fn byte_len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).context("offset overflows")?;
        let src = self
            .get(start..start + buf.len())
            .with_context(|| format!("read past the end at byte {offset}"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A database file read with positioned reads, `len` bytes of it.
#[derive(Debug)]
pub struct FileSource {
    pub file: File,
    pub len: u64,
}

impl Source for FileSource {
    fn byte_len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        ensure!(
            offset.saturating_add(buf.len() as u64) <= self.len,
            "read past the end at byte {offset}"
        );
        self.file
            .read_exact_at(buf, offset)
            .with_context(|| format!("could not read {} bytes at {offset}", buf.len()))
    }
}

/// The current meta page of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: usize,
    pub root: u64,
    pub freelist: u64,
    /// The high-water mark: the number of pages in use.
    pub pgid: u64,
    pub txid: u64,
}

/// What a walk reports, in order: each top-level bucket, then its entries in
/// key order (`value` is `None` for a nested bucket, as bbolt's
/// `Bucket.ForEach` reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit<'p> {
    Bucket(&'p [u8]),
    Entry {
        key: &'p [u8],
        value: Option<&'p [u8]>,
    },
}

/// A bucket and its (key, value) entries, copied out of the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedBucket {
    pub name: Vec<u8>,
    pub entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// An open database over a [`Source`].
#[derive(Debug)]
pub struct Db<S: Source + ?Sized> {
    pub meta: Meta,
    src: Box<S>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    let s = b
        .get(at..at + 2)
        .with_context(|| format!("read past the end at byte {at}"))?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    let s = b
        .get(at..at + 4)
        .with_context(|| format!("read past the end at byte {at}"))?;
    Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    let s = b
        .get(at..at + 8)
        .with_context(|| format!("read past the end at byte {at}"))?;
    Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// FNV-1a, 64 bit (Go's `hash/fnv.New64a`), which bbolt uses for meta checksums.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses and validates a meta page (bbolt `meta.validate`).
fn read_meta(page: &[u8]) -> Result<Meta> {
    let flags = u16_at(page, 8)?;
    ensure!(flags & META_PAGE != 0, "not a meta page (flags {flags:#x})");
    let m = PAGE_HEADER;
    let magic = u32_at(page, m)?;
    ensure!(magic == MAGIC, "bad magic {magic:#x}");
    let version = u32_at(page, m + 4)?;
    ensure!(version == VERSION, "unsupported bbolt version {version}");
    let body = page
        .get(m..m + META_CHECKSUM_AT)
        .context("meta page truncated")?;
    let checksum = u64_at(page, m + META_CHECKSUM_AT)?;
    ensure!(fnv1a64(body) == checksum, "meta checksum mismatch");
    let page_size = u32_at(page, m + 8)? as usize;
    ensure!(
        page_size.is_power_of_two() && (512..=1 << 20).contains(&page_size),
        "implausible page size {page_size}"
    );
    Ok(Meta {
        page_size,
        root: u64_at(page, m + 16)?,
        freelist: u64_at(page, m + 32)?,
        pgid: u64_at(page, m + 40)?,
        txid: u64_at(page, m + 48)?,
    })
}

/// A page view: its header fields and its bytes (all overflow pages included).
#[derive(Debug, Clone, Copy)]
struct Page<'a> {
    flags: u16,
    count: usize,
    bytes: &'a [u8],
}

impl<'a> Page<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Page<'a>> {
        Ok(Page {
            flags: u16_at(bytes, 8)?,
            count: usize::from(u16_at(bytes, 10)?),
            bytes,
        })
    }

    /// The `i`th leaf element: (flags, key, value).
    fn leaf(&self, i: usize) -> Result<(u32, &'a [u8], &'a [u8])> {
        let at = PAGE_HEADER + i * ELEMENT;
        let flags = u32_at(self.bytes, at)?;
        let pos = u32_at(self.bytes, at + 4)? as usize;
        let ksize = u32_at(self.bytes, at + 8)? as usize;
        let vsize = u32_at(self.bytes, at + 12)? as usize;
        let start = at.checked_add(pos).context("element offset overflows")?;
        let key = self
            .bytes
            .get(start..start + ksize)
            .context("leaf key lies outside its page")?;
        let value = self
            .bytes
            .get(start + ksize..start + ksize + vsize)
            .context("leaf value lies outside its page")?;
        Ok((flags, key, value))
    }

    /// The `i`th branch element: (key, child page id).
    fn branch(&self, i: usize) -> Result<(&'a [u8], u64)> {
        let at = PAGE_HEADER + i * ELEMENT;
        let pos = u32_at(self.bytes, at)? as usize;
        let ksize = u32_at(self.bytes, at + 4)? as usize;
        let child = u64_at(self.bytes, at + 8)?;
        let start = at.checked_add(pos).context("element offset overflows")?;
        let key = self
            .bytes
            .get(start..start + ksize)
            .context("branch key lies outside its page")?;
        Ok((key, child))
    }
}

/// Pages already reached, one bit each: a page reached twice is corruption
/// (and would make the walk loop forever).
struct Seen(Vec<u64>);

impl Seen {
    fn new(pages: u64) -> Seen {
        Seen(vec![0; (pages / 64 + 1) as usize])
    }
    /// Marks `p`; false if it was marked already.
    fn insert(&mut self, p: u64) -> bool {
        let (w, b) = ((p / 64) as usize, p % 64);
        let fresh = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        fresh
    }
}

/// One walk's state: pages reached, and the previous key of the tree being
/// walked (keys must strictly increase).
struct Walk<'v> {
    seen: Seen,
    last: Option<Vec<u8>>,
    visit: &'v mut LeafVisitor<'v>,
}

/// Called with each leaf element: (flags, key, value).
type LeafVisitor<'v> = dyn FnMut(u32, &[u8], &[u8]) -> Result<()> + 'v;

impl Db<[u8]> {
    /// Opens an in-memory database image.
    pub fn open(data: &[u8]) -> Result<Db<[u8]>> {
        Db::open_source(Box::<[u8]>::from(data))
    }
}

impl Db<FileSource> {
    /// Opens the first `len` bytes of `file` as a database, read page by page.
    pub fn open_file(file: File, len: u64) -> Result<Db<FileSource>> {
        Db::open_source(Box::new(FileSource { file, len }))
    }
}

impl<S: Source + ?Sized> Db<S> {
    /// Opens a database: picks the newest valid meta page.
    pub fn open_source(src: Box<S>) -> Result<Db<S>> {
        let len = src.byte_len();
        ensure!(
            len >= 2 * 512,
            "file too small to be a bbolt database ({len} bytes)"
        );
        let head = |offset: u64| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; 512];
            src.read_at(offset, &mut buf)?;
            Ok(buf)
        };
        let first = head(0).and_then(|p| read_meta(&p));
        // bbolt falls back to the OS page size when meta 0 is unreadable.
        let page_size = first.as_ref().map(|m| m.page_size).unwrap_or(4096);
        let second = head(page_size as u64).and_then(|p| read_meta(&p));
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(a), Err(b)) => {
                bail!("not a valid bbolt database: meta page 0: {a:#}; meta page 1: {b:#}")
            }
        };
        let needed = meta.pgid.saturating_mul(meta.page_size as u64);
        ensure!(
            len >= needed,
            "truncated: the database needs {needed} bytes ({} pages of {}) but the file holds {len}",
            meta.pgid,
            meta.page_size,
        );
        Ok(Db { meta, src })
    }

    /// The database size bbolt reports (`Tx.Size`: high-water mark x page size).
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.meta.page_size as u64
    }

    /// Reads page `id` with its overflow pages, marking each as reached.
    fn page(&self, id: u64, seen: &mut Seen) -> Result<Vec<u8>> {
        ensure!(
            id >= 2 && id < self.meta.pgid,
            "page {id}: out of bounds (high-water mark {})",
            self.meta.pgid
        );
        let ps = self.meta.page_size as u64;
        let start = id * ps;
        let mut header = [0u8; PAGE_HEADER];
        self.src
            .read_at(start, &mut header)
            .with_context(|| format!("page {id}: beyond the end of the file"))?;
        let stored = u64_at(&header, 0)?;
        ensure!(stored == id, "page {id}: header says it is page {stored}");
        let overflow = u64::from(u32_at(&header, 12)?);
        ensure!(
            id + overflow < self.meta.pgid,
            "page {id}: overflow of {overflow} pages runs past the high-water mark"
        );
        let run = (overflow + 1) * ps;
        ensure!(
            run <= MAX_RUN,
            "page {id}: an overflow of {overflow} pages is implausible for etcd"
        );
        for p in id..=id + overflow {
            ensure!(seen.insert(p), "page {p}: reachable twice");
        }
        let mut bytes = vec![0u8; run as usize];
        self.src
            .read_at(start, &mut bytes)
            .with_context(|| format!("page {id}: beyond the end of the file"))?;
        Ok(bytes)
    }

    /// Visits every top-level bucket and its entries in key order: what a
    /// cursor over the root bucket plus `Bucket.ForEach` on each would see.
    /// Walking checks the structure (bbolt `Tx.Check`'s page checks: bounds,
    /// page types, no page reached twice, keys in strictly increasing order).
    /// Memory: one page per tree level, and one bit per page.
    pub fn walk(&self, visit: &mut dyn FnMut(Visit<'_>) -> Result<()>) -> Result<()> {
        let mut roots: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut collect = |flags: u32, key: &[u8], value: &[u8]| {
            ensure!(
                flags & BUCKET_LEAF_FLAG != 0,
                "the root bucket holds a plain key {:?}; a bbolt root holds only buckets",
                String::from_utf8_lossy(key)
            );
            roots.push((key.to_vec(), value.to_vec()));
            Ok(())
        };
        let mut w = Walk {
            seen: Seen::new(self.meta.pgid),
            last: None,
            visit: &mut collect,
        };
        self.walk_page(self.meta.root, &mut w)
            .context("walking the root bucket")?;
        let mut seen = w.seen;
        for (name, header) in &roots {
            visit(Visit::Bucket(name))?;
            let mut entry = |flags: u32, key: &[u8], value: &[u8]| {
                visit(Visit::Entry {
                    key,
                    value: (flags & BUCKET_LEAF_FLAG == 0).then_some(value),
                })
            };
            let mut w = Walk {
                seen,
                last: None,
                visit: &mut entry,
            };
            self.walk_bucket(header, &mut w)
                .with_context(|| format!("bucket {:?}", String::from_utf8_lossy(name)))?;
            seen = w.seen;
        }
        Ok(())
    }

    /// Every bucket with its entries, owned (for tests and small files).
    pub fn buckets(&self) -> Result<Vec<OwnedBucket>> {
        let mut out: Vec<OwnedBucket> = Vec::new();
        self.walk(&mut |v| {
            match v {
                Visit::Bucket(name) => out.push(OwnedBucket {
                    name: name.to_vec(),
                    entries: Vec::new(),
                }),
                Visit::Entry { key, value } => out
                    .last_mut()
                    .context("an entry before any bucket")?
                    .entries
                    .push((key.to_vec(), value.map(<[u8]>::to_vec))),
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn walk_bucket(&self, header: &[u8], w: &mut Walk<'_>) -> Result<()> {
        ensure!(
            header.len() >= BUCKET_HEADER,
            "bucket header of {} bytes",
            header.len()
        );
        let root = u64_at(header, 0)?;
        if root == 0 {
            // An inline bucket: its single leaf page follows the header.
            let page = Page::parse(&header[BUCKET_HEADER..]).context("inline bucket")?;
            ensure!(
                page.flags & LEAF_PAGE != 0,
                "inline bucket page has flags {:#x}",
                page.flags
            );
            return walk_leaf(page, w);
        }
        self.walk_page(root, w)
    }

    fn walk_page(&self, id: u64, w: &mut Walk<'_>) -> Result<()> {
        let bytes = self.page(id, &mut w.seen)?;
        let page = Page::parse(&bytes).with_context(|| format!("page {id}"))?;
        if page.flags & BRANCH_PAGE != 0 {
            for i in 0..page.count {
                let (_, child) = page.branch(i).with_context(|| format!("page {id}"))?;
                self.walk_page(child, w)?;
            }
            Ok(())
        } else if page.flags & LEAF_PAGE != 0 {
            walk_leaf(page, w).with_context(|| format!("page {id}"))
        } else {
            bail!("page {id}: invalid type {:#x} inside a tree", page.flags)
        }
    }
}

fn walk_leaf(page: Page<'_>, w: &mut Walk<'_>) -> Result<()> {
    for i in 0..page.count {
        let (flags, key, value) = page.leaf(i)?;
        if let Some(prev) = &w.last {
            ensure!(
                prev.as_slice() < key,
                "keys out of order ({:?} before {:?})",
                String::from_utf8_lossy(prev),
                String::from_utf8_lossy(key)
            );
        }
        w.last = Some(key.to_vec());
        (w.visit)(flags & BUCKET_LEAF_FLAG, key, value)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testdb {
    //! Builds small bbolt images by hand, for tests.
    use super::*;

    pub const PS: usize = 4096;

    fn put_page_header(buf: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
        buf[0..8].copy_from_slice(&id.to_le_bytes());
        buf[8..10].copy_from_slice(&flags.to_le_bytes());
        buf[10..12].copy_from_slice(&count.to_le_bytes());
        buf[12..16].copy_from_slice(&overflow.to_le_bytes());
    }

    /// A leaf page body with the given (flags, key, value) elements.
    pub fn leaf(id: u64, elems: &[(u32, Vec<u8>, Vec<u8>)], size: usize) -> Vec<u8> {
        let needed = PAGE_HEADER
            + elems.len() * ELEMENT
            + elems
                .iter()
                .map(|(_, k, v)| k.len() + v.len())
                .sum::<usize>();
        let mut buf = vec![0u8; size.max(needed)];
        put_page_header(&mut buf, id, LEAF_PAGE, elems.len() as u16, 0);
        let mut data_at = PAGE_HEADER + elems.len() * ELEMENT;
        for (i, (flags, k, v)) in elems.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let pos = (data_at - at) as u32;
            buf[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            buf[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
            buf[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            buf[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            buf[data_at..data_at + k.len()].copy_from_slice(k);
            data_at += k.len();
            buf[data_at..data_at + v.len()].copy_from_slice(v);
            data_at += v.len();
        }
        buf
    }

    fn meta(id: u64, root: u64, pgid: u64, txid: u64) -> Vec<u8> {
        let mut buf = vec![0u8; PS];
        put_page_header(&mut buf, id, META_PAGE, 0, 0);
        let m = PAGE_HEADER;
        buf[m..m + 4].copy_from_slice(&MAGIC.to_le_bytes());
        buf[m + 4..m + 8].copy_from_slice(&VERSION.to_le_bytes());
        buf[m + 8..m + 12].copy_from_slice(&(PS as u32).to_le_bytes());
        buf[m + 16..m + 24].copy_from_slice(&root.to_le_bytes());
        buf[m + 32..m + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        buf[m + 40..m + 48].copy_from_slice(&pgid.to_le_bytes());
        buf[m + 48..m + 56].copy_from_slice(&txid.to_le_bytes());
        let sum = fnv1a64(&buf[m..m + META_CHECKSUM_AT]);
        buf[m + 56..m + 64].copy_from_slice(&sum.to_le_bytes());
        buf
    }

    /// A database with `buckets`: the root leaf on page 2, one leaf page per
    /// non-inline bucket after it; buckets named with a leading `i` are inline.
    /// A bucket to build: its name and (key, value) pairs.
    pub type Spec<'a> = (&'a str, Vec<(Vec<u8>, Vec<u8>)>);

    pub fn build(buckets: &[Spec<'_>]) -> Vec<u8> {
        let mut pages: Vec<Vec<u8>> = Vec::new();
        let mut root_elems = Vec::new();
        let mut next = 3u64;
        for (name, entries) in buckets {
            let elems: Vec<(u32, Vec<u8>, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| (0, k.clone(), v.clone()))
                .collect();
            let mut header = vec![0u8; BUCKET_HEADER];
            if name.starts_with('i') {
                header.extend(leaf(0, &elems, 0));
            } else {
                header[0..8].copy_from_slice(&next.to_le_bytes());
                pages.push(leaf(next, &elems, PS));
                next += 1;
            }
            root_elems.push((BUCKET_LEAF_FLAG, name.as_bytes().to_vec(), header));
        }
        let mut db = meta(0, 2, next, 1);
        db.extend(meta(1, 2, next, 2));
        db.extend(leaf(2, &root_elems, PS));
        for p in pages {
            db.extend(p);
        }
        db
    }

    /// A database whose one bucket `key` is a two-level tree: a branch page
    /// (3) over two leaves (4, and 5 whose big value spills into an overflow
    /// page 6). `children` overrides the branch's child page ids.
    pub fn tree(children: [u64; 2]) -> Vec<u8> {
        let first: Vec<(u32, Vec<u8>, Vec<u8>)> = (0..3)
            .map(|i| (0, format!("a{i}").into_bytes(), vec![b'v'; 100]))
            .collect();
        let big = vec![b'B'; PS + 100];
        let second = vec![(0, b"b0".to_vec(), big)];
        let mut branch = vec![0u8; PS];
        put_page_header(&mut branch, 3, BRANCH_PAGE, 2, 0);
        let keys: [&[u8]; 2] = [b"a0", b"b0"];
        let mut data_at = PAGE_HEADER + 2 * ELEMENT;
        for (i, key) in keys.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            branch[at..at + 4].copy_from_slice(&((data_at - at) as u32).to_le_bytes());
            branch[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
            branch[at + 8..at + 16].copy_from_slice(&children[i].to_le_bytes());
            branch[data_at..data_at + key.len()].copy_from_slice(key);
            data_at += key.len();
        }
        let mut overflowing = leaf(5, &second, 2 * PS);
        overflowing[12..16].copy_from_slice(&1u32.to_le_bytes());
        let mut header = vec![0u8; BUCKET_HEADER];
        header[0..8].copy_from_slice(&3u64.to_le_bytes());
        let root = leaf(2, &[(BUCKET_LEAF_FLAG, b"key".to_vec(), header)], PS);
        let mut db = meta(0, 2, 7, 1);
        db.extend(meta(1, 2, 7, 2));
        db.extend(root);
        db.extend(branch);
        db.extend(leaf(4, &first, PS));
        db.extend(overflowing);
        db
    }
}

#[cfg(test)]
mod tests {
    use super::testdb::*;
    use super::*;

    fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn walks_plain_and_inline_buckets_in_order() {
        let image = build(&[
            ("imeta", vec![kv("consistent_index", "x")]),
            ("key", vec![kv("a", "1"), kv("b", "2")]),
        ]);
        let db = Db::open(&image).unwrap();
        assert_eq!(db.meta.txid, 2, "the newer meta wins");
        assert_eq!(db.size(), 4 * PS as u64);
        let buckets = db.buckets().unwrap();
        let names: Vec<_> = buckets.iter().map(|b| b.name.as_slice()).collect();
        assert_eq!(names, vec![b"imeta".as_slice(), b"key".as_slice()]);
        assert_eq!(buckets[1].entries.len(), 2);
        assert_eq!(buckets[1].entries[1], (b"b".to_vec(), Some(b"2".to_vec())));
        assert_eq!(buckets[0].entries[0].0, b"consistent_index");
    }

    #[test]
    fn walks_branch_pages_and_overflow_in_key_order() {
        let image = tree([4, 5]);
        assert_eq!(image.len(), 7 * PS);
        let db = Db::open(&image).unwrap();
        let buckets = db.buckets().unwrap();
        let keys: Vec<_> = buckets[0].entries.iter().map(|e| e.0.as_slice()).collect();
        assert_eq!(keys, [b"a0", b"a1", b"a2", b"b0"]);
        assert_eq!(buckets[0].entries[3].1.as_ref().unwrap().len(), PS + 100);
        // A branch that points at the same page twice, or past the end.
        let err = Db::open(&tree([4, 4])).unwrap().buckets().unwrap_err();
        assert!(format!("{err:#}").contains("reachable twice"), "{err:#}");
        let err = Db::open(&tree([4, 9])).unwrap().buckets().unwrap_err();
        assert!(format!("{err:#}").contains("out of bounds"), "{err:#}");
        // A branch that points into the middle of an overflow run.
        let err = Db::open(&tree([4, 6])).unwrap().buckets().unwrap_err();
        assert!(format!("{err:#}").contains("header says"), "{err:#}");
    }

    #[test]
    fn a_damaged_meta_falls_back_to_the_other() {
        let mut image = build(&[("key", vec![kv("a", "1")])]);
        image[PS + PAGE_HEADER + 20] ^= 0xff; // meta 1 (newer) root pgid
        let db = Db::open(&image).unwrap();
        assert_eq!(db.meta.txid, 1);
        assert_eq!(db.buckets().unwrap().len(), 1);
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let image = build(&[("key", vec![kv("a", "1"), kv("b", "2")])]);
        // Both metas broken.
        let mut both = image.clone();
        both[PAGE_HEADER] ^= 1;
        both[PS + PAGE_HEADER] ^= 1;
        let err = Db::open(&both).unwrap_err();
        assert!(format!("{err:#}").contains("not a valid bbolt database"));
        // A page header that names another page.
        let mut wrong_id = image.clone();
        wrong_id[3 * PS] = 9;
        let err = Db::open(&wrong_id).unwrap().buckets().unwrap_err();
        assert!(format!("{err:#}").contains("header says"), "{err:#}");
        // Keys out of order.
        let mut swapped = image.clone();
        let at = 3 * PS + PAGE_HEADER + 2 * ELEMENT;
        swapped[at] = b'c'; // "a" becomes "c", now after "b"
        let err = Db::open(&swapped).unwrap().buckets().unwrap_err();
        assert!(format!("{err:#}").contains("out of order"), "{err:#}");
        // Every single-byte flip anywhere either errors or still walks.
        for i in (0..image.len()).step_by(7) {
            let mut flipped = image.clone();
            flipped[i] ^= 0x5a;
            if let Ok(db) = Db::open(&flipped) {
                let _ = db.buckets();
            }
        }
        // The same image read from a file, page by page, walks the same.
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &image).unwrap();
        let from_file = Db::open_file(f, image.len() as u64).unwrap();
        assert_eq!(
            from_file.buckets().unwrap(),
            Db::open(&image).unwrap().buckets().unwrap()
        );
        // Truncation.
        let err = Db::open(&image[..3 * PS]).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }
}
