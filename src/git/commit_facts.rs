//! A cache of commit facts (generation number, commit time, parents) for commits outside git's
//! commit-graph, kept across processes, so that a walk of [`super::generation`] reads each such
//! commit once per repository instead of once per process.
//!
//! Contract:
//! - **What it holds.** One file, `<git-common-dir>/hybrid/commit-facts.bin`
//!   ([`crate::names::commit_facts`]): a header record, then fixed-size records `(commit id,
//!   generation, commit time, up to two parent ids)`, each with its own CRC-32. Facts about a
//!   commit id never change (the id fixes the commit and so its whole history), so the cache
//!   cannot go stale, only be incomplete: a commit not found is read from the object store as
//!   before. Commits with more than two parents are not kept (read each time; rare).
//! - **Derived and disposable.** Deleting the file loses nothing but time. It is read at most once
//!   per process and thread ([`Facts::open`], one `read` of at most [`READ_CAP`] bytes);
//!   anything that does not parse (wrong magic or version, a bad checksum, a record cut short)
//!   is ignored record by record, never trusted.
//! - **Writers** ([`Facts::append`]) hold `<state>/locks/commit-facts.lock` (a `flock`; a writer
//!   that finds it busy for ~10 ms drops its records, never waits longer: a later process adds
//!   them). Under the lock a writer
//!   either appends whole records with one `write` to the end of the file (first padding a
//!   torn tail, left by a writer killed mid-write, to a record boundary with zeros, which never
//!   pass the checksum), or, when the unsorted tail would exceed [`TAIL_MAX`] records, rewrites
//!   the file through [`crate::fsutil::write_atomic_with`] (temporary file + rename): valid
//!   records only, one per id, those the commit-graph now holds dropped, sorted by id, at most
//!   [`MAX_RECORDS`] (the highest generations kept). Nothing ever truncates or rewrites the file
//!   in place, so a reader (which holds no lock) sees an old file or a complete new one, plus at
//!   most a partly written last record, which fails its checksum or is cut short.
//! - **Lookups**: records `1..=sorted` (the header says how many) are sorted by id and found by
//!   binary search; the tail after them (appends since the last rewrite) is indexed once at
//!   open. Each found record's checksum is checked before it is used.
//! - **Trust**: the file lives in the git directory, like the commit-graph (which git, libgit2
//!   and [`super::generation`] read without checking it against the commits): anyone who can
//!   write there can make ancestry answers wrong, as they can by writing a commit-graph
//!   (sandboxed agents can write the object store, commit-graph included, but not
//!   `<git-common-dir>/hybrid/` outside their run folder). The checksums catch torn and
//!   damaged records, not planted ones; a planted lock holder only keeps the cache incomplete. Sizes are capped ([`READ_CAP`]),
//!   the file must be a regular file, and a walk over planted facts still ends (every walk
//!   marks what it visited).
//! - SHA-1 repositories only (the walk needs a SHA-1 commit-graph).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use git2::Oid;

/// Bytes per record (the header is one record too).
pub const RECORD: usize = 80;
/// Records appended after the last rewrite at most; the append that would exceed it rewrites.
pub const TAIL_MAX: usize = 1024;
/// Records a rewrite keeps at most (the highest generations): 5 MiB.
pub const MAX_RECORDS: usize = 65_536;
/// The largest file read; a larger one (planted, or from a future version) is ignored and
/// rewritten by the next writer.
pub const READ_CAP: u64 = ((MAX_RECORDS + TAIL_MAX + 1 + 256) * RECORD) as u64;

/// Tries of the writers' lock, 2 ms apart, before a writer drops its records.
const LOCK_TRIES: usize = 5;
const MAGIC: &[u8; 8] = b"GHFACTS\0";
const VERSION: u32 = 1;
/// The largest generation number a record may hold (git's commit-graph limit).
const GENERATION_MAX: u32 = gix_commitgraph::GENERATION_NUMBER_MAX;

/// The facts about one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    pub id: Oid,
    /// Topological level, as git's commit-graph stores it (roots are 1).
    pub generation: u32,
    /// Committer time, seconds since the epoch.
    pub time: i64,
    pub parents: Vec<Oid>,
}

impl Fact {
    /// The record of this fact, or None when it cannot be kept (more than two parents, a
    /// generation out of range).
    pub fn encode(&self) -> Option<[u8; RECORD]> {
        if self.parents.len() > 2 || !(1..=GENERATION_MAX).contains(&self.generation) {
            return None;
        }
        let mut r = [0u8; RECORD];
        r[0..20].copy_from_slice(self.id.as_bytes());
        for (i, p) in self.parents.iter().enumerate() {
            r[20 + 20 * i..40 + 20 * i].copy_from_slice(p.as_bytes());
        }
        r[60] = self.parents.len() as u8;
        r[64..68].copy_from_slice(&self.generation.to_le_bytes());
        r[68..76].copy_from_slice(&self.time.to_le_bytes());
        let crc = crc32fast::hash(&r[..76]);
        r[76..80].copy_from_slice(&crc.to_le_bytes());
        Some(r)
    }

