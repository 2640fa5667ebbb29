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
        let mut child = Command::new(python())
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

    /// Creates a node (parents as needed); returns the created path. Ephemeral nodes live as
    /// long as this Kazoo.
    pub fn create(&mut self, path: &str, data: &str, ephemeral: bool, sequence: bool) -> String {
        let created =
            self.ok(json!({"op": "create", "path": path, "data": data, "ephemeral": ephemeral, "sequence": sequence}));
        created.as_str().unwrap_or_default().to_owned()
    }

    pub fn set(&mut self, path: &str, data: &str) {
        self.ok(json!({"op": "set", "path": path, "data": data}));
    }

    pub fn delete(&mut self, path: &str, recursive: bool) {
        self.ok(json!({"op": "delete", "path": path, "recursive": recursive}));
    }

    pub fn session_id(&mut self) -> String {
        self.ok(json!({"op": "session"})).as_str().unwrap_or_default().to_owned()
    }
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
