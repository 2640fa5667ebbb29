//! `exec`: a shell command exits with status 0.
//!
//! The command runs in its own process group, and whatever ends the check early (timeout,
//! shutdown) kills the whole group, not only the shell.

use std::borrow::Cow;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

pub(super) async fn check(command: &str, timeout: Duration) -> super::CheckResult {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot start /bin/sh: {err}"))?;
    let mut group = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|err| format!("waiting for the command: {err}"))?,
        Err(_) => return Err(super::timed_out(timeout)),
    };
    // The shell exited; what it left running in its group is not the check's business.
    group.0 = None;
    if status.success() {
        Ok(Cow::Borrowed("exit status 0"))
    } else {
        Err(match status.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("killed by {status}"),
        })
    }
}

/// Kills the process group on drop while armed.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: killpg has no memory effects; the group was created for this check's shell.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }
}