    /// The fact a record holds, or None when the record is damaged (checksum, padding, counts).
    pub fn decode(r: &[u8]) -> Option<Fact> {
        let r: &[u8; RECORD] = r.try_into().ok()?;
        let crc = u32::from_le_bytes(r[76..80].try_into().ok()?);
        if crc32fast::hash(&r[..76]) != crc || r[61..64] != [0, 0, 0] {
            return None;
        }
        let n = usize::from(r[60]);
        let generation = u32::from_le_bytes(r[64..68].try_into().ok()?);
        if n > 2 || !(1..=GENERATION_MAX).contains(&generation) || r[20 + 20 * n..60].iter().any(|b| *b != 0) {
            return None;
        }
        let id = Oid::from_bytes(&r[0..20]).ok()?;
        if id.is_zero() {
            return None;
        }
        let parents = (0..n).map(|i| Oid::from_bytes(&r[20 + 20 * i..40 + 20 * i])).collect::<Result<Vec<_>, _>>();
        Some(Fact { id, generation, time: i64::from_le_bytes(r[68..76].try_into().ok()?), parents: parents.ok()? })
    }
}

/// The header record: magic, version, how many records after it are sorted by id.
fn header(sorted: usize) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0..8].copy_from_slice(MAGIC);
    r[8..12].copy_from_slice(&VERSION.to_le_bytes());
    r[12..16].copy_from_slice(&u32::try_from(sorted).unwrap_or(0).to_le_bytes());
    let crc = crc32fast::hash(&r[..76]);
    r[76..80].copy_from_slice(&crc.to_le_bytes());
    r
}

/// The sorted count a header record holds, or None when it is not a valid header.
fn read_header(r: &[u8]) -> Option<usize> {
    let r: &[u8; RECORD] = r.get(..RECORD)?.try_into().ok()?;
    let crc = u32::from_le_bytes(r[76..80].try_into().ok()?);
    if &r[0..8] != MAGIC || crc32fast::hash(&r[..76]) != crc {
        return None;
    }
    if u32::from_le_bytes(r[8..12].try_into().ok()?) != VERSION || r[16..76].iter().any(|b| *b != 0) {
        return None;
    }
    usize::try_from(u32::from_le_bytes(r[12..16].try_into().ok()?)).ok()
}

/// One process's view of the cache file, as read once.
pub struct Facts {
    path: PathBuf,
    lock: PathBuf,
    /// The file's whole records (header first); empty when there is no usable file.
    data: Vec<u8>,
    /// Records after the header sorted by id.
    sorted: usize,
    /// Where each valid tail record is (record index; the last one of an id).
    tail: HashMap<Oid, usize>,
}

impl Facts {
    /// Reads the cache of the repository whose common git directory is `common_dir` (an empty
    /// cache when the file is missing, unreadable or not a cache).
    pub fn open(common_dir: &Path) -> Facts {
        let state = crate::names::state_dir(common_dir);
        let path = crate::names::commit_facts(&state);
        let lock = crate::names::commit_facts_lock(&state);
        let mut data = crate::fsutil::read_regular_capped(&path, READ_CAP).unwrap_or_default();
        let Some(sorted) = read_header(&data) else {
            return Facts { path, lock, data: Vec::new(), sorted: 0, tail: HashMap::new() };
        };
        data.truncate(data.len() / RECORD * RECORD);
        let records = data.len() / RECORD - 1;
        let sorted = sorted.min(records);
        let mut tail = HashMap::new();
        for i in 1 + sorted..=records {
            if let Some(f) = Fact::decode(&data[i * RECORD..(i + 1) * RECORD]) {
                tail.insert(f.id, i);
            }
        }
        Facts { path, lock, data, sorted, tail }
    }

    /// The facts about `id`, when cached.
    pub fn get(&self, id: Oid) -> Option<Fact> {
        let at = match self.tail.get(&id) {
            Some(&i) => i,
            None => {
                // The sorted records, after the header: a binary search by id.
                let (sorted, _) = self.data.get(RECORD..(1 + self.sorted) * RECORD)?.as_chunks::<RECORD>();
                1 + sorted.binary_search_by(|r| r[..20].cmp(id.as_bytes())).ok()?
            }
        };
        Fact::decode(&self.data[at * RECORD..(at + 1) * RECORD]).filter(|f| f.id == id)
    }

