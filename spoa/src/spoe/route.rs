//! Per-request routing: from a request's host, path and label selector to where it goes, using
//! the published snapshot. No I/O; nothing here waits.
//!
//! 1. The service: the first route-table entry whose host (or `*`) and path prefix match (the
//!    longest prefix wins among entries of the same host); else a host `<service><suffix>` for a
//!    configured suffix, such as `web.example` with suffix `.example`. Hosts arrive lowercased
//!    (the shipped SPOE message does that) and any `:port` is ignored.
//! 2. Without a label selector, a service with a backend of slots goes there: HAProxy balances
//!    and health-checks its own servers. (Unless it has been discovered with no instance at
//!    all: then it has none, as for a service without slots.) The hosts for which this is the
//!    answer whatever the path are [`Routes::host_routes`]: axon-spoa puts them in HAProxy's
//!    host map ([`crate::hostmap`]), so HAProxy routes them without asking.
//! 3. Otherwise (no backend, or a selector such as `canary=true` or `az=a,canary=true`; a bare
//!    `canary` only asks for the label to exist), the agent picks an instance itself among those
//!    that match, by weighted round robin (weight 0 is never picked). A selector a service
//!    declares (`selector_of`) is in the host map with that service's backend, so HAProxy
//!    routes it without asking; asked anyway (a spelling the map lacks, or while that service
//!    has no instance), the agent answers it as any selector, from the same instances.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;
use crate::model::{Endpoint, Instance, Snapshot};

/// One entry of the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// `None` for any host (`"*"`).
    pub host: Option<String>,
    pub path_prefix: String,
    pub service: String,
}

/// What the agent tells HAProxy about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Use this backend's slots.
    Backend { service: &'a str, backend: &'a str },
    /// Send it to this instance (HAProxy's dynamic backend).
    Instance { service: &'a str, endpoint: Endpoint },
    /// No service matches the request.
    UnknownService,
    /// The service has no instance (matching the selector).
    NoInstance { service: &'a str },
}

impl Decision<'_> {
    /// The value of the `status` variable HAProxy acts on.
    pub fn status(&self) -> &'static str {
        match self {
            Decision::Backend { .. } | Decision::Instance { .. } => "found",
            Decision::UnknownService => "unknown_service",
            Decision::NoInstance { .. } => "no_instance",
        }
    }
}

/// A host HAProxy can route by itself: requests for it without a label (or with exactly a
/// declared selector, `label`) go to `backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// Lowercase, without port.
    pub host: String,
    /// A declared selector (a `selector_of` service's); `None` for requests without a label.
    pub label: Option<String>,
    /// The requested service's name as configured.
    pub service: String,
    pub backend: String,
    /// The service whose instances fill `backend`: `service` itself, or the one declaring
    /// the selector.
    pub slots: String,
}

/// A request's routing inputs, as HAProxy sent them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub host: &'a [u8],
    pub path: &'a [u8],
    pub label: Option<&'a [u8]>,
}

struct Target {
    /// The service's name as configured.
    name: String,
    backend: Option<String>,
    /// Declared selectors: (selector, the declaring service, its backend).
    selectors: Vec<(String, String, String)>,
    next: AtomicU64,
}

/// The routing rules, built once from the configuration and shared by every connection.
pub struct Routes {
    suffixes: Vec<String>,
    table: Vec<RouteConfig>,
    /// By lowercased service name: host names are case-insensitive.
    targets: HashMap<String, Target>,
}

