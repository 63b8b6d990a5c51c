//! nginx in front of the instances, from the reference configuration in
//! `deploy/nginx/pientegra.conf`: the file is used as it is, with only its
//! `# BEGIN name` / `# END name` blocks (paths, ports, instances) replaced.
//! nginx runs in the foreground (`daemon off`) with everything in a temp dir.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The reference configuration.
pub const TEMPLATE: &str = include_str!("../../deploy/nginx/pientegra.conf");

/// The nginx binary: `$NGINX`, else `nginx` on the `PATH`, else Debian's
/// `/usr/sbin/nginx`. `None` (with a line saying so) when there is none, which
/// is a failure when `CI=true`.
pub fn binary() -> Option<PathBuf> {
    let from_env = std::env::var_os("NGINX").map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"));
    let found = from_env.into_iter().chain(on_path).chain([PathBuf::from("/usr/sbin/nginx")]).find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nginx must be installed when CI=true (apt-get install nginx): the tests through nginx cannot run"
        );
        eprintln!("skipped: nginx is not installed (apt-get install nginx, or set NGINX to its path)");
    }
    found
}

/// `template` with each named block replaced by `lines` (indented as its
/// `# BEGIN` line). Panics on a block the template lacks, so the harness and
/// the reference configuration cannot drift apart unnoticed.
pub fn render(template: &str, blocks: &[(&str, Vec<String>)]) -> String {
    let mut out = String::new();
    let mut skipping: Option<&str> = None;
    let mut replaced = vec![];
    for line in template.lines() {
        let trimmed = line.trim();
        if let Some(name) = skipping {
            if trimmed == format!("# END {name}") {
                skipping = None;
            }
            continue;
        }
        if let Some((name, lines)) = blocks.iter().find(|(name, _)| trimmed == format!("# BEGIN {name}")) {
            let indent = &line[..line.len() - line.trim_start().len()];
            for replacement in lines {
                out.push_str(indent);
                out.push_str(replacement);
                out.push('\n');
            }
            skipping = Some(name);
            replaced.push(*name);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(skipping.is_none(), "block {skipping:?} has no # END line");
    for (name, _) in blocks {
        assert!(replaced.contains(name), "the reference nginx configuration has no block {name}");
    }
    out
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx in front of the instances on `upstreams` (loopback ports);
    /// `None` when the test must skip (see [`binary`]).
    pub async fn start(upstreams: &[u16]) -> Option<Nginx> {
        let binary = binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, Self::config(dir.path(), port, upstreams)).expect("writing nginx.conf");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx { child, port, dir };
        nginx.wait_listening().await;
        Some(nginx)
    }

    /// The rendered configuration: the reference with this run's paths, port and instances.
    fn config(dir: &Path, port: u16, upstreams: &[u16]) -> String {
        let path = |name: &str| dir.join(name).display().to_string();
        // As root, nginx's workers take the `user` directive's identity: keep
        // the one that owns the temp dir. Otherwise the directive is ignored.
        let owner = std::fs::metadata(dir).expect("temp dir").uid();
        let mut process = vec![];
        if owner == 0 {
            process.push("user root;".to_owned());
        }
        process.push(format!("pid {};", path("nginx.pid")));
        process.push(format!("error_log {} warn;", path("error.log")));
        let paths =
            ["client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"]
                .iter()
                .map(|directive| format!("{directive} {};", path(directive)))
                .collect();
        let instances =
            upstreams.iter().map(|port| format!("server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;")).collect();
        render(
            TEMPLATE,
            &[
                ("process", process),
                ("paths", paths),
                ("logs", vec![format!("access_log {} pientegra;", path("access.log"))]),
                ("upstreams", instances),
                ("listen", vec![format!("listen 127.0.0.1:{port};")]),
            ],
        )
    }

    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nginx did not listen on {}:\n{}", self.port, self.logs());
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The error log and what nginx printed, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILLed master would leave them running).
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