    /// Records in the file as read (header excluded, damaged ones included): sorted, tail.
    pub fn len(&self) -> (usize, usize) {
        (self.sorted, (self.data.len() / RECORD).saturating_sub(1 + self.sorted))
    }

    /// Adds `facts` to the file (best effort: an error or a busy lock drops them, which only
    /// leaves the cache incomplete). `in_graph` says which commits the commit-graph holds now:
    /// a rewrite drops those.
    pub fn append(&self, facts: &[Fact], in_graph: &dyn Fn(Oid) -> bool) {
        let records: Vec<[u8; RECORD]> = facts.iter().filter_map(Fact::encode).collect();
        if records.is_empty() {
            return;
        }
        // A few short tries, never a wait on whoever holds it: a cache must not hold a landing up.
        for _ in 0..LOCK_TRIES {
            match crate::lock::FileLock::try_acquire(&self.lock) {
                Ok(Some(_lock)) => {
                    let _ = self.append_locked(&records, in_graph);
                    return;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(2)),
                Err(_) => return,
            }
        }
    }

    fn append_locked(&self, records: &[[u8; RECORD]], in_graph: &dyn Fn(Oid) -> bool) -> std::io::Result<()> {
        let open = OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path);
        let mut file = match open {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.rewrite(&[], records, in_graph),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(());
        }
        let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        let mut head = [0u8; RECORD];
        let sorted = if len >= RECORD {
            file.seek(SeekFrom::Start(0))?;
            file.read_exact(&mut head)?;
            read_header(&head)
        } else {
            None
        };
        let records_now = len.saturating_sub(RECORD) / RECORD;
        // A header claiming more sorted records than there are is not this module's: rewrite.
        let tail = sorted.filter(|s| *s <= records_now).map(|s| records_now - s);
        match tail {
            Some(t) if t + records.len() <= TAIL_MAX && (len as u64) < READ_CAP => {
                let pad = (RECORD - len % RECORD) % RECORD;
                let mut out = vec![0u8; pad];
                out.extend(records.iter().flatten());
                // One write at the end (O_APPEND): other readers see it whole or cut short.
                file.write_all(&out)
            }
            Some(_) => {
                let mut old = Vec::new();
                file.seek(SeekFrom::Start(0))?;
                file.take(READ_CAP).read_to_end(&mut old)?;
                self.rewrite(&old, records, in_graph)
            }
            None => self.rewrite(&[], records, in_graph),
        }
    }

    /// Replaces the file (atomically) with the valid records of `old` (a whole file) and
    /// `records`, one per id, those in the commit-graph dropped, sorted by id, at most
    /// [`MAX_RECORDS`].
    fn rewrite(&self, old: &[u8], records: &[[u8; RECORD]], in_graph: &dyn Fn(Oid) -> bool) -> std::io::Result<()> {
        let old = if read_header(old).is_some() { old.get(RECORD..).unwrap_or_default() } else { &[] };
        let mut keep: HashMap<Oid, [u8; RECORD]> = HashMap::new();
        for r in old.as_chunks::<RECORD>().0.iter().chain(records) {
            if let Some(f) = Fact::decode(r) {
                if !in_graph(f.id) {
                    keep.insert(f.id, *r);
                }
            }
        }
        let mut keep: Vec<[u8; RECORD]> = keep.into_values().collect();
        if keep.len() > MAX_RECORDS {
            let generation = |r: &[u8; RECORD]| u32::from_le_bytes([r[64], r[65], r[66], r[67]]);
            keep.sort_unstable_by_key(|r| std::cmp::Reverse(generation(r)));
            keep.truncate(MAX_RECORDS);
        }
        keep.sort_unstable_by(|a, b| a[..20].cmp(&b[..20]));
        let mut out = Vec::with_capacity((keep.len() + 1) * RECORD);
        out.extend_from_slice(&header(keep.len()));
        out.extend(keep.iter().flatten());
        crate::fsutil::write_atomic_with(&self.path, &out, false).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u32) -> Oid {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&n.to_be_bytes());
        b[19] = 1;
        Oid::from_bytes(&b).unwrap()
    }

    fn fact(n: u32, parents: &[u32]) -> Fact {
        Fact {
            id: oid(n),
            generation: n + 1,
            time: 1_000 - i64::from(n),
            parents: parents.iter().map(|p| oid(*p)).collect(),
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        for f in [fact(1, &[]), fact(2, &[1]), fact(3, &[1, 2])] {
            let r = f.encode().unwrap();
            assert_eq!(Fact::decode(&r), Some(f.clone()));
            for i in 0..RECORD {
                let mut bad = r;
                bad[i] ^= 0x10;
                assert_eq!(Fact::decode(&bad), None, "a flipped bit in byte {i} is caught");
            }
            assert_eq!(Fact::decode(&r[..RECORD - 1]), None);
        }
        assert_eq!(Fact::decode(&[0u8; RECORD]), None, "zero padding is no record");
        assert_eq!(fact(4, &[1, 2, 3]).encode(), None, "octopus merges are not kept");
        assert_eq!(Fact { generation: 0, ..fact(5, &[]) }.encode(), None);
    }

    #[test]
    fn appends_rewrites_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let common = dir.path();
        let none = |_: Oid| false;
        Facts::open(common).append(&[fact(1, &[]), fact(2, &[1])], &none);
        let f = Facts::open(common);
        assert_eq!(f.len(), (2, 0), "the first write makes a sorted file");
        assert_eq!(f.get(oid(2)), Some(fact(2, &[1])));
        assert_eq!(f.get(oid(9)), None);
        f.append(&[fact(3, &[2])], &none);

        // A writer killed mid-write leaves a torn record; readers skip it, the next writer pads.
        let path = crate::names::commit_facts(&crate::names::state_dir(common));
        let torn = fact(4, &[3]).encode().unwrap();
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn[..33]).unwrap();
        let f = Facts::open(common);
        assert_eq!((f.get(oid(3)), f.get(oid(4))), (Some(fact(3, &[2])), None));
        f.append(&[fact(5, &[3])], &none);
        // A damaged record in the middle is ignored, the rest still found.
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() % RECORD, 0, "padded to a record boundary");
        bytes[RECORD + 70] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let f = Facts::open(common);
        assert_eq!(f.len(), (2, 3));
        assert_eq!(f.get(oid(1)), None, "damaged: not trusted");
        assert_eq!(
            (f.get(oid(2)), f.get(oid(3)), f.get(oid(5))),
            (Some(fact(2, &[1])), Some(fact(3, &[2])), Some(fact(5, &[3])))
        );

        // A full tail rewrites: valid records once each, those in the graph dropped, sorted.
        let many: Vec<Fact> = (10..10 + TAIL_MAX as u32).map(|n| fact(n, &[n - 1])).collect();
        f.append(&many, &|id| id == oid(2));
        let f = Facts::open(common);
        assert_eq!(f.len(), (2 + TAIL_MAX, 0));
        assert_eq!(f.get(oid(2)), None, "now in the commit-graph");
        assert_eq!(f.get(oid(3)), Some(fact(3, &[2])));
        assert_eq!(f.get(oid(500)), Some(fact(500, &[499])));

        // Not a cache at all: ignored, then replaced by the next writer.
        std::fs::write(&path, b"something else").unwrap();
        let f = Facts::open(common);
        assert_eq!(f.get(oid(3)), None);
        f.append(&[fact(7, &[])], &none);
        assert_eq!(Facts::open(common).get(oid(7)), Some(fact(7, &[])));
    }

    #[test]
    fn concurrent_writers_leave_only_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let common = dir.path().to_path_buf();
        let writers: Vec<_> = (0..8u32)
            .map(|w| {
                let common = common.clone();
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        let n = 1 + w * 1000 + i;
                        // Batches of one to three records, so the tail fills and rewrites happen.
                        let batch: Vec<Fact> = (0..1 + i % 3).map(|k| fact(n * 4 + k, &[n])).collect();
                        Facts::open(&common).append(&batch, &|_| false);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let bytes = std::fs::read(crate::names::commit_facts(&crate::names::state_dir(&common))).unwrap();
        assert_eq!(bytes.len() % RECORD, 0);
        assert!(read_header(&bytes).is_some());
        let records: Vec<Option<Fact>> = bytes[RECORD..].chunks_exact(RECORD).map(Fact::decode).collect();
        assert!(records.iter().all(Option::is_some), "no torn or mixed record");
        let f = Facts::open(&common);
        for r in records.into_iter().flatten() {
            assert_eq!(f.get(r.id), Some(r));
        }
    }

    #[test]
    fn a_busy_lock_drops_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::names::state_dir(dir.path());
        let held = crate::lock::FileLock::acquire(&crate::names::commit_facts_lock(&state)).unwrap();
        Facts::open(dir.path()).append(&[fact(1, &[])], &|_| false);
        assert_eq!(Facts::open(dir.path()).get(oid(1)), None);
        drop(held);
        Facts::open(dir.path()).append(&[fact(1, &[])], &|_| false);
        assert_eq!(Facts::open(dir.path()).get(oid(1)), Some(fact(1, &[])));
    }
}
