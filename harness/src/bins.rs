//! Finding the binaries a test drives: Axon's own (built by cargo next to the test) and the
//! system's (HAProxy, Java, Python with kazoo), with a message saying how to get what is missing.

use std::path::{Path, PathBuf};

/// The directory cargo put this workspace's binaries in (`target/<profile>`), or
/// `AXON_BIN_DIR` when set.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AXON_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("executable has a directory");
    // Tests and benches live in target/<profile>/deps; binaries in target/<profile>.
    if dir.ends_with("deps") { dir.parent().unwrap_or(dir).to_owned() } else { dir.to_owned() }
}

/// One of Axon's binaries (`axon-registrar`, `axon-spoa`, `axon-sample`).
pub fn axon(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (with --release for benches)",
        path.display()
    );
    path
}

/// A system program, by name on PATH.
pub fn system(name: &str, install: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| panic!("`{name}` is not installed: {install}"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}
