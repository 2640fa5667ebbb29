//! axon-spoa's runtime-API sync end to end: real ZooKeeper, real HAProxy 2.6 configured from
//! the shipped snippet, real HTTP backends, traffic through HAProxy, and znodes written by
//! kazoo in Nerve's exact format (as Nerve or another registrar would write them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axon_harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon_harness::kazoo::Kazoo;
use axon_harness::load::Load;
use axon_harness::sample::Sample;
use axon_harness::spoa::{Spoa, SpoaDir};
use axon_harness::wait::{self, SECOND};
use axon_harness::zk::{self, Ensemble};
use axon_harness::{http, ports, process};

/// HAProxy from the shipped snippet, axon-spoa, and kazoo, around one ZooKeeper.
struct Rig {
    haproxy: Haproxy,
    spoa: Spoa,
    kazoo: Kazoo,
    port: u16,
}

/// `<service>.example` is `<service>`: HAProxy routes these hosts itself, through the host map.
const ROUTING: &str = "[routing]\nhost_suffixes = [\".example\"]\n\n";

/// A `[[service]]` table for axon-spoa.
fn service(name: &str, zk_path: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = {name:?}\nzk_path = {zk_path:?}\nbackend = {name:?}\nslot_prefix = {name:?}\ndrain = \"0s\"\n{extra}\n"
    )
}

fn rig(zk: &str, backends: &[Backend<'_>], services: &str) -> Rig {
    let dir = HaproxyDir::new();
    let port = ports::free_port();
    let config = haproxy::axon_config(&dir, port, backends, None);
    let state_file = dir.state_file();
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let spoa_config = spoa_dir.header(zk, &haproxy, Some(&state_file)) + ROUTING + services;
    let spoa = spoa_dir.start(&spoa_config);
    Rig { haproxy, spoa, kazoo: Kazoo::connect(zk), port }
}

/// Registers an instance as Nerve does: EPHEMERAL_SEQUENTIAL `<path>/<id>_`, Nerve's JSON.
fn register(kazoo: &mut Kazoo, path: &str, id: &str, sample: &Sample, extra: &str) -> String {
    let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{id}"{extra}}}"#, sample.port());
    kazoo.create(&format!("{path}/{id}_"), &json, true, true)
}

impl Rig {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Which instances answer `n` requests for `service`, by count.
    fn spread(&self, service: &str, n: usize) -> BTreeMap<String, usize> {
        let host = format!("{service}.example");
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let response =
                http::request(self.addr(), "GET", "/", &[("Host", &host)]).expect("a request through HAProxy");
            let who = if response.status == 200 {
                response.header("x-instance").unwrap_or("?").to_owned()
            } else {
                format!("HTTP {}", response.status)
            };
            *seen.entry(who).or_insert(0) += 1;
        }
        seen
    }

    /// Waits until requests for `service` reach exactly `instances`.
    fn wait_spread(&self, service: &str, instances: &[&str]) {
        let wanted: Vec<String> = instances.iter().map(|s| s.to_string()).collect();
        wait::for_true(&format!("{service} served by {wanted:?}"), SECOND * 5, || {
            self.spread(service, instances.len().max(1) * 6).keys().cloned().collect::<Vec<_>>() == wanted
        });
    }

    fn ready(&self, backend: &str) -> Vec<String> {
        let mut addrs: Vec<String> = self.haproxy.ready_servers(backend).into_iter().map(|(_, addr, _)| addr).collect();
        addrs.sort();
        addrs
    }
}

fn addr(sample: &Sample) -> String {
    format!("127.0.0.1:{}", sample.port())
}

