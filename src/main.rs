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
    keep_freed_memory();
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

/// Lets the allocator reuse freed memory instead of giving it back to the kernel at once.
///
/// A landing reads and writes whole index files (461 KB for git/git, three or four times), and
/// glibc serves blocks that large with a fresh `mmap` each time: every page of every copy is a
/// page fault, a sixth of a lone landing's page faults on git/git. With the thresholds raised,
/// such blocks come from the heap and a freed one is reused (docs/benchmarks.md, session 7).
/// Blocks over 64 MiB are still mapped; freed heap over 64 MiB is still trimmed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    const BIG: libc::c_int = 64 << 20;
    // SAFETY: mallopt only sets allocator parameters; called first thing in main, before any
    // thread exists. A refused setting (return 0) leaves glibc's default, which is only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, BIG);
        libc::mallopt(libc::M_TRIM_THRESHOLD, BIG);
        libc::mallopt(libc::M_TOP_PAD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Whether `--json` is among the arguments (before any `--`), for errors clap reports before
/// the arguments are parsed.
fn wants_json() -> bool {
    std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json")
}
