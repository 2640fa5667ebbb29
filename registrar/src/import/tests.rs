use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::service::{CheckKind as Kind, PathEncoding};

/// Converts `text` (named nerve.json) without a service directory.
fn convert(text: &str) -> Imported {
    import("nerve.json", text, &ServiceDir::NotRead).unwrap_or_else(|e| panic!("{e}"))
}

/// The configuration Axon reads from the output.
fn config(imported: &Imported) -> Config {
    Config::parse(Path::new("out.toml"), &imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml))
}

fn lines(imported: &Imported) -> Vec<String> {
    imported.warnings.iter().map(|w| w.to_string()).collect()
}

/// One service `web` with `fields` (JSON members, without braces) added.
fn web(fields: &str) -> String {
    format!(
        r#"{{"instance_id": "host1", "services": {{"web": {{
            "host": "127.0.0.5", "port": 8080,
            "zk_hosts": ["zk1:2181", "zk2:2181"], "zk_path": "/nerve/services/web/services"
            {}{fields}}}}}}}"#,
        if fields.is_empty() { "" } else { ", " }
    )
}

#[test]
fn nerve_defaults_are_written_where_axon_differs() {
    let imported = convert(&web(r#""checks": [{"type": "tcp"}]"#));
    assert_eq!(lines(&imported), Vec::<String>::new());
    let config = config(&imported);
    assert_eq!(config.instance_id, "host1");
    assert_eq!(config.zookeeper.hosts, "zk1:2181,zk2:2181");
    let web = &config.services[0];
    assert_eq!(web.check_interval, Duration::from_millis(500));
    let check = &web.checks[0];
    assert_eq!(check.kind, Kind::Tcp { host: "127.0.0.5".into(), port: 8080 });
    assert_eq!(check.timeout, Duration::from_millis(100));
    assert_eq!((check.rise.get(), check.fall.get()), (1, 1));
    assert_eq!(web.path_encoding, PathEncoding::None);
    assert_eq!(web.record("host1").to_json(), br#"{"host":"127.0.0.5","port":8080,"name":"host1"}"#);
}

#[test]
fn the_record_carries_over_field_for_field() {
    let imported = convert(&web(
        r#""weight": "3", "haproxy_server_options": "backup", "labels": {"az": "eu-west-1a", "rack": 12},
           "use_path_encoding": true, "node_type": "ephemeral_sequential", "check_interval": "2",
           "checks": [{"type": "tcp"}]"#,
    ));
    assert_eq!(
        lines(&imported),
        ["nerve.json: services.web.labels.rack: 12 is written as the string \"12\": Axon's labels are strings (a \
          reader comparing it with a number no longer matches)"]
    );
    let web = &config(&imported).services[0];
    assert_eq!(web.path_encoding, PathEncoding::Base64);
    assert_eq!(web.check_interval, Duration::from_secs(2));
    assert_eq!(
        web.record("host1").to_json(),
        br#"{"host":"127.0.0.5","port":8080,"name":"host1","weight":3,"haproxy_server_options":"backup","labels":{"az":"eu-west-1a","rack":"12"}}"#
    );
}

/// Each Nerve check type, with its fields, becomes the Axon check that does the same.
#[test]
fn every_check_type() {
    let imported = convert(&web(r#""check_interval": 5, "checks": [
            {"type": "http", "name": "health", "uri": "/health", "timeout": 0.25, "rise": 3, "fall": "2",
             "headers": {"Host": "web.internal"}, "expect": "OK"},
            {"type": "http", "host": "127.0.0.1", "port": 8443, "uri": "/status", "ssl": true,
             "open_timeout": 0.5, "read_timeout": 1},
            {"type": "tcp", "port": 8081, "timeout": 0.3},
            {"type": "redis", "host": "127.0.0.1", "port": 6379},
            {"type": "rabbitmq", "port": 5672, "username": "guest", "password": "hunter2", "timeout": 1},
            {"type": "noop"}
        ]"#));
    let warnings = lines(&imported);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].starts_with("nerve.json: services.web.checks[4].type: \"rabbitmq\": Axon has no AMQP check"));
    assert!(!imported.toml.contains("hunter2") && !warnings[0].contains("hunter2"));
    let checks = &config(&imported).services[0].checks;
    let Kind::Http(health) = &checks[0].kind else { panic!("{:?}", checks[0]) };
    assert_eq!(health.url(), "http://127.0.0.5:8080/health");
    assert_eq!(health.headers, [("Host".to_owned(), "web.internal".to_owned())]);
    assert_eq!(health.body_contains.as_deref(), Some("OK"));
    assert_eq!(health.status, 200..=399);
    // Nerve's default connect time (0.2 s) plus its read time (the timeout).
    assert_eq!(checks[0].timeout, Duration::from_millis(450));
    assert_eq!((checks[0].rise.get(), checks[0].fall.get()), (3, 2));
    let Kind::Http(status) = &checks[1].kind else { panic!("{:?}", checks[1]) };
    assert_eq!(status.url(), "https://127.0.0.1:8443/status");
    assert_eq!(checks[1].timeout, Duration::from_millis(1500));
    assert_eq!(checks[2].kind, Kind::Tcp { host: "127.0.0.5".into(), port: 8081 });
    assert_eq!(checks[2].timeout, Duration::from_millis(300));
    assert_eq!(checks[3].kind, Kind::Redis { host: "127.0.0.1".into(), port: 6379, username: None, password: None });
    assert_eq!(checks[4].kind, Kind::Tcp { host: "127.0.0.5".into(), port: 5672 });
    assert_eq!(checks[5].kind, Kind::Exec { command: "true".into() });
    assert_eq!(checks[5].timeout, Duration::from_secs(1));
}

#[test]
fn a_service_whose_checks_all_fail_to_convert_is_left_out() {
    let text = web(r#""checks": [{"type": "mysql", "module": "nerve-watcher-mysql"}, {"port": 1}]"#).replacen(
        r#""services": {"#,
        r#""services": {"api": {"host": "127.0.0.5", "port": 9090, "zk_hosts": ["zk1:2181"], "zk_path": "/a",
            "checks": [{"type": "tcp"}]}, "#,
        1,
    );
    let imported = convert(&text);
    assert_eq!(
        lines(&imported),
        [
            "nerve.json: services.web.checks[0].type: \"mysql\" is an external check (its `module`) Axon does not \
             have: check left out (an `exec` check can run a command doing it)",
            "nerve.json: services.web.checks[1].type: expected a check type, found nothing: check left out",
            "nerve.json: services.web.checks: no check could be converted: service left out (write an `exec` check \
             for it)",
        ]
    );
    let config = config(&imported);
    assert_eq!(config.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["api"]);
}

#[test]
fn a_service_without_checks_is_always_up_as_in_nerve() {
    let imported = convert(&web(r#""checks": []"#));
    assert_eq!(
        lines(&imported),
        ["nerve.json: services.web.checks: none: Nerve registers such a service while it runs; Axon needs a check, \
          so an `exec` check of `true` is written"]
    );
    assert_eq!(config(&imported).services[0].checks[0].kind, Kind::Exec { command: "true".into() });
    // The same without a `checks` field at all.
    assert_eq!(lines(&convert(&web(""))), lines(&imported));
}

#[test]
fn one_session_the_first_services_ensemble() {
    let text = r#"{"instance_id": "h", "services": {
        "a": {"host": "127.0.0.5", "port": 1, "zk_hosts": ["zk2:2181", "zk1:2181"], "zk_path": "/a", "checks": [{"type": "tcp"}]},
        "b": {"host": "127.0.0.5", "port": 2, "zk_hosts": ["zk1:2181", "zk2:2181"], "zk_path": "/b", "checks": [{"type": "tcp"}]},
        "c": {"host": "127.0.0.5", "port": 3, "zk_hosts": ["zk9:2181"], "zk_path": "/c", "checks": [{"type": "tcp"}]},
        "d": {"host": "127.0.0.5", "port": 4, "zk_hosts": ["zk1:2181", "zk2:2181/chroot"], "zk_path": "/d", "checks": [{"type": "tcp"}]}
    }}"#;
    let imported = convert(text);
    assert_eq!(
        lines(&imported),
        [
            "nerve.json: services.c.zk_hosts: zk9:2181 is not the ensemble of service \"a\" (zk2:2181,zk1:2181), \
             the first one: Axon keeps one ZooKeeper session, so this service registers there; run another \
             axon-registrar with a configuration of its own to register it with zk9:2181",
            "nerve.json: services.d.zk_hosts: zk1:2181,zk2:2181/chroot is not the ensemble of service \"a\" \
             (zk2:2181,zk1:2181), the first one: Axon keeps one ZooKeeper session, so this service registers \
             there; run another axon-registrar with a configuration of its own to register it with \
             zk1:2181,zk2:2181/chroot",
        ]
    );
    let config = config(&imported);
    assert_eq!(config.zookeeper.hosts, "zk2:2181,zk1:2181");
    assert_eq!(config.services.len(), 4, "every service is kept");
}

#[test]
fn zookeeper_hosts_chroot_and_default_port() {
    let imported = convert(&web("").replace(r#"["zk1:2181", "zk2:2181"]"#, r#"["zk1/axon", "zk2:2181/axon", 7]"#));
    assert_eq!(
        lines(&imported)[..2],
        [
            "nerve.json: services.web.zk_hosts[0]: \"zk1/axon\" has no port: \"zk1:2181\" written (ZooKeeper's \
             default)",
            "nerve.json: services.web.zk_hosts[2]: expected host:port, found 7: left out",
        ]
    );
    let config = config(&imported);
    assert_eq!(config.zookeeper.hosts, "zk1:2181,zk2:2181");
    assert_eq!(config.zookeeper.chroot.as_deref(), Some("/axon"));
}

/// Every field is converted or reported: unknown ones at each level, without their values.
#[test]
fn unknown_and_unconvertible_fields_are_reported() {
    let text = r#"{
        "instance_id": "h", "heartbeat_path": "/run/hb", "statsd": {}, "max_repeated_report_failures": 3,
        "colour": "blue",
        "services": {"web": {
            "host": "127.0.0.5", "port": 8080, "zk_hosts": ["zk:2181"], "zk_path": "/w",
            "node_type": "persistent", "ttl_seconds": 30, "rate_limiting": {"max_burst": 1},
            "check_mocked": true, "load_test_concurrency": 3, "secret_sauce": "hunter2",
            "checks": [{"type": "redis", "password": "hunter2"},
                       {"type": "http", "uri": "/", "ssl_timeout": 1}]
        }}
    }"#;
    let imported = convert(text);
    let warnings = lines(&imported);
    let fields: Vec<&str> = imported.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "heartbeat_path",
            "statsd",
            "max_repeated_report_failures",
            "colour",
            "services.web.node_type",
            "services.web.ttl_seconds",
            "services.web.rate_limiting",
            "services.web.check_mocked",
            "services.web.load_test_concurrency",
            "services.web.checks[0].password",
            "services.web.checks[1].ssl_timeout",
            "services.web.secret_sauce",
        ],
        "{warnings:#?}"
    );
    assert!(warnings.iter().all(|w| !w.contains("hunter2")), "{warnings:#?}");
    assert_eq!(warnings[3], "nerve.json: colour: unknown field: not converted");
    assert_eq!(
        warnings[9],
        "nerve.json: services.web.checks[0].password: unknown field for a redis check: not converted"
    );
}

