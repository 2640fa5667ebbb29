//! The Debian packages, installed for real: `make deb` builds them; this test installs them
//! with dpkg, verifies their systemd units, validates the installed configurations as the
//! units' user, starts both daemons with the units' own command lines (as that user) against
//! a real ZooKeeper and an HAProxy that includes the installed snippet, sends a request
//! through it, and purges the packages, checking that nothing is left behind.
//!
//! It changes the machine it runs on (a user, files in /etc, /usr and /var/lib), so it runs
//! only as root and when `AXON_DEBS` names the directory holding the packages, as `make test`
//! does (CI machines are disposable). Without it, it says so and does nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axon_harness::haproxy;
use axon_harness::http;
use axon_harness::kazoo::Kazoo;
use axon_harness::ports;
use axon_harness::process::Proc;
use axon_harness::sample::Sample;
use axon_harness::wait::{self, SECOND};
use axon_harness::zk;

const PACKAGES: [&str; 2] = ["axon-registrar", "axon-spoa"];

/// What each package must install.
const INSTALLED: [&str; 10] = [
    "/usr/bin/axon-registrar",
    "/usr/bin/axon-spoa",
    "/etc/axon/registrar.toml",
    "/etc/axon/spoa.toml",
    "/etc/haproxy/axon.cfg",
    "/etc/haproxy/spoe-axon.conf",
    "/etc/haproxy/axon-lua.cfg",
    "/etc/haproxy/axon-trusted-sources.lst",
    "/usr/share/axon/axon.lua",
    "/var/lib/axon/haproxy-slots.cfg",
];

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// Purges the packages when dropped, so a failed test leaves the machine as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").arg("--purge").args(PACKAGES).output();
    }
}

/// The installed unit file of `package`, as dpkg lists it.
fn unit_file(package: &str) -> PathBuf {
    let files = run("dpkg", &["-L", package]);
    files
        .lines()
        .find(|line| line.ends_with(&format!("/{package}.service")))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{package} installs no {package}.service:\n{files}"))
}

/// A `Key=value` of a unit file (the first, for a key given more than once).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}=:\n{unit}"))
        .trim()
        .to_owned()
}

/// Starts a unit's ExecStart as its User= and Group=, as systemd would.
fn start_as_unit(package: &str, log_dir: &Path) -> Proc {
    let unit = std::fs::read_to_string(unit_file(package)).unwrap();
    let (user, group) = (unit_value(&unit, "User"), unit_value(&unit, "Group"));
    let exec = unit_value(&unit, "ExecStart");
    let mut command = Command::new("setpriv");
    command.args(["--reuid", &user, "--regid", &group, "--init-groups", "--"]);
    command.args(exec.split_whitespace());
    Proc::spawn(package, &mut command, &log_dir.join(format!("{package}.log"))).with_stop_signal(libc::SIGTERM)
}

