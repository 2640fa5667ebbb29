//! axon-spoa's SPOE agent end to end: real HAProxy (the shipped snippet and SPOE file), real
//! ZooKeeper, real instances, traffic through HAProxy; and raw TCP clients speaking broken SPOP
//! to the agent. Run against HAProxy 3.0, 3.2 and 3.4 too with `AXON_HAPROXY` (see
//! `make test`).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axon_harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon_harness::kazoo::Kazoo;
use axon_harness::proxy::Proxy;
use axon_harness::sample::Sample;
use axon_harness::spoa::{Spoa, SpoaDir};
use axon_harness::wait::{self, SECOND};
use axon_harness::{bins, http, ports, zk};
use axon_spoa::spoe::codec::{self, FLAG_FIN, FrameType, Typed};
use bytes::BytesMut;

struct Rig {
    haproxy: Haproxy,
    spoa: Spoa,
    kazoo: Kazoo,
    port: u16,
    /// The agent itself (raw clients talk to it here).
    agent: SocketAddr,
    /// Where HAProxy reaches the agent: through a proxy that can slow it down.
    agent_proxy: Proxy,
    base: String,
}

/// HAProxy with the shipped frontend and SPOE engine, a `web` backend of slots, a stats page
/// on loopback (what a hostile Host header would aim at) and `maxconn 200`; 127.0.0.1 is its
/// only trusted source of labels. axon-spoa with its agent, serving `web` (slots), `api` (no
/// backend) and `empty` (no backend, no instance).
fn rig() -> Rig {
    rig_with("60s", false)
}

/// The same with the agent's idle timeout as given (it must exceed HAProxy's `timeout idle`
/// of 30 s in real use, or the agent may close a connection as HAProxy sends on it), and with
/// `canary`: a backend `web-canary` of `web`'s instances labelled `canary=true`, declared as
/// `web`'s selector `canary=true`.
fn rig_with(idle_timeout: &str, canary: bool) -> Rig {
    let zk = zk::shared();
    let base = zk::unique_path("spoe");
    let (port, agent_port, stats_port) = (ports::free_port(), ports::free_port(), ports::free_port());
    let agent = SocketAddr::from(([127, 0, 0, 1], agent_port));
    let agent_proxy = Proxy::start(agent);
    let dir = HaproxyDir::new();
    std::fs::write(dir.trusted_sources(), "127.0.0.1\n").unwrap();
    let spoa_dir = SpoaDir::new();
    // The Lua view as shipped, so that its frontend is there for a client to name.
    let lua = haproxy::lua_config(&dir, spoa_dir.status_port, ports::free_port());
    let config = "global\n    maxconn 200\n\n".to_owned()
        + &haproxy::axon_config(
            &dir,
            port,
            &[
                Backend { name: "web", prefix: "web", slots: 4 },
                Backend { name: "web-canary", prefix: "canary", slots: 2 },
            ][..if canary { 2 } else { 1 }],
            Some(agent_proxy.addr.port()),
        )
        + &format!(
            "\nlisten stats from axon-http\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /\n"
        )
        + "\n"
        + &lua;
    let haproxy = dir.start(&config);
    let services: String = [("web", Some("web")), ("api", None), ("empty", None)]
        .iter()
        .map(|(name, backend)| {
            let backend = backend.map(|b| format!("backend = {b:?}\nslot_prefix = {b:?}\n")).unwrap_or_default();
            format!("[[service]]\nname = {name:?}\nzk_path = \"{base}/{name}\"\n{backend}drain = \"0s\"\n\n")
        })
        .collect::<String>()
        + &if canary {
            format!(
                "[[service]]\nname = \"web-canary\"\nzk_path = \"{base}/web\"\nbackend = \"web-canary\"\n\
                 slot_prefix = \"canary\"\nlabel_filters = [{{ label = \"canary\", value = \"true\" }}]\n\
                 selector_of = \"web\"\ndrain = \"0s\"\n"
            )
        } else {
            String::new()
        };
    let config = spoa_dir.header(zk, &haproxy, None)
        + "[routing]\nhost_suffixes = [\".example\"]\n\n"
        + &format!("[spoe]\nlisten = \"{agent}\"\nidle_timeout = \"{idle_timeout}\"\n\n")
        + &services;
    let spoa = spoa_dir.start(&config);
    wait::for_true("HAProxy to see the agent up", SECOND * 5, || haproxy.servers("axon-agents").iter().all(|s| s.up));
    Rig { haproxy, spoa, kazoo: Kazoo::connect(zk), port, agent, agent_proxy, base }
}