#[test]
fn instances_appearing_disappearing_and_reweighted_move_traffic_without_a_reload() {
    let zk = zk::shared();
    let path = zk::unique_path("web");
    let samples: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 4 }], &service("web", &path, ""));
    let (master, worker) = (rig.haproxy.master_pid(), rig.haproxy.worker_pid());

    let w1 = register(&mut rig.kazoo, &path, "w1", &samples[0], "");
    register(&mut rig.kazoo, &path, "w2", &samples[1], "");
    rig.wait_spread("web", &["w1", "w2"]);
    register(&mut rig.kazoo, &path, "w3", &samples[2], "");
    rig.wait_spread("web", &["w1", "w2", "w3"]);
    let slot_of = |rig: &Rig, sample: &Sample| {
        rig.haproxy.ready_servers("web").into_iter().find(|(_, a, _)| *a == addr(sample)).map(|(name, _, _)| name)
    };
    let w2_slot = slot_of(&rig, &samples[1]);
    assert!(w2_slot.is_some(), "w2 has no ready slot");

    rig.kazoo.delete(&w1, false);
    rig.wait_spread("web", &["w2", "w3"]);
    assert_eq!(slot_of(&rig, &samples[1]), w2_slot, "a live instance keeps its slot");

    // Weight 0 for w3 (data changed in place): only w2 gets requests.
    let w3 = rig.kazoo.children(&path).into_iter().find(|c| c.starts_with("w3_")).unwrap();
    rig.kazoo.set(
        &format!("{path}/{w3}"),
        &format!(r#"{{"host":"127.0.0.1","port":{},"name":"w3","weight":0}}"#, samples[2].port()),
    );
    rig.wait_spread("web", &["w2"]);
    assert!(rig.haproxy.ready_servers("web").iter().any(|(_, a, w)| *a == addr(&samples[2]) && *w == 0));

    assert_eq!(rig.haproxy.master_pid(), master, "HAProxy was never restarted");
    assert_eq!(rig.haproxy.worker_pid(), worker, "HAProxy was never reloaded");
    assert_eq!(rig.spoa.metric("axon_spoa_refused_commands_total"), 0.0);
    assert!(rig.spoa.status()["services"][0]["slots"].as_object().is_some_and(|s| s.len() == 2));
}

#[test]
fn backends_grow_past_their_template_with_add_server() {
    let zk = zk::shared();
    let path = zk::unique_path("grow");
    let samples: Vec<Sample> = (1..=4).map(|i| Sample::start("api", &format!("a{i}"))).collect();
    let mut rig = rig(zk, &[Backend { name: "api", prefix: "api", slots: 2 }], &service("api", &path, ""));
    for (i, sample) in samples.iter().enumerate() {
        register(&mut rig.kazoo, &path, &format!("a{}", i + 1), sample, "");
    }
    rig.wait_spread("api", &["a1", "a2", "a3", "a4"]);
    let names: Vec<String> = rig.haproxy.servers("api").into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["api1", "api2", "api3", "api4"]);
    // Servers are never deleted: a removed one waits in maintenance and is reused.
    let a4 = rig.kazoo.children(&path).into_iter().find(|c| c.starts_with("a4_")).unwrap();
    rig.kazoo.delete(&format!("{path}/{a4}"), false);
    rig.wait_spread("api", &["a1", "a2", "a3"]);
    assert_eq!(rig.haproxy.servers("api").len(), 4);
    register(&mut rig.kazoo, &path, "a4", &samples[3], "");
    rig.wait_spread("api", &["a1", "a2", "a3", "a4"]);
    assert_eq!(rig.haproxy.servers("api").len(), 4, "the retired slot was reused");
}

#[test]
fn malformed_znodes_are_skipped_and_reported_while_the_rest_works() {
    let zk = zk::shared();
    let path = zk::unique_path("bad");
    let good = Sample::start("web", "good");
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 4 }], &service("web", &path, ""));
    rig.kazoo.create(&format!("{path}/broken_"), "{not json", true, true);
    rig.kazoo.create(&format!("{path}/noport_"), r#"{"host":"127.0.0.1"}"#, true, true);
    rig.kazoo.create(&format!("{path}/nohost_"), r#"{"host":"no-such-host.invalid","port":80}"#, true, true);
    register(&mut rig.kazoo, &path, "good", &good, r#","weight":300,"haproxy_server_options":"backup""#);
    rig.wait_spread("web", &["good"]);
    assert_eq!(rig.ready("web"), [addr(&good)]);
    let status = rig.spoa.status();
    let problems: Vec<String> =
        status["services"][0]["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("broken_") && has("not a JSON object"), "{problems:?}");
    assert!(has("noport_") && has("no `port`"), "{problems:?}");
    assert!(has("nohost_") && has("cannot resolve host"), "{problems:?}");
    assert!(has("weight 300 clamped to 256") && has("haproxy_server_options \"backup\" ignored"), "{problems:?}");
    assert_eq!(rig.haproxy.ready_servers("web")[0].2, 256);
    // Three znodes skipped, and two notes on the good one.
    assert_eq!(rig.spoa.metric("axon_spoa_problems"), 5.0);
}

#[test]
fn nerve_path_encoding_is_read_from_the_child_name() {
    use base64::Engine as _;
    let zk = zk::shared();
    let path = zk::unique_path("b64");
    let sample = Sample::start("web", "enc");
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 2 }], &service("web", &path, ""));
    let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"enc"}}"#, sample.port());
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(&json);
    // The record in the name only: the data holds nothing a reader could use, so the instance
    // is served only if the name is decoded.
    rig.kazoo.create(&format!("{path}/base64_{}_{encoded}_", encoded.len()), "not a record", true, true);
    rig.wait_spread("web", &["enc"]);
    let status = rig.spoa.status();
    assert_eq!(status["services"][0]["problems"], serde_json::json!([]), "{status}");
}

