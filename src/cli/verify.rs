use clap::Args;
use git_hybrid::error::HybridError;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct VerifyArgs {}

pub fn handle_verify(_a: VerifyArgs, _g: &GlobalArgs) -> anyhow::Result<i32> {
    Err(HybridError::NotBuilt("verify").into())
}
