//! Real HAProxy processes (master-worker, foreground) with a given configuration, and their
//! runtime API (stats socket).

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::Proc;
use super::{bins, ports, wait, workdir};

const INSTALL: &str = "install it with `apt-get install -y haproxy` (or run `make deps`)";

/// The HAProxy binary: `AXON_HAPROXY` if set (for a second version), else `haproxy` on PATH.
/// With `AXON_HAPROXY_VERSION` set, the binary must report that version, so a test run meant
/// for a version cannot silently run another.
pub fn binary() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let path = match std::env::var_os("AXON_HAPROXY") {
                Some(path) => PathBuf::from(path),
                None => bins::system("haproxy", INSTALL),
            };
            if let Ok(expected) = std::env::var("AXON_HAPROXY_VERSION") {
                let output = Command::new(&path).arg("-v").output().expect("running haproxy -v");
                let version = String::from_utf8_lossy(&output.stdout);
                assert!(
                    version.contains(&format!("version {expected}")),
                    "{} is not HAProxy {expected}: {version}",
                    path.display()
                );
            }
            path
        })
        .clone()
}

/// Validates a configuration file with `haproxy -c`; `Ok` and `Err` carry HAProxy's output.
pub fn check_config(file: &Path) -> Result<String, String> {
    check_configs(&[file])
}

/// Validates configuration files loaded together (`-f a -f b`), as HAProxy would.
pub fn check_configs(files: &[&Path]) -> Result<String, String> {
    let mut command = Command::new(binary());
    command.arg("-c");
    for file in files {
        command.arg("-f").arg(file);
    }
    let output = command.output().expect("running haproxy -c");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(text) } else { Err(text) }
}

/// Sends one runtime API command line to the socket at `socket` and returns the reply.
pub fn try_runtime_at(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// A backend to declare from the shipped snippet: its name, slot prefix and slot count.
#[derive(Debug, Clone, Copy)]
pub struct Backend<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub slots: u32,
}

/// A shipped HAProxy file (`haproxy/<name>`) with its machine paths pointed into `dir`: the
/// runtime socket, the state file, the host map and the trusted sources (`dir`'s), and the SPOE
/// engine file and Lua view (the shipped ones).
pub fn shipped_config(dir: &HaproxyDir, name: &str) -> String {
    let root = bins::workspace_root();
    std::fs::read_to_string(root.join("haproxy").join(name))
        .unwrap_or_else(|e| panic!("reading haproxy/{name}: {e}"))
        // The group exists where the package is installed; tests run as whoever they run as.
        .replace(" mode 660 group axon ", " mode 600 ")
        .replace("/run/haproxy/axon.sock", &dir.socket().display().to_string())
        .replace("/var/lib/axon/haproxy-server-state", &dir.state_file().display().to_string())
        .replace("/var/lib/axon/haproxy-hosts.map", &dir.host_map().display().to_string())
        .replace("/var/lib/axon/haproxy-slots.cfg", &dir.slots_file().display().to_string())
        .replace("/etc/haproxy/axon-trusted-sources.lst", &dir.trusted_sources().display().to_string())
        .replace("/etc/haproxy/spoe-axon.conf", &root.join("haproxy/spoe-axon.conf").display().to_string())
        .replace("/usr/share/axon/axon.lua", &root.join("lua/axon.lua").display().to_string())
}

/// The shipped Lua view (`haproxy/axon-lua.cfg`), its frontend bound to 127.0.0.1:`admin_port`
/// and pointed at axon-spoa's status on 127.0.0.1:`status_port`.
pub fn lua_config(dir: &HaproxyDir, status_port: u16, admin_port: u16) -> String {
    shipped_config(dir, "axon-lua.cfg")
        .replace("127.0.0.1:9102", &format!("127.0.0.1:{status_port}"))
        .replace("127.0.0.1:8405", &format!("127.0.0.1:{admin_port}"))
}

