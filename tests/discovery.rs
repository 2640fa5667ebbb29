//! axon-spoa's discovery under ZooKeeper faults, end to end: real ZooKeeper (its own
//! standalone node per test, reached through the harness's fault proxy where the test cuts
//! connections), real HAProxy from the shipped snippet, znodes written by kazoo as Nerve would.

use std::time::Duration;

use axon_harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon_harness::hosts::HostsEntry;
use axon_harness::kazoo::Kazoo;
use axon_harness::ports;
use axon_harness::process;
use axon_harness::proxy::{Fault, Proxy, opcode};
use axon_harness::sample::Sample;
use axon_harness::spoa::{Spoa, SpoaDir};
use axon_harness::wait::{self, SECOND};
use axon_harness::zk::{self, Ensemble};

struct Rig {
    haproxy: Haproxy,
    spoa: Spoa,
    kazoo: Kazoo,
    /// Between axon-spoa and ZooKeeper.
    proxy: Proxy,
    _zk: Ensemble,
}

fn service(name: &str, path: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = {name:?}\nzk_path = {path:?}\nbackend = {name:?}\nslot_prefix = {name:?}\ndrain = \"0s\"\n{extra}\n"
    )
}

/// A ZooKeeper of its own, HAProxy with backends `web` and `api`, and axon-spoa reaching
/// ZooKeeper through a proxy, `chroot` appended to its connect string; `prepare` writes znodes
/// and arms the proxy before axon-spoa starts.
fn rig(services: &str, chroot: &str, discovery: &str, prepare: impl FnOnce(&mut Kazoo, &Proxy)) -> Rig {
    let zk = Ensemble::standalone();
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    let proxy = Proxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], zk.node(0).client_port)));
    prepare(&mut kazoo, &proxy);
    let dir = HaproxyDir::new();
    let backends = [Backend { name: "web", prefix: "web", slots: 4 }, Backend { name: "api", prefix: "api", slots: 4 }];
    let config = haproxy::axon_config(&dir, ports::free_port(), &backends, None);
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let config = spoa_dir.header(&format!("{}{chroot}", proxy.addr), &haproxy, None)
        + "[routing]\nhost_suffixes = [\".example\"]\n\n"
        + discovery
        + services;
    let spoa = spoa_dir.start(&config);
    Rig { haproxy, spoa, kazoo, proxy, _zk: zk }
}

fn record(sample: &Sample, weight: u16) -> String {
    format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}","weight":{weight}}}"#, sample.port(), sample.instance)
}

impl Rig {
    /// `backend`'s ready servers as (address, weight).
    fn ready(&self, backend: &str) -> Vec<(String, u16)> {
        let mut servers: Vec<(String, u16)> =
            self.haproxy.ready_servers(backend).into_iter().map(|(_, addr, w)| (addr, w)).collect();
        servers.sort();
        servers
    }

    fn wait_ready(&self, backend: &str, expected: &[(&Sample, u16)]) {
        let mut wanted: Vec<(String, u16)> =
            expected.iter().map(|(s, w)| (format!("127.0.0.1:{}", s.port()), *w)).collect();
        wanted.sort();
        wait::for_true(&format!("{backend} = {wanted:?}"), SECOND * 10, || self.ready(backend) == wanted);
    }

    /// Cuts axon-spoa's ZooKeeper connection after its next request, and waits until it is
    /// connected again (same session) with every path read again.
    fn cut_and_reconnect(&self) {
        self.proxy.cut_after_next_request();
        wait::for_true("the connection reset", SECOND * 10, || self.proxy.resets() == 1);
        wait::for_true("reconnected", SECOND * 10, || self.spoa.metric("axon_spoa_zk_reconnects_total") >= 1.0);
        wait::for_true("every path read again", SECOND * 5, || self.spoa.status()["zookeeper"]["state"] == "watching");
    }