#[test]
fn label_filters_and_default_servers() {
    let zk = zk::shared();
    let path = zk::unique_path("labels");
    let (a, b, fallback) =
        (Sample::start("web", "az-a"), Sample::start("web", "az-b"), Sample::start("web", "default"));
    let extra = format!(
        "label_filters = [{{ label = \"az\", value = \"a\" }}]\ndefault_servers = [\"127.0.0.1:{}\"]\non_empty = \"empty\"",
        fallback.port()
    );
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 3 }], &service("web", &path, &extra));
    // Nothing discovered (the path does not even exist): the default server.
    rig.wait_spread("web", &["default"]);
    let only_a = register(&mut rig.kazoo, &path, "a", &a, r#","labels":{"az":"a"}"#);
    register(&mut rig.kazoo, &path, "b", &b, r#","labels":{"az":"b"}"#);
    rig.wait_spread("web", &["az-a"]);
    // The matching instance leaves: with on_empty = "empty", the default server again.
    rig.kazoo.delete(&only_a, false);
    rig.wait_spread("web", &["default"]);
}

#[test]
fn removed_instances_drain_before_maintenance() {
    let zk = zk::shared();
    let path = zk::unique_path("drain");
    let (a, b) = (Sample::start("web", "a"), Sample::start("web", "b"));
    let services = service("web", &path, "").replace("drain = \"0s\"", "drain = \"1500ms\"");
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 3 }], &services);
    let znode_a = register(&mut rig.kazoo, &path, "a", &a, "");
    register(&mut rig.kazoo, &path, "b", &b, "");
    rig.wait_spread("web", &["a", "b"]);
    rig.kazoo.delete(&znode_a, false);
    let start = Instant::now();
    wait::for_true("a draining", SECOND * 2, || {
        rig.haproxy.servers("web").iter().any(|s| s.addr == addr(&a) && s.draining)
    });
    rig.wait_spread("web", &["b"]);
    wait::for_true("a in maintenance", SECOND * 4, || {
        rig.haproxy.servers("web").iter().any(|s| s.addr == addr(&a) && !s.ready && !s.draining)
    });
    let drained = start.elapsed();
    assert!(drained >= Duration::from_millis(1400), "maintenance after {drained:?}, before the grace period");
}

#[test]
fn a_refused_command_is_counted_and_resynced_and_drift_is_repaired() {
    let zk = zk::shared();
    let (web_path, fixed_path) = (zk::unique_path("web"), zk::unique_path("fixed"));
    let samples: Vec<Sample> = (1..=2).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let dir = HaproxyDir::new();
    let port = ports::free_port();
    // `fixed` uses static-rr: HAProxy refuses `add server` there, for good.
    let config = haproxy::axon_config(
        &dir,
        port,
        &[Backend { name: "web", prefix: "web", slots: 2 }, Backend { name: "fixed", prefix: "fixed", slots: 1 }],
        None,
    )
    .replace("backend fixed from axon-http\n", "backend fixed from axon-http\n    balance static-rr\n");
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let spoa_config = spoa_dir.header(zk, &haproxy, None)
        + ROUTING
        + &service("web", &web_path, "")
        + &service("fixed", &fixed_path, "");
    let spoa = spoa_dir.start(&spoa_config);
    let mut kazoo = Kazoo::connect(zk);
    for (i, sample) in samples.iter().enumerate() {
        register(&mut kazoo, &web_path, &format!("w{}", i + 1), sample, "");
        register(&mut kazoo, &fixed_path, &format!("f{}", i + 1), sample, "");
    }
    let rig = Rig { haproxy, spoa, kazoo, port };
    rig.wait_spread("web", &["w1", "w2"]);
    wait::for_true("a refusal, then a resync because of it", SECOND * 5, || {
        rig.spoa.metric("axon_spoa_refused_commands_total") >= 1.0
            && rig.spoa.metric("axon_spoa_resyncs_total{reason=\"refused\"}") >= 1.0
    });
    assert_eq!(rig.ready("fixed").len(), 1, "the slot that exists is used");
    assert!(rig.spoa.proc.log().contains("HAProxy refused a command"));

    // Drift by hand: an operator puts a slot in maintenance; the periodic pass repairs it.
    let slot = rig.haproxy.ready_servers("web")[0].0.clone();
    rig.haproxy.runtime(&format!("set server web/{slot} state maint"));
    assert_eq!(rig.ready("web").len(), 1);
    wait::for_true("the drift repaired", SECOND * 3, || rig.ready("web").len() == 2);
}

