//! `git hybrid completions <shell>`: prints the script that completes `git-hybrid` (and, through
//! git's own completion, `git hybrid`) in bash, zsh, fish, elvish or powershell.
//!
//! Completion is dynamic (clap_complete's `CompleteEnv`): the script calls the binary back with
//! `GIT_HYBRID_COMPLETE=<shell>` and the words typed so far, and `main` answers from the same
//! clap definitions the parser uses, so every level (subcommands, `hooks <TAB>`, `merge --<TAB>`)
//! completes, and task arguments complete to the ids in this repository's ledger.

use std::ffi::OsStr;

use clap::Args;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use clap_complete::env::Shells;
use clap_complete::Shell;

/// The variable that switches the binary into answering a completion request.
pub const VAR: &str = "GIT_HYBRID_COMPLETE";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// For bash, also defines `_git_hybrid`, the hook git's own completion calls for
/// `git hybrid <TAB>`: it replays the words as `git-hybrid ...` into the completer above.
const BASH_GIT_SHIM: &str = r#"
# `git hybrid <TAB>`: git's completion calls _git_hybrid; reuse the completer above on the words
# from `hybrid` on (git sets __git_cmd_idx to its index; older gits: search for it).
_git_hybrid() {
    local i=${__git_cmd_idx:-}
    if [[ -z $i ]]; then
        for ((i = 1; i < COMP_CWORD; i++)); do [[ ${COMP_WORDS[i]} == hybrid ]] && break; done
    fi
    local COMP_WORDS=("git-hybrid" "${COMP_WORDS[@]:i+1}")
    local COMP_CWORD=$((COMP_CWORD - i))
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    _clap_complete_git_hybrid "git-hybrid" "$cur" "$prev"
}
"#;

/// For zsh: git's `_git` calls `_git-hybrid` for `git hybrid <TAB>` with `words` starting at
/// `hybrid`.
const ZSH_GIT_SHIM: &str = r#"
# `git hybrid <TAB>`: git's _git calls _git-hybrid with words starting at `hybrid`.
_git-hybrid() {
    words[1]=git-hybrid
    _clap_dynamic_completer_git_hybrid
}
"#;

/// For fish: its git completion hands `git hybrid ...` to no one (fish 3.6 registers custom git
/// commands under the wrong name), so complete the words after `hybrid` here. `COMPLETER` is
/// replaced by the quoted path of this binary.
const FISH_GIT_SHIM: &str = r#"
# `git hybrid <TAB>`: complete the words after `hybrid` as `git-hybrid ...`.
function __git_hybrid_complete
    set -l words (commandline --current-process --tokenize --cut-at-cursor)
    set -l i (contains -i -- hybrid $words)
    and set -e words[1..$i]
    GIT_HYBRID_COMPLETE=fish COMPLETER -- git-hybrid $words (commandline --current-token)
end
complete --keep-order --exclusive --command git --condition '__fish_seen_subcommand_from hybrid' --arguments '(__git_hybrid_complete)'
"#;

/// A fish single-quoted word.
fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub fn handle_completions(a: CompletionsArgs) -> anyhow::Result<i32> {
    let name = match a.shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
        Shell::Elvish => "elvish",
        Shell::PowerShell => "powershell",
        _ => anyhow::bail!("no completions for this shell"),
    };
    let shells = Shells::builtins();
    let shell = shells.completer(name).ok_or_else(|| anyhow::anyhow!("no completions for {name}"))?;
    // The script calls this very binary back, wherever it is installed.
    let completer =
        std::env::current_exe().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "git-hybrid".to_string());
    let mut out = Vec::new();
    shell.write_registration(VAR, "git-hybrid", "git-hybrid", &completer, &mut out)?;
    match a.shell {
        Shell::Bash => out.extend_from_slice(BASH_GIT_SHIM.as_bytes()),
        Shell::Zsh => out.extend_from_slice(ZSH_GIT_SHIM.as_bytes()),
        Shell::Fish => out.extend_from_slice(FISH_GIT_SHIM.replace("COMPLETER", &fish_quote(&completer)).as_bytes()),
        _ => {}
    }
    use std::io::Write;
    std::io::stdout().write_all(&out)?;
    Ok(0)
}

/// Completes a task argument to the ids in the ledger of the repository around the current
/// directory (nothing outside a repository); each id's help is its latest attempt's state.
pub fn task_ids() -> ArgValueCompleter {
    ArgValueCompleter::new(complete_task)
}

fn complete_task(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    let Ok(cwd) = std::env::current_dir() else { return Vec::new() };
    let Ok(repo) = git2::Repository::discover(&cwd) else { return Vec::new() };
    let ledger = git_hybrid::ledger::Ledger::new(repo.commondir());
    let Ok(records) = ledger.list() else { return Vec::new() };
    // Sorted by id then attempt: the last record of an id is its latest attempt.
    let mut latest: Vec<(String, &'static str)> = Vec::new();
    for r in &records {
        match latest.last_mut() {
            Some((id, state)) if *id == r.id => *state = r.state.as_str(),
            _ => latest.push((r.id.clone(), r.state.as_str())),
        }
    }
    latest
        .into_iter()
        .filter(|(id, _)| id.starts_with(prefix.as_ref()))
        .map(|(id, state)| CompletionCandidate::new(id).help(Some(state.into())))
        .collect()
}