#[test]
fn packages_install_run_and_purge() {
    // Relative to the workspace (tests run in their crate's directory).
    let Some(debs) = std::env::var_os("AXON_DEBS").map(|dir| axon_harness::bins::workspace_root().join(dir)) else {
        eprintln!("skipped: set AXON_DEBS to the directory `make deb` wrote (this test installs packages)");
        return;
    };
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "installing packages needs root");
    let deb = |package: &str| -> String {
        let found = std::fs::read_dir(&debs)
            .unwrap_or_else(|e| panic!("{}: {e}", debs.display()))
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
            .max();
        found.unwrap_or_else(|| panic!("no {package}_*.deb in {}", debs.display())).display().to_string()
    };
    let (registrar_deb, spoa_deb) = (deb("axon-registrar"), deb("axon-spoa"));

    let installed = Installed;
    run("dpkg", &["-i", &registrar_deb, &spoa_deb]);
    for path in INSTALLED {
        assert!(Path::new(path).exists(), "{path} is not installed");
    }
    run("getent", &["passwd", "axon"]);
    let units: Vec<PathBuf> = PACKAGES.iter().map(|p| unit_file(p)).collect();
    for unit in &units {
        let verified = run("systemd-analyze", &["verify", &unit.display().to_string()]);
        assert!(!verified.contains(&unit.display().to_string()), "systemd-analyze has remarks:\n{verified}");
    }
    // The configurations as installed are valid, and readable by the units' user only.
    for (binary, config) in [("axon-registrar", "/etc/axon/registrar.toml"), ("axon-spoa", "/etc/axon/spoa.toml")] {
        run("setpriv", &["--reuid", "axon", "--regid", "axon", "--init-groups", "--", binary, "--check", config]);
        let mode = run("stat", &["-c", "%a %U %G", config]);
        assert_eq!(mode.trim(), "640 root axon", "{config}");
    }

    // What an operator does next: point both daemons at ZooKeeper, include the snippet in
    // HAProxy, start everything.
    let hosts = zk::shared();
    let chroot = zk::unique_path("packages");
    let web = Sample::start("web", "w1");
    let registrar_status = ports::free_port();
    let registrar_config = format!(
        "instance_id = \"w1\"\nmaintenance_dir = \"/var/lib/axon/maintenance\"\n\n[zookeeper]\nconnect = \"{hosts}{chroot}\"\n\n\
         [status]\nlisten = \"127.0.0.1:{registrar_status}\"\n\n[[service]]\nname = \"web\"\nhost = \"127.0.0.1\"\nport = {}\n\
         zk_path = \"/nerve/services/web/services\"\ncheck_interval = \"200ms\"\n\n[[service.checks]]\ntype = \"http\"\nuri = \"/health\"\n",
        web.port()
    );
    std::fs::write("/etc/axon/registrar.toml", registrar_config).unwrap();
    let spoa_status = ports::free_port();
    let spoa_config = std::fs::read_to_string("/etc/axon/spoa.toml")
        .unwrap()
        .replace("connect = \"zk1:2181,zk2:2181,zk3:2181\"", &format!("connect = \"{hosts}{chroot}\""))
        .replace("listen = \"127.0.0.1:9102\"", &format!("listen = \"127.0.0.1:{spoa_status}\""));
    assert!(spoa_config.contains(&chroot), "the shipped spoa.toml changed its [zookeeper] line");
    std::fs::write("/etc/axon/spoa.toml", spoa_config).unwrap();

    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all("/run/haproxy").unwrap();
    let mut haproxy_command = Command::new(haproxy::binary());
    haproxy_command.args(["-W", "-db", "-f", "/var/lib/axon/haproxy-slots.cfg", "-f", "/etc/haproxy/axon.cfg"]);
    let mut haproxy =
        Proc::spawn("haproxy", &mut haproxy_command, &work.path().join("haproxy.log")).with_stop_signal(libc::SIGTERM);
    let socket = Path::new("/run/haproxy/axon.sock");
    wait::for_true("HAProxy's runtime socket", SECOND * 10, || {
        assert!(haproxy.is_running(), "haproxy exited:\n{}", haproxy.log_tail(20));
        haproxy::try_runtime_at(socket, "show info").is_ok_and(|info| info.contains("Pid:"))
    });
    assert_eq!(run("stat", &["-c", "%a %G", "/run/haproxy/axon.sock"]).trim(), "660 axon");

    let mut registrar = start_as_unit("axon-registrar", work.path());
    let mut spoa = start_as_unit("axon-spoa", work.path());
    let mut kazoo = Kazoo::connect(&format!("{hosts}{chroot}"));
    wait::for_true("the instance registered", SECOND * 10, || {
        assert!(registrar.is_running(), "axon-registrar exited:\n{}", registrar.log_tail(20));
        kazoo.children("/nerve/services/web/services").len() == 1
    });
    let port = web.port().to_string();
    let in_backend = wait::timed(SECOND * 10, || {
        assert!(spoa.is_running(), "axon-spoa exited:\n{}", spoa.log_tail(20));
        haproxy::try_runtime_at(socket, "show servers state web").is_ok_and(|state| {
            state.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.contains(&"127.0.0.1") && fields.contains(&port.as_str())
            })
        })
    });
    assert!(in_backend.is_some(), "the instance never reached HAProxy's backend:\n{}", spoa.log_tail(30));
    let frontend = SocketAddr::from(([127, 0, 0, 1], 8080));
    wait::for_true("a request through the installed frontend", SECOND * 10, || {
        http::request(frontend, "GET", "/", &[("Host", "web.example")]).is_ok_and(|r| r.status == 200)
    });
    assert!(Path::new("/var/lib/axon/spoa-cache.json").exists(), "axon-spoa keeps its cache in its state directory");

    // A stop deregisters; then the packages go, with everything they installed.
    registrar.stop(libc::SIGTERM, Duration::from_secs(10));
    wait::for_true("deregistered on stop", SECOND * 5, || kazoo.children("/nerve/services/web/services").is_empty());
    spoa.stop(libc::SIGTERM, Duration::from_secs(10));
    haproxy.stop(libc::SIGTERM, Duration::from_secs(10));
    run("dpkg", &["--purge", "axon-registrar", "axon-spoa"]);
    std::mem::forget(installed);
    for path in INSTALLED.iter().chain(["/var/lib/axon/spoa-cache.json"].iter()) {
        assert!(!Path::new(path).exists(), "{path} is left after a purge");
    }
    for unit in &units {
        assert!(!unit.exists(), "{} is left after a purge", unit.display());
    }
    assert!(!Path::new("/var/lib/axon").exists(), "/var/lib/axon is left after a purge of both packages");
    for package in PACKAGES {
        let known = Command::new("dpkg").args(["-s", package]).output().unwrap();
        assert!(!known.status.success(), "{package} is still known to dpkg after a purge");
    }
}
