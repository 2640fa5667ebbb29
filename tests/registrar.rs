//! axon-registrar end to end: real ZooKeeper (standalone and a three-node ensemble), real
//! sample services, the real binary, and kazoo as the independent observer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axon_harness::kazoo::Kazoo;
use axon_harness::registrar::{self, Registrar, RegistrarDir};
use axon_harness::sample::Sample;
use axon_harness::wait::{self, SECOND};
use axon_harness::zk::{self, Ensemble};

/// A `[[service]]` table with its checks.
fn service(name: &str, port: u16, zk_path: &str, interval: &str, extra: &str, checks: &[&str]) -> String {
    let mut text = format!(
        "[[service]]\nname = {name:?}\nhost = \"127.0.0.1\"\nport = {port}\nzk_path = {zk_path:?}\ncheck_interval = {interval:?}\n{extra}\n"
    );
    for check in checks {
        text.push_str(&format!("[[service.checks]]\n{check}\n"));
    }
    text
}

const HTTP: &str = "type = \"http\"\nuri = \"/health\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1";

/// The children of `path` and their data, as kazoo sees them.
fn registered(kazoo: &mut Kazoo, path: &str) -> BTreeMap<String, String> {
    kazoo.records(path)
}

fn wait_registered(kazoo: &mut Kazoo, path: &str, count: usize, timeout: Duration) -> BTreeMap<String, String> {
    wait::until(&format!("{count} znode(s) under {path}"), timeout, || {
        let found = registered(kazoo, path);
        (found.len() == count).then_some(found)
    })
}

#[test]
fn registers_in_nerves_format_and_deregisters_when_unhealthy() {
    let hosts = zk::shared();
    let base = zk::unique_path("format");
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    let config = dir.header(hosts, "host1", "4s")
        + &service(
            "web",
            web.port(),
            &format!("{base}/web/services"),
            "200ms",
            "weight = 3\nlabels = { az = \"a\", canary = \"true\" }",
            &[HTTP],
        );
    let _registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let found = wait_registered(&mut kazoo, &format!("{base}/web/services"), 1, SECOND * 10);
    let (child, data) = found.into_iter().next().unwrap();
    assert!(child.starts_with("host1_") && child.len() == "host1_".len() + 10, "Nerve's child name: {child}");
    assert_eq!(
        data,
        format!(
            r#"{{"host":"127.0.0.1","port":{},"name":"host1","weight":3,"labels":{{"az":"a","canary":"true"}}}}"#,
            web.port()
        )
    );
    let znode = kazoo.get(&format!("{base}/web/services/{child}")).unwrap();
    assert_ne!(znode.owner, 0, "the znode is ephemeral");

    web.set_healthy(false);
    wait_registered(&mut kazoo, &format!("{base}/web/services"), 0, SECOND * 5);
    web.set_healthy(true);
    wait_registered(&mut kazoo, &format!("{base}/web/services"), 1, SECOND * 5);
}

