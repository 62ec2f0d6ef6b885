//! A real PostgreSQL for the ACL store's tests: the cluster `.ci/run`
//! started (`AVERYWS_TEST_PG`, its URL), or a throwaway one of the test's
//! own, started by `scripts/pg-cluster.sh` and stopped on drop.
//!
//! Without PostgreSQL installed a test says SKIPPED; under CI
//! (`CI=true`, where `.ci/run` installs it) it fails instead.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use super::TempDir;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");

/// A running cluster and its URL (user `averyws` with a password).
pub struct Cluster {
    pub url: String,
    /// Our own cluster's directory; `None` for the shared one.
    own: Option<TempDir>,
}

impl Cluster {
    /// The shared cluster when `.ci/run` started one, else one of our own.
    pub fn shared_or_own() -> Option<Cluster> {
        match std::env::var("AVERYWS_TEST_PG") {
            Ok(url) if !url.is_empty() => Some(Cluster { url, own: None }),
            _ => Cluster::own(),
        }
    }

    /// A cluster of this test's own, which it may stop and start.
    pub fn own() -> Option<Cluster> {
        let dir = TempDir::new();
        let started = Command::new(SCRIPT)
            .args(["start", &super::utf8(dir.path())])
            .output();
        match started {
            Ok(out) if out.status.success() => {
                let url = String::from_utf8(out.stdout).expect("UTF-8 URL");
                Some(Cluster {
                    url: url.trim().to_owned(),
                    own: Some(dir),
                })
            }
            Ok(out) => skip(&String::from_utf8_lossy(&out.stderr)),
            Err(e) => skip(&format!("cannot run {SCRIPT}: {e}")),
        }
    }

    /// Stops our own cluster (clients are cut off at once).
    pub fn stop(&self) {
        self.script("stop");
    }

    /// Starts our own cluster again, on the same port.
    pub fn restart(&self) {
        self.script("restart");
    }

    /// Our own cluster's URL over its unix socket (in its directory; local
    /// logins need no password there).
    pub fn socket_url(&self) -> String {
        let dir = super::utf8(&self.dir()).replace('/', "%2F");
        let port = std::fs::read_to_string(self.dir().join("port")).expect("port file");
        format!("postgresql://averyws@{dir}:{}/postgres", port.trim())
    }

    /// Our own cluster's CA certificate, which issued its server's.
    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    /// A SQL client, for changes made by hand as an operator would.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test cluster")
    }

    fn dir(&self) -> PathBuf {
        let dir = self.own.as_ref().expect("only our own cluster is stopped");
        dir.path().to_path_buf()
    }

    fn script(&self, command: &str) {
        let status = Command::new(SCRIPT)
            .args([command, &super::utf8(&self.dir())])
            .status()
            .expect("run pg-cluster.sh");
        assert!(status.success(), "pg-cluster.sh {command} failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.own.is_some() {
            let _ = Command::new(SCRIPT)
                .args(["stop", &super::utf8(&self.dir())])
                .status();
        }
    }
}

/// A schema no other test uses: `t_NAME_PID`.
pub fn schema(name: &str) -> String {
    format!("t_{name}_{}", std::process::id())
}

fn skip(why: &str) -> Option<Cluster> {
    let current = std::thread::current();
    let test = current.name().unwrap_or("a PostgreSQL test");
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: no PostgreSQL: {why}. With CI=true it must run: .ci/run installs it");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no PostgreSQL: {why}");
    None
}