#[test]
fn haproxy_restart_and_reload_get_the_full_state_back_within_a_second() {
    let zk = zk::shared();
    let path = zk::unique_path("restart");
    let samples: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 2 }], &service("web", &path, ""));
    for (i, sample) in samples.iter().enumerate() {
        register(&mut rig.kazoo, &path, &format!("w{}", i + 1), sample, "");
    }
    rig.wait_spread("web", &["w1", "w2", "w3"]);
    let expected = rig.ready("web");
    assert_eq!(expected.len(), 3, "two template slots and one added server");

    // Reload: the added server is gone from the new worker until axon-spoa re-adds it.
    let worker = rig.haproxy.worker_pid();
    rig.haproxy.reload();
    wait::for_true("the new worker", SECOND * 5, || rig.haproxy.worker_pid().is_some_and(|p| Some(p) != worker));
    let back = wait::timed(SECOND * 3, || rig.ready("web") == expected).expect("state back after the reload");
    eprintln!("reload: full state back {back:?} after the new worker answered");
    assert!(back < SECOND, "{back:?}");

    // Restart without a state file: every slot empty until axon-spoa fills them. axon-spoa is
    // frozen meanwhile, to see HAProxy come up empty: what comes back is axon-spoa's doing.
    let _ = std::fs::remove_file(rig.haproxy.state_file());
    rig.spoa.proc.pause();
    rig.haproxy.restart();
    let empty = rig.ready("web");
    rig.spoa.proc.resume();
    assert!(empty.is_empty(), "HAProxy restarted with servers ready: {empty:?}");
    let back = wait::timed(SECOND * 3, || rig.ready("web") == expected).expect("state back after the restart");
    eprintln!("restart: full state back {back:?} after axon-spoa resumed");
    assert!(back < SECOND, "{back:?}");
    rig.wait_spread("web", &["w1", "w2", "w3"]);
}

#[test]
fn a_restarted_axon_spoa_adopts_the_slots_without_touching_them() {
    let zk = zk::shared();
    let path = zk::unique_path("adopt");
    let samples: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 4 }], &service("web", &path, ""));
    for (i, sample) in samples.iter().enumerate() {
        register(&mut rig.kazoo, &path, &format!("w{}", i + 1), sample, "");
    }
    rig.wait_spread("web", &["w1", "w2", "w3"]);
    let before = rig.haproxy.servers("web");
    rig.spoa.kill_and_restart();
    wait::for_true("the restarted axon-spoa's first pass", SECOND * 5, || {
        rig.spoa.status()["haproxy"]["applied_version"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(rig.spoa.metric("axon_spoa_commands_total"), 0.0, "no command was needed");
    let after = rig.haproxy.servers("web");
    assert_eq!(before.len(), after.len(), "servers added or lost: {before:?} → {after:?}");
    assert_eq!(before.iter().filter(|s| s.ready).count(), 3);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.name, &b.addr, b.ready, b.weight), (&a.name, &a.addr, a.ready, a.weight));
        assert!(a.since_change >= b.since_change, "{} changed state", a.name);
    }
}

