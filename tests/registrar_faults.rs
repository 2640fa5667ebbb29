//! axon-registrar under partial ZooKeeper faults, end to end: a real ZooKeeper reached through
//! the harness's fault proxy, which loses exactly the reply or the request a test names; the
//! real binary; kazoo, connected directly, as the independent observer of every znode.
//!
//! Each test is one reported defect: a reply lost after a create, a watch that fails after a
//! create, a re-check that fails, a SIGHUP that flapped a fleet, an expiry with two services
//! on one path, a loop that spun through an outage.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axon_harness::kazoo::Kazoo;
use axon_harness::process;
use axon_harness::proxy::{Fault, Proxy, opcode};
use axon_harness::registrar::{Registrar, RegistrarDir};
use axon_harness::sample::Sample;
use axon_harness::wait::{self, SECOND};
use axon_harness::zk::{self, Ensemble};

/// A service whose health is a file: present, up; absent, down (checked every 100 ms; down
/// after three failed checks, so that one check timed out on a loaded machine — a fork and
/// exec past its 100 ms — does not take a healthy instance out while a test watches it).
fn flagged(name: &str, port: u16, zk_path: &str, flag: &Path) -> String {
    format!(
        "[[service]]\nname = {name:?}\nhost = \"127.0.0.1\"\nport = {port}\nzk_path = {zk_path:?}\ncheck_interval = \"100ms\"\n\
         [[service.checks]]\ntype = \"exec\"\ncommand = \"test -f {}\"\ntimeout = \"100ms\"\nrise = 1\nfall = 3\n",
        flag.display()
    )
}

/// ZooKeeper of the test's own, a proxy in front of it, and kazoo beside.
struct Rig {
    zk: Ensemble,
    proxy: Proxy,
    kazoo: Kazoo,
}

impl Rig {
    fn new() -> Rig {
        let zk = Ensemble::standalone();
        let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], zk.node(0).client_port)));
        let kazoo = Kazoo::connect(&zk.connect_string());
        Rig { zk, proxy, kazoo }
    }

    fn children(&mut self, path: &str) -> Vec<String> {
        self.kazoo.children(path)
    }
}

