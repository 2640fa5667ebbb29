//! From what ZooKeeper holds to what the proxy should use. No I/O.
//!
//! - A child is read from its `base64_` name when it has one (falling back to its data, as
//!   Synapse does), else from its data; a malformed one is skipped and reported.
//! - Label filters keep only matching instances; one instance per endpoint (the oldest znode
//!   wins, so a registrar's make-before-break is invisible); weights are clamped to 0–256.
//! - `haproxy_server_options` is never applied (a znode must not inject configuration); its
//!   presence is reported.
//! - No instance: with `on_empty = "keep"` the last discovered ones stay; otherwise (or with
//!   none discovered yet) the default servers, if any; `keep_default_servers` adds the default
//!   servers to discovered instances too.
//! - A path's children are built into instances again only where their record or their
//!   host's answer changed ([`Built`]).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axon_record::{ChildName, Record};

use super::core::Shared;

use crate::model::{DEFAULT_WEIGHT, Endpoint, Instance, MAX_WEIGHT, OnEmpty, ServiceConfig, ServiceView, Source};

/// A child's record, from its name or its data.
pub fn record_of(child: &str, data: Option<&[u8]>) -> Result<Record, String> {
    let from_data = |data: Option<&[u8]>| match data {
        Some(bytes) => Record::from_json(bytes).map_err(|e| e.to_string()),
        None => Err("no data".to_owned()),
    };
    match ChildName::parse(child) {
        Ok(ChildName::Encoded { json, .. }) => {
            Record::from_json(&json).or_else(|e| from_data(data).map_err(|_| e.to_string()))
        }
        Ok(ChildName::Plain { .. }) => from_data(data),
        Err(err) => from_data(data).map_err(|_| err.to_string()),
    }
}

/// Whether a child's record can be taken from its name alone (no data read needed).
pub fn encoded_in_name(child: &str) -> bool {
    matches!(ChildName::parse(child), Ok(ChildName::Encoded { .. }))
}

/// One child, read and resolved: an instance or why it was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Child {
    Usable { instance: Instance, notes: Vec<String> },
    Skipped(String),
}

/// Turns a record whose host resolved to `ip` into an instance, with notes on what was
/// changed or ignored.
fn instance_of(child: &Arc<str>, record: &Record, ip: IpAddr) -> Child {
    let mut notes = Vec::new();
    let weight = match record.weight {
        None => DEFAULT_WEIGHT,
        Some(w) if w > u32::from(MAX_WEIGHT) => {
            notes.push(format!("{child}: weight {w} clamped to {MAX_WEIGHT}"));
            MAX_WEIGHT
        }
        Some(w) => u16::try_from(w).unwrap_or(MAX_WEIGHT),
    };
    if let Some(options) = &record.haproxy_server_options {
        notes.push(format!("{child}: haproxy_server_options {options:?} ignored (never applied from a znode)"));
    }
    Child::Usable {
        instance: Instance {
            endpoint: Endpoint::new(ip, record.port),
            weight,
            labels: Arc::new(record.labels.clone().unwrap_or_default()),
            name: record.name.as_str().into(),
            znode: child.clone(),
        },
        notes,
    }
}

/// What a host name resolves to: an address, why not, or `None` while it is being looked up.
pub type Answer = Option<Result<IpAddr, String>>;

/// A path's children as last turned into [`Child`]ren, so that a change builds again only the
/// children it touched: the others are copied (their instances share names and labels).
#[derive(Debug, Default)]
pub struct Built {
    /// In name order, as the path's children.
    children: Vec<(Arc<str>, BuiltChild)>,
}

#[derive(Debug)]
struct BuiltChild {
    /// The record it was built from (the same one, not an equal one).
    record: Shared,
    /// What its host resolved to then; `None` for an IP literal (or no record), which never
    /// changes.
    answer: Option<Answer>,
    child: Child,
}

