//! Every file Axon ships is valid for the program that reads it.

use std::path::Path;
use std::process::Command;

use axon_harness::{bins, haproxy};

fn shipped(path: &str) -> std::path::PathBuf {
    bins::workspace_root().join(path)
}

/// Each `.cfg` under haproxy/ as shipped, only its machine paths (socket, state file, SPOE and
/// Lua files) pointed at a temporary directory and the repository; the add-on axon-lua.cfg
/// loaded after axon.cfg, as its comment says. Without a warning either: HAProxy warns a
/// version ahead of what it will refuse.
#[test]
fn every_shipped_haproxy_file_passes_haproxy_c() {
    let mut names: Vec<String> = std::fs::read_dir(shipped("haproxy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cfg"))
        .collect();
    names.sort();
    assert_eq!(names, ["axon-lua.cfg", "axon.cfg", "example.cfg"]);
    for set in [&["axon.cfg"][..], &["example.cfg"], &["axon.cfg", "axon-lua.cfg"]] {
        let dir = haproxy::HaproxyDir::new();
        // A state file, as axon-spoa keeps one: HAProxy warns of one it cannot open.
        std::fs::write(dir.state_file(), "1\n").unwrap();
        let files: Vec<std::path::PathBuf> = set
            .iter()
            .map(|name| {
                let file = dir.path().join(name);
                std::fs::write(&file, haproxy::shipped_config(&dir, name)).unwrap();
                file
            })
            .collect();
        let files: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
        let output = haproxy::check_configs(&files).unwrap_or_else(|e| panic!("haproxy/{set:?}: {e}"));
        assert!(!output.contains("[WARNING]"), "haproxy/{set:?}: {output}");
    }
}

/// The directives of a section (`<kind> <name> …` up to the next section), without comments
/// and without the section's own line and its `bind`.
fn directives(config: &str, header: &str) -> Vec<String> {
    let start = config.find(&format!("\n{header}")).unwrap_or_else(|| panic!("no `{header}`")) + 1;
    config[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("bind "))
        .map(str::to_owned)
        .collect()
}

/// example.cfg carries the snippet's frontend and dynamic backend line for line, so what the
/// tests prove of axon.cfg's holds for it too.
#[test]
fn the_example_routes_exactly_as_the_snippet() {
    let snippet = std::fs::read_to_string(shipped("haproxy/axon.cfg")).unwrap();
    let example = std::fs::read_to_string(shipped("haproxy/example.cfg")).unwrap();
    let frontend = directives(&snippet, "frontend axon from axon-http");
    assert!(frontend.len() > 10, "{frontend:?}");
    assert_eq!(directives(&example, "frontend http from axon-http"), frontend);
    assert_eq!(
        directives(&example, "backend axon-dynamic from axon-http"),
        directives(&snippet, "backend axon-dynamic from axon-http")
    );
}

fn check(binary: &str, file: &Path) -> (bool, String) {
    let output = Command::new(bins::axon(binary)).arg("--check").arg(file).output().expect("running --check");
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

#[test]
fn shipped_daemon_configurations_are_valid() {
    let (ok, text) = check("axon-spoa", &shipped("spoa/example.toml"));
    assert!(ok && text.contains("ok (2 services)"), "{text}");
    // It says which hosts HAProxy routes by itself.
    assert!(text.contains("host map: web.example → web/web"), "{text}");
    let (ok, text) = check("axon-registrar", &shipped("registrar/example.toml"));
    assert!(ok && text.contains("ok (3 services)"), "{text}");
}

#[test]
fn axon_spoa_check_names_file_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(shipped("spoa/example.toml")).unwrap();
    let cases = [
        ("socket = \"/run/haproxy/axon.sock\"", "socket = \"tcp:localhost\"", "`haproxy.socket` = \"tcp:localhost\""),
        (
            "slot_prefix = \"web\"",
            "slot_prefix = \"web\"\ndrain = \"10 parsecs\"",
            "`service[0].drain` = \"10 parsecs\"",
        ),
        (
            "zk_path = \"/nerve/services/api/services\"",
            "zk_path = \"/nerve/services/api/services\"\nbackend_name = \"x\"",
            "`service[1].backend_name`: unknown field",
        ),
        ("host_suffixes = [\".example\"]", "host_suffixes = [\"example\"]", "`routing.host_suffixes[0]` = \"example\""),
        (
            "listen = \"127.0.0.1:9103\"",
            "listen = \"127.0.0.1:9103\"\nhost_suffixes = [\".example\"]",
            "`spoe.host_suffixes` = [\".example\"]: expected it under [routing]",
        ),
        (
            "listen = \"127.0.0.1:9103\"",
            "listen = \"127.0.0.1:9103\"\nmax_frame_size = 100",
            "`spoe.max_frame_size` = 100",
        ),
        ("backend = \"web\"", "backend = \"web\"\nbackend = \"api\"", "duplicate key"),
        (
            "zk_path = \"/nerve/services/api/services\"",
            "zk_path = \"/nerve/services/api/services\"\nbackend = \"web\"\nslot_prefix = \"web1\"",
            "`service[1].slot_prefix` = \"web1\"",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(good.contains(from), "{from}");
        let file = dir.path().join("spoa.toml");
        std::fs::write(&file, good.replacen(from, to, 1)).unwrap();
        let (ok, text) = check("axon-spoa", &file);
        assert!(!ok, "accepted: {to}");
        assert!(
            text.contains(&file.display().to_string()) && text.contains(expected),
            "expected {expected:?} in: {text}"
        );
    }
}
