//! A fast answer to "is this task worktree clean anywhere?", asked before a kept task's
//! worktree is caught up (`sync::move_task_branch`).
//!
//! Contract: [`clean_anywhere`] returns `true` only when the index equals the commit the branch
//! is at (its cache tree's root is valid and names that tree), no stage other than 0 and no
//! assume-unchanged/skip-worktree entry exists, every tracked file's `lstat` matches its index
//! entry exactly (git's stat shortcut, racily clean entries excluded), and the walk of the
//! worktree finds no file outside the index that the worktree's `.gitignore` files and
//! `info/exclude` do not ignore. It never changes anything. `false` means "maybe not": the caller
//! then asks git (`git status`, `checkout/guard.rs`), which has the last word and names the
//! paths. A wrong `true` cannot lose anything either: a fast move writes only the paths the
//! move changes, after checking each of them.
//!
//! How: one walk of the worktree's folders, guided by the index (sorted by path, so a folder's
//! entries are one range of it). Each folder is opened relative to its parent and each tracked
//! file `lstat`ed relative to its folder (`fstatat`: one path component resolved, no path
//! built); a folder without tracked files is not entered. Ignore rules are read only for a name
//! the index does not have: the `.gitignore` of each folder on its path (read once per folder),
//! deepest first, then `info/exclude`; the first rule that matches decides, no match means
//! untracked. A name under an ignored folder that also holds tracked files answers "maybe not"
//! (git would call it ignored; this check does not follow rules upward).
//!
//! Why: `git status` of a whole worktree of git/git's size costs tens of milliseconds, most of
//! a kept task's catch-up; a walk building a path and a glob match per file cost half of that.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use git2::Oid;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};

use super::Checkout;
use crate::git::index::{RawIndex, StatData, FLAG_VALID};

/// See the module contract. `head_tree` is the tree of the commit the checkout's branch is at.
pub fn clean_anywhere(co: &Checkout, index: &RawIndex, index_mtime: (i64, i64), head_tree: Oid) -> bool {
    match index.cache_tree() {
        Ok(Some(root)) if root.valid.is_some_and(|(_, id)| id == *head_tree.as_bytes()) => {}
        _ => return false,
    }
    for i in 0..index.entry_count() {
        let e = index.entry_at(i);
        if e.stage() != 0 || e.flags & FLAG_VALID != 0 || e.flags_extended != 0 {
            return false;
        }
    }
    let Ok(root) = open_dir(rustix::fs::CWD, &co.dir) else { return false };
    let mut walk = Walk { co, index, index_mtime, seen: 0, ignores: HashMap::new(), excludes: None };
    walk.folder(root, &mut Vec::new(), 0, index.entry_count()) == Some(()) && walk.seen == index.entry_count()
}

struct Walk<'a> {
    co: &'a Checkout,
    index: &'a RawIndex,
    index_mtime: (i64, i64),
    /// Tracked entries found with matching stat data.
    seen: usize,
    /// Each folder's `.gitignore` rules, by folder path ("" for the root); read when first needed.
    ignores: HashMap<Vec<u8>, Option<Gitignore>>,
    /// The `info/exclude` rules (the checkout's and the common git directory's); read when first
    /// needed.
    excludes: Option<Vec<Gitignore>>,
}