impl BuiltChild {
    fn new(name: &Arc<str>, record: &Shared, lookup: &impl Fn(&str) -> Answer) -> BuiltChild {
        let (answer, child) = match &**record {
            Err(reason) => (None, Child::Skipped(reason.clone())),
            Ok(r) => match r.host.parse::<IpAddr>() {
                Ok(ip) => (None, instance_of(name, r, ip)),
                Err(_) => {
                    let answer = lookup(&r.host);
                    let child = match &answer {
                        Some(Ok(ip)) => instance_of(name, r, *ip),
                        Some(Err(err)) => Child::Skipped(format!("cannot resolve host {:?}: {err}", r.host)),
                        None => Child::Skipped(format!("resolving host {:?}", r.host)),
                    };
                    (Some(answer), child)
                }
            },
        };
        BuiltChild { record: record.clone(), answer, child }
    }

    /// Whether it was built from this record and its host's current answer.
    fn current(&self, record: &Shared, lookup: &impl Fn(&str) -> Answer) -> bool {
        Arc::ptr_eq(&self.record, record)
            && match (&self.answer, &**record) {
                (Some(answer), Ok(r)) => lookup(&r.host) == *answer,
                _ => true,
            }
    }
}

impl Built {
    /// The children of `found` (a path's, in name order), each built from its record and what
    /// `lookup` says of its host — again only where either changed since the last call.
    pub fn children<'a>(
        &mut self,
        found: &'a [(Arc<str>, Shared)],
        lookup: impl Fn(&str) -> Answer,
    ) -> Vec<(&'a str, Child)> {
        let mut before = std::mem::take(&mut self.children).into_iter().peekable();
        let mut kept = Vec::with_capacity(found.len());
        let mut out = Vec::with_capacity(found.len());
        for (name, record) in found {
            // Names are shared with the core: equal names are mostly the same one.
            while before.next_if(|(b, _)| !Arc::ptr_eq(b, name) && b < name).is_some() {}
            let built = before
                .next_if(|(b, _)| b == name)
                .map(|(_, built)| built)
                .filter(|built| built.current(record, &lookup))
                .unwrap_or_else(|| BuiltChild::new(name, record, &lookup));
            out.push((&**name, built.child.clone()));
            kept.push((name.clone(), built));
        }
        self.children = kept;
        out
    }
}