/// Quorum lost: HAProxy keeps every server and traffic keeps flowing; the quorum back, changes
/// flow again.
#[test]
fn zookeeper_quorum_loss_keeps_the_servers() {
    let mut ensemble = Ensemble::three();
    let hosts = ensemble.connect_string();
    let path = "/services/web";
    let samples: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let mut rig = rig(&hosts, &[Backend { name: "web", prefix: "web", slots: 4 }], &service("web", path, ""));
    register(&mut rig.kazoo, path, "w1", &samples[0], "");
    register(&mut rig.kazoo, path, "w2", &samples[1], "");
    rig.wait_spread("web", &["w1", "w2"]);

    ensemble.kill(0);
    ensemble.kill(1);
    wait::for_true("ZooKeeper to stop serving", SECOND * 10, || ensemble.mode(2).is_none());
    // Longer than the sessions' timeout: both the registering client's and axon-spoa's
    // sessions expire, yet HAProxy keeps its servers.
    wait::holds_for("both servers ready and serving", SECOND * 6, || {
        let spread = rig.spread("web", 4);
        rig.ready("web").len() == 2 && spread.keys().all(|k| k.starts_with('w'))
    });
    ensemble.restart(0);
    ensemble.restart(1);
    ensemble.wait_serving();
    // Changes flow again: a new instance, and one removed (whether or not the registering
    // session outlived the outage).
    let mut kazoo = Kazoo::connect(&hosts);
    register(&mut kazoo, path, "w3", &samples[2], "");
    for child in kazoo.children(path).into_iter().filter(|c| c.starts_with("w1_")) {
        kazoo.delete(&format!("{path}/{child}"), false);
    }
    wait::for_true("w2 and w3 in, w1 out", SECOND * 10, || {
        let spread = rig.spread("web", 12);
        spread.contains_key("w3") && !spread.contains_key("w1")
    });
}

#[test]
fn a_cold_start_with_zookeeper_down_uses_the_cache() {
    let mut ensemble = Ensemble::standalone();
    let hosts = ensemble.connect_string();
    let samples: Vec<Sample> = (1..=2).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let mut rig =
        rig(&hosts, &[Backend { name: "web", prefix: "web", slots: 4 }], &service("web", "/services/web", ""));
    register(&mut rig.kazoo, "/services/web", "w1", &samples[0], "");
    register(&mut rig.kazoo, "/services/web", "w2", &samples[1], "");
    rig.wait_spread("web", &["w1", "w2"]);
    rig.spoa.stop();
    assert!(rig.spoa.dir().join("cache.json").exists(), "the cache was written");
    ensemble.stop(0);
    // A fresh HAProxy with empty slots, a fresh axon-spoa, no ZooKeeper.
    let _ = std::fs::remove_file(rig.haproxy.state_file());
    rig.haproxy.restart();
    assert!(rig.ready("web").is_empty());
    rig.spoa.start_again();
    rig.wait_spread("web", &["w1", "w2"]);
    assert_eq!(rig.spoa.status()["services"][0]["source"], "cache");
}

