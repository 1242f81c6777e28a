//! `git hybrid shell-init bash|zsh|fish [--cmd NAME]`: prints a shell function (default `hcd`)
//! that changes directory to a task's worktree (`hcd t1`; the main checkout without a task),
//! with task-id completion from the same completer as `git hybrid completions`. Add
//! `eval "$(git hybrid shell-init bash)"` to `~/.bashrc` (zsh: `~/.zshrc`), or
//! `git hybrid shell-init fish | source` to fish's config.

use clap::{Args, ValueEnum};
use git_hybrid::error::HybridError;

use super::{output, GlobalArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ShellInitArgs {
    /// The shell to print the helper for.
    pub shell: InitShell,
    /// Name of the function.
    #[arg(long, default_value = "hcd", value_name = "NAME")]
    pub cmd: String,
}

const BASH: &str = r#"# git-hybrid shell integration: `NAME <task>` changes to the task's worktree.
NAME() {
    local dir
    dir="$(command git-hybrid path "$@")" || return
    cd -- "$dir"
}
_git_hybrid_NAME_complete() {
    local IFS=$'\013'
    COMPREPLY=( $(GIT_HYBRID_COMPLETE=bash _CLAP_IFS="$IFS" _CLAP_COMPLETE_INDEX=$((COMP_CWORD + 1)) \
        command git-hybrid -- git-hybrid path "${COMP_WORDS[@]:1}" 2>/dev/null) )
}
complete -F _git_hybrid_NAME_complete NAME
"#;

const ZSH: &str = r#"# git-hybrid shell integration: `NAME <task>` changes to the task's worktree.
NAME() {
    local dir
    dir="$(command git-hybrid path "$@")" || return
    cd -- "$dir"
}
_git_hybrid_NAME_complete() {
    local -a ids
    ids=("${(@f)$(GIT_HYBRID_COMPLETE=zsh _CLAP_IFS=$'\n' _CLAP_COMPLETE_INDEX=$CURRENT \
        command git-hybrid -- git-hybrid path "${(@)words[2,-1]}" 2>/dev/null)}")
    [[ -n $ids ]] && _describe -V 'task' ids
}
(( $+functions[compdef] )) && compdef _git_hybrid_NAME_complete NAME
"#;

const FISH: &str = r#"# git-hybrid shell integration: `NAME <task>` changes to the task's worktree.
function NAME
    set -l dir (command git-hybrid path $argv); or return
    cd -- $dir
end
function __git_hybrid_NAME_complete
    set -l words (commandline --current-process --tokenize --cut-at-cursor)
    set -e words[1]
    GIT_HYBRID_COMPLETE=fish command git-hybrid -- git-hybrid path $words (commandline --current-token)
end
complete --command NAME --no-files --arguments '(__git_hybrid_NAME_complete)'
"#;

pub fn handle_shell_init(a: ShellInitArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let ok = a.cmd.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && a.cmd.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && a.cmd.len() <= 64;
    if !ok {
        return Err(HybridError::Usage(format!(
            "--cmd {:?}: a function name is letters, digits and `_`, not starting with a digit",
            a.cmd
        ))
        .into());
    }
    let template = match a.shell {
        InitShell::Bash => BASH,
        InitShell::Zsh => ZSH,
        InitShell::Fish => FISH,
    };
    let script = template.replace("NAME", &a.cmd);
    if g.json {
        output::print_json(
            &serde_json::json!({ "shell": format!("{:?}", a.shell).to_lowercase(), "function": a.cmd, "script": script }),
        )?;
    } else {
        print!("{script}");
    }
    Ok(0)
}
