//! lua/axon.lua through real HAProxy (the shipped axon.cfg and axon-lua.cfg): HAProxy's own view
//! of the Axon-managed backends, and the flag on a server whose state differs from what
//! axon-spoa wants.

use std::net::SocketAddr;

use axon_harness::haproxy::{self, Backend, HaproxyDir};
use axon_harness::kazoo::Kazoo;
use axon_harness::sample::Sample;
use axon_harness::spoa::SpoaDir;
use axon_harness::wait::{self, SECOND};
use axon_harness::{http, ports, zk};
use serde_json::Value;

#[test]
fn the_status_view_shows_haproxys_servers_and_flags_drift() {
    let zk = zk::shared();
    let path = zk::unique_path("lua");
    let samples: Vec<Sample> = (1..=2).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let dir = HaproxyDir::new();
    let (port, admin_port) = (ports::free_port(), ports::free_port());
    let spoa_dir = SpoaDir::new();
    let lua = haproxy::lua_config(&dir, spoa_dir.status_port, admin_port);
    let config =
        haproxy::axon_config(&dir, port, &[Backend { name: "web", prefix: "web", slots: 3 }], None) + "\n" + &lua;
    let haproxy = dir.start(&config);
    // No periodic repair here, so that drift made by hand stays for the view to show.
    let spoa_config = spoa_dir
        .header(zk, &haproxy, None)
        .replace("resync_interval = \"1s\"", "resync_interval = \"1h\"")
        + &format!(
            "[[service]]\nname = \"web\"\nzk_path = {path:?}\nbackend = \"web\"\nslot_prefix = \"web\"\ndrain = \"0s\"\n"
        );
    let _spoa = spoa_dir.start(&spoa_config);
    let mut kazoo = Kazoo::connect(zk);
    for sample in &samples {
        let json = format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}"}}"#, sample.port(), sample.instance);
        kazoo.create(&format!("{path}/{}_", sample.instance), &json, true, true);
    }
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let view = || http::get_json(admin, "/json").unwrap_or(Value::Null);
    let servers = |view: &Value| view["backends"][0]["servers"].as_array().cloned().unwrap_or_default();
    let ready_unflagged = |view: &Value| {
        servers(view)
            .iter()
            .filter(|s| s["state"].as_str().is_some_and(|st| st.starts_with("UP")) && s["flag"].is_null())
            .count()
    };
    wait::for_true("two servers UP in the view, none flagged", SECOND * 10, || {
        let v = view();
        v["error"].is_null() && ready_unflagged(&v) == 2 && servers(&v).iter().all(|s| s["flag"].is_null())
    });
    let v = view();
    assert_eq!(v["backends"][0]["backend"], "web");
    let rows = servers(&v);
    assert_eq!(rows.len(), 3, "every slot of the backend: {rows:?}");
    let addrs: Vec<&str> = rows.iter().filter_map(|s| s["addr"].as_str()).collect();
    for sample in &samples {
        assert!(addrs.contains(&format!("127.0.0.1:{}", sample.port()).as_str()), "{addrs:?}");
    }
    assert!(rows.iter().all(|s| s["sessions"].is_number() && s["weight"].is_number() && s["check"].is_string()));
    assert!(rows.iter().any(|s| s["state"] == "MAINT" && s["wanted"] == "maint"), "the free slot: {rows:?}");

    // Drift by hand: the view flags the server axon-spoa wants ready.
    let slot = rows.iter().find(|s| s["wanted"] == "ready").unwrap()["server"].as_str().unwrap().to_owned();
    haproxy.runtime(&format!("set server web/{slot} state maint"));
    wait::for_true("the drifted server flagged", SECOND * 5, || {
        servers(&view())
            .iter()
            .any(|s| s["server"] == slot.as_str() && s["flag"].as_str().is_some_and(|f| f.contains("wants it ready")))
    });
    let page = http::get(admin, "/").unwrap();
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|c| c.starts_with("text/html")));
    assert!(
        page.body.contains("<h2>web</h2>") && page.body.contains("class=\"flag\"") && page.body.contains(&slot),
        "{}",
        page.body
    );
}
