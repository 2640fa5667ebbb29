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
//! A declared selector (a service with `selector_of`, such as `web-canary` declaring
//! `canary=true` for `web`) adds `<host>:<selector>` for each of those hosts, to the declaring
//! service's backend, while it has instances: the frontend looks up `<host>:<label>` for a
//! request with an honoured label, so a request naming exactly that selector is routed by
//! HAProxy too (and checked and balanced by it). A key with ':' is never reached by a host
//! alone: the frontend cuts the host at its first ':'.
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

    /// What the map should hold now: each host route whose backend's service (the one whose
    /// instances fill it) has discovered instances, and that `serving(service, backend)` says
    /// has a server ready in a backend HAProxy has.
    pub fn wanted(&self, snapshot: &Snapshot, serving: impl Fn(&str, &str) -> bool) -> Entries {
        self.routes
            .iter()
            .filter(|r| serving(&r.slots, &r.backend))
            .filter(|r| snapshot.service(&r.slots).is_some_and(|v| !v.instances.is_empty()))
            .flat_map(|r| {
                let value = format!("{}/{}", r.service, r.backend);
                [key(&r.host, r.label.as_deref()), key(&format!("{}.", r.host), r.label.as_deref())]
                    .map(|k| (k, value.clone()))
            })
            .collect()
    }
}

/// A map key: the host, or for a declared selector `<host>:<selector>`. The frontend looks a
/// request up by its host cut at the first ':' (no port), so a key with a ':' is reached only
/// through the labelled lookup, from a trusted source.
fn key(host: &str, label: Option<&str>) -> String {
    match label {
        Some(label) => format!("{host}:{label}"),
        None => host.to_owned(),
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
        match &route.label {
            None => text.push_str(&format!("\nhost map: {} → {}/{}", route.host, route.service, route.backend)),
            Some(label) => text.push_str(&format!(
                "\nhost map: {} with X-Axon-Label {label:?} → {}/{} (instances of {})",
                route.host, route.service, route.backend, route.slots
            )),
        }
    }
    for service in config.services.iter().filter(|s| s.backend.is_some()) {
        if routes.iter().any(|r| r.slots == service.name) {
            continue;
        }
        let backend = service.backend.as_deref().unwrap_or_default();
        match &service.selector_of {
            None => text.push_str(&format!(
                "\nhost map: no host of service {:?} (backend {backend:?}) is routed without the agent",
                service.name
            )),
            Some(declared) => text.push_str(&format!(
                "\nhost map: no host of service {:?} is routed without the agent, so its selector {:?} \
                 declared by {:?} is never routed to backend {backend:?}",
                declared.of, declared.selector, service.name
            )),
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
[[service]]
name = "web-canary"
zk_path = "/web"
backend = "be_web_canary"
label_filters = [{ label = "canary", value = "true" }]
selector_of = "web"
[[service]]
name = "api-az-a"
zk_path = "/api"
backend = "be_api_a"
label_filters = [{ label = "zone", value = "a" }, { label = "az", value = "a" }]
selector_of = "api"
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
        // A service declaring a selector has no host of its own: only its selector is mapped.
        assert_eq!(
            map.wanted(&snapshot(&[("web-canary", 1)]), all),
            entries(&[
                ("web.example.:canary=true", "web/be_web_canary"),
                ("web.example:canary=true", "web/be_web_canary")
            ])
        );
        // A backend HAProxy lacks: not mapped.
        assert_eq!(
            map.wanted(&snapshot(&[("web", 1), ("shop", 1)]), |_, b| b != "be_shop"),
            entries(&[("web.example", "web/be_web"), ("web.example.", "web/be_web")])
        );
    }

    #[test]
    fn a_declared_selector_maps_its_services_hosts_and_label_while_it_has_instances() {
        let map = host_map();
        let all = |_: &str, _: &str| true;
        let wanted = map.wanted(&snapshot(&[("web", 2), ("web-canary", 1), ("api", 1), ("api-az-a", 1)]), all);
        let labelled: Vec<(&str, &str)> =
            wanted.iter().filter(|(k, _)| k.contains(':')).map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // The selector is the filters sorted by label; a service without a backend of its own
        // (api) still gets its declared selector routed by HAProxy.
        assert_eq!(
            labelled,
            [
                ("api.example.:az=a,zone=a", "api/be_api_a"),
                ("api.example:az=a,zone=a", "api/be_api_a"),
                ("web.example.:canary=true", "web/be_web_canary"),
                ("web.example:canary=true", "web/be_web_canary"),
            ]
        );
        assert!(!wanted.contains_key("api.example"), "api has no backend: its unlabelled requests ask the agent");
        // The declaring service without instances, or without a ready server: its entries go,
        // the parent's stay.
        let wanted = map.wanted(&snapshot(&[("web", 2), ("web-canary", 0)]), all);
        assert!(wanted.contains_key("web.example") && !wanted.keys().any(|k| k.contains(':')));
        let wanted = map.wanted(&snapshot(&[("web", 2), ("web-canary", 1)]), |s, _| s != "web-canary");
        assert!(wanted.contains_key("web.example") && !wanted.keys().any(|k| k.contains(':')));
        // The parent without instances: its host goes, the declared selector stays.
        let wanted = map.wanted(&snapshot(&[("web", 0), ("web-canary", 1)]), all);
        assert!(!wanted.contains_key("web.example") && wanted.contains_key("web.example:canary=true"));
    }

    #[test]
    fn the_check_lists_declared_selectors_with_their_hosts() {
        let text = CONFIG.replace("socket = \"/s\"", "socket = \"/s\"\nhost_map = \"/m.map\"");
        let text = describe(&Config::parse(Path::new("t.toml"), &text).unwrap());
        assert!(
            text.contains(
                "host map: web.example with X-Axon-Label \"canary=true\" → web/be_web_canary (instances of web-canary)"
            ),
            "{text}"
        );
        assert!(text.contains("host map: web.example → web/be_web\n"), "{text}");
        // A `*` route leaves web without a host of its own: the selector goes nowhere.
        let starred = CONFIG.replace("socket = \"/s\"", "socket = \"/s\"\nhost_map = \"/m.map\"")
            + "[[routing.route]]\nhost = \"*\"\nservice = \"shop\"\n";
        let text = describe(&Config::parse(Path::new("t.toml"), &starred).unwrap());
        assert!(
            text.contains(
                "no host of service \"web\" is routed without the agent, so its selector \"canary=true\" declared by \"web-canary\" is never routed"
            ),
            "{text}"
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
