//! Real git servers on loopback for the remote tests: `git daemon` (`git://`, receive-pack
//! enabled) and smart HTTP (`git http-backend` behind a tiny HTTP/1.1 → CGI shim written here).
//!
//! Each server serves one bare repository (`<tmp>/server/origin.git`, created empty here; seed it
//! by pushing), listens on a free port of 127.0.0.1, is ready when [`GitServer::start`] returns
//! (it polls `connect`, never sleeps a fixed time) and stops when dropped. Every process runs with
//! the [`TestRepo`] hermetic environment.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestRepo;

/// Which protocol a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `git daemon --enable=receive-pack`, URL `git://127.0.0.1:<port>/origin.git`.
    Daemon,
    /// `git http-backend` behind [`serve_http`], URL `http://127.0.0.1:<port>/origin.git`.
    Http,
}

/// A running server; stopped (and its port released) on drop.
pub struct GitServer {
    pub kind: Kind,
    /// The bare repository it serves.
    pub bare: PathBuf,
    pub port: u16,
    daemon: Option<Child>,
    http_stop: Option<Arc<AtomicBool>>,
    /// HTTP only: the `Authorization` header every request must carry (see
    /// [`GitServer::require_basic_auth`]).
    http_auth: Arc<Mutex<Option<String>>>,
}

