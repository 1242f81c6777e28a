//! The paths that differ between two trees, with both sides' ids and modes.
//!
//! Contract: [`changes`] lists every non-folder entry (blob, symlink, submodule) that differs
//! between tree `a` and tree `b` (added, removed, modified, or its mode changed), in git's path
//! order, with `/`-separated raw paths. Subtrees with equal ids are skipped without being read,
//! so the cost follows the size of the change, not of the repository. A file replaced by a
//! folder (or the reverse) is listed as the file's removal (or addition) plus the folder's
//! entries.

use anyhow::Result;
use git2::{Oid, Repository, Tree};

use crate::git::tree::{self, Entries, MODE_TREE};

/// One side of a changed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub id: Oid,
    /// The git file mode (`0o100644`, `0o100755`, `0o120000`, `0o160000`).
    pub mode: i32,
}

impl Side {
    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode == 0o120000
    }

    /// A regular file (executable or not): something with lines to read.
    pub fn is_file(&self) -> bool {
        self.mode == 0o100644 || self.mode == 0o100755
    }
}

/// One path whose entry differs between the trees (`None`: absent, or a folder, on that side).
#[derive(Debug, Clone)]
pub struct Change {
    pub path: Vec<u8>,
    pub old: Option<Side>,
    pub new: Option<Side>,
}

impl Change {
    /// The path for messages and globs (`/`-separated; invalid UTF-8 replaced).
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Every changed non-folder entry between `a` and `b` (see the module contract).
pub fn changes(repo: &Repository, a: Option<&Tree<'_>>, b: Option<&Tree<'_>>) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(repo, a.map(Tree::id), b.map(Tree::id), &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn walk(repo: &Repository, a: Option<Oid>, b: Option<Oid>, prefix: &mut Vec<u8>, out: &mut Vec<Change>) -> Result<()> {
    let (ea, eb) = (Entries::load(repo, a)?, Entries::load(repo, b)?);
    let is_tree = |e: Option<(Oid, i32)>| e.is_some_and(|e| e.1 == MODE_TREE);
    let side = |e: Option<(Oid, i32)>| e.filter(|e| e.1 != MODE_TREE).map(|(id, mode)| Side { id, mode });
    tree::join([&*ea, &*eb], |name, [x, y]| -> Result<bool> {
        if x == y {
            return Ok(true);
        }
        let len = prefix.len();
        prefix.extend_from_slice(name);
        if is_tree(x) || is_tree(y) {
            let tx = if is_tree(x) { x.map(|e| e.0) } else { None };
            let ty = if is_tree(y) { y.map(|e| e.0) } else { None };
            if side(x).is_some() || side(y).is_some() {
                out.push(Change { path: prefix.clone(), old: side(x), new: side(y) });
            }
            prefix.push(b'/');
            walk(repo, tx, ty, prefix, out)?;
        } else {
            out.push(Change { path: prefix.clone(), old: side(x), new: side(y) });
        }
        prefix.truncate(len);
        Ok(true)
    })?;
    Ok(())
}
