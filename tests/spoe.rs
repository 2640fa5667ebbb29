//! axon-spoa's SPOE agent end to end: real HAProxy (the shipped snippet and SPOE file), real
//! ZooKeeper, real instances, traffic through HAProxy; and raw TCP clients speaking broken SPOP
//! to the agent. Run against HAProxy 3.0, 3.2 and 3.4 too with `AXON_HAPROXY` (see
//! `make test`).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axon::harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon::harness::kazoo::Kazoo;
use axon::harness::sample::Sample;
use axon::harness::spoa::{Spoa, SpoaDir};
use axon::harness::wait::{self, SECOND};
use axon::harness::{http, ports, zk};
use axon_spoa::spop::codec::{self, FLAG_FIN, FrameType, Typed};
use bytes::BytesMut;

struct Rig {
    haproxy: Haproxy,
    spoa: Spoa,
    kazoo: Kazoo,
    port: u16,
    agent: SocketAddr,
    base: String,
}

/// HAProxy with the shipped frontend and SPOE engine, a `web` backend of slots; axon-spoa with
/// its agent, serving `web` (slots), `api` (no backend) and `empty` (no backend, no instance).
fn rig() -> Rig {
    rig_with("60s")
}

/// The same with the agent's idle timeout as given. (It must exceed HAProxy's `timeout idle`
/// of 30 s in real use, or the agent may close a connection as HAProxy sends on it.)
fn rig_with(idle_timeout: &str) -> Rig {
    let zk = zk::shared();
    let base = zk::unique_path("spoe");
    let (port, agent_port) = (ports::free_port(), ports::free_port());
    let dir = HaproxyDir::new();
    let config =
        haproxy::axon_config(&dir, port, &[Backend { name: "web", prefix: "web", slots: 4 }], Some(agent_port));
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let services: String = [("web", Some("web")), ("api", None), ("empty", None)]
        .iter()
        .map(|(name, backend)| {
            let backend = backend.map(|b| format!("backend = {b:?}\nslot_prefix = {b:?}\n")).unwrap_or_default();
            format!("[[service]]\nname = {name:?}\nzk_path = \"{base}/{name}\"\n{backend}drain = \"0s\"\n\n")
        })
        .collect();
    let config = spoa_dir.header(zk, &haproxy.socket(), None)
        + &format!(
            "[spoe]\nlisten = \"127.0.0.1:{agent_port}\"\nhost_suffixes = [\".example\"]\nidle_timeout = \"{idle_timeout}\"\n\n"
        )
        + &services;
    let spoa = spoa_dir.start(&config);
    let agent = SocketAddr::from(([127, 0, 0, 1], agent_port));
    wait::for_true("HAProxy to see the agent up", SECOND * 5, || haproxy.servers("axon-agents").iter().all(|s| s.up));
    Rig { haproxy, spoa, kazoo: Kazoo::connect(zk), port, agent, base }
}

impl Rig {
    fn register(&mut self, service: &str, sample: &Sample, labels: &str) {
        let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}"{labels}}}"#, sample.port(), sample.instance);
        self.kazoo.create(&format!("{}/{service}/{}_", self.base, sample.instance), &json, true, true);
    }

    fn get(&self, host: &str, label: Option<&str>) -> http::Response {
        let mut headers = vec![("Host", host)];
        if let Some(label) = label {
            headers.push(("X-Axon-Label", label));
        }
        http::request(SocketAddr::from(([127, 0, 0, 1], self.port)), "GET", "/", &headers)
            .expect("a request through HAProxy")
    }

    /// Who answers `n` requests: instance name, or `HTTP <status> <reason>`.
    fn spread(&self, host: &str, label: Option<&str>, n: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let response = self.get(host, label);
            let who = match response.status {
                200 => response.header("x-instance").unwrap_or("?").to_owned(),
                status => format!("HTTP {status} {}", response.header("x-axon-reason").unwrap_or("-")),
            };
            *seen.entry(who).or_insert(0) += 1;
        }
        seen
    }

    fn wait_spread(&self, host: &str, label: Option<&str>, expected: &[&str]) {
        wait::for_true(&format!("{host} ({label:?}) answered by {expected:?}"), SECOND * 5, || {
            self.spread(host, label, expected.len() * 8).keys().map(String::as_str).collect::<Vec<_>>() == expected
        });
    }
}

#[test]
fn services_without_slots_reach_their_instances_and_labels_pick_matching_ones() {
    let mut rig = rig();
    let (api1, api2) = (Sample::start("api", "api1"), Sample::start("api", "api2"));
    let (stable, canary) = (Sample::start("web", "stable"), Sample::start("web", "canary"));
    rig.register("api", &api1, "");
    rig.register("api", &api2, "");
    rig.register("web", &stable, r#","labels":{"canary":"false"}"#);
    rig.register("web", &canary, r#","labels":{"canary":"true"}"#);
    // api has no backend: the agent picks its instances (HAProxy's dynamic backend).
    rig.wait_spread("api.example", None, &["api1", "api2"]);
    let response = rig.get("api.example:8080", None);
    assert_eq!(response.status, 200);
    // web has slots: without a label both instances serve through them.
    rig.wait_spread("web.example", None, &["canary", "stable"]);
    // A label selector: only matching instances, even for a service with slots.
    rig.wait_spread("web.example", Some("canary=true"), &["canary"]);
    rig.wait_spread("web.example", Some("canary=false"), &["stable"]);
    assert!(rig.spoa.metric("axon_spoa_spoe_decisions_total{status=\"found\"}") >= 40.0);
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

#[test]
fn with_the_agent_dead_slot_backends_keep_serving_and_routing_returns_with_it() {
    let mut rig = rig();
    let (web, api) = (Sample::start("web", "w1"), Sample::start("api", "a1"));
    rig.register("web", &web, "");
    rig.register("api", &api, "");
    rig.wait_spread("web.example", None, &["w1"]);
    rig.wait_spread("api.example", None, &["a1"]);

    rig.spoa.proc.kill();
    // Every request for a service with slots is still served, none waiting more than the
    // processing timeout (50 ms) plus scheduling.
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
    // A service without slots cannot be routed without the agent.
    assert_ne!(rig.get("api.example", None).status, 200);

    rig.spoa.start_again();
    let back = wait::timed(SECOND * 5, || rig.get("api.example", None).status == 200).expect("routing back");
    eprintln!("SPOE routing back {back:?} after axon-spoa answered");
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
    let mut rig = rig_with("2s");
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
        raw.disconnect_status()
    });
    let mut n = 100;
    while !idle.is_finished() {
        ask(&mut good, n);
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(idle.join().unwrap(), 2);
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