/// Rise and fall are counted honestly: an exec check driven by a file, observed through the
/// status endpoint's streak counters and kazoo.
#[test]
fn rise_and_fall_count_consecutive_results() {
    let hosts = zk::shared();
    let base = zk::unique_path("risefall");
    let dir = RegistrarDir::new();
    let flag = dir.path().join("healthy");
    let check =
        format!("type = \"exec\"\ncommand = \"test -f {}\"\ntimeout = \"100ms\"\nrise = 3\nfall = 2", flag.display());
    let config = dir.header(hosts, "host1", "4s") + &service("job", 9, &format!("{base}/job"), "150ms", "", &[&check]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let check_state = |r: &Registrar| -> (String, u64) {
        let status = r.status();
        let check = &status["services"][0]["checks"][0];
        (check["state"].as_str().unwrap_or_default().to_owned(), check["streak"].as_u64().unwrap_or_default())
    };

    // Failing from the start: down, never registered.
    wait::for_true("a few failed runs", SECOND * 5, || registrar.metric("axon_registrar_check_failures_total") >= 3.0);
    assert_eq!(check_state(&registrar), ("down".into(), 0));
    assert!(registered(&mut kazoo, &format!("{base}/job")).is_empty());

    // Passing: each pass below `rise` is seen as a streak while no znode exists. ZooKeeper is
    // read before the status, so a znode seen while the later status still says "down" is a
    // registration before rise, whatever the timing.
    std::fs::write(&flag, "").unwrap();
    let mut streaks_seen = Vec::new();
    wait::for_true("rise", SECOND * 5, || {
        let znodes = registered(&mut kazoo, &format!("{base}/job")).len();
        let (state, streak) = check_state(&registrar);
        if state == "down" {
            assert_eq!(znodes, 0, "registered before rise (streak {streak})");
            if streak > 0 && !streaks_seen.contains(&streak) {
                streaks_seen.push(streak);
            }
        }
        state == "up"
    });
    assert!(!streaks_seen.is_empty() && streaks_seen.iter().all(|s| *s < 3), "{streaks_seen:?}");
    wait_registered(&mut kazoo, &format!("{base}/job"), 1, SECOND * 2);

    // Failing: one failure is tolerated (fall = 2), the second deregisters. Again ZooKeeper
    // first: no znode while the later status still says "up" means a deregistration too early.
    std::fs::remove_file(&flag).unwrap();
    wait::for_true("fall", SECOND * 5, || {
        let znodes = registered(&mut kazoo, &format!("{base}/job")).len();
        let (state, streak) = check_state(&registrar);
        if state == "up" {
            assert_eq!(znodes, 1, "deregistered while up (streak {streak})");
        }
        state == "down"
    });
    wait_registered(&mut kazoo, &format!("{base}/job"), 0, SECOND * 2);
}

#[test]
fn every_check_of_a_service_must_pass() {
    let hosts = zk::shared();
    let base = zk::unique_path("allchecks");
    let api = Sample::start("api", "a1");
    let dir = RegistrarDir::new();
    let flag = dir.path().join("ok");
    std::fs::write(&flag, "").unwrap();
    let tcp = "type = \"tcp\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1";
    let http = "type = \"http\"\nuri = \"/health\"\nexpect_status = \"200\"\nexpect_body = \"OK\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1";
    let exec =
        format!("type = \"exec\"\ncommand = \"test -f {}\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1", flag.display());
    let config = dir.header(hosts, "host1", "4s")
        + &service("api", api.port(), &format!("{base}/api"), "150ms", "", &[tcp, http, &exec]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let path = format!("{base}/api");
    wait_registered(&mut kazoo, &path, 1, SECOND * 5);

    // Only the exec check fails: out.
    std::fs::remove_file(&flag).unwrap();
    wait_registered(&mut kazoo, &path, 0, SECOND * 3);
    let status = registrar.status();
    let checks = status["services"][0]["checks"].as_array().unwrap().clone();
    let states: Vec<_> = checks.iter().map(|c| c["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["up", "up", "down"]);
    assert_eq!(checks[2]["last"]["detail"], "exit status 1");
    assert_eq!(checks[1]["last"]["detail"], "HTTP 200, body contains \"OK\"");
    std::fs::write(&flag, "").unwrap();
    wait_registered(&mut kazoo, &path, 1, SECOND * 3);

    // Only the http check fails (503): out again.
    api.set_healthy(false);
    wait_registered(&mut kazoo, &path, 0, SECOND * 3);
    api.set_healthy(true);
    wait_registered(&mut kazoo, &path, 1, SECOND * 3);
}

#[test]
fn http_checks_honour_status_ranges_body_and_headers() {
    let hosts = zk::shared();
    let base = zk::unique_path("http");
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    // Registered only while the service fails: proves the range is what decides.
    let only_503 = "type = \"http\"\nuri = \"/health\"\nexpect_status = \"503\"\nheaders = { X-Probe = \"axon\" }\ntimeout = \"150ms\"\nrise = 1\nfall = 1";
    let wrong_body =
        "type = \"http\"\nuri = \"/health\"\nexpect_body = \"nope\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1";
    let config = dir.header(hosts, "host1", "4s")
        + &service("inverse", web.port(), &format!("{base}/inverse"), "150ms", "", &[only_503])
        + &service("body", web.port(), &format!("{base}/body"), "150ms", "", &[wrong_body]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    wait::for_true("both services checked", SECOND * 5, || registrar.metric("axon_registrar_checks_total") >= 6.0);
    assert!(registered(&mut kazoo, &format!("{base}/inverse")).is_empty());
    assert!(registered(&mut kazoo, &format!("{base}/body")).is_empty());
    let status = registrar.status();
    assert_eq!(status["services"][0]["checks"][0]["last"]["detail"], "HTTP 200, body lacks \"nope\"");
    assert_eq!(status["services"][1]["checks"][0]["last"]["detail"], "HTTP 200, expected 503-503");

    web.set_healthy(false);
    wait_registered(&mut kazoo, &format!("{base}/inverse"), 1, SECOND * 3);
    assert!(registered(&mut kazoo, &format!("{base}/body")).is_empty());
}

#[test]
fn tcp_check_follows_the_listener_and_exec_timeouts_kill_the_command() {
    let hosts = zk::shared();
    let base = zk::unique_path("tcp");
    let mut db = Sample::start("db", "d1");
    let port = db.port();
    let dir = RegistrarDir::new();
    let tcp = "type = \"tcp\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1";
    let marker = dir.path().join("slept");
    // The shell waits on a background subshell: a grandchild in the shell's process group that
    // only a kill of the whole group stops (killing the shell alone would leave it to `touch`).
    let slow = format!(
        "type = \"exec\"\ncommand = \"(sleep 2; touch {}) & wait\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1",
        marker.display()
    );
    let config = dir.header(hosts, "host1", "4s")
        + &service("db", port, &format!("{base}/db"), "150ms", "", &[tcp])
        + &service("slow", port, &format!("{base}/slow"), "300ms", "", &[&slow]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    wait_registered(&mut kazoo, &format!("{base}/db"), 1, SECOND * 5);

    db.proc.kill();
    wait_registered(&mut kazoo, &format!("{base}/db"), 0, SECOND * 3);
    let status = registrar.status();
    let detail = status["services"][0]["checks"][0]["last"]["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("Connection refused"), "{detail}");
    let restarted = Sample::start_on("db", "d1", &[port]);
    wait_registered(&mut kazoo, &format!("{base}/db"), 1, SECOND * 3);
    drop(restarted);

    let slow = wait::until("the slow check's first result", SECOND * 3, || {
        let detail = registrar.status()["services"][1]["checks"][0]["last"]["detail"].clone();
        detail.as_str().map(str::to_owned)
    });
    assert_eq!(slow, "timed out after 100ms");
    assert!(registered(&mut kazoo, &format!("{base}/slow")).is_empty());
    // The timed-out command's whole process group was killed: `touch` never ran.
    std::thread::sleep(Duration::from_millis(2300));
    assert!(!marker.exists(), "the timed-out command kept running");
}

#[test]
fn sigterm_removes_every_znode_within_a_second() {
    let hosts = zk::shared();
    let base = zk::unique_path("sigterm");
    let samples: Vec<Sample> = (0..3).map(|i| Sample::start(&format!("s{i}"), "x")).collect();
    let dir = RegistrarDir::new();
    let mut config = dir.header(hosts, "host1", "10s");
    for (i, s) in samples.iter().enumerate() {
        config += &service(&format!("s{i}"), s.port(), &format!("{base}/s{i}"), "200ms", "", &[HTTP]);
    }
    let mut registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    for i in 0..3 {
        wait_registered(&mut kazoo, &format!("{base}/s{i}"), 1, SECOND * 5);
    }
    let start = Instant::now();
    registrar.proc.signal(libc::SIGTERM);
    wait::for_true("every znode gone", SECOND * 2, || {
        (0..3).all(|i| registered(&mut kazoo, &format!("{base}/s{i}")).is_empty())
    });
    let gone = start.elapsed();
    let status = registrar.proc.wait_exit(SECOND * 3).expect("the registrar exits");
    assert!(status.success(), "{status:?}");
    assert!(gone < SECOND, "znodes removed after {gone:?}");
    let log = registrar.proc.log();
    assert_eq!(log.matches("deregistered").count(), 3, "{log}");
}

#[test]
fn sighup_applies_only_the_difference() {
    let hosts = zk::shared();
    let base = zk::unique_path("sighup");
    let samples: Vec<Sample> = (0..4).map(|i| Sample::start(&format!("s{i}"), "x")).collect();
    let dir = RegistrarDir::new();
    let header = dir.header(hosts, "host1", "10s");
    let svc = |i: usize, extra: &str| {
        service(&format!("s{i}"), samples[i].port(), &format!("{base}/s{i}"), "200ms", extra, &[HTTP])
    };
    let before = format!("{header}{}{}{}", svc(0, ""), svc(1, "weight = 1"), svc(2, ""));
    let registrar = dir.start(&before);
    let mut kazoo = Kazoo::connect(hosts);
    let znode = |kazoo: &mut Kazoo, i: usize| {
        let found = wait_registered(kazoo, &format!("{base}/s{i}"), 1, SECOND * 5);
        let (child, data) = found.into_iter().next().unwrap();
        let ctime = kazoo.get(&format!("{base}/s{i}/{child}")).map(|z| z.ctime);
        (child, data, ctime)
    };
    let (s0, _, s0_ctime) = znode(&mut kazoo, 0);
    let (s1, _, s1_ctime) = znode(&mut kazoo, 1);
    znode(&mut kazoo, 2);

    // s0 unchanged, s1 reweighted, s2 removed, s3 added.
    let after = format!("{header}{}{}{}", svc(0, ""), svc(1, "weight = 7"), svc(3, ""));
    registrar.reload(&after);
    wait_registered(&mut kazoo, &format!("{base}/s2"), 0, SECOND * 3);
    let (s3, _, _) = znode(&mut kazoo, 3);
    assert!(s3.starts_with("host1_"));
    wait::for_true("s1's new weight", SECOND * 3, || {
        registered(&mut kazoo, &format!("{base}/s1")).values().any(|d| d.contains("\"weight\":7"))
    });
    assert_eq!(
        znode(&mut kazoo, 0),
        (s0, format!(r#"{{"host":"127.0.0.1","port":{},"name":"host1"}}"#, samples[0].port()), s0_ctime)
    );
    let (s1_after, _, s1_after_ctime) = znode(&mut kazoo, 1);
    assert_eq!((s1_after, s1_after_ctime), (s1, s1_ctime), "a weight change updates the znode in place");

    // An invalid file is refused and the running configuration kept.
    registrar.reload("this is not toml = = =");
    wait::for_true("the refusal in the log", SECOND * 3, || {
        registrar.proc.log().contains("configuration not reloaded")
    });
    assert_eq!(registered(&mut kazoo, &format!("{base}/s3")).len(), 1);
    assert!(registrar.proc.log().contains("removed=[\"s2\"]"), "{}", registrar.proc.log_tail(10));
}

#[test]
fn maintenance_takes_a_service_out_and_back_within_one_interval() {
    let hosts = zk::shared();
    let base = zk::unique_path("maint");
    let web = Sample::start("web", "w1");
    let other = Sample::start("other", "o1");
    let dir = RegistrarDir::new();
    let config = dir.header(hosts, "host1", "10s")
        + &service("web", web.port(), &format!("{base}/web"), "300ms", "", &[HTTP])
        + &service("other", other.port(), &format!("{base}/other"), "300ms", "", &[HTTP]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    wait_registered(&mut kazoo, &format!("{base}/web"), 1, SECOND * 5);
    wait_registered(&mut kazoo, &format!("{base}/other"), 1, SECOND * 5);

    let interval = Duration::from_millis(300);
    let slack = Duration::from_millis(200);
    registrar.maintenance(true, "web");
    let out =
        wait::timed(SECOND * 3, || registered(&mut kazoo, &format!("{base}/web")).is_empty()).expect("deregistered");
    assert!(out <= interval + slack, "maintenance took {out:?}");
    assert_eq!(registrar.service_state("web").as_deref(), Some("maintenance"));
    assert_eq!(registered(&mut kazoo, &format!("{base}/other")).len(), 1, "other services untouched");
    // It stays out while the file exists, though the service is healthy.
    wait::holds_for("web out of rotation", SECOND, || registered(&mut kazoo, &format!("{base}/web")).is_empty());

    registrar.maintenance(false, "web");
    let back =
        wait::timed(SECOND * 3, || registered(&mut kazoo, &format!("{base}/web")).len() == 1).expect("registered");
    assert!(back <= interval + slack, "back after {back:?}");
}

#[test]
fn session_expiry_re_registers_within_a_second() {
    let hosts = zk::shared();
    let base = zk::unique_path("expiry");
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    let config =
        dir.header(hosts, "host1", "2s") + &service("web", web.port(), &format!("{base}/web"), "200ms", "", &[HTTP]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let first = wait_registered(&mut kazoo, &format!("{base}/web"), 1, SECOND * 5);

    // Frozen past its session timeout: ZooKeeper expires the session and its znode.
    registrar.proc.pause();
    wait_registered(&mut kazoo, &format!("{base}/web"), 0, SECOND * 10);
    registrar.proc.resume();
    let back =
        wait::timed(SECOND * 5, || registered(&mut kazoo, &format!("{base}/web")).len() == 1).expect("re-registered");
    eprintln!("re-registered {back:?} after the session expired and the registrar resumed");
    assert!(back < SECOND, "re-registration took {back:?}");
    let second = registered(&mut kazoo, &format!("{base}/web"));
    assert_ne!(first.keys().next(), second.keys().next(), "a new znode in a new session");
    wait::for_true("the expiry counted", SECOND * 2, || registrar.metric("axon_registrar_zk_expiries_total") == 1.0);
    assert_eq!(registrar.status()["zookeeper"]["state"], "connected");
}

#[test]
fn bad_configurations_each_give_their_specific_error() {
    let dir = RegistrarDir::new();
    let good = dir.header("127.0.0.1:2181", "host1", "4s") + &service("web", 8080, "/services/web", "1s", "", &[HTTP]);
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, &good).unwrap();
    let (ok, text) = registrar::check_config(&file);
    assert!(ok, "{text}");
    assert!(text.contains("ok (1 services)"), "{text}");
    let cases = [
        ("port = 8080", "port = 0", "`service[0].port` = 0: expected a port from 1 to 65535"),
        ("port = 8080", "port = \"http\"", "`service[0].port`: invalid type: string \"http\", expected u16"),
        ("name = \"web\"", "name = \"\"", "`service[0].name` = \"\": expected letters, digits"),
        (
            "zk_path = \"/services/web\"",
            "zk_path = \"services\"",
            "`service[0].zk_path` = \"services\": expected an absolute ZooKeeper path",
        ),
        (
            "type = \"http\"",
            "type = \"icmp\"",
            "`service[0].checks[0].type` = \"icmp\": expected one of \"tcp\", \"http\", \"exec\", \"redis\"",
        ),
        ("rise = 1", "rise = 0", "`service[0].checks[0].rise` = 0: expected a number from 1 to 1000"),
        ("fall = 1", "fall = 5000", "`service[0].checks[0].fall` = 5000: expected a number from 1 to 1000"),
        (
            "timeout = \"150ms\"",
            "timeout = \"2s\"",
            "`service[0].checks[0].timeout` = \"2s\": expected a duration from 1ms to 1s",
        ),
        (
            "uri = \"/health\"",
            "uri = \"/health\"\ncommand = \"true\"",
            "`service[0].checks[0].command` = (set): expected no `command` on a http check",
        ),
        (
            "check_interval = \"1s\"",
            "check_interval = \"often\"",
            "`service[0].check_interval` = \"often\": expected a duration",
        ),
        (
            "connect = \"127.0.0.1:2181\"",
            "connect = \"zk-without-port\"",
            "`zookeeper.connect` = \"zk-without-port\": expected comma-separated host:port pairs",
        ),
        (
            "session_timeout = \"4s\"",
            "session_timeout = \"100ms\"",
            "`zookeeper.session_timeout` = \"100ms\": expected a duration from 1s to 10m",
        ),
        ("instance_id = \"host1\"", "instance_id = \"host 1\"", "`instance_id` = \"host 1\""),
        ("[status]", "[stats]", "`stats`: unknown field `stats`, expected one of"),
    ];
    for (from, to, expected) in cases {
        assert!(good.contains(from), "{from}");
        std::fs::write(&file, good.replacen(from, to, 1)).unwrap();
        let (ok, text) = registrar::check_config(&file);
        assert!(!ok, "accepted: {to}");
        assert!(text.contains(&format!("{}", file.display())), "names the file: {text}");
        assert!(text.contains(expected), "expected {expected:?} in: {text}");
    }
    let (ok, text) = registrar::check_config(&dir.path().join("missing.toml"));
    assert!(!ok && text.contains("missing.toml: cannot read"), "{text}");
}

/// Losing the member the registrar is connected to: the client moves to another member in the
/// same session, and the znode is never deleted or re-created.
#[test]
fn ensemble_member_loss_causes_no_flap() {
    let mut ensemble = Ensemble::three();
    let hosts = ensemble.connect_string();
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    let config = dir.header(&hosts, "host1", "4s") + &service("web", web.port(), "/services/web", "200ms", "", &[HTTP]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(&hosts);
    let found = wait_registered(&mut kazoo, "/services/web", 1, SECOND * 10);
    let child = found.keys().next().unwrap().clone();
    let ctime = kazoo.get(&format!("/services/web/{child}")).unwrap().ctime;

    let session = registrar.status()["zookeeper"]["session_id"].as_str().unwrap().to_owned();
    let member = ensemble.node_of_session(&session).expect("the registrar's member");
    ensemble.kill(member);
    drop(kazoo);
    let others: Vec<String> =
        (0..3).filter(|&i| i != member).map(|i| format!("127.0.0.1:{}", ensemble.node(i).client_port)).collect();
    let mut kazoo = Kazoo::connect(&others.join(","));
    wait::for_true("the registrar to reconnect", SECOND * 10, || {
        registrar.metric("axon_registrar_zk_reconnects_total") >= 1.0
    });
    wait::holds_for("the same znode", SECOND * 2, || {
        let now = registered(&mut kazoo, "/services/web");
        now.len() == 1 && now.contains_key(&child)
    });
    assert_eq!(kazoo.get(&format!("/services/web/{child}")).unwrap().ctime, ctime);
    assert_eq!(registrar.metric("axon_registrar_registrations_total"), 1.0);
    assert_eq!(registrar.metric("axon_registrar_deregistrations_total"), 0.0);
    assert_eq!(registrar.status()["zookeeper"]["session_id"], session.as_str());
    ensemble.restart(member);
}

/// Quorum lost longer than the session timeout: checks go on; the latest state (one service
/// became healthy meanwhile) is applied once ZooKeeper serves again, with exactly one znode
/// per service and nothing left behind by the old session.
#[test]
fn quorum_loss_then_recovery() {
    let mut ensemble = Ensemble::three();
    let hosts = ensemble.connect_string();
    let web = Sample::start("web", "w1");
    let api = Sample::start("api", "a1");
    api.set_healthy(false);
    let dir = RegistrarDir::new();
    let config = dir.header(&hosts, "host1", "2s")
        + &service("web", web.port(), "/services/web", "200ms", "", &[HTTP])
        + &service("api", api.port(), "/services/api", "200ms", "", &[HTTP]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(&hosts);
    wait_registered(&mut kazoo, "/services/web", 1, SECOND * 10);
    drop(kazoo);

    ensemble.kill(0);
    ensemble.kill(1);
    wait::for_true("ZooKeeper to stop serving", SECOND * 10, || ensemble.mode(2).is_none());
    let checks_before = registrar.metric("axon_registrar_checks_total");
    api.set_healthy(true);
    // Longer than the session timeout, and checks keep running meanwhile.
    std::thread::sleep(SECOND * 4);
    assert!(
        registrar.metric("axon_registrar_checks_total") >= checks_before + 20.0,
        "checks stopped during the outage"
    );
    assert_eq!(registrar.service_state("api").as_deref(), Some("up"));

    ensemble.restart(0);
    ensemble.restart(1);
    ensemble.wait_serving();
    let serving = Instant::now();
    let mut kazoo = Kazoo::connect(&hosts);
    // The old session's web znode outlives the outage, and is deleted only once the new
    // session's exists: web is never missing. Done when each service has exactly one znode and
    // it belongs to the registrar's current session.
    wait::for_true("the new session's znodes, alone", SECOND * 4, || {
        let session = registrar.status()["zookeeper"]["session_id"].as_str().unwrap_or_default().to_owned();
        let ours = |kazoo: &mut Kazoo, path: &str| {
            let found = registered(kazoo, path);
            let owners: Vec<String> = found
                .keys()
                .filter_map(|c| kazoo.get(&format!("{path}/{c}")))
                .map(|z| format!("{:#x}", z.owner))
                .collect();
            (found.len(), owners.len() == 1 && owners[0] == session)
        };
        let (web_count, web_ours) = ours(&mut kazoo, "/services/web");
        assert!(web_count >= 1, "web missing after the quorum returned");
        let (_, api_ours) = ours(&mut kazoo, "/services/api");
        web_ours && api_ours
    });
    eprintln!("full state back {:?} after the quorum returned", serving.elapsed());
    // Whatever the old session left is gone for good, not only for now.
    wait::holds_for("one znode per service", SECOND * 3, || {
        registered(&mut kazoo, "/services/web").len() == 1 && registered(&mut kazoo, "/services/api").len() == 1
    });
}

/// HTTP checks keep their connection by default: one connection serves many runs, a dead
/// service is still noticed at once, and a restarted one is registered again. With
/// `keepalive = false` every run opens its own connection.
#[test]
fn http_checks_reuse_one_connection_unless_told_not_to() {
    let hosts = zk::shared();
    let base = zk::unique_path("keepalive");
    let mut web = Sample::start("web", "w1");
    let fresh = Sample::start("fresh", "f1");
    let port = web.port();
    let dir = RegistrarDir::new();
    let kept = "type = \"http\"\nuri = \"/health\"\ntimeout = \"90ms\"\nrise = 1\nfall = 1";
    let not_kept = "type = \"http\"\nuri = \"/health\"\nkeepalive = false\ntimeout = \"90ms\"\nrise = 1\nfall = 1";
    let config = dir.header(hosts, "host1", "4s")
        + &service("web", port, &format!("{base}/web"), "100ms", "", &[kept])
        + &service("fresh", fresh.port(), &format!("{base}/fresh"), "100ms", "", &[not_kept]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    wait_registered(&mut kazoo, &format!("{base}/web"), 1, SECOND * 5);
    let checks = registrar.metric("axon_registrar_checks_total");
    let (web_before, fresh_before) = (web.connections(), fresh.connections());
    wait::for_true("40 more checks", SECOND * 5, || registrar.metric("axon_registrar_checks_total") >= checks + 40.0);
    // About 20 runs each: at most two connections (one renewal) plus this query's own, against
    // one per run.
    let (web_opened, fresh_opened) = (web.connections() - web_before, fresh.connections() - fresh_before);
    assert!(web_opened <= 3, "{web_opened} connections for ~20 kept-alive checks");
    assert!(fresh_opened >= 15, "{fresh_opened} connections for ~20 checks without keepalive");

    web.proc.kill();
    wait_registered(&mut kazoo, &format!("{base}/web"), 0, SECOND * 2);
    let _web = Sample::start_on("web", "w1", &[port]);
    wait_registered(&mut kazoo, &format!("{base}/web"), 1, SECOND * 2);
}

/// A chroot puts everything below it (created when missing); digest credentials make the
/// znodes the registrar's own: readable by everyone, deletable only with the credentials.
#[test]
fn chroot_and_digest_credentials() {
    let hosts = zk::shared();
    let chroot = zk::unique_path("chroot");
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    let config = dir
        .header(hosts, "host1", "4s")
        .replace("reconnect_backoff_max", &format!("chroot = {chroot:?}\nreconnect_backoff_max"))
        + "[zookeeper.digest]\nuser = \"axon\"\npassword = \"s3cret\"\n\n"
        + &service("web", web.port(), "/services/web", "200ms", "", &[HTTP]);
    let _registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let found = wait_registered(&mut kazoo, &format!("{chroot}/services/web"), 1, SECOND * 5);
    let child = found.keys().next().unwrap();
    let err =
        kazoo.call(serde_json::json!({"op": "delete", "path": format!("{chroot}/services/web/{child}")})).unwrap_err();
    assert!(err.contains("NoAuth"), "{err}");
    assert!(registered(&mut kazoo, "/services/web").is_empty(), "nothing outside the chroot");
}

/// A znode deleted behind the registrar's back (an operator, an orphan cleaner) comes back.
#[test]
fn a_znode_deleted_by_someone_else_is_registered_again() {
    let hosts = zk::shared();
    let base = zk::unique_path("selfheal");
    let web = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    let config =
        dir.header(hosts, "host1", "4s") + &service("web", web.port(), &format!("{base}/web"), "1s", "", &[HTTP]);
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let first = wait_registered(&mut kazoo, &format!("{base}/web"), 1, SECOND * 5);
    let child = first.keys().next().unwrap().clone();
    kazoo.delete(&format!("{base}/web/{child}"), false);
    let back = wait::timed(SECOND * 3, || {
        let now = registered(&mut kazoo, &format!("{base}/web"));
        now.len() == 1 && !now.contains_key(&child)
    });
    assert!(back.is_some_and(|b| b < SECOND), "re-registered after {back:?}");
    assert_eq!(registrar.metric("axon_registrar_registrations_total"), 2.0);
}
