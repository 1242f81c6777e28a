//! Names of the refs under a prefix, read from the ref store's files (loose ref files and
//! `packed-refs`) without opening each ref.
//!
//! Contract: [`names_under`] returns every ref name under `prefix` (e.g. `refs/hybrid/tips/`),
//! loose or packed, once, sorted; names only, nothing resolved. It is for listings where the
//! targets do not matter: libgit2's name iterator reads every loose ref file, which made a
//! `status` call with a few hundred landed tasks cost milliseconds.

use std::collections::BTreeSet;
use std::path::Path;

/// See the module contract. `common_dir` is the repository's common git directory.
pub fn names_under(common_dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    loose(&common_dir.join(prefix), prefix, &mut out);
    if let Ok(packed) = std::fs::read_to_string(common_dir.join("packed-refs")) {
        for line in packed.lines() {
            if line.starts_with('#') || line.starts_with('^') {
                continue;
            }
            if let Some((_, name)) = line.split_once(' ') {
                if name.starts_with(prefix) {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

fn loose(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            loose(&e.path(), &format!("{prefix}{name}/"), out);
        } else if !name.ends_with(".lock") {
            out.insert(format!("{prefix}{name}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::git;

    #[test]
    fn loose_and_packed_names_are_listed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        git(dir, &["commit", "-q", "--allow-empty", "-m", "x"]);
        for r in ["refs/hybrid/tips/a", "refs/hybrid/tips/b@2", "refs/hybrid/tips/sub/c", "refs/hybrid/other/d"] {
            git(dir, &["update-ref", r, "HEAD"]);
        }
        git(dir, &["pack-refs", "--all"]);
        git(dir, &["update-ref", "refs/hybrid/tips/e", "HEAD"]); // loose beside the packed ones
        git(dir, &["update-ref", "refs/hybrid/tips/a", "HEAD"]); // loose and packed
        let got = names_under(&dir.join(".git"), "refs/hybrid/tips/");
        assert_eq!(got, ["refs/hybrid/tips/a", "refs/hybrid/tips/b@2", "refs/hybrid/tips/e", "refs/hybrid/tips/sub/c"]);
    }
}
