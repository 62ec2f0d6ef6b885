//! Worker processes (the reference examples, the Python worker) and
//! waiting for what they log; joining a test's own worker threads.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::WebSocket;

/// How long to wait for a worker to log something.
const LIMIT: Duration = Duration::from_secs(8);

/// A running worker process, killed on drop; its stderr is kept.
pub struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// `target/debug/examples/NAME`, next to this test's `deps` folder.
    pub fn example<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> Proc {
        let exe = std::env::current_exe().expect("test binary");
        let path: PathBuf = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target dir")
            .join("examples")
            .join(name);
        assert!(
            path.exists(),
            "{} is missing: cargo build --examples",
            path.display()
        );
        Proc::spawn(Command::new(path).args(args))
    }

    pub fn python<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Proc {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python/echo_worker.py"
        );
        Proc::spawn(Command::new("python3").arg(script).args(args))
    }

    pub fn spawn(command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start worker");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
            lines
                .map_while(Result::ok)
                .for_each(|line| sink.lock().expect("log").push(line));
        });
        Proc { child, log }
    }

    /// What the node's "worker NAME ready for" line ends the name with:
    /// reference workers are named `PROGRAM@HOST/PID`; the Python one
    /// `py-echo@HOST/PID` too.
    pub fn ready_tag(&self) -> String {
        format!("/{}", self.child.id())
    }

    /// The first log line containing `needle`, if one came.
    pub fn line(&self, needle: &str) -> Option<String> {
        let log = self.log.lock().expect("log");
        log.iter().find(|line| line.contains(needle)).cloned()
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Whether this echo worker (rather than `other`) logged the CONNECT
    /// of client `ws`, waiting until one of them did.
    pub fn saw_client(&self, ws: &WebSocket, other: &Proc) -> bool {
        let needle = format!("from 127.0.0.1:{} on", port(ws));
        let mine = eventually(LIMIT, || {
            let me = self.line(&needle).map(|_| true);
            me.or_else(|| other.line(&needle).map(|_| false))
        });
        mine.unwrap_or_else(|| panic!("no worker logged {needle}"))
    }

    /// Sends `signal` ("TERM", "KILL") and waits for the process to end.
    pub fn end(&mut self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        assert!(status.expect("kill").success());
        self.child.wait().expect("wait");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the Python worker can run here: `python3` on `PATH` imports
/// `zmq` ([`python_imports`]).
/// `python3 -m venv` in `dir`, then `pip install PACKAGE` into it (a
/// fresh environment: pip fetches the build backend and pyzmq): the
/// environment's interpreter.
pub fn install_python_package(dir: &std::path::Path, package: &std::path::Path) -> PathBuf {
    let venv = dir.join("venv");
    let run = |command: &mut Command, what: &str| {
        let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{what} failed: {log}");
    };
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    );
    let mut pip = Command::new(venv.join("bin/pip"));
    run(pip.args(["install", "--quiet"]).arg(package), "pip install");
    venv.join("bin/python3")
}

pub fn python_with_zmq() -> bool {
    python_imports("zmq", "pyzmq")
}

/// Whether `python3` on `PATH` imports `module` (the PyPI package
/// `package`). When it cannot, under CI (`CI=true`; `.ci/run` installs the
/// test packages in a virtual environment first on `PATH`) the test fails
/// saying what is missing. Elsewhere the calling test skips its Python
/// part, saying so in a `SKIPPED <test>: <why>` line on stderr: libtest
/// keeps what a passing test prints with `eprintln!`, not what it writes
/// to the handle.
pub fn python_imports(module: &str, package: &str) -> bool {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let missing = match probe {
        Ok(probe) if probe.status.success() => return true,
        Ok(probe) => {
            let error = String::from_utf8_lossy(&probe.stderr);
            let last = error.lines().last().unwrap_or("no error output");
            format!("python3 cannot import {module} (pip install {package}): {last}")
        }
        Err(why) => {
            format!("no python3 on PATH ({why}); install Python 3, then pip install {package}")
        }
    };
    let current = std::thread::current();
    let test = current.name().unwrap_or("a Python test");
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "{test}: {missing}. With CI=true the Python tests must run: .ci/run installs \
             {package} in target/ci-venv, first on PATH"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test} (its Python part): {missing}"
    );
    false
}

/// Joins one of a test's own worker threads, so that a panic there (a
/// handler's failed assertion) fails the test instead of being lost.
/// While the test is already failing (a `Drop` during unwinding) the
/// panic hook has printed it, and a second panic would abort the whole
/// test binary: then it is `None`.
pub fn join<T>(thread: JoinHandle<T>) -> Option<T> {
    match thread.join() {
        Ok(value) => Some(value),
        Err(panic) if !std::thread::panicking() => std::panic::resume_unwind(panic),
        Err(_) => None,
    }
}

/// Waits until `server` logged `worker` registering on `nodes` nodes (its
/// reactors): the node's `worker NAME ready for ...` lines.
pub fn wait_registered(server: &super::Server, worker: &Proc, nodes: usize) {
    let tag = format!("{} ready for ", worker.ready_tag());
    let registered = || {
        let count = server.log().iter().filter(|l| l.contains(&tag)).count();
        (count >= nodes).then_some(())
    };
    eventually(LIMIT, registered)
        .unwrap_or_else(|| panic!("{tag}: not on {nodes} nodes: {:#?}", server.log()));
}

/// A field of `/proc/PID/status` in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// How many file descriptors the process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `f`'s first `Some` within `limit`, trying every 10 ms.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = f() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The client's local port: the node tells workers `127.0.0.1:PORT`.
pub fn port(ws: &WebSocket) -> u16 {
    ws.get_ref().sock.local_addr().expect("address").port()
}