    fn problems(&self, service: &str) -> Vec<String> {
        let status = self.spoa.status();
        let entry = status["services"].as_array().unwrap().iter().find(|s| s["name"] == service).cloned().unwrap();
        entry["problems"]
            .as_array()
            .map(|p| p.iter().map(|v| v.as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default()
    }
}

/// Defect 1: a data change whose read is cut off (the connection reset right after the read
/// was sent) is still applied, and the child is still watched: the next change is seen too.
/// With one-shot watches too, where a reconnection in the same session reads no child again
/// by itself: only the read owed since the cut brings the change.
#[test]
fn a_change_whose_read_is_cut_off_is_still_seen_and_so_is_the_next() {
    for discovery in ["", "[discovery]\nwatches = \"oneshot\"\n"] {
        let (a, b) = (Sample::start("web", "a"), Sample::start("web", "b"));
        let mut rig = rig(&service("web", "/svc/web", ""), "", discovery, |_, _| {});
        let a_node = rig.kazoo.create("/svc/web/a_", &record(&a, 1), true, true);
        rig.kazoo.create("/svc/web/b_", &record(&b, 1), true, true);
        rig.wait_ready("web", &[(&a, 1), (&b, 1)]);
        // The weight changes; the read that follows is cut off (reset once it is on its way).
        rig.proxy.on_request(&[opcode::GET_DATA], Fault::Reset);
        rig.kazoo.set(&a_node, &record(&a, 7));
        wait::for_true("the connection reset after the read went out", SECOND * 5, || rig.proxy.request_faults() == 1);
        rig.wait_ready("web", &[(&a, 7), (&b, 1)]);
        // And the next change.
        rig.kazoo.set(&a_node, &record(&a, 3));
        rig.wait_ready("web", &[(&a, 3), (&b, 1)]);
    }
}

/// Defect 3: with one-shot watches, a path created between its listing (no such node) and the
/// existence check that follows is listed again: an existence watch on a node that exists
/// fires only for its own data, never for its children, so without the listing the service
/// would stay undiscovered.
#[test]
fn a_path_created_between_its_listing_and_its_existence_check_is_discovered() {
    let a = Sample::start("web", "a");
    let discovery = "[discovery]\nwatches = \"oneshot\"\n";
    let mut rig = rig(&service("web", "/svc/web", ""), "", discovery, |_, proxy| {
        proxy.on_request(&[opcode::EXISTS], Fault::Hold);
    });
    // The listing found no path; its existence check waits at the proxy while the path and
    // an instance appear. (No chroot: the session opens without an existence check of its
    // own, so the first one is the path's.)
    wait::for_true("the existence check held", SECOND * 10, || rig.proxy.request_faults() == 1);
    rig.kazoo.create("/svc/web/a_", &record(&a, 1), true, true);
    rig.proxy.release();
    rig.wait_ready("web", &[(&a, 1)]);
    // Found by the listing the existence check called for, not by a reconnection's (the held
    // request also held the session's pings).
    assert_eq!(rig.spoa.metric("axon_spoa_zk_reconnects_total"), 0.0);
}

/// Defect 2: a child nobody may read, among good ones, is that child's problem; a path nobody
/// may list keeps its service's previous view and says so; every other service follows
/// ZooKeeper throughout.
#[test]
fn an_unreadable_child_or_path_stays_its_own_problem() {
    let (w1, w2, a1, a2) = (
        Sample::start("web", "w1"),
        Sample::start("web", "w2"),
        Sample::start("api", "a1"),
        Sample::start("api", "a2"),
    );
    let services = service("web", "/svc/web", "") + &service("api", "/svc/api", "");
    let mut rig = rig(&services, "", "", |kazoo, _| {
        // There before axon-spoa starts: its first read meets it. (The path first: kazoo gives
        // the parents it creates the node's own ACL.)
        kazoo.create("/svc/web/w1_", &record(&w1, 1), true, true);
        kazoo.create_unreadable("/svc/web/hostile_0000000001", r#"{"host":"10.9.9.9","port":1}"#);
        kazoo.create("/svc/api/a1_", &record(&a1, 1), true, true);
    });
    rig.wait_ready("web", &[(&w1, 1)]);
    rig.wait_ready("api", &[(&a1, 1)]);
    assert!(
        rig.problems("web").iter().any(|p| p.contains("hostile_0000000001") && p.contains("ACL")),
        "{:?}",
        rig.problems("web")
    );
    rig.kazoo.create("/svc/web/w2_", &record(&w2, 1), true, true);
    rig.wait_ready("web", &[(&w1, 1), (&w2, 1)]);
    // The api path itself becomes unlistable, and axon-spoa restarts (so it must list it):
    // api keeps its servers and says why; web goes on.
    rig.kazoo.set_acl("/svc/api", "no-read");
    std::thread::sleep(Duration::from_millis(1100));
    rig.spoa.kill_and_restart();
    wait::for_true("api's problem reported", SECOND * 10, || rig.problems("api").iter().any(|p| p.contains("ACL")));
    rig.wait_ready("api", &[(&a1, 1)]);
    rig.kazoo.create("/svc/web/w3_", &record(&a2, 1), true, true);
    rig.wait_ready("web", &[(&w1, 1), (&w2, 1), (&a2, 1)]);
}

/// Defect 4: a host name that does not resolve at first is looked up again, and its instance
/// appears once it resolves.
#[test]
fn a_name_that_resolves_only_after_a_while_appears() {
    let late = Sample::start("web", "late");
    let name = format!("axon-late-{}.test", std::process::id());
    let mut rig = rig(&service("web", "/svc/web", ""), "", "", |_, _| {});
    let json = format!(r#"{{"host":"{name}","port":{},"name":"late"}}"#, late.port());
    rig.kazoo.create("/svc/web/late_", &json, true, true);
    wait::for_true("the unresolvable name reported", SECOND * 10, || {
        rig.problems("web").iter().any(|p| p.contains(&name))
    });
    assert!(rig.ready("web").is_empty());
    let _entry = HostsEntry::add(&name, "127.0.0.1");
    rig.wait_ready("web", &[(&late, 1)]);
}

/// A path read again after a reconnection keeps its host names' answers meanwhile: an instance
/// named by host name stays, though a new lookup of its name would now fail. (Names were
/// forgotten while their path was being read again, then looked up anew.) A second instance,
/// by address, keeps the path from emptying, which `on_empty = "keep"` would mask.
#[test]
fn a_reconnection_keeps_the_answers_of_host_names() {
    let (named, plain) = (Sample::start("web", "named"), Sample::start("web", "plain"));
    let name = format!("axon-named-{}.test", std::process::id());
    let entry = HostsEntry::add(&name, "127.0.0.1");
    let mut rig = rig(&service("web", "/svc/web", ""), "", "", |_, _| {});
    let json = format!(r#"{{"host":"{name}","port":{},"name":"named"}}"#, named.port());
    rig.kazoo.create("/svc/web/named_", &json, true, true);
    rig.kazoo.create("/svc/web/plain_", &record(&plain, 1), true, true);
    rig.wait_ready("web", &[(&named, 1), (&plain, 1)]);
    // From now on the name does not resolve.
    drop(entry);
    rig.cut_and_reconnect();
    for _ in 0..20 {
        assert_eq!(rig.ready("web").len(), 2, "an instance left: its name was looked up again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After a reconnection, a path whose children carry their records in their names (Nerve's
/// path encoding) is read again with its watch and one listing: no child's data is read (it
/// was, for every child, making a fleet's recovery cost a read per instance per session).
#[test]
fn a_reconnection_reads_a_path_encoded_tree_with_one_listing() {
    use base64::Engine as _;
    let samples: Vec<Sample> = (0..5).map(|i| Sample::start("web", &format!("e{i}"))).collect();
    let mut rig = rig(&service("web", "/svc/web", ""), "", "", |_, _| {});
    for sample in &samples {
        let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}"}}"#, sample.port(), sample.instance);
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(&json);
        rig.kazoo.create(&format!("/svc/web/base64_{}_{encoded}_", encoded.len()), "", true, true);
    }
    let expected: Vec<(&Sample, u16)> = samples.iter().map(|s| (s, 1)).collect();
    rig.wait_ready("web", &expected);
    let reads = rig.spoa.metric("axon_spoa_zk_reads_total");
    let failures = rig.spoa.metric("axon_spoa_zk_read_failures_total");
    rig.cut_and_reconnect();
    // The watch and the listing of the one path (read again: the watch is gone with the
    // connection); a read cut by the reset (if one was in flight) is sent again.
    let read_again = || rig.spoa.metric("axon_spoa_zk_reads_total") - reads;
    wait::for_true("the path read again", SECOND * 5, || read_again() >= 2.0);
    wait::for_true("every path read again", SECOND * 5, || rig.spoa.status()["zookeeper"]["state"] == "watching");
    let again = read_again();
    let failed = rig.spoa.metric("axon_spoa_zk_read_failures_total") - failures;
    assert!(again - failed <= 2.0, "{again} reads after the reconnection ({failed} failed): children read");
    rig.wait_ready("web", &expected);
}

/// Defect 5: a restarted axon-spoa keeps the servers of a service whose path emptied while it
/// was away (`on_empty = "keep"`): it starts from its cache as the previous view.
#[test]
fn a_restart_while_a_path_is_empty_keeps_the_servers() {
    let w1 = Sample::start("web", "w1");
    let mut rig = rig(&service("web", "/svc/web", ""), "", "", |_, _| {});
    let node = rig.kazoo.create("/svc/web/w1_", &record(&w1, 1), true, true);
    rig.wait_ready("web", &[(&w1, 1)]);
    rig.kazoo.delete(&node, false);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rig.ready("web").len(), 1, "kept while running");
    // (The cache is written at most once a second.)
    std::thread::sleep(Duration::from_millis(1100));
    rig.spoa.kill_and_restart();
    wait::for_true("the restarted axon-spoa's first pass", SECOND * 5, || {
        rig.spoa.status()["haproxy"]["applied_version"].as_u64().unwrap_or(0) > 0
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rig.ready("web").len(), 1, "kept across the restart");
    let status = rig.spoa.status();
    assert_eq!(status["services"][0]["source"], "previous", "{status}");
}

/// Defect 6: axon-spoa never writes: with a chroot whose parent everyone may only read (so
/// creating the chroot, even though it exists, is refused), it connects and syncs.
#[test]
fn a_read_only_chroot_is_enough() {
    let w1 = Sample::start("web", "w1");
    let rig = rig(&service("web", "/svc/web", ""), "/ro/axon", "", |kazoo, _| {
        kazoo.create("/ro/axon/svc/web/w1_", &record(&w1, 1), false, true);
        for node in ["/ro", "/ro/axon", "/ro/axon/svc"] {
            kazoo.set_acl(node, "read-only");
        }
    });
    rig.wait_ready("web", &[(&w1, 1)]);
}

/// Defect 7: with ZooKeeper unreachable after failed reads, axon-spoa waits: under 2 % of a
/// core over 5 s. (The reads fail here on a child nobody may read, which used to fail every
/// whole read and leave a retry deadline behind; then ZooKeeper goes away.)
#[test]
fn no_spin_while_zookeeper_is_unreachable_after_failed_reads() {
    let w1 = Sample::start("web", "w1");
    let rig = rig(&service("web", "/svc/web", ""), "", "", |kazoo, _| {
        kazoo.create("/svc/web/w1_", &record(&w1, 1), true, true);
        kazoo.create_unreadable("/svc/web/hostile_0000000001", r#"{"host":"10.9.9.9","port":1}"#);
    });
    std::thread::sleep(Duration::from_secs(2));
    rig.proxy.cut();
    // The client notices after two fifths of the session timeout (4 s here).
    std::thread::sleep(Duration::from_secs(3));
    let share = process::cpu_share(rig.spoa.proc.pid(), Duration::from_secs(5));
    eprintln!("axon-spoa used {:.2} % of a core with ZooKeeper unreachable", share * 100.0);
    assert!(share < 0.02, "axon-spoa used {:.1} % of a core", share * 100.0);
    rig.proxy.restore();
    rig.wait_ready("web", &[(&w1, 1)]);
}

/// Fleet scale: one persistent recursive watch per service path, whatever the number of
/// instances (ZooKeeper's own count, `wchs`); one-shot watches, when asked for, one per child
/// (and one per path, for its children, which ZooKeeper 3.8's `wchs` does not count).
#[test]
fn one_watch_per_service_path() {
    let samples: Vec<Sample> = (0..2).map(|i| Sample::start_many("web", &format!("w{i}"), 10)).collect();
    for (discovery, expected) in [("", 1), ("[discovery]\nwatches = \"oneshot\"\n\n", 20)] {
        let mut rig = rig(&service("web", "/svc/web", ""), "", discovery, |_, _| {});
        for sample in &samples {
            for port in &sample.ports {
                let json = format!(r#"{{"host":"127.0.0.1","port":{port},"name":"{}"}}"#, sample.instance);
                rig.kazoo.create("/svc/web/i_", &json, true, true);
            }
        }
        wait::for_true("20 servers ready", SECOND * 10, || rig.ready("web").len() == 20);
        let wchs = zk::four_letter(rig._zk.node(0).client_port, "wchs").unwrap_or_default();
        let watches: usize = wchs
            .lines()
            .find_map(|l| l.strip_prefix("Total watches:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("wchs: {wchs}"));
        let wchc = zk::four_letter(rig._zk.node(0).client_port, "wchc").unwrap_or_default();
        assert_eq!(watches, expected, "{discovery:?}: {wchs}\n{wchc}");
        let status = rig.spoa.status();
        let mode = if discovery.is_empty() { "persistent" } else { "oneshot" };
        assert_eq!(status["zookeeper"]["watches"], mode);
    }
}
