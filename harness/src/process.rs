//! A child process the harness owns: its output goes to a log file, it dies with the test
//! process (PR_SET_PDEATHSIG), and it is stopped when dropped; a test that panics gets the
//! tail of its log printed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variable every process the harness starts carries (and passes on to its
/// own children), naming the harness's process: how [`leftovers`] finds them all, however deep.
pub const OWNER: &str = "AXON_HARNESS_OWNER";

/// Marks `command` as started by this process (see [`OWNER`]).
pub fn mark(command: &mut Command) {
    command.env(OWNER, std::process::id().to_string());
}

/// Every process still running that this process started, directly or through its children
/// (even those whose parent has exited since), as `pid (name)`.
pub fn leftovers() -> Vec<String> {
    let me = std::process::id();
    let marker = format!("{OWNER}={me}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|&b| b == 0).any(|var| var == marker.as_bytes()) {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("{pid} ({})", name.trim()));
        }
    }
    found
}

/// The CPU time `pid` and its children (HAProxy's worker is its master's child) have used so
/// far, every thread: the kernel's exact run time (`schedstat`, nanoseconds), not ticks.
pub fn cpu_time(pid: i32) -> Duration {
    let mut pids = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    let mut nanoseconds: u64 = 0;
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        nanoseconds += tasks.flatten().filter_map(|task| run_time(&task.path())).sum::<u64>();
    }
    Duration::from_nanos(nanoseconds)
}

/// The CPU time the threads of `pid` named one of `names` have used so far (`schedstat`, as
/// [`cpu_time`]), and how many such threads there are.
pub fn threads_cpu_time(pid: u32, names: &[&str]) -> (usize, Duration) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("reading /proc/<pid>/task");
    let run_times: Vec<u64> = tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| names.contains(&comm.trim())))
        .filter_map(|task| run_time(&task.path()))
        .collect();
    (run_times.len(), Duration::from_nanos(run_times.iter().sum()))
}

/// A thread's run time so far, in nanoseconds, from its `/proc/…/task/<tid>` directory.
fn run_time(task: &Path) -> Option<u64> {
    std::fs::read_to_string(task.join("schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// The share of one core `pid` (and its children) uses over the next `window`.
pub fn cpu_share(pid: i32, window: Duration) -> f64 {
    let before = cpu_time(pid);
    std::thread::sleep(window);
    (cpu_time(pid) - before).as_secs_f64() / window.as_secs_f64()
}

/// A running (or exited) child process.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// Signal used to stop it on drop before SIGKILL.
    stop_signal: i32,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `command`, its stdout and stderr appended to `log`.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Proc {
        let out = File::options().create(true).append(true).open(log).expect("opening a log file");
        let err = out.try_clone().expect("cloning a log file handle");
        use std::os::unix::process::CommandExt as _;
        // A process group of its own: a terminal's Ctrl-C reaches the harness's owner, which
        // stops its children in order, rather than every child at once.
        command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        mark(command);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL this child
        // when the thread that spawned it exits, so nothing outlives a killed test run.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        Proc { name: name.to_owned(), child, log: log.to_owned(), stop_signal: libc::SIGKILL, exited: None }
    }

    /// Stop with `signal` (then SIGKILL after a while) instead of SIGKILL at once.
    pub fn with_stop_signal(mut self, signal: i32) -> Proc {
        self.stop_signal = signal;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends a signal (SIGTERM, SIGHUP, SIGSTOP, SIGCONT, …).
    pub fn signal(&self, signal: i32) {
        if self.exited.is_none() {
            // SAFETY: kill has no memory effects; the pid is our own unreaped child.
            unsafe { libc::kill(self.pid(), signal) };
        }
    }

    /// Freezes the process (SIGSTOP), as a hung process or a long GC pause would.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Whether it is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            self.signal(libc::SIGCONT);
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Sends `signal`, waits up to `timeout`, then SIGKILLs; returns the exit status.
    pub fn stop(&mut self, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.signal(libc::SIGCONT);
            self.signal(signal);
            if self.wait_exit(timeout).is_none() {
                self.kill();
            }
        }
        self.exited
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Not eprintln!: a closed stderr must not stop the cleanup with a second panic.
            let tail = format!(
                "---- last lines of {} ({}) ----\n{}\n----\n",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), tail.as_bytes());
        }
        if self.stop_signal == libc::SIGKILL {
            self.kill();
        } else {
            self.stop(self.stop_signal, Duration::from_secs(3));
        }
    }
}
