use clap::Args;
use git_hybrid::error::HybridError;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct ExportArgs {}

pub fn handle_export(_a: ExportArgs, _g: &GlobalArgs) -> anyhow::Result<i32> {
    Err(HybridError::NotBuilt("export").into())
}