#[test]
fn the_host_map_follows_instances_services_backends_and_haproxy() {
    let zk = zk::shared();
    let (web_path, shop_path, ghost_path) = (zk::unique_path("web"), zk::unique_path("shop"), zk::unique_path("ghost"));
    let (w1, s1, g1) = (Sample::start("web", "w1"), Sample::start("shop", "s1"), Sample::start("ghost", "g1"));
    let dir = HaproxyDir::new();
    let port = ports::free_port();
    let (web, shop, ghost) = (
        Backend { name: "web", prefix: "web", slots: 2 },
        Backend { name: "shop", prefix: "shop", slots: 2 },
        Backend { name: "ghost", prefix: "ghost", slots: 2 },
    );
    // HAProxy starts without `ghost`'s backend (a typo, or a reload still to come).
    let config = haproxy::axon_config(&dir, port, &[web, shop], None);
    let config_with_ghost = haproxy::axon_config(&dir, port, &[web, shop, ghost], None);
    let map_file = dir.host_map();
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let empty = "on_empty = \"empty\"\n";
    let spoa_config = spoa_dir.header(zk, &haproxy, None)
        + ROUTING
        + &service("web", &web_path, empty)
        + &service("shop", &shop_path, empty)
        + &service("ghost", &ghost_path, empty);
    let spoa = spoa_dir.start(&spoa_config);
    let mut rig = Rig { haproxy, spoa, kazoo: Kazoo::connect(zk), port };
    register(&mut rig.kazoo, &web_path, "w1", &w1, "");
    register(&mut rig.kazoo, &ghost_path, "g1", &g1, "");
    // Each host is mapped as written and with a trailing dot.
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().flat_map(|(k, v)| [(k.to_string(), v.to_string()), (format!("{k}."), v.to_string())]).collect()
    };
    let web_only = map(&[("web.example", "web/web")]);
    wait::for_true("web.example mapped", SECOND * 5, || rig.haproxy.host_map_entries() == web_only);
    rig.wait_spread("web", &["w1"]);
    // The backend HAProxy lacks is ghost's problem alone: reported, not mapped, the rest syncs.
    let status = rig.spoa.status();
    let ghost_status = status["services"].as_array().unwrap().iter().find(|s| s["name"] == "ghost").unwrap().clone();
    assert!(ghost_status["sync_problem"].as_str().is_some_and(|p| p.contains("no backend")), "{ghost_status}");
    assert_eq!(rig.spoa.metric("axon_spoa_backend_problems{service=\"ghost\"}"), 1.0);
    assert_eq!(rig.spread("ghost", 2).keys().collect::<Vec<_>>(), ["HTTP 503"]);

    // A service appearing in ZooKeeper joins the map with its slots, and leaves it with them.
    let s1_node = register(&mut rig.kazoo, &shop_path, "s1", &s1, "");
    let both = map(&[("shop.example", "shop/shop"), ("web.example", "web/web")]);
    wait::for_true("shop.example mapped", SECOND * 5, || rig.haproxy.host_map_entries() == both);
    rig.wait_spread("shop", &["s1"]);
    rig.kazoo.delete(&s1_node, false);
    wait::for_true("shop.example unmapped", SECOND * 5, || rig.haproxy.host_map_entries() == web_only);
    assert_eq!(rig.spread("shop", 2).keys().collect::<Vec<_>>(), ["HTTP 503"]);
    // The file holds it too, for a reload to start with.
    let file_entries = || -> Vec<String> {
        let file = std::fs::read_to_string(&map_file).unwrap();
        file.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect()
    };
    assert_eq!(file_entries(), ["web.example web/web", "web.example. web/web"]);
    // A reload's new worker, and its map as it started: axon-spoa frozen meanwhile, so the
    // entries come from the file it wrote, not from its repair.
    let reload_frozen = |rig: &Rig| {
        let worker = rig.haproxy.worker_pid();
        rig.spoa.proc.pause();
        rig.haproxy.reload();
        wait::for_true("the new worker", SECOND * 5, || rig.haproxy.worker_pid().is_some_and(|p| Some(p) != worker));
        let from_file = rig.haproxy.host_map_entries();
        rig.spoa.proc.resume();
        from_file
    };

    // Reload: the new worker starts with the file's entries.
    assert_eq!(reload_frozen(&rig), web_only, "the reloaded worker's map, from the file");
    // Restart from an empty file: axon-spoa puts the map back.
    std::fs::write(&map_file, "").unwrap();
    rig.haproxy.restart();
    let back = wait::timed(SECOND * 3, || rig.haproxy.host_map_entries() == web_only).expect("map after a restart");
    eprintln!("host map back {back:?} after HAProxy restarted with an empty map file");
    assert!(back < SECOND, "map back {back:?} after a restart");
    rig.wait_spread("web", &["w1"]);

    // Drift made by hand is repaired: an entry deleted, one added.
    let map_name = map_file.display().to_string();
    rig.haproxy.runtime(&format!("del map {map_name} web.example"));
    rig.haproxy.runtime(&format!("add map {map_name} stats x/stats"));
    assert_eq!(
        rig.haproxy.host_map_entries(),
        [("stats", "x/stats"), ("web.example.", "web/web")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    );
    wait::for_true("the drift repaired", SECOND * 3, || rig.haproxy.host_map_entries() == web_only);

    // HAProxy reloaded with ghost's backend: ghost syncs and is mapped.
    std::fs::write(rig.haproxy.config_path(), config_with_ghost).unwrap();
    rig.haproxy.reload();
    let all = map(&[("ghost.example", "ghost/ghost"), ("web.example", "web/web")]);
    wait::for_true("ghost.example mapped", SECOND * 5, || rig.haproxy.host_map_entries() == all);
    rig.wait_spread("ghost", &["g1"]);
    assert_eq!(rig.spoa.metric("axon_spoa_backend_problems{service=\"ghost\"}"), 0.0);
    assert!(rig.spoa.status()["services"][2]["sync_problem"].is_null());

    // Reloaded without it again: the new worker starts with ghost's entry from the file, and
    // axon-spoa takes it out (a host mapped to a backend HAProxy lacks is that service's
    // problem, reported again); web is untouched.
    std::fs::write(rig.haproxy.config_path(), &config).unwrap();
    assert_eq!(reload_frozen(&rig), all, "the reloaded worker's map, from the file");
    wait::for_true("ghost.example unmapped", SECOND * 5, || rig.haproxy.host_map_entries() == web_only);
    wait::for_true("ghost reported again", SECOND * 5, || {
        rig.spoa.metric("axon_spoa_backend_problems{service=\"ghost\"}") == 1.0
    });
    assert_eq!(rig.spread("ghost", 2).keys().collect::<Vec<_>>(), ["HTTP 503"]);
    rig.wait_spread("web", &["w1"]);
    assert_eq!(file_entries(), ["web.example web/web", "web.example. web/web"]);
}

