use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// For bash, also defines `_git_hybrid`, the hook git's own completion calls for
/// `git hybrid <TAB>`: it replays the words as `git-hybrid ...` into clap's completer.
const BASH_GIT_SHIM: &str = r#"
# `git hybrid <TAB>`: git's completion calls _git_hybrid; reuse the completer above.
_git_hybrid() {
    local COMP_WORDS=("git-hybrid" "${COMP_WORDS[@]:2}")
    local COMP_CWORD=$((COMP_CWORD - 1))
    local cur="${COMP_WORDS[COMP_CWORD]}" prev=""
    if [[ $COMP_CWORD -gt 0 ]]; then prev="${COMP_WORDS[COMP_CWORD-1]}"; fi
    _git__hybrid "git-hybrid" "$cur" "$prev"
}
"#;

pub fn handle_completions(a: CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "git-hybrid", &mut std::io::stdout());
    if a.shell == Shell::Bash {
        print!("{BASH_GIT_SHIM}");
    }
    Ok(0)
}
