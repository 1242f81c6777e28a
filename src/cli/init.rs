use clap::Args;
use git_hybrid::config::{FILE_NAME, TEMPLATE};
use git_hybrid::error::HybridError;

use super::{output, GlobalArgs};

#[derive(Debug, Args)]
pub struct InitArgs {}

pub fn handle_init(_a: InitArgs, g: &GlobalArgs) -> anyhow::Result<i32> {
    let project = output::project(g)?;
    let path = project.root.join(FILE_NAME);
    // create_new makes the refusal race-free: an existing file is never overwritten.
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
    match file {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(TEMPLATE.as_bytes())?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(HybridError::Usage(format!("{} already exists; not overwriting it", path.display())).into());
        }
        Err(e) => return Err(e.into()),
    }
    if g.json {
        output::print_json(&serde_json::json!({ "config": path }))?;
    } else {
        println!("wrote {}", path.display());
    }
    Ok(0)
}
