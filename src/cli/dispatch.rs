use clap::Args;
use git_hybrid::error::HybridError;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct DispatchArgs {}

pub fn handle_dispatch(_a: DispatchArgs, _g: &GlobalArgs) -> anyhow::Result<i32> {
    Err(HybridError::NotBuilt("dispatch").into())
}