#[test]
fn services_keep_their_order_and_a_key_given_twice_is_reported() {
    let text = r#"{"instance_id": "h", "services": {
        "zeta": {"host": "127.0.0.5", "port": 1, "zk_hosts": ["zk:2181"], "zk_path": "/z", "checks": [{"type": "tcp"}]},
        "alpha": {"host": "127.0.0.5", "port": 2, "port": 3, "zk_hosts": ["zk:2181"], "zk_path": "/a", "checks": [{"type": "tcp"}]}
    }}"#;
    let imported = convert(text);
    assert_eq!(
        lines(&imported),
        ["nerve.json: services.alpha.port: given twice: the last value is used, as Ruby does"]
    );
    let config = config(&imported);
    let names: Vec<(&str, u16)> = config.services.iter().map(|s| (s.name.as_str(), s.port)).collect();
    assert_eq!(names, [("zeta", 1), ("alpha", 3)]);
}

#[test]
fn names_and_endpoints_axon_would_refuse() {
    let text = r#"{"instance_id": "h", "services": {
        "web main": {"host": "127.0.0.5", "port": 1, "zk_hosts": ["zk:2181"], "zk_path": "/w", "checks": [{"type": "tcp"}]},
        "web_main": {"host": "127.0.0.5", "port": 2, "zk_hosts": ["zk:2181"], "zk_path": "/w", "checks": [{"type": "tcp"}]},
        "copy": {"host": "127.0.0.5", "port": 2, "zk_hosts": ["zk:2181"], "zk_path": "/w/", "checks": [{"type": "tcp"}]}
    }}"#;
    let imported = convert(text);
    assert_eq!(
        lines(&imported),
        [
            "nerve.json: services.\"web main\": the name \"web main\" has characters Axon's names cannot: named \
             \"web_main\"",
            "nerve.json: services.web_main: the name \"web_main\" is taken by an earlier service: named \"web_main_2\"",
            "nerve.json: services.copy: registers 127.0.0.5:2 under /w as an earlier service does: Axon registers an \
             endpoint once per path, service left out",
        ]
    );
    assert_eq!(config(&imported).services.len(), 2);
}