impl Walk<'_> {
    /// Checks the folder `fd` at `prefix` (empty, or ending in `/`), whose tracked entries are
    /// the index range `lo..hi`. None: not provably clean.
    fn folder(&mut self, fd: OwnedFd, prefix: &mut Vec<u8>, lo: usize, hi: usize) -> Option<()> {
        let dir = Dir::read_from(fd.as_fd()).ok()?;
        for entry in dir {
            let entry = entry.ok()?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || (prefix.is_empty() && name == b".git") {
                continue;
            }
            let len = prefix.len();
            prefix.extend_from_slice(name);
            let here = self.exact(lo, hi, prefix);
            let result = self.name(&fd, entry.file_name(), entry.file_type(), prefix, here, (lo, hi));
            prefix.truncate(len);
            result?;
        }
        Some(())
    }

    /// One name of a folder: a tracked file (stat compared), a folder holding tracked files
    /// (entered), or something else (ignored, or not clean).
    fn name(
        &mut self,
        parent: &OwnedFd,
        name: &CStr,
        kind: FileType,
        path: &mut Vec<u8>,
        exact: Option<usize>,
        (lo, hi): (usize, usize),
    ) -> Option<()> {
        if let Some(i) = exact {
            let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
            self.index.entry_at(i).stat_data_matches(&stat_data(&st), self.index_mtime).then_some(())?;
            self.seen += 1;
            return Some(());
        }
        let is_dir = match kind {
            FileType::Directory => true,
            FileType::Unknown => {
                let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
                FileType::from_raw_mode(st.st_mode as _) == FileType::Directory
            }
            _ => false,
        };
        if is_dir {
            path.push(b'/');
            let (start, end) = prefix_range(self.index, lo, hi, path);
            if start < end {
                let fd = open_dir(parent, name).ok()?;
                return self.folder(fd, path, start, end);
            }
            path.pop();
        }
        self.ignored(path, is_dir).then_some(())
    }

    /// The index entry at exactly `path` within `lo..hi`, if any.
    fn exact(&self, lo: usize, hi: usize, path: &[u8]) -> Option<usize> {
        let at = lo + partition(lo, hi, |i| self.index.path_at(i) < path);
        (at < hi && self.index.path_at(at) == path).then_some(at)
    }

    /// Whether git ignores the untracked `path` (see the module contract for the order).
    fn ignored(&mut self, path: &[u8], is_dir: bool) -> bool {
        let Ok(rel) = std::str::from_utf8(path) else { return false };
        let mut folder = path.len();
        loop {
            folder = path[..folder].iter().rposition(|&b| b == b'/').unwrap_or(0);
            let key = path[..folder].to_vec();
            let rules = self.ignores.entry(key).or_insert_with(|| {
                let dir = if folder == 0 { self.co.dir.clone() } else { self.co.dir.join(&rel[..folder]) };
                rules_in(&dir, &dir.join(".gitignore"))
            });
            if let Some(rules) = rules {
                match rules.matched(self.co.dir.join(rel), is_dir) {
                    Match::Ignore(_) => return true,
                    Match::Whitelist(_) => return false,
                    Match::None => {}
                }
            }
            if folder == 0 {
                break;
            }
        }
        let path = self.co.dir.join(rel);
        self.excludes().iter().any(|r| matches!(r.matched(&path, is_dir), Match::Ignore(_)))
    }

    /// The `info/exclude` rules, read once per walk. git reads `info/exclude` from the common git
    /// directory; a linked worktree's own git directory names it in its `commondir` file.
    fn excludes(&mut self) -> &[Gitignore] {
        let co = self.co;
        self.excludes.get_or_insert_with(|| {
            let own = &co.git_dir;
            let common =
                std::fs::read_to_string(own.join("commondir")).map(|c| own.join(c.trim())).unwrap_or(own.clone());
            [own.join("info/exclude"), common.join("info/exclude")]
                .iter()
                .filter_map(|f| rules_in(&co.dir, f))
                .collect()
        })
    }
}

/// The rules of one ignore file, matched relative to `root` (None: no such file or no rule).
fn rules_in(root: &Path, file: &Path) -> Option<Gitignore> {
    if !file.is_file() {
        return None;
    }
    let mut b = GitignoreBuilder::new(root);
    b.add(file);
    b.build().ok().filter(|g| !g.is_empty())
}

/// The index range within `lo..hi` of the paths starting with `prefix` (a contiguous range:
/// the index is sorted by path bytes).
fn prefix_range(index: &RawIndex, lo: usize, hi: usize, prefix: &[u8]) -> (usize, usize) {
    let start = lo + partition(lo, hi, |i| index.path_at(i) < prefix);
    let end = start + partition(start, hi, |i| index.path_at(i).starts_with(prefix));
    (start, end)
}

/// How many of `lo..hi`, from the start, satisfy `pred` (which holds for a prefix of the range).
fn partition(lo: usize, hi: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let mid = a + (b - a) / 2;
        if pred(mid) {
            a = mid + 1;
        } else {
            b = mid;
        }
    }
    a - lo
}

