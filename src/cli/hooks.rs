use clap::{Args, Subcommand};
use git_hybrid::error::HybridError;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct HooksArgs {
    #[command(subcommand)]
    pub action: HooksAction,
}

#[derive(Debug, Subcommand)]
pub enum HooksAction {
    /// Install the hooks (chaining any hook already there).
    Install,
    /// Remove the hooks and restore what was there before.
    Uninstall,
    /// Show which hooks are installed.
    Status,
    /// Find missing, stale, shadowed or non-executable hooks and say how to fix them.
    Doctor,
}

pub fn handle_hooks(_a: HooksArgs, _g: &GlobalArgs) -> anyhow::Result<i32> {
    Err(HybridError::NotBuilt("hooks").into())
}
