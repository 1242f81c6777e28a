use clap::Args;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct FetchArgs {}

pub fn handle_fetch(_a: FetchArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let project = output::project(g)?;
    let report = git_hybrid::remote::published::fetch(&project)?;
    if g.json {
        output::print_json(&report)?;
        return Ok(0);
    }
    println!(
        "fetched {} from {} ({}); {} landing record(s) brought in",
        report.target,
        report.remote,
        git_hybrid::repo::short(&report.tip),
        report.imported.len()
    );
    for name in &report.imported {
        println!("  landed elsewhere: {name}");
    }
    for name in &report.kept {
        println!("  kept the local {name} (the remote's differs)");
    }
    Ok(0)
}
