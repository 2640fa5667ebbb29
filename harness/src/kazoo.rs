//! kazoo, the independent ZooKeeper client: tests check what Axon wrote, and play the part of
//! registrars Axon did not write, with a client that shares no code with Axon.
//!
//! One Python process per [`Kazoo`], speaking JSON lines (tests/support/kazoo_cli.py). Python
//! with kazoo comes from `AXON_PYTHON`, else the workspace's `.venv` (made by `make deps`).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use super::bins;

const INSTALL: &str =
    "kazoo is missing: run `make deps` (creates .venv with kazoo), or set AXON_PYTHON to a Python that has it";

/// A znode as kazoo sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Znode {
    pub data: String,
    /// The session id owning it if ephemeral, else 0.
    pub owner: i64,
    pub ctime: i64,
}

pub struct Kazoo {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("AXON_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = bins::workspace_root().join(".venv/bin/python3");
    assert!(venv.exists(), "{INSTALL}");
    venv
}

impl Kazoo {
    /// Connects to `hosts` (a connect string).
    pub fn connect(hosts: &str) -> Kazoo {
        let script = bins::workspace_root().join("tests/support/kazoo_cli.py");
        use std::os::unix::process::CommandExt as _;
        let mut command = Command::new(python());
        super::process::mark(&mut command);
        let mut child = command
            .process_group(0)
            .arg(script)
            .arg(hosts)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting kazoo: {e}; {INSTALL}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut kazoo = Kazoo { child, stdin: Some(stdin), stdout };
        let ready = kazoo.read_reply();
        assert_eq!(ready, Ok(json!("ready")), "kazoo did not connect to {hosts}; {INSTALL}");
        kazoo
    }

    fn read_reply(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading from kazoo");
        assert!(!line.is_empty(), "kazoo exited; {INSTALL}");
        let reply: Value = serde_json::from_str(&line).expect("kazoo answers JSON");
        match reply.get("error") {
            Some(err) => Err(err.as_str().unwrap_or_default().to_owned()),
            None => Ok(reply["ok"].clone()),
        }
    }

    /// Sends one command; `Err` carries kazoo's error text.
    pub fn call(&mut self, command: Value) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().expect("kazoo is open");
        writeln!(stdin, "{command}").expect("writing to kazoo");
        self.read_reply()
    }

    fn ok(&mut self, command: Value) -> Value {
        let shown = command.to_string();
        self.call(command).unwrap_or_else(|e| panic!("kazoo {shown}: {e}"))
    }

    /// Child names, sorted; empty if the node does not exist.
    pub fn children(&mut self, path: &str) -> Vec<String> {
        serde_json::from_value(self.ok(json!({"op": "children", "path": path}))).unwrap_or_default()
    }

    pub fn get(&mut self, path: &str) -> Option<Znode> {
        let value = self.ok(json!({"op": "get", "path": path}));
        (!value.is_null()).then(|| Znode {
            data: value["data"].as_str().unwrap_or_default().to_owned(),
            owner: value["owner"].as_i64().unwrap_or_default(),
            ctime: value["ctime"].as_i64().unwrap_or_default(),
        })
    }

    /// Every child's data, by child name.
    pub fn records(&mut self, path: &str) -> BTreeMap<String, String> {
        serde_json::from_value(self.ok(json!({"op": "records", "path": path}))).unwrap_or_default()
    }

    /// Every child's data, by child name, each read giving up after `within` (while
    /// ZooKeeper is away, say): `Err` then.
    pub fn try_records(&mut self, path: &str, within: std::time::Duration) -> Result<BTreeMap<String, String>, String> {
        let value = self.call(json!({"op": "records", "path": path, "within": within.as_secs_f64()}))?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// Creates a node (parents as needed); returns the created path. Ephemeral nodes live as
    /// long as this Kazoo.
    pub fn create(&mut self, path: &str, data: &str, ephemeral: bool, sequence: bool) -> String {
        let created =
            self.ok(json!({"op": "create", "path": path, "data": data, "ephemeral": ephemeral, "sequence": sequence}));
        created.as_str().unwrap_or_default().to_owned()
    }

    /// [`Kazoo::create`], also returning when ZooKeeper's answer reached the client, on the
    /// monotonic clock ([`monotonic_ns`]).
    pub fn create_timed(&mut self, path: &str, data: &str, ephemeral: bool, sequence: bool) -> (String, u64) {
        let reply = self.ok(json!({"op": "create", "path": path, "data": data, "ephemeral": ephemeral, "sequence": sequence, "timed": true}));
        (reply["path"].as_str().unwrap_or_default().to_owned(), reply["acked_ns"].as_u64().unwrap_or_default())
    }

    /// [`Kazoo::delete`] (not recursive), returning when ZooKeeper's answer reached the client.
    pub fn delete_timed(&mut self, path: &str) -> u64 {
        let reply = self.ok(json!({"op": "delete", "path": path, "recursive": false, "timed": true}));
        reply["acked_ns"].as_u64().unwrap_or_default()
    }

    /// Creates persistent nodes (parents as needed), `(path, data)` each, in one call.
    pub fn create_many(&mut self, nodes: &[(String, String)]) {
        self.ok(json!({"op": "create_many", "nodes": nodes}));
    }

    /// Creates a node (parents as needed) with an ACL that lets nobody read it.
    pub fn create_unreadable(&mut self, path: &str, data: &str) -> String {
        let created = self.ok(json!({"op": "create", "path": path, "data": data, "acl": "no-read"}));
        created.as_str().unwrap_or_default().to_owned()
    }

    /// Sets a node's ACL: `read-only` (anyone may read, nobody write) or `open`.
    pub fn set_acl(&mut self, path: &str, acl: &str) {
        self.ok(json!({"op": "set_acl", "path": path, "acl": acl}));
    }

    pub fn set(&mut self, path: &str, data: &str) {
        self.ok(json!({"op": "set", "path": path, "data": data}));
    }

    pub fn delete(&mut self, path: &str, recursive: bool) {
        self.ok(json!({"op": "delete", "path": path, "recursive": recursive}));
    }

    /// Starts reading `path`'s children and their data every few milliseconds and at every
    /// change, until [`Kazoo::observed`].
    pub fn observe(&mut self, path: &str) {
        self.call(json!({"op": "observe", "path": path})).expect("kazoo observe");
    }

    /// Stops observing; every distinct view of the children (name → data) seen, in order, with
    /// when it was read (CLOCK_MONOTONIC nanoseconds).
    pub fn observed(&mut self) -> Vec<(u64, BTreeMap<String, String>)> {
        let views = self.call(json!({"op": "observed"})).expect("kazoo observed");
        serde_json::from_value(views).expect("kazoo's views")
    }

    pub fn session_id(&mut self) -> String {
        self.ok(json!({"op": "session"})).as_str().unwrap_or_default().to_owned()
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock kazoo's timed operations report on (and the one
/// `Instant` reads on Linux).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

impl Drop for Kazoo {
    /// Closes the session cleanly (its ephemeral nodes go at once), killing kazoo if it hangs.
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..200 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