fn zk_state(registrar: &Registrar) -> String {
    registrar.try_status().and_then(|s| s["zookeeper"]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// The session the registrar is connected in (empty while it has none).
fn session_of(registrar: &Registrar) -> String {
    let status = registrar.status();
    if status["zookeeper"]["state"] != "connected" {
        return String::new();
    }
    status["zookeeper"]["session_id"].as_str().unwrap_or_default().to_owned()
}

/// Creates `path` (persistent), so that a registrar's first create needs no parent.
fn make_path(kazoo: &mut Kazoo, path: &str) {
    kazoo.create(path, "", false, false);
}

/// The znode the status document says `service` is registered as.
fn status_znode(registrar: &Registrar, service: &str) -> Option<String> {
    let status = registrar.try_status()?;
    let entry = status["services"].as_array()?.iter().find(|s| s["name"] == service)?.clone();
    entry["znode"].as_str().map(str::to_owned)
}

fn wait_connected(registrar: &Registrar) {
    wait::for_true("the registrar connected to ZooKeeper", SECOND * 10, || zk_state(registrar) == "connected");
}

/// The ports of the records in one observed view.
fn ports(view: &BTreeMap<String, String>) -> Vec<u16> {
    let mut ports: Vec<u16> = view
        .values()
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|record| record["port"].as_u64().and_then(|p| u16::try_from(p).ok()))
        .collect();
    ports.sort_unstable();
    ports
}

/// Defect 2: a create committed, its reply lost past the client's own "no response" limit
/// (Error::Custom, not ConnectionLoss). The registrar must adopt the znode, not make another.
#[test]
fn a_create_whose_reply_is_lost_is_adopted_not_repeated() {
    let mut rig = Rig::new();
    let dir = RegistrarDir::new();
    let flag = dir.path().join("up");
    let path = "/lost-reply/services";
    let config = dir.header(&rig.proxy.addr.to_string(), "host1", "8s") + &flagged("bars", 7001, path, &flag);
    make_path(&mut rig.kazoo, path);
    let mut registrar = dir.start(&config);
    wait_connected(&registrar);

    rig.proxy.on_request(&[opcode::CREATE, opcode::CREATE2], Fault::BlackHole);
    std::fs::write(&flag, "").unwrap();
    wait::for_true("the create reached ZooKeeper", SECOND * 5, || rig.proxy.request_faults() == 1);
    let committed = wait::until("the committed znode", SECOND * 5, || rig.children(path).into_iter().next());
    // Past the client's own limit (2/5 of the 8 s session): the create fails as unanswered.
    std::thread::sleep(SECOND * 4);
    rig.proxy.restore();

    wait::for_true("registered again after the fault", SECOND * 10, || status_znode(&registrar, "bars").is_some());
    wait::holds_for("exactly the committed znode, as /status says", SECOND * 2, || {
        rig.children(path) == [committed.clone()]
            && status_znode(&registrar, "bars").as_deref() == Some(&format!("{path}/{committed}"))
    });
    assert!(registrar.proc.log_tail(200).contains("adopted"), "{}", registrar.proc.log_tail(40));

    // The service dies: nothing is left behind.
    std::fs::remove_file(&flag).unwrap();
    wait::for_true("deregistered", SECOND * 3, || rig.children(path).is_empty());
    wait::holds_for("no orphan", SECOND, || rig.children(path).is_empty());
    registrar.terminate(SECOND * 5);
}

/// Defect 1: the create succeeded, the watch set right after it failed with ConnectionLoss.
/// The znode must stay (it once deleted itself as a "duplicate"), and be watched later on.
#[test]
fn a_watch_that_fails_after_the_create_keeps_the_znode() {
    let mut rig = Rig::new();
    let dir = RegistrarDir::new();
    let flag = dir.path().join("up");
    let path = "/failed-watch/services";
    let config = dir.header(&rig.proxy.addr.to_string(), "host1", "8s") + &flagged("web", 7002, path, &flag);
    let registrar = dir.start(&config);
    wait_connected(&registrar);

    rig.proxy.on_request(&[opcode::EXISTS, opcode::GET_DATA], Fault::Close);
    std::fs::write(&flag, "").unwrap();
    wait::for_true("the watch request was cut", SECOND * 5, || rig.proxy.request_faults() == 1);
    let child = wait::until("the znode", SECOND * 5, || rig.children(path).into_iter().next());
    wait::for_true("connected again", SECOND * 10, || zk_state(&registrar) == "connected");
    wait::holds_for("the znode stays, as /status says", SECOND * 2, || {
        rig.children(path) == [child.clone()]
            && status_znode(&registrar, "web").as_deref() == Some(&format!("{path}/{child}"))
    });
    // And it is watched after all: deleted by someone else, it comes back.
    rig.kazoo.delete(&format!("{path}/{child}"), false);
    wait::for_true("registered again", SECOND * 3, || rig.children(path).iter().any(|c| *c != child));
}

/// Defect 5b: an error while re-checking an owned znode lost its watch, so a later deletion
/// by another client went unseen for good.
#[test]
fn a_znode_deleted_after_a_failed_recheck_comes_back() {
    let mut rig = Rig::new();
    let dir = RegistrarDir::new();
    let flag = dir.path().join("up");
    std::fs::write(&flag, "").unwrap();
    let path = "/failed-recheck/services";
    let config = dir.header(&rig.proxy.addr.to_string(), "host1", "8s") + &flagged("web", 7003, path, &flag);
    let registrar = dir.start(&config);
    let child = wait::until("the znode", SECOND * 10, || rig.children(path).into_iter().next());
    let znode = format!("{path}/{child}");
    std::thread::sleep(SECOND / 2);

    // Another client touches the znode (same data): the watch fires, and the re-check fails.
    rig.proxy.on_request(&[opcode::EXISTS, opcode::GET_DATA], Fault::Close);
    let data = rig.kazoo.get(&znode).unwrap().data;
    rig.kazoo.set(&znode, &data);
    wait::for_true("the re-check was cut", SECOND * 5, || rig.proxy.request_faults() == 1);
    wait::for_true("connected again", SECOND * 10, || zk_state(&registrar) == "connected");
    std::thread::sleep(SECOND);

    rig.kazoo.delete(&znode, false);
    wait::for_true("registered again", SECOND * 3, || rig.children(path).iter().any(|c| *c != child));
    assert_eq!(rig.children(path).len(), 1);
}

/// Defect 3: SIGHUP changing only a check's timeout deregistered the instance for
/// rise × interval; changing the ZooKeeper hosts deleted every znode before the new session
/// existed. Kazoo watches the path throughout: the instance never disappears.
#[test]
fn sighup_never_takes_a_healthy_instance_out() {
    let mut rig = Rig::new();
    let second = Proxy::start(SocketAddr::from(([127, 0, 0, 1], rig.zk.node(0).client_port)));
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    let path = "/sighup/services";
    let service = |timeout: &str| {
        format!(
            "[[service]]\nname = \"web\"\nhost = \"127.0.0.1\"\nport = {}\nzk_path = {path:?}\ncheck_interval = \"500ms\"\n\
             [[service.checks]]\ntype = \"tcp\"\ntimeout = {timeout:?}\nrise = 3\nfall = 2\n",
            web.port()
        )
    };
    let one_host = dir.header(&rig.proxy.addr.to_string(), "host1", "6s");
    let registrar = dir.start(&(one_host.clone() + &service("300ms")));
    wait::for_true("registered", SECOND * 10, || rig.children(path).len() == 1);
    let first_session = session_of(&registrar);

    // Slow replies, so that a gap, or the overlap of two znodes, lasts long enough to be seen.
    rig.proxy.delay(Duration::from_millis(30));
    second.delay(Duration::from_millis(30));
    rig.kazoo.observe(path);
    registrar.reload(&(one_host.clone() + &service("250ms")));
    wait::for_true("the reload applied as an update", SECOND * 5, || {
        registrar.proc.log().contains(r#"updated=["web"]"#)
    });
    std::thread::sleep(SECOND * 2);
    let two_hosts = one_host.replace(&rig.proxy.addr.to_string(), &format!("{},{}", rig.proxy.addr, second.addr));
    assert_ne!(two_hosts, one_host);
    registrar.reload(&(two_hosts + &service("250ms")));
    wait::for_true("a new session", SECOND * 10, || {
        let session = session_of(&registrar);
        !session.is_empty() && session != first_session
    });
    wait::for_true("one znode, of the new session", SECOND * 10, || {
        let children = rig.children(path);
        children.len() == 1 && status_znode(&registrar, "web") == Some(format!("{path}/{}", children[0]))
    });
    // The old session is closed, not left to expire.
    let old = first_session.trim_start_matches("0x").to_owned();
    wait::for_true("the old session closed", SECOND * 5, || {
        !zk::four_letter(rig.zk.node(0).client_port, "cons").unwrap_or_default().contains(&format!("sid=0x{old}"))
    });
    let views = rig.kazoo.observed();
    assert!(views.len() >= 3, "the old znode, both, the new one: {views:?}");
    for (at, view) in &views {
        assert!(!view.is_empty(), "at {at} ns the instance had no znode: {views:?}");
    }
}

/// Defect 4: a failed request followed by a disconnect left a retry deadline in the past,
/// and the loop woke at once, again and again, for the length of the outage.
#[test]
fn no_spin_through_an_outage_after_a_failed_request() {
    let mut rig = Rig::new();
    let dir = RegistrarDir::new();
    let flag = dir.path().join("up");
    let path = "/outage/services";
    let config = dir.header(&rig.proxy.addr.to_string(), "host1", "6s") + &flagged("web", 7004, path, &flag);
    let registrar = dir.start(&config);
    wait_connected(&registrar);

    // The create goes out, then ZooKeeper is partitioned away: the create fails unanswered.
    rig.proxy.on_request(&[opcode::CREATE, opcode::CREATE2], Fault::Partition);
    std::fs::write(&flag, "").unwrap();
    wait::for_true("the create was sent", SECOND * 5, || rig.proxy.request_faults() == 1);
    wait::for_true("the registrar noticed the outage", SECOND * 10, || {
        matches!(zk_state(&registrar).as_str(), "disconnected" | "connecting" | "expired")
    });
    let share = process::cpu_share(registrar.proc.pid(), SECOND * 3);
    assert!(share < 0.02, "the registrar used {:.1} % of a core while ZooKeeper was away", share * 100.0);

    rig.proxy.restore();
    wait::for_true("registered after the outage", SECOND * 10, || rig.children(path).len() == 1);
    wait::holds_for("one znode", SECOND, || rig.children(path).len() == 1);
}

/// Defect 5a: with two services on one path, the first one's pass after a new session
/// deleted the other's znode of the earlier session before the other's new one existed. Here
/// the client gives its session up (no reply for longer than 7/5 of its timeout) while the
/// server keeps it, so the earlier session's znodes are still there; every reply is slowed
/// afterwards so that any gap would last long enough to be seen.
#[test]
fn two_services_on_one_path_keep_a_znode_across_a_new_session() {
    let mut rig = Rig::new();
    let dir = RegistrarDir::new();
    let (flag_a, flag_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&flag_a, "").unwrap();
    std::fs::write(&flag_b, "").unwrap();
    let path = "/two-services/services";
    let config = dir.header(&rig.proxy.addr.to_string(), "host1", "4s")
        + &flagged("a", 7005, path, &flag_a)
        + &flagged("b", 7006, path, &flag_b);
    let registrar = dir.start(&config);
    wait::for_true("both registered", SECOND * 10, || rig.children(path).len() == 2);
    let first_session = session_of(&registrar);

    rig.kazoo.observe(path);
    rig.proxy.black_hole();
    // Past the client's own expiry (7/5 × 4 s) but within the server's hold on the session.
    std::thread::sleep(Duration::from_millis(6000));
    rig.proxy.delay(Duration::from_millis(30));
    rig.proxy.restore();
    let started = Instant::now();
    wait::for_true("a new session", SECOND * 10, || {
        let session = session_of(&registrar);
        !session.is_empty() && session != first_session
    });
    let session = i64::from_str_radix(session_of(&registrar).trim_start_matches("0x"), 16).unwrap();
    wait::for_true("both registered in the new session only", SECOND * 15, || {
        let owned: Vec<String> = ["a", "b"].iter().filter_map(|s| status_znode(&registrar, s)).collect();
        owned.len() == 2
            && rig.children(path).len() == 2
            && owned.iter().all(|z| rig.kazoo.get(z).is_some_and(|node| node.owner == session))
    });
    rig.proxy.delay(Duration::ZERO);
    let views = rig.kazoo.observed();
    let both = views.iter().filter(|(_, view)| view.len() >= 3).count();
    assert!(both > 0, "the earlier session's znodes and the new ones coexisted ({views:?}), or this tested nothing");
    for (at, view) in &views {
        let ports = ports(view);
        assert!(ports.contains(&7005) && ports.contains(&7006), "at {at} ns a service had no znode: {views:?}");
    }
    assert!(started.elapsed() < SECOND * 20);
}

/// Nerve's path encoding: the record in the child's name, read back by axon-spoa from the
/// name alone; a weight change re-creates the znode, make before break.
#[test]
fn path_encoding_is_read_by_axon_spoa_and_changes_make_before_break() {
    use axon_harness::haproxy::{self, Backend, HaproxyDir};
    use axon_harness::ports;
    use axon_harness::spoa::SpoaDir;

    let hosts = zk::shared();
    let base = zk::unique_path("encoded");
    let path = format!("{base}/web/services");
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    // `fall = 20`: a check slowed by a loaded machine must not take the instance out (what is
    // watched here is the rename, not the health check).
    let service = |weight: u32| {
        format!(
            "[[service]]\nname = \"web\"\nhost = \"127.0.0.1\"\nport = {}\nzk_path = {path:?}\nweight = {weight}\n\
             path_encoding = \"base64\"\ncheck_interval = \"100ms\"\n[[service.checks]]\ntype = \"tcp\"\nrise = 1\nfall = 20\n",
            web.port()
        )
    };
    let header = dir.header(hosts, "host1", "6s");
    let registrar = dir.start(&(header.clone() + &service(3)));
    let mut kazoo = Kazoo::connect(hosts);
    let first = wait::until("the encoded znode", SECOND * 10, || kazoo.children(&path).into_iter().next());
    assert!(first.starts_with("base64_"), "{first}");

    let haproxy_dir = HaproxyDir::new();
    let config = haproxy::axon_config(
        &haproxy_dir,
        ports::free_port(),
        &[Backend { name: "web", prefix: "web", slots: 4 }],
        None,
    );
    let haproxy = haproxy_dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let spoa_config = spoa_dir.header(hosts, &haproxy, None)
        + &format!(
            "[[service]]\nname = \"web\"\nzk_path = {path:?}\nbackend = \"web\"\nslot_prefix = \"web\"\ndrain = \"0s\"\n"
        );
    let _spoa = spoa_dir.start(&spoa_config);
    let endpoint = format!("127.0.0.1:{}", web.port());
    let ready =
        |weight: u16| haproxy.ready_servers("web").into_iter().any(|(_, addr, w)| addr == endpoint && w == weight);
    wait::for_true("HAProxy serves the instance with weight 3", SECOND * 10, || ready(3));

    kazoo.observe(&path);
    registrar.reload(&(header + &service(5)));
    wait::for_true("HAProxy serves it with weight 5", SECOND * 10, || ready(5));
    wait::for_true("one znode again", SECOND * 5, || kazoo.children(&path).len() == 1);
    let views = kazoo.observed();
    let last = kazoo.children(&path);
    assert!(!last.contains(&first), "a weight change renames the encoded znode");
    for (at, view) in &views {
        assert!(!view.is_empty(), "at {at} ns the instance had no znode: {views:?}");
    }
}

/// New ZooKeeper settings that do not work, then two changes in quick succession: the current
/// session serves until a new one opens (a service that goes down meanwhile is deregistered),
/// the latest settings win, and the instance is never without a znode.
#[test]
fn new_zookeeper_settings_never_freeze_publishing() {
    let mut rig = Rig::new();
    let zk_addr = SocketAddr::from(([127, 0, 0, 1], rig.zk.node(0).client_port));
    let (second, third) = (Proxy::start(zk_addr), Proxy::start(zk_addr));
    let dir = RegistrarDir::new();
    let flag = dir.path().join("up");
    std::fs::write(&flag, "").unwrap();
    let path = "/new-settings/services";
    let services = flagged("web", 7007, path, &flag);
    let header = dir.header(&rig.proxy.addr.to_string(), "host1", "4s");
    let registrar = dir.start(&(header.clone() + &services));
    wait::for_true("registered", SECOND * 10, || rig.children(path).len() == 1);
    let first_session = session_of(&registrar);

    // Hosts where nothing answers: the current session goes on serving.
    registrar.reload(&(header.replace(&rig.proxy.addr.to_string(), "127.0.0.1:1") + &services));
    std::thread::sleep(SECOND);
    std::fs::remove_file(&flag).unwrap();
    wait::for_true("deregistered by the session still serving", SECOND * 3, || rig.children(path).is_empty());
    std::fs::write(&flag, "").unwrap();
    wait::for_true("registered again by it", SECOND * 3, || rig.children(path).len() == 1);
    assert_eq!(session_of(&registrar), first_session);

    // Two working changes, the second while the first is still opening (slowly): the second
    // wins, and the instance keeps a znode throughout.
    rig.kazoo.observe(path);
    second.delay(Duration::from_millis(1500));
    registrar.reload(&(header.replace(&rig.proxy.addr.to_string(), &second.addr.to_string()) + &services));
    std::thread::sleep(Duration::from_millis(200));
    registrar.reload(&(header.replace(&rig.proxy.addr.to_string(), &third.addr.to_string()) + &services));
    wait::for_true("a new session", SECOND * 10, || {
        let session = session_of(&registrar);
        !session.is_empty() && session != first_session
    });
    wait::for_true("one znode, of the new session", SECOND * 10, || {
        let children = rig.children(path);
        children.len() == 1 && status_znode(&registrar, "web") == Some(format!("{path}/{}", children[0]))
    });
    let session = session_of(&registrar);
    // It is the third address's: cutting the other two changes nothing.
    rig.proxy.cut();
    second.cut();
    wait::holds_for("connected through the latest settings", SECOND * 3, || {
        session_of(&registrar) == session && rig.children(path).len() == 1
    });
    let views = rig.kazoo.observed();
    for (at, view) in &views {
        assert!(!view.is_empty(), "at {at} ns the instance had no znode: {views:?}");
    }
}
