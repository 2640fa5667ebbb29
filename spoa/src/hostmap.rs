//! HAProxy's host map: the request hosts HAProxy routes by itself, without asking the agent.
//! No I/O.
//!
//! The shipped frontend looks a request's host up in this map (`map(<file>)`) and, when it is
//! there and the request carries no honoured label, sends it to the backend the entry names
//! and sends no SPOE message. So the map holds exactly the hosts whose answer the agent would
//! give without a label is "this slot backend, whatever the path" ([`Routes::host_routes`]),
//! for services that have instances and a backend HAProxy knows. Each entry's value is
//! `<service>/<backend>`: the frontend sets both variables the agent would have set. Each host
//! is there twice, as written and with a trailing dot (`web.example.`), since the agent treats
//! both alike and the frontend looks the Host header up as sent.
//!
//! Rules, as for the slots: only differences produce commands (`add map` for a missing key,
//! `set map` for a wrong value, `del map` for a key not wanted, and for a key present twice
//! `del map` then `add map`); planning what HAProxy already holds gives nothing.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::haproxy::command::Command;
use crate::model::Snapshot;
use crate::spoe::route::{HostRoute, Routes};

/// Host → `<service>/<backend>`.
pub type Entries = BTreeMap<String, String>;

/// The hosts that may go in the map, computed once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct HostMap {
    routes: Vec<HostRoute>,
}

impl HostMap {
    pub fn new(routes: &Routes) -> HostMap {
        HostMap { routes: routes.host_routes() }
    }

    /// What the map should hold now: each host route whose service has discovered instances,
    /// and that `serving(service, backend)` says has a server ready in a backend HAProxy has.
    pub fn wanted(&self, snapshot: &Snapshot, serving: impl Fn(&str, &str) -> bool) -> Entries {
        self.routes
            .iter()
            .filter(|r| serving(&r.service, &r.backend))
            .filter(|r| snapshot.service(&r.service).is_some_and(|v| !v.instances.is_empty()))
            .flat_map(|r| {
                let value = format!("{}/{}", r.service, r.backend);
                [(r.host.clone(), value.clone()), (format!("{}.", r.host), value)]
            })
            .collect()
    }
}

/// What the configuration puts in the host map, for `--check` and the start: each host with its
/// service and backend, and the services with a backend that no host reaches without the agent
/// (a `*` route, or route-table entries that split a host between services), which then need
/// the agent for every request.
pub fn describe(config: &Config) -> String {
    let Some(path) = &config.haproxy.host_map else {
        return "host map: not kept (no haproxy.host_map): every request asks the agent".to_owned();
    };
    let routes = Routes::new(config).host_routes();
    let mut text = format!("host map ({}), kept while the services have instances:", path.display());
    for route in &routes {
        text.push_str(&format!("\nhost map: {} → {}/{}", route.host, route.service, route.backend));
    }
    for service in config.services.iter().filter(|s| s.backend.is_some()) {
        if !routes.iter().any(|r| r.service == service.name) {
            text.push_str(&format!(
                "\nhost map: no host of service {:?} (backend {:?}) is routed without the agent",
                service.name,
                service.backend.as_deref().unwrap_or_default()
            ));
        }
    }
    text
}

/// The commands that turn `actual` (as `show map` lists it) into `wanted`, for the map `map`.
pub fn plan(map: &str, actual: &[(String, String)], wanted: &Entries) -> Vec<Command> {
    let mut present: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, value) in actual {
        present.entry(key).or_default().push(value);
    }
    let map = map.to_owned();
    let mut commands = Vec::new();
    for (key, values) in &present {
        let key = (*key).to_owned();
        match wanted.get(&key) {
            None => commands.push(Command::DelMap { map: map.clone(), key }),
            Some(value) if values.as_slice() == [value.as_str()] => {}
            Some(value) if values.len() == 1 => {
                commands.push(Command::SetMap { map: map.clone(), key, value: value.clone() });
            }
            Some(value) => {
                commands.push(Command::DelMap { map: map.clone(), key: key.clone() });
                commands.push(Command::AddMap { map: map.clone(), key, value: value.clone() });
            }
        }
    }
    for (key, value) in wanted {
        if !present.contains_key(key.as_str()) {
            commands.push(Command::AddMap { map: map.clone(), key: key.clone(), value: value.clone() });
        }
    }
    commands
}

