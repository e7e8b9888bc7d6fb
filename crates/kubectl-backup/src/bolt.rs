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

use std::collections::HashSet;

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

/// One key of a bucket; `value` is `None` for a nested bucket, as bbolt's
/// `Bucket.ForEach` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// A top-level bucket and its entries in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket<'a> {
    pub name: &'a [u8],
    pub entries: Vec<Entry<'a>>,
}

/// An open (borrowed) database image.
#[derive(Debug)]
pub struct Db<'a> {
    data: &'a [u8],
    pub meta: Meta,
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

/// Parses and validates the meta page starting at `offset` (bbolt `meta.validate`).
fn read_meta(data: &[u8], offset: usize) -> Result<Meta> {
    let flags = u16_at(data, offset + 8)?;
    ensure!(flags & META_PAGE != 0, "not a meta page (flags {flags:#x})");
    let m = offset + PAGE_HEADER;
    let magic = u32_at(data, m)?;
    ensure!(magic == MAGIC, "bad magic {magic:#x}");
    let version = u32_at(data, m + 4)?;
    ensure!(version == VERSION, "unsupported bbolt version {version}");
    let body = data
        .get(m..m + META_CHECKSUM_AT)
        .context("meta page truncated")?;
    let checksum = u64_at(data, m + META_CHECKSUM_AT)?;
    ensure!(fnv1a64(body) == checksum, "meta checksum mismatch");
    let page_size = u32_at(data, m + 8)? as usize;
    ensure!(
        page_size.is_power_of_two() && (512..=1 << 20).contains(&page_size),
        "implausible page size {page_size}"
    );
    Ok(Meta {
        page_size,
        root: u64_at(data, m + 16)?,
        freelist: u64_at(data, m + 32)?,
        pgid: u64_at(data, m + 40)?,
        txid: u64_at(data, m + 48)?,
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

impl<'a> Db<'a> {
    /// Opens a database image: picks the newest valid meta page.
    pub fn open(data: &'a [u8]) -> Result<Db<'a>> {
        ensure!(
            data.len() >= 2 * 512,
            "file too small to be a bbolt database ({} bytes)",
            data.len()
        );
        let first = read_meta(data, 0);
        // bbolt falls back to the OS page size when meta 0 is unreadable.
        let page_size = first.as_ref().map(|m| m.page_size).unwrap_or(4096);
        let second = read_meta(data, page_size);
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
            data.len() as u64 >= needed,
            "truncated: the database needs {needed} bytes ({} pages of {}) but the file holds {}",
            meta.pgid,
            meta.page_size,
            data.len()
        );
        Ok(Db { data, meta })
    }

    /// The database size bbolt reports (`Tx.Size`: high-water mark x page size).
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.meta.page_size as u64
    }

    fn page(&self, id: u64, seen: &mut HashSet<u64>) -> Result<Page<'a>> {
        ensure!(
            id >= 2 && id < self.meta.pgid,
            "page {id}: out of bounds (high-water mark {})",
            self.meta.pgid
        );
        let ps = self.meta.page_size;
        let start = id as usize * ps;
        let header = self
            .data
            .get(start..start + PAGE_HEADER)
            .with_context(|| format!("page {id}: beyond the end of the file"))?;
        let stored = u64_at(header, 0)?;
        ensure!(stored == id, "page {id}: header says it is page {stored}");
        let overflow = u64::from(u32_at(header, 12)?);
        ensure!(
            id + overflow < self.meta.pgid,
            "page {id}: overflow of {overflow} pages runs past the high-water mark"
        );
        for p in id..=id + overflow {
            ensure!(seen.insert(p), "page {p}: reachable twice");
        }
        let end = start + (overflow as usize + 1) * ps;
        let bytes = self
            .data
            .get(start..end)
            .with_context(|| format!("page {id}: beyond the end of the file"))?;
        Page::parse(bytes).with_context(|| format!("page {id}"))
    }

    /// Every top-level bucket with its entries in key order: what a cursor
    /// over the root bucket plus `Bucket.ForEach` on each would see.
    /// Walking checks the structure (bbolt `Tx.Check`'s page checks: bounds,
    /// page types, no page reached twice, keys in strictly increasing order).
    pub fn buckets(&self) -> Result<Vec<Bucket<'a>>> {
        let mut seen = HashSet::new();
        let mut roots = Vec::new();
        self.walk_tree(self.meta.root, &mut seen, &mut |flags, key, value| {
            ensure!(
                flags & BUCKET_LEAF_FLAG != 0,
                "the root bucket holds a plain key {:?}; a bbolt root holds only buckets",
                String::from_utf8_lossy(key)
            );
            roots.push((key, value));
            Ok(())
        })
        .context("walking the root bucket")?;
        let mut out = Vec::with_capacity(roots.len());
        for (name, header) in roots {
            let mut entries = Vec::new();
            self.walk_bucket(header, &mut seen, &mut |flags, key, value| {
                entries.push(Entry {
                    key,
                    value: (flags & BUCKET_LEAF_FLAG == 0).then_some(value),
                });
                Ok(())
            })
            .with_context(|| format!("bucket {:?}", String::from_utf8_lossy(name)))?;
            out.push(Bucket { name, entries });
        }
        Ok(out)
    }

    fn walk_bucket(
        &self,
        header: &'a [u8],
        seen: &mut HashSet<u64>,
        visit: &mut dyn FnMut(u32, &'a [u8], &'a [u8]) -> Result<()>,
    ) -> Result<()> {
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
            let mut last: Option<&[u8]> = None;
            return self.walk_leaf(page, &mut last, visit);
        }
        self.walk_tree(root, seen, visit)
    }

    fn walk_tree(
        &self,
        root: u64,
        seen: &mut HashSet<u64>,
        visit: &mut dyn FnMut(u32, &'a [u8], &'a [u8]) -> Result<()>,
    ) -> Result<()> {
        let mut last: Option<&[u8]> = None;
        self.walk_page(root, seen, &mut last, visit)
    }

    fn walk_page(
        &self,
        id: u64,
        seen: &mut HashSet<u64>,
        last: &mut Option<&'a [u8]>,
        visit: &mut dyn FnMut(u32, &'a [u8], &'a [u8]) -> Result<()>,
    ) -> Result<()> {
        let page = self.page(id, seen)?;
        if page.flags & BRANCH_PAGE != 0 {
            for i in 0..page.count {
                let (_, child) = page.branch(i).with_context(|| format!("page {id}"))?;
                self.walk_page(child, seen, last, visit)?;
            }
            Ok(())
        } else if page.flags & LEAF_PAGE != 0 {
            self.walk_leaf(page, last, visit)
                .with_context(|| format!("page {id}"))
        } else {
            bail!("page {id}: invalid type {:#x} inside a tree", page.flags)
        }
    }

    fn walk_leaf(
        &self,
        page: Page<'a>,
        last: &mut Option<&'a [u8]>,
        visit: &mut dyn FnMut(u32, &'a [u8], &'a [u8]) -> Result<()>,
    ) -> Result<()> {
        for i in 0..page.count {
            let (flags, key, value) = page.leaf(i)?;
            if let Some(prev) = last {
                ensure!(
                    *prev < key,
                    "keys out of order ({:?} before {:?})",
                    String::from_utf8_lossy(prev),
                    String::from_utf8_lossy(key)
                );
            }
            *last = Some(key);
            visit(flags, key, value)?;
        }
        Ok(())
    }
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
        let names: Vec<_> = buckets.iter().map(|b| b.name).collect();
        assert_eq!(names, vec![b"imeta".as_slice(), b"key".as_slice()]);
        assert_eq!(buckets[1].entries.len(), 2);
        assert_eq!(buckets[1].entries[1].key, b"b");
        assert_eq!(buckets[1].entries[1].value, Some(b"2".as_slice()));
        assert_eq!(buckets[0].entries[0].key, b"consistent_index");
    }

    #[test]
    fn walks_branch_pages_and_overflow_in_key_order() {
        let image = tree([4, 5]);
        assert_eq!(image.len(), 7 * PS);
        let db = Db::open(&image).unwrap();
        let buckets = db.buckets().unwrap();
        let keys: Vec<_> = buckets[0].entries.iter().map(|e| e.key).collect();
        assert_eq!(keys, [b"a0", b"a1", b"a2", b"b0"]);
        assert_eq!(buckets[0].entries[3].value.unwrap().len(), PS + 100);
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
        // Truncation.
        let err = Db::open(&image[..3 * PS]).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }
}
