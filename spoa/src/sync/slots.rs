//! How many server slots each backend declares at HAProxy's next start or reload. No I/O.
//!
//! Servers added with `add server` live only in the running process: a reload or restart
//! would start without them, and the server-state file cannot bring them back (it only sets
//! servers the configuration declares). So the shipped backends size their `server-template`
//! from an environment variable with a default, `server-template web 1-"${AXON_SLOTS_WEB_WEB-10}"
//! …`, and axon-spoa keeps a small file of `setenv` lines, loaded before the backends, that
//! raises each to the highest slot number in use (never lowering it). A reload then declares
//! every slot, under the names the added servers had, and the state file (written at the same
//! moment) gives each its address, weight and state back: no capacity is lost.

use std::collections::BTreeMap;

use crate::haproxy::state::ServerState;
use crate::sync::plan::slot_number;

/// The environment variable sizing `prefix`'s slots in `backend`.
pub fn variable(backend: &str, prefix: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
    };
    format!("AXON_SLOTS_{}_{}", clean(backend), clean(prefix))
}

/// The `server-template` line a backend should declare for `prefix` (what `--check` prints).
pub fn template_line(backend: &str, prefix: &str, default: u32) -> String {
    format!("server-template {prefix} 1-\"${{{}-{default}}}\" 127.0.0.1:1 disabled", variable(backend, prefix))
}

/// The variables a slots file sets, with their values.
pub fn parse(text: &str) -> BTreeMap<String, u32> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "setenv").then_some(())?;
            let name = words.next()?;
            let value = words.next()?.parse().ok()?;
            name.starts_with("AXON_SLOTS_").then(|| (name.to_owned(), value))
        })
        .collect()
}

/// A slots file setting `values`.
pub fn render(values: &BTreeMap<String, u32>) -> String {
    let mut text = String::from(
        "# Kept by axon-spoa: how many slots each backend's server-template declares, so a reload\n\
         # or restart declares every server axon-spoa added. Load it before the backends.\n\
         global\n",
    );
    for (name, value) in values {
        text.push_str(&format!("    setenv {name} {value}\n"));
    }
    text
}

/// The highest slot number of `prefix` in `backend` now.
pub fn highest(servers: &[ServerState], backend: &str, prefix: &str) -> u32 {
    servers.iter().filter(|s| s.backend == backend).filter_map(|s| slot_number(prefix, &s.name)).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haproxy::state::Admin;

    #[test]
    fn variables_and_lines_as_the_snippet_writes_them() {
        assert_eq!(variable("web", "web"), "AXON_SLOTS_WEB_WEB");
        assert_eq!(variable("be-api.v2", "api"), "AXON_SLOTS_BE_API_V2_API");
        assert_eq!(
            template_line("web", "web", 10),
            "server-template web 1-\"${AXON_SLOTS_WEB_WEB-10}\" 127.0.0.1:1 disabled"
        );
    }

    #[test]
    fn files_round_trip() {
        let values = BTreeMap::from([("AXON_SLOTS_WEB_WEB".to_owned(), 50), ("AXON_SLOTS_API_API".to_owned(), 12)]);
        assert_eq!(parse(&render(&values)), values);
        assert!(parse("# nothing\nglobal\n    setenv OTHER 3\n    setenv AXON_SLOTS_X bad\n").is_empty());
    }

    #[test]
    fn the_highest_slot_counts_added_servers_and_ignores_the_rest() {
        let server = |backend: &str, name: &str| ServerState {
            backend: backend.into(),
            name: name.into(),
            id: 1,
            endpoint: None,
            admin: Admin::Maint,
            weight: 1,
            op_state: 0,
        };
        let servers = [server("web", "web1"), server("web", "web12"), server("web", "static3"), server("api", "web40")];
        assert_eq!(highest(&servers, "web", "web"), 12);
        assert_eq!(highest(&servers, "web", "api"), 0);
    }
}
