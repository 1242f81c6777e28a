use clap::Args;
use git_hybrid::error::HybridError;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct LabelArgs {}

pub fn handle_label(_a: LabelArgs, _g: &GlobalArgs) -> anyhow::Result<i32> {
    Err(HybridError::NotBuilt("label").into())
}