impl GitServer {
    /// Creates the bare repository `<repo base>/server/origin.git` and serves it.
    pub fn start(repo: &TestRepo, kind: Kind) -> GitServer {
        let root = repo.base().join("server");
        let bare = root.join("origin.git");
        std::fs::create_dir_all(&root).unwrap();
        repo.git_in(&root, &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
        // Anonymous pushes over HTTP (http-backend refuses them unless enabled).
        repo.git_in(&bare, &["config", "http.receivepack", "true"]);
        let mut server = match kind {
            Kind::Daemon => start_daemon(repo, &root),
            Kind::Http => start_http(repo, &root),
        };
        server.bare = bare;
        server
    }

    /// The URL clones and remotes use.
    pub fn url(&self) -> String {
        let scheme = match self.kind {
            Kind::Daemon => "git",
            Kind::Http => "http",
        };
        format!("{scheme}://127.0.0.1:{}/origin.git", self.port)
    }

    /// Installs `script` (a shell script body) as the bare repository's `pre-receive` hook.
    pub fn set_pre_receive(&self, script: &str) {
        let hook = self.bare.join("hooks").join("pre-receive");
        std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
        std::fs::write(&hook, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// HTTP only: from now on every request needs HTTP basic authentication as `user:password`
    /// (a 401 with `WWW-Authenticate` otherwise, so git asks its credential helpers).
    pub fn require_basic_auth(&self, user: &str, password: &str) {
        use base64_basic as b64;
        *self.http_auth.lock().unwrap() =
            Some(format!("Basic {}", b64::encode(format!("{user}:{password}").as_bytes())));
    }

    /// `git rev-parse <rev>` in the bare repository, `None` when it does not resolve.
    pub fn rev(&self, repo: &TestRepo, rev: &str) -> Option<String> {
        let out = repo.git_out(&self.bare, &["rev-parse", "--verify", "-q", rev]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.daemon {
            super::kill_9(child);
        }
        if let Some(stop) = &self.http_stop {
            stop.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees the flag and closes the listener.
            let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        }
    }
}

/// A port nobody listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Waits until something accepts connections on `port`; `alive` is asked between tries and a
/// `false` gives up early (the server died).
fn wait_for_port(port: u16, mut alive: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return true;
        }
        if !alive() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn start_daemon(repo: &TestRepo, root: &Path) -> GitServer {
    // The port is free when picked but another process may take it before the daemon binds:
    // a daemon that exits is restarted on a new port.
    for _ in 0..10 {
        let port = free_port();
        // `git-daemon` itself, not `git daemon`: the `git` wrapper runs it as a child, and
        // killing the wrapper would leave the daemon running.
        let mut cmd = Command::new(daemon_program(repo));
        cmd.arg("--enable=receive-pack")
            .arg("--export-all")
            .arg(format!("--base-path={}", root.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg("--reuseaddr")
            .arg(root)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        repo.env(&mut cmd);
        let mut child = cmd.spawn().expect("spawn git daemon");
        if wait_for_port(port, || matches!(child.try_wait(), Ok(None))) {
            return GitServer {
                kind: Kind::Daemon,
                bare: PathBuf::new(),
                port,
                daemon: Some(child),
                http_stop: None,
                http_auth: Arc::default(),
            };
        }
        super::kill_9(&mut child);
    }
    panic!("git daemon did not start");
}

/// `<git --exec-path>/git-daemon`.
fn daemon_program(repo: &TestRepo) -> PathBuf {
    let exec_path = repo.git_in(&repo.base(), &["--exec-path"]);
    PathBuf::from(exec_path.trim()).join("git-daemon")
}

fn start_http(repo: &TestRepo, root: &Path) -> GitServer {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    // The hermetic environment, captured from a throwaway command.
    let mut probe = Command::new("true");
    repo.env(&mut probe);
    let env: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> =
        probe.get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
    let root = root.to_path_buf();
    let flag = stop.clone();
    let auth: Arc<Mutex<Option<String>>> = Arc::default();
    let required = auth.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (root, env, required) = (root.clone(), env.clone(), required.clone());
            std::thread::spawn(move || {
                let _ = serve_http(conn, &root, &env, &required);
            });
        }
    });
    assert!(wait_for_port(port, || true), "HTTP server did not start");
    GitServer { kind: Kind::Http, bare: PathBuf::new(), port, daemon: None, http_stop: Some(stop), http_auth: auth }
}

/// Serves HTTP/1.1 requests on one connection by running `git http-backend` as a CGI program
/// for each (RFC 3875 variables; request bodies by `Content-Length` or chunked).
fn serve_http(
    conn: TcpStream,
    root: &Path,
    env: &[(std::ffi::OsString, Option<std::ffi::OsString>)],
    required_auth: &Mutex<Option<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(uri)) = (parts.next(), parts.next()) else { return Ok(()) };
        let (method, uri) = (method.to_string(), uri.to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            read_chunked(&mut reader)?
        } else {
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut b = vec![0; len];
            reader.read_exact(&mut b)?;
            b
        };
        let required = required_auth.lock().unwrap().clone();
        if required.is_some() && header("authorization") != required {
            let body = "authentication required\n";
            let reply = format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            writer.write_all(reply.as_bytes())?;
            writer.flush()?;
            continue;
        }
        let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
        let mut cmd = Command::new("git");
        cmd.arg("http-backend");
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("CONTENT_TYPE", header("content-type").unwrap_or_default());
        if let Some(v) = header("content-encoding") {
            cmd.env("HTTP_CONTENT_ENCODING", v);
        }
        if let Some(v) = header("git-protocol") {
            cmd.env("GIT_PROTOCOL", v);
        }
        let mut child =
            cmd.current_dir(root).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out)?;
        let _ = feeder.join();
        child.wait()?;
        // CGI output: headers, a blank line, the body.
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
        let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
        let (head, body) = match split {
            Some((p, n)) => (String::from_utf8_lossy(&out[..p]).into_owned(), out[p + n..].to_vec()),
            None => (String::new(), out),
        };
        let mut status = "200 OK".to_string();
        let mut response = Vec::new();
        for h in head.lines() {
            match h.split_once(':') {
                Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
                Some(_) => response.extend_from_slice(format!("{h}\r\n").as_bytes()),
                None => {}
            }
        }
        let mut reply = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len()).into_bytes();
        reply.extend_from_slice(&response);
        reply.extend_from_slice(b"\r\n");
        reply.extend_from_slice(&body);
        writer.write_all(&reply)?;
        writer.flush()?;
    }
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            // Trailers end with a blank line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

impl TestRepo {
    /// Makes `server` this repository's `origin` and pushes `main` to it (upstream set).
    pub fn publish_to(&self, server: &GitServer) {
        self.git(&["remote", "add", "origin", &server.url()]);
        self.git(&["push", "-q", "-u", "origin", "main"]);
    }

    /// A new clone of `server` at `<base>/<name>`, sharing this repository's hermetic
    /// environment; its `root` is the clone.
    pub fn clone_from(&self, server: &GitServer, name: &str) -> TestRepo {
        let dest = self.base().join(name);
        self.git_in(&self.base(), &["clone", "-q", &server.url(), dest.to_str().unwrap()]);
        TestRepo {
            tmp: tempfile::tempdir().expect("tempdir"),
            root: dest,
            empty_config: self.empty_config.clone(),
            home: self.home.clone(),
        }
    }
}

/// Standard base64 (RFC 4648, padded), enough for a basic-auth header.
mod base64_basic {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn rfc4648_vectors() {
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"user:pass"), "dXNlcjpwYXNz");
    }
}