/// With HAProxy down and a drain pending, axon-spoa waits for it: under 2 % of a core over 5 s
/// (a drain's end, or a retry, in the past must not wake the loop again and again).
#[test]
fn no_spin_while_haproxy_is_down_with_a_drain_pending() {
    let zk = zk::shared();
    let path = zk::unique_path("spin");
    let (w1, w2) = (Sample::start("web", "w1"), Sample::start("web", "w2"));
    let mut rig = rig(
        zk,
        &[Backend { name: "web", prefix: "web", slots: 4 }],
        &service("web", &path, "").replace("drain = \"0s\"", "drain = \"1s\""),
    );
    let w1_node = register(&mut rig.kazoo, &path, "w1", &w1, "");
    register(&mut rig.kazoo, &path, "w2", &w2, "");
    rig.wait_spread("web", &["w1", "w2"]);
    rig.kazoo.delete(&w1_node, false);
    wait::for_true("w1 draining", SECOND * 5, || {
        rig.haproxy.servers("web").iter().any(|s| s.draining && s.addr == addr(&w1))
    });
    rig.haproxy.stop();
    // The drain's end passes while HAProxy is down: nothing can use it until HAProxy is back.
    std::thread::sleep(Duration::from_millis(1500));
    let share = process::cpu_share(rig.spoa.proc.pid(), Duration::from_secs(5));
    eprintln!("axon-spoa used {:.2} % of a core with HAProxy down", share * 100.0);
    assert!(share < 0.02, "axon-spoa used {:.1} % of a core with HAProxy down", share * 100.0);
    // Back: the full state is applied (w2 ready; w1's drain, interrupted, ends in maintenance).
    rig.haproxy.start_again();
    rig.wait_spread("web", &["w2"]);
}

/// Slots reused for another instance serve it only once its address is in place: the previous
/// instance, still running, gets no connection after it left (HAProxy 2.9+ apply addresses
/// late; the test runs on every version).
#[test]
fn a_reused_slot_never_reaches_the_previous_instance() {
    let zk = zk::shared();
    let path = zk::unique_path("reuse");
    let samples: Vec<Sample> = (0..6).map(|i| Sample::start("web", &format!("r{i}"))).collect();
    let rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 2 }], &service("web", &path, ""));
    let mut kazoo = Kazoo::connect(zk);
    // Two instances at a time; each step replaces one by the next, reusing its slot.
    let mut live: std::collections::VecDeque<(usize, String)> =
        (0..2).map(|i| (i, register(&mut kazoo, &path, &format!("r{i}"), &samples[i], ""))).collect();
    wait::for_true("r0 and r1 ready", SECOND * 5, || {
        rig.ready("web") == sorted(&[addr(&samples[0]), addr(&samples[1])])
    });
    rig.wait_spread("web", &["r0", "r1"]);
    let mut load = Load::start(rig.addr(), &["web"], &[("/", 4)]);
    for next in 2..samples.len() {
        // One leaves (its slot goes to maintenance) ...
        let (gone, node) = live.pop_front().unwrap();
        kazoo.delete(&node, false);
        let remaining: Vec<String> = sorted(&live.iter().map(|(i, _)| addr(&samples[*i])).collect::<Vec<_>>());
        wait::for_true("the instance out", SECOND * 5, || rig.ready("web") == remaining);
        // (A health check already under way may still reach it.)
        std::thread::sleep(Duration::from_millis(1100));
        let before = samples[gone].connections();
        // ... and the next one takes its slot.
        live.push_back((next, register(&mut kazoo, &path, &format!("r{next}"), &samples[next], "")));
        let expected: Vec<String> = sorted(&live.iter().map(|(i, _)| addr(&samples[*i])).collect::<Vec<_>>());
        wait::for_true("the slot reused", SECOND * 5, || rig.ready("web") == expected);
        std::thread::sleep(Duration::from_millis(300));
        // (Its own connection counter's query is the one connection allowed.)
        let after = samples[gone].connections();
        assert_eq!(after, before + 1, "r{gone} got {} connections once its slot was reused", after - before - 1);
    }
    load.stop();
    let failed: Vec<_> = load.requests().into_iter().filter(|r| !r.outcome.ok()).collect();
    assert!(failed.is_empty(), "{} requests failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
}

