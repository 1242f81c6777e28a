//! The `git-hybrid` binary: parse, run, map errors to the documented exit codes.

mod cli;

use clap::Parser;

#[allow(unsafe_code)]
fn main() {
    // Behave like other command-line tools when stdout is closed early (`git hybrid status | head`):
    // die quietly from SIGPIPE instead of panicking on a failed write.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Before any thread exists too: libgit2's object cache limits are process globals.
    git_hybrid::git::cache_large_trees();
    // The supervising child of an agent run (see git_hybrid::agent::supervise): before anything
    // else, so no thread exists when it applies the sandbox.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == git_hybrid::agent::supervise::SUBCOMMAND) {
        git_hybrid::agent::supervise::main(&args);
    }
    // A completion request from the script `git hybrid completions <shell>` printed: answer it
    // from the clap definitions and exit (see src/cli/completions.rs).
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
        .var(cli::completions::VAR)
        .bin("git-hybrid")
        .complete();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            if e.use_stderr() && wants_json() {
                // Argument errors are bad input like any other: the same JSON shape.
                let text = e.render().to_string();
                let doc = git_hybrid::error::ErrorReport::new(text.trim_end().trim_start_matches("error: "), code);
                eprintln!("{}", doc.to_json());
            } else {
                let _ = e.print();
            }
            std::process::exit(code);
        }
    };
    let json = cli.global.json;
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = git_hybrid::error::exit_code(&err);
            if json {
                eprintln!("{}", git_hybrid::error::ErrorReport::of(&err).to_json());
            } else {
                eprintln!("git-hybrid: error: {err:#}");
            }
            code
        }
    };
    std::process::exit(code);
}

/// Whether `--json` is among the arguments (before any `--`), for errors clap reports before
/// the arguments are parsed.
fn wants_json() -> bool {
    std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json")
}
