//! Real ZooKeeper: a standalone node or a three-node ensemble on 127.0.0.1, on free ports,
//! with single nodes that can be stopped, killed (SIGKILL), paused (SIGSTOP) and restarted.
//!
//! Nodes run the JVM directly (not zkServer.sh; heap `AXON_ZK_HEAP`, 128m unless set) with
//! tickTime=500, so sessions from 1 s to
//! 10 s are accepted and expiry tests stay short, and with `forceSync=no`: these nodes never
//! outlive a power loss, and an fsync per write on a virtual disk would only measure the disk. Readiness is `srvr` answering with a
//! `Mode:` line: `ruok` answers even on a node that lost quorum.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::Proc;
use super::{bins, ports, wait, workdir};

const CLASSPATH: &[&str] = &[
    "/etc/zookeeper/conf",
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
];
const INSTALL: &str = "install it with `apt-get install -y zookeeper` (or run `make deps`)";
/// How long a node may take to serve: a cold JVM here takes 2–3 s.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One ZooKeeper server.
#[derive(Debug)]
pub struct Node {
    pub id: usize,
    pub client_port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

/// A ZooKeeper ensemble (one node is a standalone server).
#[derive(Debug)]
pub struct Ensemble {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Ensemble {
    /// One standalone node, serving.
    pub fn standalone() -> Ensemble {
        Ensemble::start(1)
    }

    /// Three nodes, serving.
    pub fn three() -> Ensemble {
        Ensemble::start(3)
    }

    /// `count` nodes on free ports; returns once every node serves.
    pub fn start(count: usize) -> Ensemble {
        let client_ports: Vec<u16> = (0..count).map(|_| ports::free_port()).collect();
        Ensemble::start_on(&client_ports)
    }

    /// One node per client port given (the others, quorum and election, free ones).
    pub fn start_on(client_ports: &[u16]) -> Ensemble {
        let count = client_ports.len();
        let java = bins::system("java", INSTALL);
        assert!(PathBuf::from("/usr/share/java/zookeeper.jar").exists(), "ZooKeeper is not installed: {INSTALL}");
        let dir = workdir("zk");
        let ports: Vec<(u16, u16, u16)> =
            client_ports.iter().map(|&client| (client, ports::free_port(), ports::free_port())).collect();
        let mut nodes = Vec::with_capacity(count);
        for (i, &(client_port, _, _)) in ports.iter().enumerate() {
            let id = i + 1;
            let node_dir = dir.path().join(format!("node{id}"));
            std::fs::create_dir_all(node_dir.join("data")).expect("creating a ZooKeeper data directory");
            std::fs::write(node_dir.join("data/myid"), format!("{id}\n")).expect("writing myid");
            let mut cfg = format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,srvr,stat,mntr,conf,isro,cons,wchs,wchc\nmaxClientCnxns=0\n\
                 autopurge.purgeInterval=0\nforceSync=no\n",
                node_dir.join("data").display()
            );
            if count > 1 {
                cfg.push_str("standaloneEnabled=false\n");
                for (j, &(_, quorum, election)) in ports.iter().enumerate() {
                    cfg.push_str(&format!("server.{}=127.0.0.1:{quorum}:{election}\n", j + 1));
                }
            }
            std::fs::write(node_dir.join("zoo.cfg"), cfg).expect("writing zoo.cfg");
            nodes.push(Node { id, client_port, dir: node_dir, proc: None });
        }
        let mut ensemble = Ensemble { nodes, _dir: dir };
        for i in 0..count {
            ensemble.spawn(i, &java);
        }
        ensemble.wait_serving();
        ensemble
    }

