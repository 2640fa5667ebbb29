//! Real Redis: `redis-server` on a free loopback port, without persistence, with whatever extra
//! arguments a test gives it (`--requirepass`, `--user`). Readiness is any answer to an inline
//! `PING` (a server with a password answers `-NOAUTH`), read by a few lines of its own here, so
//! that tests do not trust the check they test.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::process::Proc;
use super::{bins, ports, wait, workdir};

const INSTALL: &str = "install it with `apt-get install -y redis-server` (or run `make deps`)";

pub struct Redis {
    pub port: u16,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// A server on a free port; `extra` goes on its command line. Returns once it answers.
    pub fn start(extra: &[&str]) -> Redis {
        let server = bins::system("redis-server", INSTALL);
        let dir = workdir("redis");
        let port = ports::free_port();
        let mut command = Command::new(server);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir.path())
            .args(extra);
        let mut redis =
            Redis { port, proc: Proc::spawn("redis-server", &mut command, &dir.path().join("redis.log")), _dir: dir };
        wait::for_true(&format!("redis-server to answer on {port}"), wait::SECOND * 10, || {
            assert!(redis.proc.is_running(), "redis-server exited:\n{}", redis.proc.log_tail(20));
            redis.command("PING").is_some()
        });
        redis
    }

    /// Sends one inline command (`PING`, `AUTH pw`) on a new connection and returns the first
    /// line of the answer, or `None` if nothing answers.
    pub fn command(&self, line: &str) -> Option<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).ok()?;
        let answer = answer.trim_end();
        (!answer.is_empty()).then(|| answer.to_owned())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}