fn open_dir<P: rustix::path::Arg, Fd: AsFd>(parent: Fd, path: P) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

#[allow(clippy::unnecessary_cast)] // the field types differ between targets
fn stat_data(st: &Stat) -> StatData {
    StatData {
        size: st.st_size as u64,
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        ino: st.st_ino as u64,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::git;

    /// A committed checkout: tracked files dated in the past (never racily clean).
    fn checkout() -> (tempfile::TempDir, Checkout) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("w");
        std::fs::create_dir_all(dir.join("src/deep")).unwrap();
        for (p, c) in
            [("a.txt", "a\n"), ("src/b.rs", "b\n"), ("src/deep/c.rs", "c\n"), (".gitignore", "*.log\n/target/\n")]
        {
            std::fs::write(dir.join(p), c).unwrap();
        }
        std::fs::write(dir.join("src/.gitignore"), "gen/\n!keep.log\n").unwrap();
        git(&dir, &["init", "-q"]);
        std::process::Command::new("sh")
            .args(["-c", "find . -path ./.git -prune -o -type f -exec touch -d @1600000000 {} +"])
            .current_dir(&dir)
            .status()
            .unwrap();
        git(&dir, &["add", "-A"]);
        git(&dir, &["commit", "-qm", "one"]);
        let co = Checkout { git_dir: dir.join(".git"), dir };
        (tmp, co)
    }

    fn clean(co: &Checkout) -> bool {
        let path = co.git_dir.join("index");
        let m = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        let index = RawIndex::parse(std::fs::read(&path).unwrap()).unwrap().unwrap();
        let head = git(&co.dir, &["rev-parse", "HEAD^{tree}"]);
        clean_anywhere(co, &index, (m.mtime(), m.mtime_nsec()), Oid::from_str(head.trim()).unwrap())
    }

    #[test]
    fn ignored_files_anywhere_keep_a_checkout_clean() {
        let (_tmp, co) = checkout();
        git(&co.dir, &["update-index", "--refresh"]); // a cache tree, as git status would leave
        git(&co.dir, &["write-tree"]);
        assert!(clean(&co), "a fresh commit is clean");
        std::fs::write(co.dir.join("run.log"), "x").unwrap();
        std::fs::write(co.dir.join("src/deep/more.log"), "x").unwrap();
        std::fs::create_dir_all(co.dir.join("target/debug")).unwrap();
        std::fs::write(co.dir.join("target/debug/bin"), "x").unwrap();
        std::fs::create_dir_all(co.dir.join("src/gen")).unwrap();
        std::fs::write(co.dir.join("src/gen/out.rs"), "x").unwrap();
        std::fs::write(co.dir.join(".git/info/exclude"), "scratch\n").unwrap();
        std::fs::write(co.dir.join("src/scratch"), "x").unwrap();
        assert!(clean(&co), "ignored by the root, a nested .gitignore and info/exclude");
    }

    #[test]
    fn anything_git_would_show_makes_it_maybe_not_clean() {
        type Change = fn(&Path);
        let changes: [(&str, Change); 6] = [
            ("an untracked file deep down", |d| std::fs::write(d.join("src/deep/new.rs"), "x").unwrap()),
            ("an untracked folder", |d| {
                std::fs::create_dir_all(d.join("docs")).unwrap();
                std::fs::write(d.join("docs/x.md"), "x").unwrap()
            }),
            ("a re-included name", |d| std::fs::write(d.join("src/keep.log"), "x").unwrap()),
            ("a modified file", |d| std::fs::write(d.join("src/b.rs"), "changed\n").unwrap()),
            ("a deleted file", |d| std::fs::remove_file(d.join("src/deep/c.rs")).unwrap()),
            ("a deleted folder", |d| std::fs::remove_dir_all(d.join("src/deep")).unwrap()),
        ];
        for (what, change) in changes {
            let (_tmp, co) = checkout();
            git(&co.dir, &["write-tree"]);
            assert!(clean(&co), "{what}: clean before");
            change(&co.dir);
            assert!(!clean(&co), "{what}");
        }
    }
}