    fn spawn(&mut self, i: usize, java: &std::path::Path) {
        let node = &mut self.nodes[i];
        let mut command = Command::new(java);
        command
            .arg(format!("-Xmx{}", std::env::var("AXON_ZK_HEAP").unwrap_or_else(|_| "128m".into())))
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-Dzookeeper.root.logger=INFO,CONSOLE")
            .arg("-cp")
            .arg(CLASSPATH.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(node.dir.join("zoo.cfg"));
        node.proc = Some(Proc::spawn(&format!("zookeeper-{}", node.id), &mut command, &node.dir.join("zookeeper.log")));
    }

    /// `host:port,…` of every node, as a client's connect string.
    pub fn connect_string(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The process ids of the running nodes.
    pub fn pids(&self) -> Vec<i32> {
        self.nodes.iter().filter_map(|n| n.proc.as_ref().map(Proc::pid)).collect()
    }

    /// Waits until every running node serves.
    pub fn wait_serving(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.proc.is_some() {
                wait::for_true(&format!("ZooKeeper node {} to serve", node.id), START_TIMEOUT, || {
                    self.mode(i).is_some()
                });
            }
        }
    }

    /// `standalone`, `leader` or `follower` while the node serves; `None` otherwise.
    pub fn mode(&self, i: usize) -> Option<String> {
        let reply = four_letter(self.nodes[i].client_port, "srvr")?;
        reply.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_owned)
    }

    /// Which node index a client with `session_id` (as ZooKeeper prints it, `0x…`) is
    /// connected to, from each node's `cons` output.
    pub fn node_of_session(&self, session_id: &str) -> Option<usize> {
        let needle = format!("sid={session_id}");
        (0..self.nodes.len())
            .find(|&i| four_letter(self.nodes[i].client_port, "cons").is_some_and(|reply| reply.contains(&needle)))
    }

    /// Stops a node cleanly (SIGTERM).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut proc) = self.nodes[i].proc.take() {
            proc.stop(libc::SIGTERM, Duration::from_secs(10));
        }
    }

    /// Kills a node (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut proc) = self.nodes[i].proc.take() {
            proc.kill();
        }
    }

    /// Freezes a node (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn pause(&self, i: usize) {
        if let Some(proc) = &self.nodes[i].proc {
            proc.pause();
        }
    }

    pub fn resume(&self, i: usize) {
        if let Some(proc) = &self.nodes[i].proc {
            proc.resume();
        }
    }

    /// Starts a stopped or killed node again (with its data); does not wait for it to serve,
    /// since it may need other nodes for a quorum.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].proc.is_some() {
            self.kill(i);
        }
        let java = bins::system("java", INSTALL);
        self.spawn(i, &java);
    }

    /// Whether node `i` has a running process (paused counts as running).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].proc.as_mut().is_some_and(Proc::is_running)
    }
}

/// Sends a four-letter command and returns the reply, or `None` if the node does not answer.
pub fn four_letter(port: u16, command: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(1000))).ok()?;
    stream.write_all(command.as_bytes()).ok()?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    (!reply.is_empty() && !reply.contains("not currently serving")).then_some(reply)
}

/// One standalone ZooKeeper shared by every test of a test binary that only reads and writes
/// znodes (each test isolates itself under a path of its own). It lives as long as the test
/// process: it is started from a thread that never exits, so PR_SET_PDEATHSIG fires only when
/// the process ends; and when the process exits normally, a hook kills it and removes its
/// directory (nothing else would: the ensemble is never dropped).
pub fn shared() -> &'static str {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-zookeeper".into())
            .spawn(move || {
                let ensemble = Ensemble::standalone();
                *SHARED_LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((ensemble.pids(), ensemble._dir.path().to_owned()));
                // SAFETY: registering a plain `extern "C"` function with no arguments.
                unsafe {
                    libc::atexit(remove_shared);
                }
                let _ = tx.send(ensemble.connect_string());
                let _keep = ensemble;
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning the shared ZooKeeper thread");
        rx.recv().expect("the shared ZooKeeper did not start")
    })
}

/// The shared ZooKeeper's processes and directory, for [`remove_shared`].
static SHARED_LEFTOVERS: std::sync::Mutex<Option<(Vec<i32>, PathBuf)>> = std::sync::Mutex::new(None);

extern "C" fn remove_shared() {
    let Some((pids, dir)) = SHARED_LEFTOVERS.lock().ok().and_then(|mut l| l.take()) else { return };
    for pid in pids {
        // SAFETY: kill and waitpid on this process's own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A path unique to this process and call, for a test to isolate itself under.
pub fn unique_path(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("/test-{}-{}-{name}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