/// What discovery found for a service's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    /// The path does not exist.
    Missing,
    /// The path's children, by name (sorted, so the oldest sequence comes first per host).
    Children(Vec<(&'a str, Child)>),
}

/// The service as the proxy should see it.
pub fn view(service: &ServiceConfig, found: Found<'_>, previous: Option<&ServiceView>) -> ServiceView {
    let mut problems = Vec::new();
    let mut instances: Vec<Instance> = Vec::new();
    let mut seen = BTreeSet::new();
    match found {
        Found::Children(children) => {
            for (name, child) in children {
                match child {
                    Child::Skipped(reason) => problems.push(format!("{name}: {reason}")),
                    Child::Usable { instance, notes } => {
                        problems.extend(notes);
                        if service.label_filters.iter().all(|f| f.matches(&instance.labels))
                            && seen.insert(instance.endpoint)
                        {
                            instances.push(instance);
                        }
                    }
                }
            }
        }
        Found::Missing => problems.push(format!("{} does not exist", service.zk_path)),
    }
    let defaults = || service.default_servers.iter().map(|&endpoint| default_instance(endpoint));
    let source = if !instances.is_empty() {
        if service.keep_default_servers {
            instances.extend(defaults().filter(|d| seen.insert(d.endpoint)));
        }
        Source::Discovered
    } else {
        let kept = previous.filter(|p| {
            service.on_empty == OnEmpty::Keep
                && matches!(p.source, Source::Discovered | Source::Previous | Source::Cache)
                && !p.instances.is_empty()
        });
        if let Some(previous) = kept {
            instances = previous.instances.clone();
            Source::Previous
        } else if !service.default_servers.is_empty() {
            instances.extend(defaults());
            Source::Defaults
        } else {
            Source::Empty
        }
    };
    instances.sort_by_key(|i| i.endpoint);
    ServiceView { instances, source, problems }
}

/// The view of a service declaring a selector (`selector_of`): the instances of the service it
/// names (`parent`) that match its filters, as the agent would pick them for that selector,
/// with the same source. The path's problems are the parent's, reported once, there. (Reading
/// the path by its own rules would differ: its filters applied before one instance per
/// endpoint is kept, and an empty selection kept from before.)
pub fn selected(service: &ServiceConfig, parent: &ServiceView) -> ServiceView {
    let instances = parent
        .instances
        .iter()
        .filter(|i| service.label_filters.iter().all(|f| f.matches(&i.labels)))
        .cloned()
        .collect();
    ServiceView { instances, source: parent.source, problems: Vec::new() }
}

fn default_instance(endpoint: Endpoint) -> Instance {
    Instance::unnamed(endpoint, DEFAULT_WEIGHT, &[])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use base64::Engine as _;

    use super::*;
    use crate::config::Config;

    fn service(extra: &str) -> ServiceConfig {
        let text = format!(
            "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[haproxy]\nsocket = \"/s\"\n[[service]]\nname = \"web\"\nzk_path = \"/web\"\nbackend = \"web\"\n{extra}\n"
        );
        Config::parse(Path::new("t.toml"), &text).unwrap().services.remove(0)
    }

    fn usable(child: &str, json: &str) -> Child {
        let record = record_of(child, Some(json.as_bytes())).unwrap();
        let ip = record.host.parse().unwrap();
        instance_of(&child.into(), &record, ip)
    }

    fn endpoints(view: &ServiceView) -> Vec<String> {
        view.instances.iter().map(|i| i.endpoint.to_string()).collect()
    }

    #[test]
    fn reads_records_from_data_or_from_nerves_path_encoding() {
        let json = r#"{"host":"10.0.0.1","port":80,"name":"h1"}"#;
        assert_eq!(record_of("h1_0000000001", Some(json.as_bytes())).unwrap().port, 80);
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(json);
        let name = format!("base64_{}_{encoded}_0000000002", encoded.len());
        assert!(encoded_in_name(&name));
        assert_eq!(record_of(&name, None).unwrap().name, "h1");
        // A broken encoding falls back to the data.
        assert_eq!(record_of("base64_99_xx_0000000003", Some(json.as_bytes())).unwrap().port, 80);
        assert!(record_of("h1_0000000004", Some(b"{}")).unwrap_err().contains("no `host`"));
        assert!(record_of("h1_0000000005", None).is_err());
    }

    #[test]
    fn skips_and_reports_bad_children_while_using_the_rest() {
        let good =
            usable("a_0000000001", r#"{"host":"10.0.0.1","port":80,"weight":300,"haproxy_server_options":"backup"}"#);
        let bad = Child::Skipped("record has no `port`".into());
        let view = view(&service(""), Found::Children(vec![("a_0000000001", good), ("b_0000000002", bad)]), None);
        assert_eq!(endpoints(&view), ["10.0.0.1:80"]);
        assert_eq!(view.instances[0].weight, 256);
        assert_eq!(view.source, Source::Discovered);
        assert_eq!(view.problems.len(), 3, "{:?}", view.problems);
        assert!(view.problems.iter().any(|p| p.contains("b_0000000002: record has no `port`")));
        assert!(view.problems.iter().any(|p| p.contains("clamped to 256")));
        assert!(view.problems.iter().any(|p| p.contains("haproxy_server_options \"backup\" ignored")));
    }

    #[test]
    fn one_instance_per_endpoint_and_label_filters() {
        let a1 = usable("a_0000000001", r#"{"host":"10.0.0.1","port":80,"labels":{"az":"x"}}"#);
        let a2 = usable("a_0000000007", r#"{"host":"10.0.0.1","port":80,"labels":{"az":"x"},"weight":9}"#);
        let b = usable("b_0000000002", r#"{"host":"10.0.0.2","port":80,"labels":{"az":"y"}}"#);
        let found = Found::Children(vec![("a_0000000001", a1), ("a_0000000007", a2), ("b_0000000002", b)]);
        let all = view(&service(""), found.clone(), None);
        assert_eq!(endpoints(&all), ["10.0.0.1:80", "10.0.0.2:80"]);
        assert_eq!(all.instances[0].weight, 1, "the oldest znode wins");
        let filtered = view(&service("label_filters = [{ label = \"az\", value = \"x\" }]"), found, None);
        assert_eq!(endpoints(&filtered), ["10.0.0.1:80"]);
    }

    #[test]
    fn a_declared_selector_selects_from_the_named_services_view_as_the_agent_would() {
        let text = "[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[haproxy]\nsocket = \"/s\"\n\
                    [[service]]\nname = \"web\"\nzk_path = \"/web\"\nbackend = \"web\"\n\
                    [[service]]\nname = \"web-canary\"\nzk_path = \"/web\"\nbackend = \"c\"\n\
                    label_filters = [{ label = \"canary\", value = \"true\" }]\nselector_of = \"web\"\n";
        let config = Config::parse(Path::new("t.toml"), text).unwrap();
        let (web, canary) = (&config.services[0], &config.services[1]);
        let stable = || usable("s_0000000001", r#"{"host":"10.0.0.1","port":80,"labels":{"canary":"false"}}"#);
        // The same endpoint twice: the oldest record (stable) is web's, so not a canary.
        let twin = || usable("t_0000000002", r#"{"host":"10.0.0.1","port":80,"labels":{"canary":"true"}}"#);
        let new = || usable("u_0000000003", r#"{"host":"10.0.0.2","port":80,"labels":{"canary":"true"},"weight":5}"#);
        let found =
            Found::Children(vec![("s_0000000001", stable()), ("t_0000000002", twin()), ("u_0000000003", new())]);
        let parent = view(web, found, None);
        let chosen = selected(canary, &parent);
        assert_eq!(endpoints(&chosen), ["10.0.0.2:80"]);
        assert_eq!((chosen.instances[0].weight, chosen.source), (5, Source::Discovered));
        // The canary gone: none selected, though web keeps its instances (and would keep its
        // last ones if the path emptied: the selection follows).
        let parent = view(web, Found::Children(vec![("s_0000000001", stable())]), Some(&parent));
        assert!(selected(canary, &parent).instances.is_empty());
        let kept =
            view(web, Found::Children(vec![]), Some(&view(web, Found::Children(vec![("u_0000000003", new())]), None)));
        let chosen = selected(canary, &kept);
        assert_eq!((endpoints(&chosen), chosen.source), (vec!["10.0.0.2:80".to_owned()], Source::Previous));
    }

    fn instance(child: &Child) -> &Instance {
        match child {
            Child::Usable { instance, .. } => instance,
            Child::Skipped(reason) => panic!("skipped: {reason}"),
        }
    }

    fn list(found: &BTreeMap<Arc<str>, Shared>) -> Vec<(Arc<str>, Shared)> {
        found.iter().map(|(n, r)| (n.clone(), r.clone())).collect()
    }

    #[test]
    fn children_are_built_again_only_when_their_record_or_their_hosts_answer_changed() {
        let shared = |json: &str| Arc::new(Record::from_json(json.as_bytes()).map_err(|e| e.to_string()));
        let mut found: BTreeMap<Arc<str>, Shared> = BTreeMap::from([
            ("a_0000000001".into(), shared(r#"{"host":"10.0.0.1","port":80,"name":"a"}"#)),
            ("b_0000000002".into(), shared(r#"{"host":"b.internal","port":80,"name":"b"}"#)),
            ("c_0000000003".into(), shared(r#"{"host":"10.0.0.3","port":80,"name":"c"}"#)),
        ]);
        let mut answer: Answer = Some(Ok("10.0.0.2".parse().unwrap()));
        let mut built = Built::default();
        let listed = list(&found);
        let first = built.children(&listed, |_| answer.clone());
        let names: Vec<&str> = first.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a_0000000001", "b_0000000002", "c_0000000003"]);
        let first: Vec<Instance> = first.iter().map(|(_, c)| instance(c).clone()).collect();
        let same = |a: &Instance, b: &Instance| Arc::ptr_eq(&a.name, &b.name);

        // Nothing changed: every instance is the one built before.
        let listed = list(&found);
        let again = built.children(&listed, |_| answer.clone());
        assert!(again.iter().zip(&first).all(|((_, c), f)| same(instance(c), f)));

        // One record changed (another one, though its name stays) and one child went: only
        // the changed one is built again.
        found.insert("a_0000000001".into(), shared(r#"{"host":"10.0.0.1","port":81,"name":"a"}"#));
        found.remove("c_0000000003");
        let listed = list(&found);
        let changed = built.children(&listed, |_| answer.clone());
        assert_eq!(changed.len(), 2);
        assert_eq!(instance(&changed[0].1).endpoint.port, 81);
        assert!(same(instance(&changed[1].1), &first[1]), "b is unchanged");

        // The host's answer changed: b is built again with it; an unchanged answer keeps it.
        answer = Some(Ok("10.0.0.7".parse().unwrap()));
        let listed = list(&found);
        let moved = built.children(&listed, |_| answer.clone());
        assert_eq!(instance(&moved[1].1).endpoint.ip.to_string(), "10.0.0.7");
        let listed = list(&found);
        let kept = built.children(&listed, |_| answer.clone());
        assert!(same(instance(&kept[1].1), instance(&moved[1].1)));
        answer = None;
        let listed = list(&found);
        let pending = built.children(&listed, |_| answer.clone());
        assert!(matches!(&pending[1].1, Child::Skipped(r) if r.contains("resolving")));

        // A child that comes back is built from its record.
        found.insert("c_0000000003".into(), shared(r#"{"host":"10.0.0.3","port":83,"name":"c"}"#));
        let listed = list(&found);
        let back = built.children(&listed, |_| answer.clone());
        assert_eq!(instance(&back[2].1).endpoint.port, 83);

        // A child that cannot be used is reported; one gone from the middle leaves the others
        // as they were built.
        let mut found: BTreeMap<Arc<str>, Shared> = BTreeMap::from([
            ("a_0000000001".into(), shared(r#"{"host":"10.0.0.1","port":80,"name":"a"}"#)),
            ("b_0000000002".into(), shared(r#"{"port":80}"#)),
            ("c_0000000003".into(), shared(r#"{"host":"10.0.0.3","port":80,"name":"c"}"#)),
        ]);
        let mut built = Built::default();
        let listed = list(&found);
        let first = built.children(&listed, |_| None);
        assert!(matches!(&first[1].1, Child::Skipped(r) if r.contains("host")), "{:?}", first[1].1);
        let c = instance(&first[2].1).clone();
        found.remove("b_0000000002");
        let listed = list(&found);
        let after = built.children(&listed, |_| None);
        assert_eq!(after.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["a_0000000001", "c_0000000003"]);
        assert!(same(instance(&after[1].1), &c), "c is the one built before");
    }

    #[test]
    fn empty_paths_keep_the_previous_instances_or_use_defaults() {
        let a = usable("a_0000000001", r#"{"host":"10.0.0.1","port":80}"#);
        let keep = service("default_servers = [\"10.9.9.9:80\"]");
        let discovered = view(&keep, Found::Children(vec![("a_0000000001", a.clone())]), None);
        let empty = view(&keep, Found::Children(vec![]), Some(&discovered));
        assert_eq!((empty.source, endpoints(&empty)), (Source::Previous, vec!["10.0.0.1:80".to_string()]));
        let still = view(&keep, Found::Missing, Some(&empty));
        assert_eq!(still.source, Source::Previous);
        assert!(still.problems[0].contains("/web does not exist"));
        // Nothing discovered yet: the defaults.
        let cold = view(&keep, Found::Children(vec![]), None);
        assert_eq!((cold.source, endpoints(&cold)), (Source::Defaults, vec!["10.9.9.9:80".to_string()]));
        // `on_empty = "empty"`: the defaults, or nothing.
        let emptying = service("on_empty = \"empty\"");
        let gone = view(&emptying, Found::Children(vec![]), Some(&discovered));
        assert_eq!((gone.source, gone.instances.len()), (Source::Empty, 0));
        // Defaults alongside discovered instances.
        let both = view(
            &service("default_servers = [\"10.9.9.9:80\"]\nkeep_default_servers = true"),
            Found::Children(vec![("a_0000000001", a.clone())]),
            None,
        );
        assert_eq!(endpoints(&both), ["10.0.0.1:80", "10.9.9.9:80"]);
    }
}
