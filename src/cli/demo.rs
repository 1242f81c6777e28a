use clap::Args;
use git_hybrid::error::HybridError;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct DemoArgs {}

pub fn handle_demo(_a: DemoArgs, _g: &GlobalArgs) -> anyhow::Result<i32> {
    Err(HybridError::NotBuilt("demo").into())
}
