//! The harness itself, against the real programs: if these fail, every other end-to-end test
//! would fail for reasons that are not Axon's.

use std::time::Duration;

use axon_harness::haproxy::HaproxyDir;
use axon_harness::kazoo::Kazoo;
use axon_harness::sample::Sample;
use axon_harness::zk::{self, Ensemble};
use axon_harness::{http, wait};

#[test]
fn standalone_zookeeper_serves_and_kazoo_reads_and_writes() {
    let hosts = zk::shared();
    let mut kazoo = Kazoo::connect(hosts);
    let base = zk::unique_path("kazoo");
    let created = kazoo.create(&format!("{base}/a/n_"), "hello", true, true);
    assert!(created.starts_with(&format!("{base}/a/n_")), "{created}");
    assert_eq!(created.len(), format!("{base}/a/n_").len() + 10, "ten-digit sequence: {created}");
    let node = kazoo.get(&created).expect("created node");
    assert_eq!(node.data, "hello");
    assert_ne!(node.owner, 0, "ephemeral");
    assert_eq!(kazoo.children(&format!("{base}/a")).len(), 1);
    assert!(kazoo.children("/definitely/not/there").is_empty());
}

#[test]
fn ensemble_nodes_can_be_killed_paused_and_restarted() {
    let mut ensemble = Ensemble::three();
    let modes: Vec<_> = (0..3).map(|i| ensemble.mode(i).unwrap()).collect();
    assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1, "{modes:?}");

    // One node down: the other two keep a quorum.
    ensemble.kill(0);
    assert!(!ensemble.is_running(0));
    wait::for_true("the other two to serve", Duration::from_secs(20), || {
        ensemble.mode(1).is_some() && ensemble.mode(2).is_some()
    });
    // A second one paused: no quorum, nobody serves.
    ensemble.pause(1);
    wait::for_true("quorum to be lost", Duration::from_secs(20), || ensemble.mode(2).is_none());
    ensemble.resume(1);
    ensemble.restart(0);
    ensemble.wait_serving();
    let mut kazoo = Kazoo::connect(&ensemble.connect_string());
    kazoo.create("/after-restart", "ok", false, false);
    assert_eq!(kazoo.get("/after-restart").unwrap().data, "ok");
}

#[test]
fn haproxy_starts_and_answers_its_runtime_api() {
    let sample = Sample::start("web", "w1");
    let dir = HaproxyDir::new();
    let frontend = axon_harness::ports::free_port();
    let config = format!(
        "global\n  stats socket {} mode 600 level admin\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         frontend fe\n  bind 127.0.0.1:{frontend}\n  default_backend be\nbackend be\n  server s1 127.0.0.1:{}\n",
        dir.socket().display(),
        sample.port()
    );
    let mut haproxy = dir.start(&config);
    let pid = haproxy.info("Pid").unwrap();
    let response = http::get(([127, 0, 0, 1], frontend).into(), "/").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "web w1\n");
    assert_eq!(response.header("x-instance"), Some("w1"));
    assert!(haproxy.runtime("show servers state be").contains(" s1 127.0.0.1 "));
    haproxy.restart();
    assert_ne!(haproxy.info("Pid").unwrap(), pid, "a restart starts a new process");
}

#[test]
fn sample_service_health_can_be_failed_and_restored() {
    let sample = Sample::start("api", "a1");
    assert_eq!(http::get(sample.addr(), "/health").unwrap().status, 200);
    sample.set_healthy(false);
    assert_eq!(http::get(sample.addr(), "/health").unwrap().status, 503);
    assert_eq!(http::get(sample.addr(), "/anything").unwrap().body, "api a1\n");
    sample.set_healthy(true);
    assert_eq!(http::get(sample.addr(), "/health").unwrap().status, 200);
}
