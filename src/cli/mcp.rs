//! `git hybrid mcp`: serve the repository to an MCP client over stdin/stdout.

use clap::Args;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Internal: run the tasks dispatched through MCP (started detached by the server).
    #[arg(long, hide = true)]
    pub run_queue: bool,
}

pub fn handle_mcp(a: McpArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let dir = output::cwd(g)?;
    if a.run_queue {
        return git_hybrid::mcp::queue::run(&dir);
    }
    git_hybrid::mcp::serve(&dir)?;
    Ok(0)
}