/// The shipped `haproxy/axon.cfg`, as a user includes it: its paths pointed into `dir`, its
/// frontend bound to 127.0.0.1:`port`, its SPOE agent at 127.0.0.1:`agent_port` (a port with
/// nothing behind it when `None`), and its example backend copied for each of `backends` as
/// its comment says.
pub fn axon_config(dir: &HaproxyDir, port: u16, backends: &[Backend<'_>], agent_port: Option<u16>) -> String {
    let agent_port = agent_port.unwrap_or_else(ports::free_port);
    let shipped = shipped_config(dir, "axon.cfg")
        .replace("    bind :8080\n", &format!("    bind 127.0.0.1:{port}\n"))
        .replace("127.0.0.1:9103", &format!("127.0.0.1:{agent_port}"));
    let start = shipped.find("backend web from axon-http").expect("the snippet's example backend");
    let (head, example) = shipped.split_at(start);
    let mut config = head.to_owned();
    for backend in backends {
        let template = format!(
            "server-template {} 1-\"${{{}-{}}}\" ",
            backend.prefix,
            axon_spoa::sync::slots::variable(backend.name, backend.prefix),
            backend.slots
        );
        config.push_str(
            &example
                .replace("backend web from axon-http", &format!("backend {} from axon-http", backend.name))
                .replace("server-template web 1-\"${AXON_SLOTS_WEB_WEB-10}\" ", &template),
        );
        config.push('\n');
    }
    config
}

/// `config` without its SPOE filter (and the rule that sends its group): the shipped frontend
/// as it routes without any agent, through the host map alone.
pub fn without_spoe(config: &str) -> String {
    config
        .lines()
        .filter(|l| {
            let line = l.trim_start();
            !line.starts_with("filter spoe") && !line.starts_with("http-request send-spoe-group")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A directory for an HAProxy, before it starts: configurations refer to its socket path.
pub struct HaproxyDir {
    dir: tempfile::TempDir,
}

impl HaproxyDir {
    /// A new directory with the files HAProxy needs before it starts, as a package installs
    /// them: an empty host map and the shipped (empty) list of trusted sources.
    pub fn new() -> HaproxyDir {
        let dir = HaproxyDir { dir: workdir("haproxy") };
        std::fs::write(dir.host_map(), "").expect("creating the host map");
        std::fs::write(dir.slots_file(), "").expect("creating the slots file");
        std::fs::copy(bins::workspace_root().join("haproxy/axon-trusted-sources.lst"), dir.trusted_sources())
            .expect("copying the trusted sources");
        dir
    }

    /// The host map file configurations should name (axon-spoa keeps it).
    pub fn host_map(&self) -> PathBuf {
        self.dir.path().join("hosts.map")
    }

    /// The trusted-sources pattern file configurations should name.
    pub fn trusted_sources(&self) -> PathBuf {
        self.dir.path().join("trusted-sources.lst")
    }

    /// The slots file axon-spoa keeps, loaded first (`-f`) by [`HaproxyDir::start`].
    pub fn slots_file(&self) -> PathBuf {
        self.dir.path().join("axon-slots.cfg")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The admin-level stats socket path configurations should declare.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The `server-state-file` path configurations should declare.
    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("server-state")
    }

    /// Writes the configuration and starts HAProxy (`-f` the slots file, then it); returns
    /// once the runtime API answers.
    pub fn start(self, config: &str) -> Haproxy {
        let cfg = self.dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).expect("writing haproxy.cfg");
        if let Err(err) = check_configs(&[&self.slots_file(), &cfg]) {
            panic!("haproxy -c refused the configuration:\n{err}\n{config}");
        }
        let mut haproxy = Haproxy { proc: None, dir: self, cfg };
        haproxy.spawn();
        haproxy
    }
}

impl Default for HaproxyDir {
    fn default() -> Self {
        HaproxyDir::new()
    }
}

pub struct Haproxy {
    proc: Option<Proc>,
    /// Its directory: the file names are [`HaproxyDir`]'s.
    dir: HaproxyDir,
    cfg: PathBuf,
}

impl Haproxy {
    fn spawn(&mut self) {
        let mut command = Command::new(binary());
        command
            .arg("-W")
            .arg("-db")
            .arg("-f")
            .arg(self.slots_file())
            .arg("-f")
            .arg(&self.cfg)
            .arg("-p")
            .arg(self.dir().join("haproxy.pid"));
        let proc =
            Proc::spawn("haproxy", &mut command, &self.dir().join("haproxy.log")).with_stop_signal(libc::SIGTERM);
        self.proc = Some(proc);
        wait::for_true("HAProxy's runtime API", wait::SECOND * 10, || {
            assert!(self.proc.as_mut().is_some_and(Proc::is_running), "haproxy exited:\n{}", self.log_tail());
            self.try_runtime("show info").is_ok_and(|info| info.contains("Pid:"))
        });
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.socket()
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.state_file()
    }

    pub fn host_map(&self) -> PathBuf {
        self.dir.host_map()
    }

    pub fn trusted_sources(&self) -> PathBuf {
        self.dir.trusted_sources()
    }

    pub fn slots_file(&self) -> PathBuf {
        self.dir.slots_file()
    }

    pub fn config_path(&self) -> &Path {
        &self.cfg
    }

    /// Sends one runtime API command line and returns the reply.
    pub fn try_runtime(&self, command: &str) -> std::io::Result<String> {
        try_runtime_at(&self.socket(), command)
    }

    pub fn runtime(&self, command: &str) -> String {
        self.try_runtime(command).unwrap_or_else(|e| panic!("runtime API `{command}`: {e}"))
    }

    /// A field of `show info` (`Pid`, `Uptime_sec`, …).
    pub fn info(&self, field: &str) -> Option<String> {
        let info = self.try_runtime("show info").ok()?;
        info.lines().find_map(|l| l.strip_prefix(&format!("{field}: ")).map(str::to_owned))
    }

    /// The connections HAProxy holds now (`show info`'s `CurrConns`).
    pub fn curr_conns(&self) -> u64 {
        self.info("CurrConns").and_then(|v| v.parse().ok()).expect("CurrConns in show info")
    }

    /// The current sessions of `backend`'s server at `addr` (`ip:port`): `scur` from `show stat`,
    /// the requests HAProxy has in flight on it.
    pub fn sessions_on(&self, backend: &str, addr: &str) -> Option<u64> {
        let name = self.servers(backend).into_iter().find(|s| s.addr == addr)?.name;
        let text = self.try_runtime("show stat").ok()?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let (px, sv, scur) = (
            header.iter().position(|c| *c == "pxname")?,
            header.iter().position(|c| *c == "svname")?,
            header.iter().position(|c| *c == "scur")?,
        );
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.get(px) == Some(&backend) && f.get(sv) == Some(&name.as_str()))?
            .get(scur)?
            .parse()
            .ok()
    }

    /// The master process id.
    pub fn master_pid(&self) -> i32 {
        self.proc.as_ref().map_or(0, Proc::pid)
    }

    /// Reloads (SIGUSR2 to the master), as an operator's `systemctl reload` would.
    pub fn reload(&self) {
        if let Some(proc) = &self.proc {
            proc.signal(libc::SIGUSR2);
        }
    }

    /// The servers of `backend` that are ready, as (name, "ip:port", weight).
    pub fn ready_servers(&self, backend: &str) -> Vec<(String, String, u16)> {
        let Ok(text) = self.try_runtime(&format!("show servers state {backend}")) else { return Vec::new() };
        servers_state(&text).into_iter().filter(|s| s.ready).map(|s| (s.name, s.addr, s.weight)).collect()
    }

    /// Every server of `backend`, parsed from `show servers state`.
    pub fn servers(&self, backend: &str) -> Vec<Server> {
        servers_state(&self.runtime(&format!("show servers state {backend}")))
    }

    /// The host map's entries (`show map`), key → value; parsed here independently of
    /// axon-spoa.
    pub fn host_map_entries(&self) -> std::collections::BTreeMap<String, String> {
        let text = self.runtime(&format!("show map {}", self.host_map().display()));
        text.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let _pointer = words.next().filter(|p| p.starts_with("0x"))?;
                Some((words.next()?.to_owned(), words.collect::<Vec<_>>().join(" ")))
            })
            .collect()
    }

    /// The worker's pid from `show info`.
    pub fn worker_pid(&self) -> Option<String> {
        self.info("Pid")
    }

    /// Stops HAProxy and starts it again with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Stops HAProxy (SIGTERM), its socket gone.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.stop(libc::SIGTERM, Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it again after [`Haproxy::stop`]; returns once the runtime API answers.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(|p| p.log_tail(30)).unwrap_or_default()
    }
}