impl Routes {
    pub fn new(config: &Config) -> Routes {
        let mut table: Vec<RouteConfig> = config.routing.routes.clone();
        for route in &mut table {
            route.service.make_ascii_lowercase();
        }
        // Exact hosts before `*`, then longer prefixes first; otherwise file order.
        table.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.path_prefix.len())));
        // A service declaring a selector is reached only through it, never by a host of its own.
        let mut targets: HashMap<String, Target> = config
            .services
            .iter()
            .filter(|s| s.selector_of.is_none())
            .map(|s| {
                let target = Target {
                    name: s.name.clone(),
                    backend: s.backend.clone(),
                    selectors: Vec::new(),
                    next: AtomicU64::new(0),
                };
                (s.name.to_ascii_lowercase(), target)
            })
            .collect();
        for service in &config.services {
            if let (Some(declared), Some(backend)) = (&service.selector_of, &service.backend)
                && let Some(target) = targets.get_mut(&declared.of.to_ascii_lowercase())
            {
                target.selectors.push((declared.selector.clone(), service.name.clone(), backend.clone()));
            }
        }
        Routes { suffixes: config.routing.host_suffixes.clone(), table, targets }
    }

    pub fn decide<'a>(&'a self, snapshot: &'a Snapshot, request: &Request<'_>) -> Decision<'a> {
        let Some((service, target)) = self.service(request) else { return Decision::UnknownService };
        let selector = request.label.filter(|l| !l.is_empty());
        let view = snapshot.service(service);
        if selector.is_none()
            && let Some(backend) = &target.backend
        {
            // Not yet discovered (ZooKeeper down at start, say): HAProxy's slots are as they
            // were, so they are still the best answer.
            if view.is_none_or(|v| !v.instances.is_empty()) {
                return Decision::Backend { service, backend };
            }
            return Decision::NoInstance { service };
        }
        let instances = view.map(|v| v.instances.as_slice()).unwrap_or_default();
        let eligible = |i: &&Instance| i.weight > 0 && selector.is_none_or(|s| matches(s, i));
        let total: u64 = instances.iter().filter(eligible).map(|i| u64::from(i.weight)).sum();
        if total == 0 {
            return Decision::NoInstance { service };
        }
        let mut ticket = target.next.fetch_add(1, Ordering::Relaxed) % total;
        for instance in instances.iter().filter(eligible) {
            let weight = u64::from(instance.weight);
            if ticket < weight {
                return Decision::Instance { service, endpoint: instance.endpoint };
            }
            ticket -= weight;
        }
        Decision::NoInstance { service }
    }

    /// The hosts whose requests without a label go to a slot backend whatever their path: for
    /// each, its service and backend; and for each such host of a service with declared
    /// selectors, each selector with the declaring service's backend. A host of the route
    /// table qualifies when all its entries name one service and one of them covers every path
    /// (`/`); a host `<service><suffix>` when no entry of the table can apply to it (none for
    /// that host, no `*` entry).
    pub fn host_routes(&self) -> Vec<HostRoute> {
        let mut hosts: BTreeMap<String, &Target> = BTreeMap::new();
        let any_host = self.table.iter().any(|r| r.host.is_none());
        let mut table_hosts: BTreeMap<&str, Vec<&RouteConfig>> = BTreeMap::new();
        for route in &self.table {
            if let Some(host) = &route.host {
                table_hosts.entry(host.as_str()).or_default().push(route);
            }
        }
        for (host, entries) in &table_hosts {
            let one_service = entries.iter().all(|r| r.service == entries[0].service);
            let whole = entries.iter().any(|r| r.path_prefix == "/");
            if one_service
                && whole
                && let Some(target) = self.targets.get(entries[0].service.as_str())
            {
                hosts.insert((*host).to_owned(), target);
            }
        }
        if !any_host {
            for (name, target) in &self.targets {
                for suffix in &self.suffixes {
                    let host = format!("{name}{suffix}");
                    if table_hosts.contains_key(host.as_str()) || hosts.contains_key(&host) {
                        continue;
                    }
                    // The suffix rule itself must pick this service for this host.
                    let request = Request { host: host.as_bytes(), path: b"/", label: None };
                    if self.service(&request).is_some_and(|(_, t)| std::ptr::eq(t, target)) {
                        hosts.insert(host, target);
                    }
                }
            }
        }
        let mut routes = Vec::new();
        for (host, target) in hosts {
            if let Some(backend) = &target.backend {
                routes.push(HostRoute {
                    host: host.clone(),
                    label: None,
                    service: target.name.clone(),
                    backend: backend.clone(),
                    slots: target.name.clone(),
                });
            }
            for (selector, declaring, backend) in &target.selectors {
                routes.push(HostRoute {
                    host: host.clone(),
                    label: Some(selector.clone()),
                    service: target.name.clone(),
                    backend: backend.clone(),
                    slots: declaring.clone(),
                });
            }
        }
        routes
    }

    fn service(&self, request: &Request<'_>) -> Option<(&str, &Target)> {
        let host = strip_port(request.host);
        let routed = self.table.iter().find(|r| {
            r.host.as_deref().is_none_or(|h| h.as_bytes() == host) && request.path.starts_with(r.path_prefix.as_bytes())
        });
        let target = match routed {
            Some(route) => self.targets.get(route.service.as_str()),
            None => self.suffixes.iter().find_map(|suffix| {
                let name = host.strip_suffix(suffix.as_bytes())?;
                self.targets.get(std::str::from_utf8(name).ok()?)
            }),
        }?;
        Some((target.name.as_str(), target))
    }
}

