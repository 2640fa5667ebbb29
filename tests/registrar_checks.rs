//! axon-registrar's `redis` check end to end: a real `redis-server` (with and without a
//! password and an ACL user), servers that are not Redis, real ZooKeeper, and kazoo reading
//! what was registered.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use axon_harness::kazoo::Kazoo;
use axon_harness::redis::Redis;
use axon_harness::registrar::{Registrar, RegistrarDir};
use axon_harness::sample::Sample;
use axon_harness::wait::{self, SECOND};
use axon_harness::zk;

/// A `[[service]]` registered under `<base>/<name>`, on `port`, with one redis check (`extra`
/// adds its fields) run every 150 ms, up and down on a single result.
fn redis_service(base: &str, name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[service]]\nname = {name:?}\nhost = \"127.0.0.1\"\nport = {port}\nzk_path = \"{base}/{name}\"\n\
         check_interval = \"150ms\"\n[[service.checks]]\ntype = \"redis\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1\n{extra}\n\n"
    )
}

fn wait_registered(kazoo: &mut Kazoo, path: &str, count: usize, timeout: Duration) -> BTreeMap<String, String> {
    wait::until(&format!("{count} znode(s) under {path}"), timeout, || {
        let found = kazoo.records(path);
        (found.len() == count).then_some(found)
    })
}

/// The last result of a service's only check, from the status document.
fn detail(registrar: &Registrar, service: &str) -> Option<String> {
    let status = registrar.status();
    let service = status["services"].as_array()?.iter().find(|s| s["name"] == service)?;
    service["checks"][0]["last"]["detail"].as_str().map(str::to_owned)
}

/// For failing services registered under `<base>/<name>`: waits until each has a result and
/// they have failed a few times in all, checks that none is registered, and returns each one's
/// last detail.
fn never_registered(registrar: &Registrar, kazoo: &mut Kazoo, base: &str, services: &[&str]) -> Vec<String> {
    let failures = 3.0 * services.len() as f64;
    let details = wait::until("a few failed runs of each check", SECOND * 5, || {
        let details: Option<Vec<String>> = services.iter().map(|s| detail(registrar, s)).collect();
        details.filter(|_| registrar.metric("axon_registrar_check_failures_total") >= failures)
    });
    for service in services {
        assert!(kazoo.records(&format!("{base}/{service}")).is_empty(), "{service} registered");
    }
    details
}

#[test]
fn redis_check_follows_a_real_redis_server() {
    let hosts = zk::shared();
    let base = zk::unique_path("redis");
    let mut redis = Redis::start(&[]);
    let dir = RegistrarDir::new();
    let path = format!("{base}/cache");
    let config = dir.header(hosts, "host1", "4s") + &redis_service(&base, "cache", redis.port, "");
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let found = wait_registered(&mut kazoo, &path, 1, SECOND * 5);
    assert_eq!(
        found.values().next().unwrap(),
        &format!(r#"{{"host":"127.0.0.1","port":{},"name":"host1"}}"#, redis.port)
    );
    assert_eq!(detail(&registrar, "cache").as_deref(), Some("PONG"));
    let check = registrar.status()["services"][0]["checks"][0].clone();
    assert_eq!(check["type"], "redis");
    assert_eq!(check["target"], format!("127.0.0.1:{}", redis.port));

    redis.kill();
    wait_registered(&mut kazoo, &path, 0, SECOND * 3);
    let detail = detail(&registrar, "cache").unwrap();
    assert!(detail.contains("Connection refused"), "{detail}");
}

/// `AUTH <password>` and, for an ACL user allowed nothing but PING and EXISTS, `AUTH <user>
/// <password>`; a wrong password, or none, is never registered, and no password shows in the
/// status or the log.
#[test]
fn redis_check_authenticates_and_a_wrong_password_never_registers() {
    let hosts = zk::shared();
    let base = zk::unique_path("redisauth");
    let redis =
        Redis::start(&["--requirepass", "s3cret-pw", "--user", "probe", "on", ">probe-pw", "~*", "+ping", "+exists"]);
    assert_eq!(redis.command("PING").as_deref(), Some("-NOAUTH Authentication required."));
    let dir = RegistrarDir::new();
    let config = dir.header(hosts, "host1", "4s")
        + &redis_service(&base, "wrong", redis.port, "password = \"not-the-pw\"")
        + &redis_service(&base, "none", redis.port, "")
        + &redis_service(&base, "default", redis.port, "password = \"s3cret-pw\"")
        + &redis_service(&base, "acl", redis.port, "username = \"probe\"\npassword = \"probe-pw\"");
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    wait_registered(&mut kazoo, &format!("{base}/default"), 1, SECOND * 5);
    wait_registered(&mut kazoo, &format!("{base}/acl"), 1, SECOND * 5);
    let details = never_registered(&registrar, &mut kazoo, &base, &["wrong", "none"]);
    assert_eq!(
        details,
        [
            r#"redis answered "-WRONGPASS invalid username-password pair or user is disabled." to AUTH"#,
            r#"redis answered "-NOAUTH Authentication required." to PING"#,
        ]
    );
    assert_eq!(detail(&registrar, "default").as_deref(), Some("PONG"));
    assert_eq!(detail(&registrar, "acl").as_deref(), Some("PONG"));
    let seen = format!("{}\n{}", registrar.status(), registrar.proc.log());
    for password in ["not-the-pw", "s3cret-pw", "probe-pw"] {
        assert!(!seen.contains(password), "{password} shown:\n{seen}");
    }
}

/// A listener answering every connection with the same bytes, then waiting for the client to
/// close (closing first, with the request unread, could reset the connection before the answer
/// is read).
fn answering(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a listener");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || answer(&mut stream, reply));
        }
    });
    port
}

fn answer(stream: &mut TcpStream, reply: &[u8]) {
    let _ = stream.set_read_timeout(Some(SECOND * 2));
    let mut request = [0; 1024];
    if stream.read(&mut request).is_ok_and(|n| n > 0) && stream.write_all(reply).is_ok() {
        while stream.read(&mut request).is_ok_and(|n| n > 0) {}
    }
}

/// Servers that accept and answer, but are not Redis: never registered, and the status says
/// what they answered.
#[test]
fn a_server_that_is_not_redis_never_registers() {
    let hosts = zk::shared();
    let base = zk::unique_path("notredis");
    let ok_to_everything = answering(b"+OK\r\n+OK\r\n+OK\r\n");
    let endless_line = answering(&[b'+'; 2048]);
    let http = Sample::start("web", "w1");
    let dir = RegistrarDir::new();
    let config = dir.header(hosts, "host1", "4s")
        + &redis_service(&base, "ok", ok_to_everything, "")
        + &redis_service(&base, "long", endless_line, "")
        + &redis_service(&base, "http", http.port(), "");
    let registrar = dir.start(&config);
    let mut kazoo = Kazoo::connect(hosts);
    let details = never_registered(&registrar, &mut kazoo, &base, &["ok", "long", "http"]);
    assert_eq!(
        details,
        [
            r#"expected +PONG to PING, got "+OK""#,
            "reply to PING longer than 512 bytes",
            r#"expected +PONG to PING, got "HTTP/1.1 400 Bad Request""#,
        ]
    );
}