/// A source address HAProxy does not trust with labels.
const UNTRUSTED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

impl Rig {
    fn register(&mut self, service: &str, sample: &Sample, labels: &str) {
        let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}"{labels}}}"#, sample.port(), sample.instance);
        self.kazoo.create(&format!("{}/{service}/{}_", self.base, sample.instance), &json, true, true);
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn get(&self, host: &str, label: Option<&str>) -> http::Response {
        self.get_from(None, "/", host, label, &[])
    }

    /// A request from `source` (127.0.0.1, trusted, when `None`).
    fn get_from(
        &self,
        source: Option<IpAddr>,
        path: &str,
        host: &str,
        label: Option<&str>,
        extra: &[(&str, &str)],
    ) -> http::Response {
        let mut headers = vec![("Host", host)];
        if let Some(label) = label {
            headers.push(("X-Axon-Label", label));
        }
        headers.extend_from_slice(extra);
        let response = match source {
            Some(source) => http::request_from(source, self.addr(), "GET", path, &headers),
            None => http::request(self.addr(), "GET", path, &headers),
        };
        response.expect("a request through HAProxy")
    }

    /// Who answers `n` requests: instance name, or `HTTP <status> <reason>`.
    fn spread_from(
        &self,
        source: Option<IpAddr>,
        host: &str,
        label: Option<&str>,
        n: usize,
    ) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let response = self.get_from(source, "/", host, label, &[]);
            let who = match response.status {
                200 => response.header("x-instance").unwrap_or("?").to_owned(),
                status => format!("HTTP {status} {}", response.header("x-axon-reason").unwrap_or("-")),
            };
            *seen.entry(who).or_insert(0) += 1;
        }
        seen
    }

    fn spread(&self, host: &str, label: Option<&str>, n: usize) -> BTreeMap<String, usize> {
        self.spread_from(None, host, label, n)
    }

    fn wait_spread(&self, host: &str, label: Option<&str>, expected: &[&str]) {
        wait::for_true(&format!("{host} ({label:?}) answered by {expected:?}"), SECOND * 5, || {
            self.spread(host, label, expected.len() * 8).keys().map(String::as_str).collect::<Vec<_>>() == expected
        });
    }

    fn notifies(&self) -> f64 {
        self.spoa.metric("axon_spoa_spoe_notifies_total")
    }
}