/// A host without its `:port` and trailing dot (IPv6 literals keep their brackets).
fn strip_port(host: &[u8]) -> &[u8] {
    let host = match host.iter().rposition(|&b| b == b':') {
        Some(colon) if !host.starts_with(b"[") || host[..colon].ends_with(b"]") => &host[..colon],
        _ => host,
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// Whether an instance has every `key=value` (or bare `key`) of a comma-separated selector.
fn matches(selector: &[u8], instance: &Instance) -> bool {
    selector.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|part| !part.is_empty()).all(|part| {
        let (key, value) = match part.iter().position(|&b| b == b'=') {
            Some(eq) => (part[..eq].trim_ascii(), Some(part[eq + 1..].trim_ascii())),
            None => (part, None),
        };
        let Ok(key) = std::str::from_utf8(key) else { return false };
        match (instance.labels.get(key), value) {
            (Some(have), Some(want)) => have.as_bytes() == want,
            (Some(_), None) => true,
            (None, _) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::model::{ServiceView, Source};

    const CONFIG: &str = r#"
[zookeeper]
connect = "127.0.0.1:2181"
[haproxy]
socket = "/s"
[routing]
host_suffixes = [".example", ".svc.local"]
[[routing.route]]
host = "shop.example.com"
path_prefix = "/api/"
service = "api"
[[routing.route]]
path_prefix = "/static/"
service = "cdn"
[[service]]
name = "web"
zk_path = "/web"
backend = "web"
[[service]]
name = "api"
zk_path = "/api"
[[service]]
name = "cdn"
zk_path = "/cdn"
"#;

    fn routes() -> Routes {
        Routes::new(&Config::parse(Path::new("t.toml"), CONFIG).unwrap())
    }

    fn instance(last: u8, weight: u16, labels: &[(&str, &str)]) -> Instance {
        Instance::unnamed(Endpoint::new([10, 0, 0, last].into(), 80), weight, labels)
    }

    fn snapshot(services: &[(&str, Vec<Instance>)]) -> Snapshot {
        let services = services
            .iter()
            .map(|(name, instances)| {
                (
                    (*name).into(),
                    Arc::new(ServiceView {
                        instances: instances.clone(),
                        source: Source::Discovered,
                        problems: vec![],
                    }),
                )
            })
            .collect::<BTreeMap<_, _>>();
        Snapshot { services, version: 1, taken: None }
    }

    fn request<'a>(host: &'a str, path: &'a str, label: Option<&'a str>) -> Request<'a> {
        Request { host: host.as_bytes(), path: path.as_bytes(), label: label.map(str::as_bytes) }
    }

    #[test]
    fn services_with_slots_go_to_their_backend() {
        let (routes, snap) = (routes(), snapshot(&[("web", vec![instance(1, 1, &[])])]));
        assert_eq!(
            routes.decide(&snap, &request("web.example", "/", None)),
            Decision::Backend { service: "web", backend: "web" }
        );
        assert_eq!(
            routes.decide(&snap, &request("web.svc.local:8080", "/x", None)),
            Decision::Backend { service: "web", backend: "web" }
        );
        assert_eq!(routes.decide(&snap, &request("web.example.", "/", None)).status(), "found");
    }

    #[test]
    fn a_service_with_slots_discovered_empty_has_no_instance() {
        let routes = routes();
        let empty = snapshot(&[("web", vec![])]);
        assert_eq!(routes.decide(&empty, &request("web.example", "/", None)), Decision::NoInstance { service: "web" });
        // Never discovered: HAProxy's slots as they are.
        let unknown = snapshot(&[]);
        assert_eq!(
            routes.decide(&unknown, &request("web.example", "/", None)),
            Decision::Backend { service: "web", backend: "web" }
        );
    }

    fn host_routes(config: &str) -> Vec<(String, String, String)> {
        let routes = Routes::new(&Config::parse(Path::new("t.toml"), config).unwrap());
        routes.host_routes().into_iter().map(|r| (r.host, r.service, r.backend)).collect()
    }

    const HOSTS: &str = r#"
[zookeeper]
connect = "127.0.0.1:2181"
[haproxy]
socket = "/s"
[routing]
host_suffixes = [".example", ".svc.local"]
[[routing.route]]
host = "www.shop.com"
service = "Web"
[[routing.route]]
host = "split.shop.com"
path_prefix = "/api/"
service = "api"
[[routing.route]]
host = "split.shop.com"
service = "Web"
[[routing.route]]
host = "same.shop.com"
path_prefix = "/v2/"
service = "Web"
[[routing.route]]
host = "same.shop.com"
service = "Web"
[[routing.route]]
host = "part.shop.com"
path_prefix = "/only/"
service = "Web"
[[routing.route]]
host = "api.example"
service = "Web"
[[service]]
name = "Web"
zk_path = "/web"
backend = "be_web"
[[service]]
name = "api"
zk_path = "/api"
backend = "be_api"
[[service]]
name = "cdn"
zk_path = "/cdn"
"#;

    #[test]
    fn host_routes_are_the_hosts_whose_path_never_matters() {
        let route =
            |host: &str, service: &str, backend: &str| (host.to_owned(), service.to_owned(), backend.to_owned());
        assert_eq!(
            host_routes(HOSTS),
            [
                // The table's api.example entry wins over the suffix rule.
                route("api.example", "Web", "be_web"),
                route("api.svc.local", "api", "be_api"),
                route("same.shop.com", "Web", "be_web"),
                route("web.example", "Web", "be_web"),
                route("web.svc.local", "Web", "be_web"),
                route("www.shop.com", "Web", "be_web"),
                // Not split.shop.com (two services), part.shop.com (one path only), nor any
                // host of cdn (no backend).
            ]
        );
        // Every one of them is routed to that backend whatever the path.
        let routes = Routes::new(&Config::parse(Path::new("t.toml"), HOSTS).unwrap());
        let snap = snapshot(&[("Web", vec![instance(1, 1, &[])]), ("api", vec![instance(2, 1, &[])])]);
        for r in routes.host_routes() {
            for path in ["/", "/api/x", "/v2/", "/only/x", "/static/"] {
                assert_eq!(
                    routes.decide(&snap, &request(&r.host, path, None)),
                    Decision::Backend { service: &r.service, backend: &r.backend },
                    "{} {path}",
                    r.host
                );
            }
        }
        // An entry for any host may take any host's paths: no suffix host is then certain.
        let star =
            HOSTS.to_owned() + "[[routing.route]]\nhost = \"*\"\npath_prefix = \"/static/\"\nservice = \"cdn\"\n";
        let hosts: Vec<String> = host_routes(&star).into_iter().map(|r| r.0).collect();
        assert_eq!(hosts, ["api.example", "same.shop.com", "www.shop.com"]);
    }

    #[test]
    fn unknown_hosts_and_empty_services_say_so() {
        let (routes, snap) = (routes(), snapshot(&[("api", vec![])]));
        assert_eq!(routes.decide(&snap, &request("nope.example", "/", None)), Decision::UnknownService);
        assert_eq!(routes.decide(&snap, &request("web.elsewhere", "/", None)), Decision::UnknownService);
        assert_eq!(routes.decide(&snap, &request("", "/", None)), Decision::UnknownService);
        assert_eq!(routes.decide(&snap, &request("api.example", "/", None)), Decision::NoInstance { service: "api" });
        assert_eq!(Decision::UnknownService.status(), "unknown_service");
    }

    #[test]
    fn the_route_table_comes_first() {
        let snap = snapshot(&[("api", vec![instance(1, 1, &[])]), ("cdn", vec![instance(2, 1, &[])])]);
        let routes = routes();
        let api = routes.decide(&snap, &request("shop.example.com", "/api/orders", None));
        assert_eq!(api, Decision::Instance { service: "api", endpoint: instance(1, 1, &[]).endpoint });
        let cdn = routes.decide(&snap, &request("anything.at.all", "/static/a.png", None));
        assert!(matches!(cdn, Decision::Instance { service: "cdn", .. }));
        assert_eq!(routes.decide(&snap, &request("shop.example.com", "/", None)), Decision::UnknownService);
    }

    #[test]
    fn weighted_round_robin_spreads_by_weight_and_skips_weight_zero() {
        let snap = snapshot(&[("api", vec![instance(1, 1, &[]), instance(2, 3, &[]), instance(3, 0, &[])])]);
        let routes = routes();
        let mut seen: BTreeMap<u8, u32> = BTreeMap::new();
        for _ in 0..400 {
            match routes.decide(&snap, &request("api.example", "/", None)) {
                Decision::Instance { endpoint, .. } => {
                    let std::net::IpAddr::V4(ip) = endpoint.ip else { panic!() };
                    *seen.entry(ip.octets()[3]).or_default() += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, BTreeMap::from([(1, 100), (2, 300)]));
    }

    #[test]
    fn label_selectors_restrict_the_choice_even_with_a_backend() {
        let snap = snapshot(&[(
            "web",
            vec![instance(1, 1, &[("canary", "false")]), instance(2, 1, &[("canary", "true"), ("az", "a")])],
        )]);
        let routes = routes();
        let canary = instance(2, 1, &[]).endpoint;
        for selector in ["canary=true", " canary = true ", "az=a,canary=true", "az"] {
            for _ in 0..3 {
                assert_eq!(
                    routes.decide(&snap, &request("web.example", "/", Some(selector))),
                    Decision::Instance { service: "web", endpoint: canary },
                    "{selector}"
                );
            }
        }
        assert_eq!(
            routes.decide(&snap, &request("web.example", "/", Some("canary=maybe"))),
            Decision::NoInstance { service: "web" }
        );
        // An empty header is no selector.
        assert_eq!(
            routes.decide(&snap, &request("web.example", "/", Some(""))),
            Decision::Backend { service: "web", backend: "web" }
        );
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port(b"web.example:8080"), b"web.example");
        assert_eq!(strip_port(b"[::1]:8080"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(strip_port(b"web.example."), b"web.example");
    }
}