#[test]
fn timing_is_kept_within_what_axon_accepts() {
    let imported = convert(&web(
        r#""check_interval": 0.05, "checks": [{"type": "tcp", "timeout": 0.0004, "rise": 0, "fall": 5000}]"#,
    ));
    assert_eq!(
        lines(&imported),
        [
            "nerve.json: services.web.check_interval: 0.05 is outside Axon's range (100ms to 1h): 100ms used",
            "nerve.json: services.web.checks[0].rise: expected a whole number from 1, found 0: Nerve's default 1 \
             written",
            "nerve.json: services.web.checks[0].fall: 5000 is above Axon's maximum: 1000 written",
        ]
    );
    let check = &config(&imported).services[0].checks[0];
    assert_eq!(check.timeout, Duration::from_millis(1));

    // A check longer than the interval: the interval grows to it.
    let imported = convert(&web(r#""check_interval": 0.5, "checks": [{"type": "tcp", "timeout": 2}]"#));
    assert!(lines(&imported)[0].contains("check_interval = 2s is written"), "{:?}", lines(&imported));
    assert_eq!(config(&imported).services[0].check_interval, Duration::from_secs(2));
}

#[test]
fn other_reporters_are_left_out() {
    let text = web(r#""checks": [{"type": "tcp"}]"#).replacen(
        r#""services": {"#,
        r#""services": {"search": {"host": "127.0.0.5", "port": 9200, "reporter_type": "etcd",
            "etcd_host": "etcd", "etcd_port": 4001, "etcd_path": "/s", "checks": [{"type": "tcp"}]}, "#,
        1,
    );
    let imported = convert(&text);
    assert_eq!(
        lines(&imported),
        ["nerve.json: services.search.reporter_type: \"etcd\": Axon registers in ZooKeeper only (its etcd_* fields \
          are not converted): service left out"]
    );
    assert_eq!(config(&imported).services.len(), 1);
}

#[test]
fn instance_id_missing_or_unusable() {
    let text = web(r#""checks": [{"type": "tcp"}]"#);
    for (from, to, expected) in [
        (
            r#""instance_id": "host1", "#,
            "",
            "nerve.json: instance_id: not set (Nerve then takes it from --instance_id or NERVE_INSTANCE_ID): Axon uses \
             the host name; set `instance_id` if the znodes should keep their names",
        ),
        (
            r#""instance_id": "host1""#,
            r#""instance_id": "a/b""#,
            "nerve.json: instance_id: \"a/b\" is not a name Axon can use (no '/', spaces or control characters, not \
             starting with \"base64_\"): left out, so Axon uses the host name",
        ),
    ] {
        let imported = convert(&text.replacen(from, to, 1));
        assert_eq!(lines(&imported), [expected]);
        assert!(!imported.toml.contains("instance_id"));
    }
}

#[test]
fn service_conf_dir_services_follow_and_replace() {
    let text = web(r#""checks": [{"type": "tcp"}]"#).replacen('{', r#"{"service_conf_dir": "conf.d", "#, 1);
    assert_eq!(service_conf_dir(&text).as_deref(), Some("conf.d"));
    let file = |name: &str, port: u16| ServiceFile {
        name: name.to_owned(),
        file: format!("conf.d/{name}.json"),
        text: format!(
            r#"{{"host": "10.0.0.6", "port": {port}, "zk_hosts": ["zk1:2181", "zk2:2181"], "zk_path": "/{name}",
                "checks": [{{"type": "tcp", "colour": "red"}}]}}"#
        ),
    };
    let dir = ServiceDir::Read { files: vec![file("api", 2), file("web", 3)], skipped: vec!["conf.d/db.yaml".into()] };
    let imported = import("nerve.json", &text, &dir).unwrap();
    assert_eq!(
        lines(&imported),
        [
            "conf.d/db.yaml: (document): YAML, which Nerve reads and this conversion does not: convert it to JSON \
             and run again",
            "nerve.json: services.web: replaced by conf.d/web.json, as Nerve does",
            "conf.d/web.json: checks[0].colour: unknown field for a tcp check: not converted",
            "conf.d/api.json: checks[0].colour: unknown field for a tcp check: not converted",
        ]
    );
    let config = config(&imported);
    let services: Vec<(&str, &str, u16)> =
        config.services.iter().map(|s| (s.name.as_str(), s.host.as_str(), s.port)).collect();
    assert_eq!(services, [("web", "10.0.0.6", 3), ("api", "10.0.0.6", 2)]);

    let unread = import("nerve.json", &text, &ServiceDir::NotRead).unwrap();
    assert!(
        lines(&unread).contains(
            &"nerve.json: service_conf_dir: \"conf.d\" was not read: its services are not converted".to_owned()
        )
    );
    let unreadable = import("nerve.json", &text, &ServiceDir::Unreadable { reason: "No such file".into() }).unwrap();
    assert!(lines(&unreadable).iter().any(|l| l.contains("\"conf.d\" cannot be read (No such file;")));
    // A service file that is not JSON stops the conversion, naming that file.
    let bad = ServiceDir::Read {
        files: vec![ServiceFile { name: "x".into(), file: "conf.d/x.json".into(), text: "{".into() }],
        skipped: vec![],
    };
    let err = import("nerve.json", &text, &bad).unwrap_err().to_string();
    assert!(err.starts_with("conf.d/x.json: not JSON: EOF while parsing an object at line 1 column 1"), "{err}");
}

#[test]
fn inputs_that_cannot_be_converted_at_all() {
    let cases = [
        ("{\"services\": {", "nerve.json: not JSON: EOF while parsing an object at line 1 column 14"),
        (
            "instance_id: host1\nservices: {}\n",
            "nerve.json: not JSON: expected value at line 1 column 1 (Nerve also reads YAML: convert it to JSON first)",
        ),
        ("[1, 2]", "nerve.json: `(document)`: expected an object with `instance_id` and `services`, found a list"),
        (
            r#"{"instance_id": "h"}"#,
            "nerve.json: `services`: no service could be converted (see the warnings above): nothing to write",
        ),
    ];
    for (text, expected) in cases {
        let err = import("nerve.json", text, &ServiceDir::NotRead).unwrap_err().to_string();
        assert_eq!(err, expected);
    }
}

#[test]
fn strings_are_escaped_for_toml() {
    let imported =
        convert(&web(r#""haproxy_server_options": "a \"b\" \\ c\u0001\u007f", "labels": {"k8s.io/zone": "x y"},
           "checks": [{"type": "http", "uri": "/h?x=1", "headers": {"X-Quote": "\"q\""}, "expect": "line\nbreak"}]"#));
    let web = &config(&imported).services[0];
    assert_eq!(web.haproxy_server_options.as_deref(), Some("a \"b\" \\ c\u{1}\u{7f}"));
    assert_eq!(web.labels.as_ref().and_then(|l| l.get("k8s.io/zone")).map(String::as_str), Some("x y"));
    let Kind::Http(http) = &web.checks[0].kind else { panic!() };
    assert_eq!(http.body_contains.as_deref(), Some("line\nbreak"));
    assert_eq!(http.headers, [("X-Quote".to_owned(), "\"q\"".to_owned())]);
}

/// (The shared helpers' own tests are in axon-core's `import` module.)
#[test]
fn a_timeout_is_at_least_a_millisecond() {
    assert_eq!(millis_at_least_one(0.0004), 1);
}

/// JSON made of the words Nerve's configuration uses, nested at random.
fn nerve_like() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let words = [
        "instance_id",
        "services",
        "web",
        "api",
        "host",
        "port",
        "zk_hosts",
        "zk_path",
        "checks",
        "type",
        "uri",
        "timeout",
        "rise",
        "fall",
        "weight",
        "labels",
        "headers",
        "expect",
        "ssl",
        "read_timeout",
        "open_timeout",
        "check_interval",
        "use_path_encoding",
        "node_type",
        "reporter_type",
        "service_conf_dir",
        "name",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6..1e6f64).prop_map(Value::from),
        prop::sample::select(vec![
            "http",
            "tcp",
            "redis",
            "rabbitmq",
            "noop",
            "zookeeper",
            "etcd",
            "/health",
            "/nerve/x",
            "zk1:2181",
            "127.0.0.5",
            "",
            "a/b",
            "base64_x",
            "persistent",
            "8080",
            "0.5",
        ])
        .prop_map(Value::from),
        "[ -~]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(words.to_vec()), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

proptest! {
    /// Whatever the input, the conversion ends without a panic, and what it writes, Axon
    /// accepts (the conversion would say otherwise with `ImportError::Invalid`).
    #[test]
    fn any_input_converts_or_is_refused_never_invalid(value in nerve_like()) {
        let text = value.to_string();
        if let Err(err @ ImportError::Invalid { .. }) = import("nerve.json", &text, &ServiceDir::NotRead) {
            panic!("{err}\n{text}");
        }
    }

    /// A well-formed service with random values in every field.
    #[test]
    fn any_service_converts_or_is_refused_never_invalid(
        fields in prop::collection::vec((prop::sample::select(vec![
            "host", "port", "check_interval", "weight", "labels", "haproxy_server_options", "use_path_encoding",
            "zk_hosts", "zk_path",
        ]), nerve_like()), 0..4),
        check in nerve_like(),
    ) {
        let mut service = serde_json::json!({
            "host": "127.0.0.5", "port": 80, "zk_hosts": ["zk:2181"], "zk_path": "/a", "checks": [check],
        });
        for (key, value) in fields {
            service[key] = value;
        }
        let text = serde_json::json!({"instance_id": "h", "services": {"web": service}}).to_string();
        if let Err(err @ ImportError::Invalid { .. }) = import("nerve.json", &text, &ServiceDir::NotRead) {
            panic!("{err}\n{text}");
        }
    }
}
