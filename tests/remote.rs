//! Landing through a shared remote served by a real git server on loopback (`git daemon` and
//! smart HTTP, see `tests/common/server.rs`).

mod common;

use common::server::{GitServer, Kind};
use common::TestRepo;

/// Both servers accept a push and serve a clone, so the remote tests exercise real transports.
#[test]
fn test_servers_serve_push_and_clone() {
    for kind in [Kind::Daemon, Kind::Http] {
        let repo = TestRepo::new();
        let server = GitServer::start(&repo, kind);
        repo.publish_to(&server);
        assert_eq!(server.rev(&repo, "refs/heads/main").as_deref(), Some(repo.rev("main").as_str()), "{kind:?}");
        let other = repo.clone_from(&server, "other");
        assert_eq!(other.read("README.md"), "hello\n");
        other.write("b.txt", "b\n");
        let pushed = other.commit_all("b");
        other.git(&["push", "-q", "origin", "main"]);
        assert_eq!(server.rev(&repo, "main").as_deref(), Some(pushed.as_str()), "{kind:?}");
        // An atomic push with a stale lease is refused as a whole.
        repo.write("c.txt", "c\n");
        let mine = repo.commit_all("c");
        let stale = repo.rev("origin/main");
        let out = repo.git_out(
            &repo.root,
            &[
                "push",
                "--porcelain",
                "--atomic",
                &format!("--force-with-lease=refs/heads/main:{stale}"),
                "origin",
                &format!("{mine}:refs/heads/main"),
                &format!("{mine}:refs/hybrid/x"),
            ],
        );
        assert!(!out.status.success(), "{kind:?}");
        assert!(common::stdout(&out).contains("stale info"), "{kind:?}: {}", common::stdout(&out));
        assert_eq!(server.rev(&repo, "main").as_deref(), Some(pushed.as_str()), "{kind:?}");
        assert_eq!(server.rev(&repo, "refs/hybrid/x"), None, "{kind:?}");
    }
}