#[test]
fn services_without_slots_reach_their_instances_and_trusted_labels_pick_matching_ones() {
    let mut rig = rig();
    let (api1, api2) = (Sample::start("api", "api1"), Sample::start("api", "api2"));
    let (stable, canary) = (Sample::start("web", "stable"), Sample::start("web", "canary"));
    rig.register("api", &api1, "");
    rig.register("api", &api2, "");
    rig.register("web", &stable, r#","labels":{"canary":"false","az":"a"}"#);
    rig.register("web", &canary, r#","labels":{"canary":"true","az":"b"}"#);
    // api has no backend: the agent picks its instances (HAProxy's dynamic backend).
    rig.wait_spread("api.example", None, &["api1", "api2"]);
    let response = rig.get("api.example:8080", None);
    assert_eq!(response.status, 200);
    // web has slots: without a label both instances serve through them.
    rig.wait_spread("web.example", None, &["canary", "stable"]);
    // A label selector from a trusted source: only matching instances, even for a service
    // with slots.
    rig.wait_spread("web.example", Some("canary=true"), &["canary"]);
    rig.wait_spread("web.example", Some("canary=false"), &["stable"]);
    // Every key of a selector counts, commas and all.
    rig.wait_spread("web.example", Some("az=b,canary=true"), &["canary"]);
    let none = rig.spread("web.example", Some("az=a,canary=true"), 4);
    assert_eq!(none.keys().collect::<Vec<_>>(), ["HTTP 503 no_instance"], "{none:?}");
    // Only the agent-routed requests reached the agent: api and the labelled ones.
    assert!(rig.spoa.metric("axon_spoa_spoe_decisions_total{status=\"found\"}") >= 32.0);
}

#[test]
fn unknown_services_and_services_without_instances_get_a_503_saying_why() {
    let mut rig = rig();
    let web = Sample::start("web", "w1");
    rig.register("web", &web, "");
    rig.wait_spread("web.example", None, &["w1"]);
    let unknown = rig.get("nosuch.example", None);
    assert_eq!((unknown.status, unknown.header("x-axon-reason")), (503, Some("unknown_service")));
    assert_eq!(unknown.body, "no such service");
    let empty = rig.get("empty.example", None);
    assert_eq!((empty.status, empty.header("x-axon-reason")), (503, Some("no_instance")));
    let unmatched = rig.get("web.example", Some("canary=true"));
    assert_eq!((unmatched.status, unmatched.header("x-axon-reason")), (503, Some("no_instance")));
    // Failing fast: no backend is tried, nothing waits.
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(rig.get("nosuch.example", None).status, 503);
    }
    assert!(start.elapsed() < SECOND, "20 refusals took {:?}", start.elapsed());
}

/// `axon-dynamic` never connects without the agent's address and port, whatever routed the
/// request there (a rule of the user's own, by mistake): without them HAProxy would connect to
/// the request's own destination, its own frontend, in a loop until every connection slot is
/// taken.
#[test]
fn axon_dynamic_refuses_a_request_without_the_agents_address_and_port() {
    let dir = HaproxyDir::new();
    let (port, nothing, address_only) = (ports::free_port(), ports::free_port(), ports::free_port());
    let mistaken = |bind: u16, rule: &str| {
        format!(
            "\nfrontend mistaken-{bind} from axon-http\n    bind 127.0.0.1:{bind}\n{rule}    default_backend axon-dynamic\n"
        )
    };
    let config = "global\n    maxconn 200\n\n".to_owned()
        + &haproxy::axon_config(&dir, port, &[], None)
        + &mistaken(nothing, "")
        + &mistaken(address_only, "    http-request set-var(txn.axon.addr) str(127.0.0.1)\n");
    let haproxy = dir.start(&config);
    let baseline = haproxy.curr_conns();
    for bind in [nothing, address_only] {
        for _ in 0..20 {
            let start = Instant::now();
            let response =
                http::request(SocketAddr::from(([127, 0, 0, 1], bind)), "GET", "/", &[("Host", "web.example")])
                    .unwrap_or_else(|e| panic!("port {bind}: {e}"));
            assert_eq!((response.status, response.header("x-axon-reason")), (503, Some("no_instance_chosen")));
            assert!(start.elapsed() < SECOND, "port {bind}: {:?}", start.elapsed());
        }
    }
    wait::for_true(&format!("CurrConns back to {baseline}"), SECOND * 2, || haproxy.curr_conns() <= baseline);
}

/// Every proxy name the shipped files declare (frontends, backends, listens, defaults).
fn shipped_proxy_names() -> Vec<String> {
    let mut names = Vec::new();
    for file in ["axon.cfg", "example.cfg", "axon-lua.cfg"] {
        let text = std::fs::read_to_string(bins::workspace_root().join("haproxy").join(file)).unwrap();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["frontend" | "backend" | "listen" | "defaults", name, ..] = words.as_slice() {
                names.push((*name).to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AgentState {
    Up,
    /// Answering later than the SPOE processing timeout.
    Slow,
    Stopped,
}

#[test]
fn no_client_chooses_a_backend_whether_the_agent_is_up_slow_or_stopped() {
    let mut rig = rig();
    let names = shipped_proxy_names();
    for expected in ["axon", "axon-admin", "axon-agents", "axon-dynamic", "http", "stats", "web"] {
        assert!(names.iter().any(|n| n == expected), "{expected} not among {names:?}");
    }
    let (stable, canary, api) =
        (Sample::start("web", "stable"), Sample::start("web", "canary"), Sample::start("api", "a1"));
    rig.register("web", &stable, r#","labels":{"canary":"false"}"#);
    rig.register("web", &canary, r#","labels":{"canary":"true"}"#);
    rig.register("api", &api, "");
    rig.wait_spread("web.example", None, &["canary", "stable"]);
    rig.wait_spread("api.example", None, &["a1"]);
    wait::for_true("web.example in the host map", SECOND * 5, || {
        rig.haproxy.host_map_entries().get("web.example").map(String::as_str) == Some("web/web")
    });

    for state in [AgentState::Up, AgentState::Slow, AgentState::Stopped] {
        let notifies_before = if state == AgentState::Stopped { 0.0 } else { rig.notifies() };
        match state {
            AgentState::Up => {}
            // Past the 50 ms processing timeout, but well within the health check's 500 ms.
            AgentState::Slow => rig.agent_proxy.delay(Duration::from_millis(120)),
            AgentState::Stopped => {
                rig.agent_proxy.delay(Duration::ZERO);
                rig.spoa.stop();
                wait::for_true("HAProxy to see the agent down", SECOND * 5, || {
                    rig.haproxy.servers("axon-agents").iter().all(|s| !s.up)
                });
            }
        }
        let refused_as = if state == AgentState::Up { "unknown_service" } else { "agent_unavailable" };
        let baseline = rig.haproxy.curr_conns();
        // A client naming each proxy, 200 requests in all: never served by it, never looping.
        for i in 0..200 {
            let name = &names[i % names.len()];
            let host = match i % 4 {
                0 => name.clone(),
                1 => format!("{name}:8080"),
                2 => name.to_ascii_uppercase(),
                _ => format!("{name}."),
            };
            let start = Instant::now();
            let response = rig.get(&host, None);
            assert!(
                response.status == 503 && response.header("x-axon-reason") == Some(refused_as),
                "{state:?}: Host {host:?} got {} {:?}: {}",
                response.status,
                response.header("x-axon-reason"),
                response.body
            );
            // Not the stats page, not the Lua view, not an instance.
            assert!(
                !response.body.contains("Statistics Report")
                    && !response.body.contains("Axon-managed backends")
                    && response.header("x-instance").is_none(),
                "{state:?}: Host {host:?} was served: {}",
                response.body
            );
            assert!(start.elapsed() < SECOND, "{state:?}: Host {host:?} took {:?}", start.elapsed());
        }
        wait::for_true(&format!("{state:?}: CurrConns back to {baseline}"), SECOND * 2, || {
            rig.haproxy.curr_conns() <= baseline
        });
        if state == AgentState::Slow {
            // Slow, not down: HAProxy still sees the agent up, and asked it every time (it
            // answered, too late).
            assert!(rig.haproxy.servers("axon-agents").iter().all(|s| s.up), "the slowed agent was marked down");
            let asked = rig.notifies() - notifies_before;
            assert!(asked >= 190.0, "the slowed agent was asked {asked} times for 200 requests");
        }

        // A mapped host is served whatever the agent's state; a spoofed X-Axon-Service is
        // replaced, never passed on.
        let spoof = [("X-Axon-Service", "stats")];
        let echoed = rig.get_from(None, "/echo/headers", "web.example", None, &spoof);
        assert_eq!(echoed.status, 200, "{state:?}");
        let seen: Vec<&str> = echoed.body.lines().filter(|l| l.starts_with("x-axon-service:")).collect();
        assert_eq!(seen, ["x-axon-service: web"], "{state:?}");
        // A label from an untrusted source changes nothing: both instances, through the slots.
        let untrusted = rig.spread_from(Some(UNTRUSTED), "web.example", Some("canary=true"), 12);
        assert_eq!(untrusted.keys().map(String::as_str).collect::<Vec<_>>(), ["canary", "stable"], "{state:?}");
        let untrusted_api = rig.spread_from(Some(UNTRUSTED), "api.example", Some("canary=true"), 4);
        match state {
            AgentState::Up => {
                // From a trusted source it selects; a service without slots is reached.
                assert_eq!(rig.spread("web.example", Some("canary=true"), 8).keys().collect::<Vec<_>>(), ["canary"]);
                assert_eq!(untrusted_api.keys().collect::<Vec<_>>(), ["a1"]);
                let echoed = rig.get_from(None, "/echo/headers", "api.example", None, &spoof);
                let seen: Vec<&str> = echoed.body.lines().filter(|l| l.starts_with("x-axon-service:")).collect();
                assert_eq!(seen, ["x-axon-service: api"]);
            }
            AgentState::Slow | AgentState::Stopped => {
                // Without the agent nothing else is routed: at once, saying why.
                let expected = format!("HTTP 503 {refused_as}");
                assert_eq!(untrusted_api.keys().collect::<Vec<_>>(), [&expected], "{state:?}");
                assert_eq!(
                    rig.spread("web.example", Some("canary=true"), 4).keys().collect::<Vec<_>>(),
                    [&expected],
                    "{state:?}"
                );
            }
        }
    }
}

#[test]
fn requests_for_mapped_hosts_skip_the_agent() {
    let mut rig = rig();
    let (web, api) = (Sample::start("web", "w1"), Sample::start("api", "a1"));
    rig.register("web", &web, "");
    rig.register("api", &api, "");
    rig.wait_spread("api.example", None, &["a1"]);
    wait::for_true("web.example in the host map", SECOND * 5, || {
        rig.haproxy.host_map_entries().contains_key("web.example")
    });
    let before = rig.notifies();
    for _ in 0..50 {
        assert_eq!(rig.get("web.example", None).header("x-instance"), Some("w1"));
    }
    assert_eq!(rig.notifies(), before, "requests for a mapped host asked the agent");
    for _ in 0..20 {
        assert_eq!(rig.get("api.example", None).header("x-instance"), Some("a1"));
    }
    assert_eq!(rig.notifies(), before + 20.0, "each request for a host not in the map asks the agent once");
    // A trusted label sends a mapped host's request to the agent too.
    assert_eq!(rig.get("web.example", Some("anything")).status, 503);
    assert_eq!(rig.notifies(), before + 21.0);
}

/// A label selector a service declares (`web-canary`: `selector_of = "web"`, `canary=true`) is
/// routed by HAProxy through the host map, to that service's slots, without the agent and with
/// it down; only exactly that selector, only from a trusted source; the entry follows the
/// declaring service's instances.
#[test]
fn a_declared_selector_is_routed_by_haproxy_while_its_service_has_instances() {
    let mut rig = rig_with("60s", true);
    let (stable, canary) = (Sample::start("web", "stable"), Sample::start("web", "canary"));
    rig.register("web", &stable, r#","labels":{"canary":"false"}"#);
    // A second record for the stable instance's endpoint, labelled canary: web keeps the first
    // by child name (`stable_…` before `twin_…`: not a canary), so the agent never picks it for
    // canary=true, nor may the declared backend hold it. (Created before the canary, so read by
    // the time the canary is.)
    let twin = format!(r#"{{"host":"127.0.0.1","port":{},"name":"twin","labels":{{"canary":"true"}}}}"#, stable.port());
    rig.kazoo.create(&format!("{}/web/twin_", rig.base), &twin, true, true);
    rig.register("web", &canary, r#","labels":{"canary":"true"}"#);
    wait::for_true("web.example:canary=true in the host map", SECOND * 5, || {
        rig.haproxy.host_map_entries().get("web.example:canary=true").map(String::as_str) == Some("web/web-canary")
    });
    rig.wait_spread("web.example", None, &["canary", "stable"]);
    wait::for_true("the canary's slot ready", SECOND * 5, || !rig.haproxy.ready_servers("web-canary").is_empty());
    let ready: Vec<String> = rig.haproxy.ready_servers("web-canary").into_iter().map(|(_, addr, _)| addr).collect();
    assert_eq!(ready, [format!("127.0.0.1:{}", canary.port())], "the declared backend holds only the canary");

    // Exactly the declared selector: HAProxy routes it to the canary's slots, not asking.
    let before = rig.notifies();
    assert_eq!(
        rig.spread("web.example", Some("canary=true"), 20).into_iter().collect::<Vec<_>>(),
        [("canary".to_owned(), 20)]
    );
    assert_eq!(rig.spread("WEB.example.:8080", Some("canary=true"), 4).keys().collect::<Vec<_>>(), ["canary"]);
    assert_eq!(rig.notifies(), before, "requests naming a declared selector asked the agent");
    let echoed = rig.get_from(None, "/echo/headers", "web.example", Some("canary=true"), &[("X-Axon-Service", "x")]);
    let seen: Vec<&str> = echoed.body.lines().filter(|l| l.starts_with("x-axon-service:")).collect();
    assert_eq!(seen, ["x-axon-service: web"]);
    // Another selector asks the agent, which picks among web's instances itself.
    assert_eq!(rig.spread("web.example", Some("canary=false"), 4).keys().collect::<Vec<_>>(), ["stable"]);
    assert_eq!(rig.notifies(), before + 4.0);
    // Untrusted, the label is removed; nor does a host spelling the key reach the canary.
    let untrusted = rig.spread_from(Some(UNTRUSTED), "web.example", Some("canary=true"), 12);
    assert_eq!(untrusted.keys().map(String::as_str).collect::<Vec<_>>(), ["canary", "stable"]);
    for host in ["web.example:canary=true", "web.example.:canary=true"] {
        let spread = rig.spread_from(Some(UNTRUSTED), host, None, 12);
        assert_eq!(spread.keys().map(String::as_str).collect::<Vec<_>>(), ["canary", "stable"], "Host {host}");
    }

    // The declaring service has no host of its own: nobody reaches the canary by naming it.
    for source in [None, Some(UNTRUSTED)] {
        let spread = rig.spread_from(source, "web-canary.example", None, 4);
        assert_eq!(spread.keys().map(String::as_str).collect::<Vec<_>>(), ["HTTP 503 unknown_service"], "{source:?}");
    }

    // With the agent dead it is still routed.
    rig.spoa.proc.kill();
    assert_eq!(rig.spread("web.example", Some("canary=true"), 8).keys().collect::<Vec<_>>(), ["canary"]);
    rig.spoa.start_again();

    // The canary gone: the entry goes, and the agent answers that no instance matches.
    let children = rig.kazoo.children(&format!("{}/web", rig.base));
    let canary_znode = children.iter().find(|c| c.starts_with("canary_")).expect("the canary's znode");
    rig.kazoo.delete(&format!("{}/web/{canary_znode}", rig.base), false);
    wait::for_true("web.example:canary=true out of the host map", SECOND * 5, || {
        !rig.haproxy.host_map_entries().keys().any(|k| k.contains(':'))
    });
    rig.wait_spread("web.example", Some("canary=true"), &["HTTP 503 no_instance"]);
    rig.wait_spread("web.example", None, &["stable"]);
}

#[test]
fn with_the_agent_dead_mapped_hosts_keep_serving_and_routing_returns_with_it() {
    let mut rig = rig();
    let (web, api) = (Sample::start("web", "w1"), Sample::start("api", "a1"));
    rig.register("web", &web, "");
    rig.register("api", &api, "");
    rig.wait_spread("web.example", None, &["w1"]);
    rig.wait_spread("api.example", None, &["a1"]);

    rig.spoa.proc.kill();
    // Every request for a mapped host is still served, none waiting more than the processing
    // timeout (50 ms) plus scheduling.
    for _ in 0..30 {
        let start = Instant::now();
        let response = rig.get("web.example", None);
        assert_eq!((response.status, response.header("x-instance")), (200, Some("w1")));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "a request took {:?} with the agent dead",
            start.elapsed()
        );
    }
    // A service without slots cannot be routed without the agent: an immediate 503 saying
    // so, never later than the SPOE processing timeout (50 ms) and scheduling.
    for _ in 0..20 {
        let start = Instant::now();
        let api_response = rig.get("api.example", None);
        let took = start.elapsed();
        assert_eq!((api_response.status, api_response.header("x-axon-reason")), (503, Some("agent_unavailable")));
        assert!(took < Duration::from_millis(150), "a 503 took {took:?} with the agent dead");
    }

    // Back: HAProxy checks the agent every 500 ms, so it is used again within that, plus the
    // check and a request.
    rig.spoa.start_again();
    let back = wait::timed(SECOND * 5, || rig.get("api.example", None).status == 200).expect("routing back");
    eprintln!("SPOE routing back {back:?} after axon-spoa answered");
    assert!(back < Duration::from_millis(800), "routing back only after {back:?}");
    rig.wait_spread("api.example", None, &["a1"]);
    rig.wait_spread("web.example", None, &["w1"]);
}

/// A raw SPOP client.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connecting to the agent");
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw { stream }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("writing to the agent");
    }

    /// The next frame: its type and raw payload; `None` at EOF.
    fn read(&mut self) -> Option<(FrameType, u64, u64, Vec<u8>)> {
        let mut len = [0u8; 4];
        if self.stream.read_exact(&mut len).is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).ok()?;
        let mut whole = len.to_vec();
        whole.extend_from_slice(&body);
        let (frame, _) = codec::decode_frame(&whole, u32::MAX).ok()??;
        Some((frame.kind, frame.stream_id, frame.frame_id, frame.payload.to_vec()))
    }

    /// Reads frames until an AGENT-DISCONNECT and returns its status code.
    fn disconnect_status(&mut self) -> u64 {
        while let Some((kind, _, _, payload)) = self.read() {
            if kind == FrameType::AgentDisconnect {
                return codec::kv_list(&payload)
                    .flatten()
                    .find(|(k, _)| *k == b"status-code")
                    .and_then(|(_, v)| v.as_u64())
                    .expect("a status-code");
            }
        }
        panic!("the agent closed without AGENT-DISCONNECT");
    }

    fn eof(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
    }
}

fn hello() -> BytesMut {
    let mut out = BytesMut::new();
    codec::put_haproxy_hello(&mut out, 16380, b"pipelining");
    out
}

fn notify(stream_id: u64, frame_id: u64, host: &str) -> BytesMut {
    let mut out = BytesMut::new();
    codec::put_frame(&mut out, FrameType::Notify, FLAG_FIN, stream_id, frame_id, |out| {
        codec::put_message(out, "route", &[("host", Typed::Str(host.as_bytes())), ("path", Typed::Str(b"/"))]);
    });
    out
}

#[test]
fn raw_clients_sending_bad_frames_get_the_right_status_while_others_keep_working() {
    let mut rig = rig_with("2s", false);
    let web = Sample::start("web", "w1");
    rig.register("web", &web, "");
    rig.wait_spread("web.example", None, &["w1"]);
    // A well-behaved connection, open throughout.
    let mut good = Raw::connect(rig.agent);
    good.send(&hello());
    assert_eq!(good.read().map(|f| f.0), Some(FrameType::AgentHello));
    let ask = |good: &mut Raw, n: u64| {
        good.send(&notify(n, 1, "web.example"));
        let (kind, stream_id, frame_id, payload) = good.read().expect("an ACK");
        assert_eq!((kind, stream_id, frame_id), (FrameType::Ack, n, 1));
        let actions: Vec<_> = codec::actions(&payload).collect::<Result<_, _>>().unwrap();
        assert!(
            actions.iter().any(|a| matches!(a, codec::Action::SetVar { name: b"be", value: Typed::Str(b"web"), .. })),
            "{actions:?}"
        );
    };
    ask(&mut good, 1);

    // A truncated frame, then silence: the idle timeout (2 s here) ends it with status 2,
    // while the good connection, kept busy, is answered throughout.
    let agent = rig.agent;
    let idle = std::thread::spawn(move || {
        let mut raw = Raw::connect(agent);
        raw.send(&hello()[..7]);
        let start = Instant::now();
        (raw.disconnect_status(), start.elapsed())
    });
    let mut n = 100;
    while !idle.is_finished() {
        ask(&mut good, n);
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, lasted) = idle.join().unwrap();
    assert_eq!(status, 2);
    // Closed for its idleness, not before: the idle timeout is 2 s here.
    assert!(lasted >= Duration::from_millis(1900) && lasted < Duration::from_secs(4), "closed after {lasted:?}");
    // Garbage: not a frame type.
    let mut raw = Raw::connect(rig.agent);
    raw.send(&[0, 0, 0, 5, 42, 0, 0, 0, 1]);
    assert_eq!(raw.disconnect_status(), 4);
    // A frame longer than the agent takes, refused from its length alone.
    let mut raw = Raw::connect(rig.agent);
    raw.send(&100_000u32.to_be_bytes());
    assert_eq!(raw.disconnect_status(), 3);
    // Out of order: a NOTIFY before HELLO.
    let mut raw = Raw::connect(rig.agent);
    raw.send(&notify(1, 1, "web.example"));
    assert_eq!(raw.disconnect_status(), 4);
    // A fragment (no FIN) after HELLO.
    let mut raw = Raw::connect(rig.agent);
    raw.send(&hello());
    raw.read();
    let mut fragment = notify(1, 1, "web.example");
    fragment[8] = 0; // clear FIN in the flags' last byte
    raw.send(&fragment);
    assert_eq!(raw.disconnect_status(), 10);
    // A malformed NOTIFY: an argument longer than the frame.
    let mut raw = Raw::connect(rig.agent);
    raw.send(&hello());
    raw.read();
    let mut bad = notify(1, 1, "web.example");
    let last = bad.len() - 3;
    bad[last] = 0x7f; // the path's length now runs past the frame
    raw.send(&bad);
    assert_eq!(raw.disconnect_status(), 4);
    assert!(raw.eof());
    // Goodbye is answered with status 0.
    let mut raw = Raw::connect(rig.agent);
    raw.send(&hello());
    raw.read();
    let mut bye = BytesMut::new();
    codec::put_frame(&mut bye, FrameType::HaproxyDisconnect, FLAG_FIN, 0, 0, |out| {
        codec::put_kv(out, "status-code", &Typed::Uint32(0));
        codec::put_kv(out, "message", &Typed::Str(b"bye"));
    });
    raw.send(&bye);
    assert_eq!(raw.disconnect_status(), 0);

    // The good connection never noticed.
    ask(&mut good, 2);
    assert!(rig.spoa.metric("axon_spoa_spoe_disconnects_total") >= 6.0);
    // HAProxy's own connections idle out too (its `timeout idle` is longer than this rig's
    // agent's): it reconnects, and traffic flows.
    // And HAProxy's own traffic still flows.
    rig.wait_spread("web.example", None, &["w1"]);

    // Stopped, axon-spoa says goodbye (status 0) on every open connection before it exits.
    ask(&mut good, 3);
    rig.spoa.stop();
    assert_eq!(good.disconnect_status(), 0);
    assert!(good.eof());
    drop(rig.haproxy);
}