/// A server as `show servers state` reports it (parsed here independently of axon-spoa).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub backend: String,
    pub name: String,
    pub addr: String,
    pub weight: u16,
    pub ready: bool,
    pub draining: bool,
    /// Running, as its health checks say (`srv_op_state` 2).
    pub up: bool,
    /// Seconds since its state last changed.
    pub since_change: u64,
}

/// Parses `show servers state` output (one backend or all).
pub fn servers_state(text: &str) -> Vec<Server> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find(|l| l.starts_with('#'))
        .map(|h| h.trim_start_matches('#').split_whitespace().collect())
        .unwrap_or_default();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let (Some(backend), Some(name), Some(addr), Some(port), Some(admin), Some(weight), Some(since), Some(op)) = (
        col("be_name"),
        col("srv_name"),
        col("srv_addr"),
        col("srv_port"),
        col("srv_admin_state"),
        col("srv_uweight"),
        col("srv_time_since_last_change"),
        col("srv_op_state"),
    ) else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let admin: u8 = f.get(admin)?.parse().ok()?;
            Some(Server {
                backend: f.get(backend)?.to_string(),
                name: f.get(name)?.to_string(),
                addr: format!("{}:{}", f.get(addr)?, f.get(port)?),
                weight: f.get(weight)?.parse().ok()?,
                // Maintenance: forced, inherited, DNS, health; drain: forced, inherited.
                ready: admin & 0x7b == 0,
                draining: admin & 0x18 != 0,
                since_change: f.get(since)?.parse().ok()?,
                up: f.get(op)? == &"2",
            })
        })
        .collect()
}