fn sorted(addrs: &[String]) -> Vec<String> {
    let mut addrs = addrs.to_vec();
    addrs.sort();
    addrs
}

/// 50 instances on a 10-slot template: 40 servers added at runtime. An operator's reload under
/// load keeps every one of them — the new worker declares every slot (the slots file) and each
/// gets its instance back (the state file), with axon-spoa frozen meanwhile so that nothing is
/// re-added — and not one request fails.
#[test]
fn a_reload_keeps_every_server_added_at_runtime() {
    let zk = zk::shared();
    let path = zk::unique_path("grown");
    let many = Sample::start_many("web", "g", 50);
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 10 }], &service("web", &path, ""));
    let nodes: Vec<(String, String)> = many
        .ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            (format!("{path}/g{i}_{i:010}"), format!(r#"{{"host":"127.0.0.1","port":{port},"name":"g{i}"}}"#))
        })
        .collect();
    rig.kazoo.create_many(&nodes);
    wait::for_true("50 servers ready", SECOND * 10, || rig.ready("web").len() == 50);
    wait::for_true("the slots file and the state file written", SECOND * 3, || {
        let state = std::fs::read_to_string(rig.haproxy.state_file()).unwrap_or_default();
        std::fs::read_to_string(rig.haproxy.slots_file()).is_ok_and(|t| t.contains("AXON_SLOTS_WEB_WEB 50"))
            && haproxy::servers_state(&state).iter().filter(|s| s.backend == "web" && s.ready).count() == 50
    });
    let mut load = Load::start(rig.addr(), &["web"], &[("/", 4)]);
    std::thread::sleep(Duration::from_millis(500));
    let worker = rig.haproxy.worker_pid();
    rig.spoa.proc.pause();
    rig.haproxy.reload();
    wait::for_true("the new worker", SECOND * 5, || rig.haproxy.worker_pid().is_some_and(|p| Some(p) != worker));
    let ready = wait::timed(SECOND * 3, || rig.ready("web").len() == 50);
    let count = rig.ready("web").len();
    rig.spoa.proc.resume();
    assert!(ready.is_some_and(|t| t < SECOND), "{count} of 50 servers ready in the new worker ({ready:?})");
    std::thread::sleep(Duration::from_millis(500));
    load.stop();
    let requests = load.requests();
    let failed: Vec<_> = requests.iter().filter(|r| !r.outcome.ok()).collect();
    assert!(requests.len() > 100, "only {} requests", requests.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        requests.len(),
        &failed[..failed.len().min(3)]
    );
}

/// One HAProxy, one axon-spoa: a second one for the same HAProxy refuses to start, saying why.
#[test]
fn a_second_axon_spoa_for_the_same_haproxy_is_refused() {
    let zk = zk::shared();
    let path = zk::unique_path("second");
    let rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 2 }], &service("web", &path, ""));
    let config = rig.spoa.dir().join("spoa.toml");
    let output = std::process::Command::new(axon_harness::bins::axon("axon-spoa"))
        .arg(&config)
        .output()
        .expect("running a second axon-spoa");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a second axon-spoa started");
    assert!(text.contains("another axon-spoa drives this HAProxy") && text.contains(".lock"), "{text}");
    assert!(text.contains(&rig.spoa.proc.pid().to_string()), "the holder's pid is named: {text}");
}

/// `axon_spoa_propagation_seconds` is for changes read from ZooKeeper only: the periodic pass
/// repairing drift made by hand counts apart.
#[test]
fn repairs_are_not_propagation() {
    let zk = zk::shared();
    let path = zk::unique_path("repairs");
    let w1 = Sample::start("web", "w1");
    let mut rig = rig(zk, &[Backend { name: "web", prefix: "web", slots: 2 }], &service("web", &path, ""));
    register(&mut rig.kazoo, &path, "w1", &w1, "");
    rig.wait_spread("web", &["w1"]);
    let count = |rig: &Rig| rig.spoa.metric("axon_spoa_propagation_seconds_count");
    let (propagated, repairs) = (count(&rig), rig.spoa.metric("axon_spoa_resync_commands_total"));
    assert!(propagated >= 1.0);
    let slot = rig.haproxy.ready_servers("web")[0].0.clone();
    rig.haproxy.runtime(&format!("set server web/{slot} state maint"));
    wait::for_true("the drift repaired", SECOND * 3, || rig.ready("web").len() == 1);
    assert_eq!(count(&rig), propagated, "a repair was counted as propagation");
    assert!(rig.spoa.metric("axon_spoa_resync_commands_total") > repairs);
}
