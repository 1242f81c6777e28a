//! git's view of a checkout, read through git itself and returned as typed values: the only code
//! that parses the output of `git status --porcelain=v2 -z` and `git ls-files --unmerged -z`, the
//! outcome of `git read-tree -m -u`, and the paths git names in its error messages.
//!
//! Contract:
//! - [`status`] lists what `git status` reports in a checkout (tracked changes, untracked files
//!   one by one, optionally ignored ones), limited to given paths and what lies below them. It
//!   never rewrites the index (`--no-optional-locks`, no fsmonitor) and runs no program the
//!   repository configures; it fails with git's stderr when git does.
//! - [`unmerged_paths`] lists the index's unmerged paths (git reads every index git writes: split
//!   index, sparse index, ...).
//! - [`paths_in_error`] picks the paths git names in a refusal (`error: Entry 'x' not uptodate.`,
//!   the tab-indented porcelain lists).
//! - [`read_tree`] runs `git read-tree -m -u <old> <new>` in a checkout and says how it ended
//!   ([`ReadTree`]): moved, refused because an entry's stat data looks modified (`not uptodate`),
//!   refused because another git command holds `index.lock`, or refused otherwise (git's
//!   message). Git's message texts are recognised here and nowhere else; [`refresh_index`] is
//!   `git update-index -q --refresh`.
//!
//! What these mean for a move is decided by the caller (`checkout/guard.rs`, `checkout.rs`).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Result};
use git2::Oid;

/// Past this many bytes of pathspecs, `git status` reads the whole checkout instead (and the
/// caller filters the result): the same answer, without an argument list the system refuses.
const MAX_PATHSPEC_BYTES: usize = 256 * 1024;

/// One entry of `git status --porcelain=v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The path from the top of the checkout (an untracked folder ends with `/`).
    pub path: String,
    /// `None` for an untracked or ignored path.
    pub tracked: Option<Tracked>,
}

/// A tracked entry's state as `git status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// The file equals the index (`.` in the worktree column).
    pub file_matches_index: bool,
    /// The index entry's mode (0 when git gave none, e.g. a rename record).
    pub mode: i32,
    /// The index entry's object id (zero when git gave none).
    pub id: Oid,
}

/// `git status` of the checkout at `work_dir`, untracked files one by one, ignored ones too when
/// `ignored`, limited to `paths` (and what lies below them) when given.
pub fn status(work_dir: &Path, paths: Option<&BTreeSet<String>>, ignored: bool) -> Result<Vec<StatusEntry>> {
    let mut args: Vec<&str> = vec![
        // No program configured in the repository runs for a status, and the index is not
        // rewritten (a refresh would take `index.lock`).
        "-c",
        "core.fsmonitor=false",
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "-z",
        "--untracked-files=all",
        "--no-renames",
        "--ignore-submodules=all",
    ];
    if ignored {
        // With `--untracked-files=all`, every ignored file is listed on its own, also inside an
        // ignored folder (`matching` would list the folder alone).
        args.push("--ignored=traditional");
    }
    let specs: Vec<String> = match paths {
        Some(ps) if ps.iter().map(|p| p.len() + 16).sum::<usize>() <= MAX_PATHSPEC_BYTES => {
            // Literal paths from the top, whatever characters they hold.
            ps.iter().map(|p| format!(":(top,literal){p}")).collect()
        }
        _ => Vec::new(),
    };
    if !specs.is_empty() {
        args.push("--");
        args.extend(specs.iter().map(String::as_str));
    }
    let out = super::output(work_dir, &args)?;
    if !out.status.success() {
        bail!("cannot read the status of {}: {}", work_dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_status(&out.stdout)
}

fn parse_status(stdout: &[u8]) -> Result<Vec<StatusEntry>> {
    let mut out = Vec::new();
    for rec in stdout.split(|b| *b == 0) {
        let line = String::from_utf8_lossy(rec);
        let Some(kind) = line.chars().next() else { continue };
        match kind {
            '?' | '!' => {
                out.push(StatusEntry { path: line[2..].to_string(), tracked: None });
            }
            '1' => {
                // 1 XY sub mH mI mW hH hI path
                let f: Vec<&str> = line.splitn(9, ' ').collect();
                if f.len() < 9 {
                    bail!("unexpected git status record {line:?}");
                }
                let file_matches_index = f[1].as_bytes().get(1) == Some(&b'.');
                let mode = i32::from_str_radix(f[4], 8).unwrap_or(0);
                let id = Oid::from_str(f[7]).unwrap_or(Oid::zero());
                out.push(StatusEntry {
                    path: f[8].to_string(),
                    tracked: Some(Tracked { file_matches_index, mode, id }),
                });
            }
            '2' => {
                // A rename record (not asked for): reported as a changed tracked path.
                let f: Vec<&str> = line.splitn(10, ' ').collect();
                if let Some(p) = f.get(9) {
                    let tracked = Tracked { file_matches_index: false, mode: 0, id: Oid::zero() };
                    out.push(StatusEntry { path: p.to_string(), tracked: Some(tracked) });
                }
            }
            _ => {} // '#' headers; 'u' records are read by `unmerged_paths`; the origin path of '2'
        }
    }
    Ok(out)
}

/// The unmerged paths of the index of the checkout at `work_dir`, sorted, each once.
pub fn unmerged_paths(work_dir: &Path) -> Result<Vec<String>> {
    let out = super::output(work_dir, ["ls-files", "--unmerged", "-z"])?;
    if !out.status.success() {
        bail!("cannot read the index of {}: {}", work_dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse_unmerged(&out.stdout))
}

fn parse_unmerged(stdout: &[u8]) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for rec in stdout.split(|b| *b == 0) {
        // <mode> <object> <stage>\t<path>
        if let Some(tab) = rec.iter().position(|b| *b == b'\t') {
            paths.insert(String::from_utf8_lossy(&rec[tab + 1..]).into_owned());
        }
    }
    paths.into_iter().collect()
}

/// The paths git names in a refusal of `read-tree` (`error: Entry 'x' not uptodate. Cannot
/// merge.`, `error: Untracked working tree file 'x' would be overwritten by merge.`, ...), sorted.
pub fn paths_in_error(stderr: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("error: ") else {
            // Porcelain lists: a tab-indented path per line.
            if let Some(p) = line.strip_prefix('\t') {
                out.insert(p.trim().to_string());
            }
            continue;
        };
        if let (Some(a), Some(b)) = (rest.find('\''), rest.rfind('\'')) {
            if b > a + 1 {
                out.insert(rest[a + 1..b].to_string());
            }
        }
    }
    out.into_iter().collect()
}

/// How `git read-tree -m -u <old> <new>` ended. A refusal changed nothing (read-tree checks every
/// path before it writes any); each refusal carries git's stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadTree {
    /// The index and files were moved.
    Moved,
    /// An entry git was to overwrite looked modified (`error: Entry 'x' not uptodate. Cannot
    /// merge.`). read-tree trusts the index's stat data without refreshing it, so a copied or
    /// touched file also looks modified: [`refresh_index`] and a retry tell the two apart.
    NotUpToDate(String),
    /// Another git command held the checkout's `index.lock` (`fatal: Unable to create
    /// '.../index.lock': File exists.`).
    IndexLocked(String),
    /// Any other refusal: local changes or untracked files in the way, a bad object, ...
    Refused(String),
}