/// The map file's text: what HAProxy loads at start and at reload.
pub fn file_text(entries: &Entries) -> String {
    let mut text =
        String::from("# Kept by axon-spoa: request host, then <service>/<backend>. Rewritten after changes.\n");
    for (host, value) in entries {
        text.push_str(host);
        text.push(' ');
        text.push_str(value);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{Endpoint, Instance, ServiceView, Source};

    const MAP: &str = "/var/lib/haproxy/axon-hosts.map";

    const CONFIG: &str = r#"
[zookeeper]
connect = "127.0.0.1:2181"
[haproxy]
socket = "/s"
[routing]
host_suffixes = [".example"]
[[service]]
name = "web"
zk_path = "/web"
backend = "be_web"
[[service]]
name = "shop"
zk_path = "/shop"
backend = "be_shop"
[[service]]
name = "api"
zk_path = "/api"
"#;

    fn host_map() -> HostMap {
        HostMap::new(&Routes::new(&Config::parse(Path::new("t.toml"), CONFIG).unwrap()))
    }

    fn snapshot(services: &[(&str, usize)]) -> Snapshot {
        let services = services
            .iter()
            .map(|&(name, count)| {
                let instances = (0..count)
                    .map(|i| Instance::unnamed(Endpoint::new([10, 0, 0, i as u8].into(), 80), 1, &[]))
                    .collect();
                (name.into(), Arc::new(ServiceView { instances, source: Source::Discovered, problems: vec![] }))
            })
            .collect();
        Snapshot { services, version: 1, taken: None }
    }

    fn entries(pairs: &[(&str, &str)]) -> Entries {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn services_with_instances_and_a_known_backend_are_mapped() {
        let map = host_map();
        let all = |_: &str, _: &str| true;
        assert_eq!(
            map.wanted(&snapshot(&[("web", 2), ("shop", 1), ("api", 3)]), all),
            entries(&[
                ("shop.example", "shop/be_shop"),
                ("shop.example.", "shop/be_shop"),
                ("web.example", "web/be_web"),
                ("web.example.", "web/be_web")
            ])
        );
        // No instance, or not discovered: not mapped (the agent answers).
        assert_eq!(map.wanted(&snapshot(&[("web", 0)]), all), entries(&[]));
        // A backend HAProxy lacks: not mapped.
        assert_eq!(
            map.wanted(&snapshot(&[("web", 1), ("shop", 1)]), |_, b| b != "be_shop"),
            entries(&[("web.example", "web/be_web"), ("web.example.", "web/be_web")])
        );
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_differences_produce_commands() {
        let wanted = entries(&[("a.example", "a/a"), ("b.example", "b/b"), ("c.example", "c/c")]);
        let actual = pairs(&[
            ("a.example", "a/a"),   // right
            ("b.example", "b/old"), // wrong value
            ("c.example", "c/c"),   // twice
            ("c.example", "c/c"),
            ("stats", "x/stats"), // not wanted
        ]);
        let text: Vec<String> = plan(MAP, &actual, &wanted).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                format!("set map {MAP} b.example b/b"),
                format!("del map {MAP} c.example"),
                format!("add map {MAP} c.example c/c"),
                format!("del map {MAP} stats"),
            ]
        );
        assert!(plan(MAP, &pairs(&[("a.example", "a/a")]), &entries(&[("a.example", "a/a")])).is_empty());
        assert_eq!(plan(MAP, &[], &entries(&[("a.example", "a/a")])).len(), 1);
    }

    #[test]
    fn the_file_holds_one_entry_a_line() {
        let text = file_text(&entries(&[("web.example", "web/be_web"), ("api.example", "api/be_api")]));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["api.example api/be_api", "web.example web/be_web"]);
    }

    /// A model of HAProxy's map: a list of entries where `add` appends, `set` changes every
    /// entry of a key, `del` removes every entry of a key.
    fn apply(actual: &mut Vec<(String, String)>, commands: &[Command]) {
        for command in commands {
            match command {
                Command::AddMap { key, value, .. } => actual.push((key.clone(), value.clone())),
                Command::SetMap { key, value, .. } => {
                    actual.iter_mut().filter(|(k, _)| k == key).for_each(|(_, v)| *v = value.clone())
                }
                Command::DelMap { key, .. } => actual.retain(|(k, _)| k != key),
                other => panic!("not a map command: {other}"),
            }
        }
    }

    proptest! {
        #[test]
        fn applying_the_plan_gives_the_wanted_map_and_planning_again_nothing(
            actual in proptest::collection::vec(("[a-d]\\.example", "[a-c]/[a-c]"), 0..8),
            wanted in proptest::collection::btree_map("[a-d]\\.example", "[a-c]/[a-c]", 0..4),
        ) {
            let mut actual: Vec<(String, String)> = actual;
            let commands = plan(MAP, &actual, &wanted);
            apply(&mut actual, &commands);
            let mut sorted = actual.clone();
            sorted.sort();
            let expected: Vec<(String, String)> = wanted.clone().into_iter().collect();
            prop_assert_eq!(sorted, expected);
            prop_assert!(plan(MAP, &actual, &wanted).is_empty());
        }
    }
}