impl ReadTree {
    /// git's stderr of a refusal (empty for [`ReadTree::Moved`]).
    pub fn message(&self) -> &str {
        match self {
            ReadTree::Moved => "",
            ReadTree::NotUpToDate(m) | ReadTree::IndexLocked(m) | ReadTree::Refused(m) => m,
        }
    }
}

/// Runs `git read-tree -m -u <old> <new>` in the checkout at `work_dir` (see [`ReadTree`]).
/// `Err` only when git cannot be started.
pub fn read_tree(work_dir: &Path, old: Oid, new: Oid) -> Result<ReadTree> {
    let out = super::output(work_dir, ["read-tree", "-m", "-u", &old.to_string(), &new.to_string()])?;
    Ok(read_tree_outcome(out.status.success(), &out.stderr))
}

/// Refreshes the stat data of the index of the checkout at `work_dir` exactly as `git status`
/// does (stat data only). git's exit status 1 just means "something is modified": not an error.
pub fn refresh_index(work_dir: &Path) -> Result<()> {
    super::output(work_dir, ["update-index", "-q", "--refresh"])?;
    Ok(())
}

fn read_tree_outcome(success: bool, stderr: &[u8]) -> ReadTree {
    if success {
        return ReadTree::Moved;
    }
    let message = String::from_utf8_lossy(stderr).into_owned();
    // Line by line, on git's full sentences: a tracked file may itself be named `index.lock`.
    let locked = message.lines().any(|l| {
        l.strip_prefix("fatal: Unable to create '")
            .and_then(|rest| rest.rsplit_once("': "))
            .is_some_and(|(path, _why)| path == "index.lock" || path.ends_with("/index.lock"))
    });
    let not_uptodate = message
        .lines()
        .any(|l| l.strip_prefix("error: Entry '").and_then(|rest| rest.rsplit_once("' not uptodate.")).is_some());
    if locked {
        ReadTree::IndexLocked(message)
    } else if not_uptodate {
        ReadTree::NotUpToDate(message)
    } else {
        ReadTree::Refused(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_git_errors() {
        let err = "error: Entry 'a/b.txt' not uptodate. Cannot merge.\nerror: Updating 'd' would lose untracked \
                   files in it\nfatal: something\n";
        assert_eq!(paths_in_error(err), ["a/b.txt", "d"]);
        let listed = "error: The following untracked working tree files would be overwritten by merge:\n\tx.txt\n\t\
                      y/z.txt\nPlease move or remove them before you merge.\nAborting\n";
        assert_eq!(paths_in_error(listed), ["x.txt", "y/z.txt"]);
    }

    #[test]
    fn status_records_become_entries() {
        let id = "0123456789012345678901234567890123456789";
        let raw = format!(
            "# branch.oid {id}\0? new file.txt\0! build/out.o\01 .M N... 100644 100644 100644 {id} {id} a b.txt\0\
             1 M. N... 100644 100755 100755 {id} {id} run.sh\0"
        );
        let got = parse_status(raw.as_bytes()).unwrap();
        let oid = Oid::from_str(id).unwrap();
        assert_eq!(
            got,
            [
                StatusEntry { path: "new file.txt".into(), tracked: None },
                StatusEntry { path: "build/out.o".into(), tracked: None },
                StatusEntry {
                    path: "a b.txt".into(),
                    tracked: Some(Tracked { file_matches_index: false, mode: 0o100644, id: oid })
                },
                StatusEntry {
                    path: "run.sh".into(),
                    tracked: Some(Tracked { file_matches_index: true, mode: 0o100755, id: oid })
                },
            ]
        );
        assert!(parse_status(b"1 .M N... 100644").is_err());
    }

    #[test]
    fn unmerged_records_become_paths() {
        let id = "0123456789012345678901234567890123456789";
        let raw = format!("100644 {id} 1\tc.txt\0100644 {id} 2\tc.txt\0100644 {id} 3\ta b\0");
        assert_eq!(parse_unmerged(raw.as_bytes()), ["a b", "c.txt"]);
    }

    /// git's own messages, produced by real git: a local change, a held `index.lock`, an
    /// untracked file in the way, and a local change to a tracked file named `index.lock`.
    #[test]
    fn read_tree_outcomes_from_real_git() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let git = |args: &[&str]| crate::test_support::git(dir, args);
        let (old, new) = crate::test_support::two_commits_at_first(
            dir,
            &[("f", "a\n"), ("index.lock", "x\n")],
            &[("f", "b\n"), ("index.lock", "y\n")],
        );
        let id = |r: &str| Oid::from_str(git(&["rev-parse", r]).trim()).unwrap();

        std::fs::write(dir.join("f"), "local\n").unwrap();
        let got = read_tree(dir, old, new).unwrap();
        assert!(matches!(got, ReadTree::NotUpToDate(_)), "a local change: {got:?}");
        assert_eq!(paths_in_error(got.message()), ["f"], "{got:?}");
        git(&["checkout", "-q", "f"]);

        std::fs::write(dir.join("index.lock"), "local\n").unwrap();
        let got = read_tree(dir, old, new).unwrap();
        assert!(matches!(got, ReadTree::NotUpToDate(_)), "a tracked file named index.lock: {got:?}");
        assert_eq!(paths_in_error(got.message()), ["index.lock"], "{got:?}");
        git(&["checkout", "-q", "index.lock"]);

        std::fs::write(dir.join(".git/index.lock"), "").unwrap();
        let got = read_tree(dir, old, new).unwrap();
        assert!(matches!(got, ReadTree::IndexLocked(_)), "a held index.lock: {got:?}");
        std::fs::remove_file(dir.join(".git/index.lock")).unwrap();

        git(&["rm", "-q", "--cached", "f"]);
        git(&["commit", "-qm", "f untracked"]);
        let got = read_tree(dir, id("HEAD"), new).unwrap();
        assert!(matches!(got, ReadTree::Refused(_)), "an untracked file in the way: {got:?}");
        assert_eq!(paths_in_error(got.message()), ["f"], "{got:?}");

        std::fs::remove_file(dir.join("f")).unwrap();
        assert_eq!(read_tree(dir, id("HEAD"), new).unwrap(), ReadTree::Moved);
        refresh_index(dir).unwrap();
    }

    #[test]
    fn read_tree_messages_are_read_line_by_line() {
        let locked = "fatal: Unable to create '/r/.git/worktrees/w/index.lock': File exists.\n\nAnother git ...\n";
        assert!(matches!(read_tree_outcome(false, locked.as_bytes()), ReadTree::IndexLocked(_)));
        let denied = "fatal: Unable to create '/r/.git/index.lock': Permission denied\n";
        assert!(matches!(read_tree_outcome(false, denied.as_bytes()), ReadTree::IndexLocked(_)));
        let named = "error: Entry 'sub/index.lock' not uptodate. Cannot merge.\n";
        assert!(matches!(read_tree_outcome(false, named.as_bytes()), ReadTree::NotUpToDate(_)));
        let sparse = "error: Entry 'a' not uptodate. Cannot update sparse checkout.\n";
        assert!(matches!(read_tree_outcome(false, sparse.as_bytes()), ReadTree::NotUpToDate(_)));
        let other = "error: Entry 'x' would be overwritten by merge. Cannot merge.\n";
        assert!(matches!(read_tree_outcome(false, other.as_bytes()), ReadTree::Refused(_)));
        assert_eq!(read_tree_outcome(true, b"warning: whatever\n"), ReadTree::Moved);
    }
}
