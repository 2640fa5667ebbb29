use proptest::prelude::*;

use super::*;
use crate::model::OnEmpty;

/// Converts `text` (named synapse.json) without a service directory.
fn convert(text: &str) -> Imported {
    import("synapse.json", text, &ServiceDir::NotRead).unwrap_or_else(|e| panic!("{e}"))
}

/// The configuration axon-spoa reads from the output.
fn config(imported: &Imported) -> Config {
    Config::parse(Path::new("out.toml"), &imported.toml).unwrap_or_else(|e| panic!("{e}\n{}", imported.toml))
}

fn lines(imported: &Imported) -> Vec<String> {
    imported.warnings.iter().map(|w| w.to_string()).collect()
}

/// The HAProxy sections, without the file's opening comment.
fn sections(imported: &Imported) -> String {
    let start = imported.haproxy.find("\n\n").map_or(0, |i| i + 2);
    imported.haproxy[start..].to_owned()
}

/// A top-level haproxy section with the fields Synapse requires, and `defaults` lines.
fn global(defaults: &str) -> String {
    format!(r#""haproxy": {{"socket_file_path": "/run/haproxy.sock", "global": [], "defaults": [{defaults}]}}"#)
}

/// One zookeeper service `web` with `discovery` fields and service `fields` added.
fn web(discovery: &str, fields: &str) -> String {
    format!(
        r#"{{"services": {{"web": {{"discovery": {{"method": "zookeeper", "path": "/nerve/services/web/services",
            "hosts": ["zk1:2181", "zk2:2181"]{}{discovery}}}{}{fields}}}}}, {}}}"#,
        if discovery.is_empty() { "" } else { ", " },
        if fields.is_empty() { "" } else { ", " },
        global(r#""mode http""#)
    )
}

/// Two zookeeper services, named `first` (on `/a`) and `second` (on `/b`), with nothing else.
fn two_services(first: &str, second: &str) -> String {
    format!(
        r#"{{"services": {{
            "{first}": {{"discovery": {{"method": "zookeeper", "path": "/a", "hosts": ["zk:2181"]}}}},
            "{second}": {{"discovery": {{"method": "zookeeper", "path": "/b", "hosts": ["zk:2181"]}}}}
        }}, {}}}"#,
        global(r#""mode http""#)
    )
}

fn warning(text: &str) -> Vec<String> {
    vec![text.to_owned()]
}

#[test]
fn a_zookeeper_service_gets_axons_backend() {
    let imported = convert(&web("", r#""haproxy": {"port": 3213, "server_options": "check inter 2s rise 3 fall 2"}"#));
    assert_eq!(
        lines(&imported),
        warning(
            "synapse.json: haproxy.global: Synapse wrote these lines into haproxy.cfg; axon-spoa writes no global \
             section: keep them in your haproxy.cfg (haproxy/axon.cfg adds its runtime socket and state file)"
        )
        .into_iter()
        .chain(warning(
            "synapse.json: haproxy.defaults: the converted sections use haproxy/axon.cfg's `defaults axon-http` \
             instead; these lines no longer apply to them: none"
        ))
        .collect::<Vec<_>>()
    );
    let config = config(&imported);
    assert_eq!(config.zookeeper.hosts, "zk1:2181,zk2:2181");
    assert_eq!(config.haproxy.socket, crate::haproxy::RuntimeAddress::Unix("/run/haproxy.sock".into()));
    assert_eq!(config.haproxy.slots_file.as_deref(), Some(Path::new(SNIPPET_SLOTS_FILE)));
    let web = &config.services[0];
    assert_eq!((web.name.as_str(), web.zk_path.as_str()), ("web", "/nerve/services/web/services"));
    assert_eq!((web.backend.as_deref(), web.slot_prefix.as_str()), (Some("web"), "web"));
    assert_eq!(web.on_empty, OnEmpty::Keep);
    // `add server` gets what the slots get: the snippet's default-server, then Synapse's options.
    assert_eq!(web.server_options, "observe layer4 error-limit 5 on-error mark-down check inter 2s rise 3 fall 2");
    assert_eq!(
        sections(&imported),
        r#"# Service "web".
frontend web-in from axon-http
    bind localhost:3213
    default_backend web

backend web from axon-http
    http-request disable-l7-retry if !METH_GET
    server-template web 1-"${AXON_SLOTS_WEB_WEB-10}" 127.0.0.1:1 disabled check inter 2s rise 3 fall 2
"#
    );
    assert_eq!(imported.backends, 1);
}

/// Without `mode` anywhere, Synapse's sections were tcp (HAProxy's default), and axon-http
/// is http: the mode is written. `log` lines of the defaults too.
#[test]
fn the_mode_and_log_synapse_sections_had_are_kept() {
    let text = web("", r#""haproxy": {"port": 5432, "bind_address": "127.0.0.3"}"#)
        .replace(r#""defaults": ["mode http"]"#, r#""defaults": ["log global", "timeout server 1m"]"#);
    let imported = convert(&text);
    assert_eq!(
        lines(&imported)[1],
        "synapse.json: haproxy.defaults: the converted sections use haproxy/axon.cfg's `defaults axon-http` instead, \
         with `mode tcp` and `log global` written into each; these lines no longer apply to them: timeout server 1m"
    );
    assert_eq!(
        sections(&imported),
        r#"# Service "web".
frontend web-in from axon-http
    mode tcp
    log global
    bind 127.0.0.3:5432
    default_backend web

backend web from axon-http
    mode tcp
    log global
    server-template web 1-"${AXON_SLOTS_WEB_WEB-10}" 127.0.0.1:1 disabled
"#
    );
}

/// `listen` lines go where Synapse put them; lines Synapse discarded, or that HAProxy no
/// longer takes, are reported.
#[test]
fn listen_frontend_and_backend_lines() {
    let imported = convert(&web(
        "",
        r#""haproxy": {"port": 3213, "bind_options": "backlog 1024",
            "listen": ["mode http", "option httplog", "option httpchk GET /health", "frobnicate"],
            "frontend": ["timeout client 1m", "server x 10.0.0.1:80", "reqadd X-A:\\ 1"],
            "backend": ["timeout server 1m", "acl a path /", "use_backend other", "option tcplog", "block if a"]}"#,
    ));
    let warnings: Vec<String> = lines(&imported).into_iter().skip(2).collect();
    assert_eq!(
        warnings,
        [
            "synapse.json: services.web.haproxy.backend[2]: \"use_backend other\" is not a backend keyword Synapse \
             knew: it discarded it too",
            "synapse.json: services.web.haproxy.backend[3]: \"option tcplog\": HAProxy ignores it in a backend (and \
             warns): left out",
            "synapse.json: services.web.haproxy.backend[4]: \"block if a\": HAProxy no longer takes `block` (Axon \
             needs 2.6 or later): left out; use `http-request deny`, which takes the same condition",
            "synapse.json: services.web.haproxy.frontend[1]: \"server x 10.0.0.1:80\" is not a frontend keyword \
             Synapse knew: it discarded it too",
            "synapse.json: services.web.haproxy.frontend[2]: \"reqadd X-A:\\\\ 1\": HAProxy no longer takes `reqadd` \
             (Axon needs 2.6 or later): left out; use `http-request add-header`",
            "synapse.json: services.web.haproxy.listen[3]: \"frobnicate\" is neither a frontend nor a backend \
             keyword: Synapse dropped it too",
        ]
    );
    assert_eq!(
        sections(&imported),
        r#"# Service "web".
frontend web-in from axon-http
    timeout client 1m
    mode http
    option httplog
    bind localhost:3213 backlog 1024
    default_backend web

backend web from axon-http
    timeout server 1m
    acl a path /
    mode http
    option httpchk GET /health
    http-request disable-l7-retry if !METH_GET
    server-template web 1-"${AXON_SLOTS_WEB_WEB-10}" 127.0.0.1:1 disabled
"#
    );
}

/// What would break slots is left out or completed.
#[test]
fn backend_lines_slots_cannot_live_with() {
    let cases = [
        (
            "balance static-rr",
            "",
            "`balance static-rr` cannot take servers added at run time (`add server`): left out, so \
             haproxy/axon.cfg's roundrobin applies",
        ),
        (
            "balance uri",
            "    balance uri\n    hash-type consistent\n",
            "hashing with `balance uri` is map-based unless `hash-type consistent`, and `add server` refuses \
             map-based backends: `hash-type consistent` added",
        ),
        (
            "use-server web1 if TRUE",
            "",
            "\"use-server web1 if TRUE\" names a server of Synapse's; slots are named <prefix><n>: left out",
        ),
        (
            "load-server-state-from-file local",
            "",
            "\"load-server-state-from-file local\": slots are restored from the global server-state-file axon-spoa \
             keeps (haproxy/axon.cfg): left out",
        ),
        (
            "cookie SRV insert indirect",
            "    cookie SRV insert indirect\n",
            "kept, but Synapse gave each server `cookie <its name>` and slots have none: persistence by this cookie \
             no longer works",
        ),
    ];
    for (line, kept, expected) in cases {
        let imported = convert(&web("", &format!(r#""haproxy": {{"backend": ["{line}"]}}"#)));
        assert_eq!(lines(&imported)[2..], [format!("synapse.json: services.web.haproxy.backend[0]: {expected}")]);
        let backend = sections(&imported);
        let body = backend.split_once("from axon-http\n").map(|(_, b)| b).unwrap_or_default();
        assert!(body.starts_with(kept), "{line}:\n{backend}");
    }
    // Consistent hashing given: nothing to add.
    let imported = convert(&web("", r#""haproxy": {"backend": ["balance source", "hash-type consistent"]}"#));
    assert_eq!(lines(&imported).len(), 2, "{:?}", lines(&imported));
}

#[test]
fn server_options_for_the_template_and_for_add_server() {
    let imported = convert(&web(
        "",
        r#""haproxy": {"server_options": "check inter 2s weight 5 cookie %{name} id 7 maxconn %%50",
            "backend": ["default-server fall 5"]}"#,
    ));
    assert_eq!(
        lines(&imported)[2..],
        ["synapse.json: services.web.haproxy.server_options: `weight 5`, `cookie %{name}`, `id 7` left out: every \
          slot gets the same options, and axon-spoa sets each slot's address and weight from its record"]
    );
    assert!(
        sections(&imported).contains("127.0.0.1:1 disabled check inter 2s maxconn %50\n"),
        "{}",
        sections(&imported)
    );
    assert_eq!(
        config(&imported).services[0].server_options,
        "rise 2 observe layer4 error-limit 5 on-error mark-down fall 5 check inter 2s maxconn %50"
    );
    // Options `add server` cannot take are not converted at all.
    let imported = convert(&web("", r#""haproxy": {"server_options": "check; shutdown sessions"}"#));
    assert!(lines(&imported)[2].ends_with("which `add server` cannot take: not converted"));
    assert_eq!(config(&imported).services[0].server_options, DEFAULT_SERVER_OPTIONS);
}

#[test]
fn merging_server_options() {
    assert_eq!(
        merge_server_options(DEFAULT_SERVER_OPTIONS, "inter 2s"),
        "check fall 2 rise 2 observe layer4 error-limit 5 on-error mark-down inter 2s"
    );
    assert_eq!(merge_server_options("check inter 1s", "no-check"), "inter 1s no-check");
    assert_eq!(merge_server_options("check inter 1s", "check inter 5s"), "check inter 5s");
}

#[test]
fn discovery_and_service_fields() {
    let imported = convert(&web(
        r#""label_filters": [{"label": "az", "value": "a", "condition": "equals"},
                              {"label": "canary", "value": true, "condition": "not-equals"},
                              {"label": "x", "value": "y"}],
           "label_filter": {"label": "region", "value": "eu", "condition": "equals"},
           "decode": {"method": "nerve"}, "generator_config_path": "disabled""#,
        r#""default_servers": [{"name": "a", "host": "10.0.0.9", "port": 80}, {"name": "b", "host": "::1", "port": "81"},
                               {"name": "c", "host": "localhost", "port": 82}, {"name": "d", "host": "db.internal", "port": 83}],
           "keep_default_servers": true, "use_previous_backends": false"#,
    ));
    assert_eq!(
        lines(&imported)[2..],
        [
            "synapse.json: services.web.discovery.label_filters[1].value: true is compared as the string \"true\": \
             axon-spoa reads labels as strings",
            "synapse.json: services.web.discovery.label_filters[2].condition: expected \"equals\" or \"not-equals\", \
             found nothing (with which Synapse matched no instance at all): written as \"equals\"",
            "synapse.json: services.web.default_servers[2].host: \"localhost\": axon-spoa's default servers are IP \
             addresses: 127.0.0.1 written",
            "synapse.json: services.web.default_servers[3].host: \"db.internal\": axon-spoa's default servers are IP \
             addresses: write its address; server left out",
        ]
    );
    let config = config(&imported);
    let web = &config.services[0];
    let filters: Vec<(&str, &str, bool)> =
        web.label_filters.iter().map(|f| (f.label.as_str(), f.value.as_str(), f.equals)).collect();
    assert_eq!(filters, [("region", "eu", true), ("az", "a", true), ("canary", "true", false), ("x", "y", true)]);
    let defaults: Vec<String> = web.default_servers.iter().map(|e| e.to_string()).collect();
    assert_eq!(defaults, ["10.0.0.9:80", "[::1]:81", "127.0.0.1:82"]);
    assert!(web.keep_default_servers);
    assert_eq!(web.on_empty, OnEmpty::Empty);
}

#[test]
fn services_axon_spoa_cannot_follow_are_left_out() {
    let service = |body: &str| format!(r#"{{"services": {{"s": {body}}}, {}}}"#, global(""));
    let zk = r#""method": "zookeeper", "path": "/p", "hosts": ["zk:2181"]"#;
    let cases = [
        (
            format!(r#"{{"discovery": {{{zk}}}, "leader_election": true}}"#),
            "synapse.json: services.s.leader_election: axon-spoa has no leader election (Synapse sent traffic to the \
             instance with the lowest sequence number only): service left out, so that traffic does not spread over \
             every instance",
        ),
        (
            format!(r#"{{"discovery": {{{zk}, "decode": {{"method": "serverset"}}}}}}"#),
            "synapse.json: services.s.discovery.decode.method: \"serverset\": axon-spoa reads Nerve's records only: \
             service left out",
        ),
        (
            format!(r#"{{"discovery": {{{zk}}}, "discovery_multi": {{}}}}"#),
            "synapse.json: services.s.discovery_multi: several watchers merged by a resolver: axon-spoa reads one \
             ZooKeeper path per service: service left out",
        ),
        (
            r#"{"discovery": {"method": "ec2tag", "tag_name": "a", "tag_value": "b"}}"#.to_owned(),
            "synapse.json: services.s.discovery.method: \"ec2tag\": axon-spoa discovers services in ZooKeeper only: \
             service left out",
        ),
        (
            r#"{"discovery": {"method": "base"}, "default_servers": []}"#.to_owned(),
            "synapse.json: services.s.discovery.method: \"base\" discovers nothing (only default_servers): axon-spoa \
             follows ZooKeeper paths; keep such a backend with static `server` lines in your haproxy.cfg: service \
             left out",
        ),
        (
            r#"{"discovery": {"method": "zookeeper", "hosts": ["zk:2181"]}}"#.to_owned(),
            "synapse.json: services.s.discovery.path: expected an absolute ZooKeeper path below the root, found \
             nothing: service left out",
        ),
    ];
    for (body, expected) in cases {
        let err = import("synapse.json", &service(&body), &ServiceDir::NotRead).unwrap_err();
        assert_eq!(
            err.to_string(),
            "synapse.json: `services`: no service could be converted (see the warnings above): nothing to write"
        );
        // The warnings of the same input with one convertible service beside it.
        let text = service(&body).replacen(
            r#""services": {"#,
            &format!(r#""services": {{"ok": {{"discovery": {{{zk}}}}}, "#),
            1,
        );
        let imported = convert(&text);
        assert_eq!(lines(&imported)[2..], [expected]);
        assert_eq!(config(&imported).services.len(), 1);
    }
}

#[test]
fn zookeeper_poll_and_dns_read_the_same_znodes() {
    let imported = convert(
        &web("", "").replace(r#""method": "zookeeper""#, r#""method": "zookeeper_poll", "polling_interval_sec": 30"#),
    );
    assert_eq!(
        lines(&imported)[2..],
        ["synapse.json: services.web.discovery.method: \"zookeeper_poll\" (reading the path every 30 s): axon-spoa \
          watches the path instead, so a change arrives at once"]
    );
    let imported =
        convert(&web("", "").replace(r#""method": "zookeeper""#, r#""method": "zookeeper_dns", "check_interval": 5"#));
    assert!(lines(&imported)[2].contains("\"zookeeper_dns\": converted as \"zookeeper\""));
    assert_eq!(config(&imported).services[0].zk_path, "/nerve/services/web/services");
}

#[test]
fn one_session_the_first_services_ensemble() {
    let text = format!(
        r#"{{"services": {{
            "a": {{"discovery": {{"method": "zookeeper", "path": "/a", "hosts": ["zk2:2181", "zk1:2181"]}}}},
            "b": {{"discovery": {{"method": "zookeeper", "path": "/b", "hosts": "zk1:2181,zk2:2181"}}}},
            "c": {{"discovery": {{"method": "zookeeper", "path": "/c", "hosts": ["zk9"]}}}}
        }}, {}}}"#,
        global(r#""mode http""#)
    );
    let imported = convert(&text);
    assert_eq!(
        lines(&imported)[2..],
        [
            "synapse.json: services.c.discovery.hosts[0]: \"zk9\" has no port: \"zk9:2181\" written (ZooKeeper's \
             default)",
            "synapse.json: services.c.discovery.hosts: zk9:2181 is not the ensemble of service \"a\" \
             (zk2:2181,zk1:2181), the first one: axon-spoa keeps one ZooKeeper session, so this service is read from \
             there: its instances must be registered in that ensemble",
        ]
    );
    assert_eq!(config(&imported).zookeeper.hosts, "zk2:2181,zk1:2181");
}

#[test]
fn the_top_level_haproxy_section() {
    let text = r#"{"services": {"web": {"discovery": {"method": "zookeeper", "path": "/w", "hosts": ["zk:2181"]}}},
        "haproxy": {
            "socket_file_path": ["/run/a.sock", "/run/b.sock"], "do_socket": false, "do_writes": true,
            "reload_command": "reload", "state_file_path": "/var/lib/synapse/state.json", "state_file_ttl": 3600,
            "use_nerve_weights": false, "extra_sections": {"listen stats :3212": ["stats enable"]},
            "global": [], "defaults": [], "colour": 1
        },
        "file_output": {"output_directory": "/tmp/x"}, "nginx": {}}"#;
    let imported = convert(text);
    let fields: Vec<&str> = imported.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "haproxy.socket_file_path",
            "haproxy.state_file_path",
            "haproxy.do_socket",
            "haproxy.do_writes",
            "haproxy.reload_command",
            "haproxy.use_nerve_weights",
            "haproxy.extra_sections",
            "haproxy.global",
            "haproxy.defaults",
            "haproxy.colour",
            "file_output",
            "nginx",
        ],
        "{:#?}",
        lines(&imported)
    );
    let config = config(&imported);
    assert_eq!(config.haproxy.socket, crate::haproxy::RuntimeAddress::Unix("/run/a.sock".into()));
    assert_eq!(config.cache_file.as_deref(), Some(Path::new(CACHE_FILE)));
    assert_eq!(config.discovery.cache_max_age, std::time::Duration::from_secs(3600));
}

#[test]
fn without_a_haproxy_section_services_are_only_discovered() {
    let text = r#"{"services": {"web": {"discovery": {"method": "zookeeper", "path": "/w", "hosts": ["zk:2181"]}}},
        "file_output": {"output_directory": "/tmp/x"}}"#;
    let imported = convert(text);
    assert!(lines(&imported)[0].starts_with("synapse.json: haproxy: missing: Synapse configured no HAProxy"));
    let config = config(&imported);
    assert_eq!(config.services[0].backend, None);
    assert_eq!(config.haproxy.socket, crate::haproxy::RuntimeAddress::Unix(SNIPPET_SOCKET.into()));
    assert_eq!(imported.backends, 0);
    assert!(!imported.haproxy.contains("backend "));
}

#[test]
fn names_haproxy_and_axon_spoa_accept() {
    let text = format!(
        r#"{{"services": {{
            "web site": {{"discovery": {{"method": "zookeeper", "path": "/a", "hosts": ["zk:2181"]}}, "haproxy": {{"port": 1}}}},
            "axon": {{"discovery": {{"method": "zookeeper", "path": "/b", "hosts": ["zk:2181"]}}}},
            "api": {{"discovery": {{"method": "zookeeper", "path": "/c", "hosts": ["zk:2181"]}}, "haproxy": {{"backend_name": "web_site"}}}},
            "off": {{"discovery": {{"method": "zookeeper", "path": "/d", "hosts": ["zk:2181"]}}, "haproxy": {{"disabled": true, "port": 2}}}}
        }}, {}}}"#,
        global(r#""mode http""#)
    );
    let imported = convert(&text);
    assert_eq!(
        lines(&imported)[2..],
        [
            "synapse.json: services.\"web site\": the name \"web site\" is not one axon-spoa accepts, or is taken: \
             named \"web_site\"",
            "synapse.json: services.axon.haproxy.backend_name: \"axon\" is another proxy's name (here or in \
             haproxy/axon.cfg): named \"axon-2\"",
            "synapse.json: services.api.haproxy.backend_name: \"web_site\" is another proxy's name (here or in \
             haproxy/axon.cfg): named \"web_site-2\"",
            "synapse.json: services.off.haproxy.disabled: HAProxy is not configured for this service: `port` not \
             converted",
        ]
    );
    let config = config(&imported);
    let backends: Vec<(&str, Option<&str>)> =
        config.services.iter().map(|s| (s.name.as_str(), s.backend.as_deref())).collect();
    assert_eq!(
        backends,
        [("web_site", Some("web_site")), ("axon", Some("axon-2")), ("api", Some("web_site-2")), ("off", None)]
    );
    assert!(imported.haproxy.contains("frontend web_site-in from axon-http\n"));
    assert!(imported.haproxy.contains("server-template api 1-\"${AXON_SLOTS_WEB_SITE_2_API-10}\""));
}

#[test]
fn names_differing_only_in_case_are_two_services() {
    // axon-spoa matches hosts lowercased, so it refuses `Web` beside `web`.
    let imported = convert(&two_services("Web", "web"));
    assert!(
        lines(&imported).contains(
            &"synapse.json: services.web: the name \"web\" is not one axon-spoa accepts, or is taken: named \"web_2\""
                .to_owned()
        ),
        "{:?}",
        lines(&imported)
    );
    let names: Vec<String> = config(&imported).services.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["Web", "web_2"]);
}

#[test]
fn long_names_stay_within_64_characters() {
    let long = "s".repeat(70);
    let config = config(&convert(&two_services(&long, &format!("{long}x"))));
    let names: Vec<(usize, usize)> =
        config.services.iter().map(|s| (s.name.len(), s.backend.as_ref().map_or(0, String::len))).collect();
    assert_eq!(names, [(64, 64), (64, 64)]);
    assert!(config.services[1].name.ends_with("_2"));
    assert_eq!(config.services[1].backend.as_ref(), Some(&config.services[1].name));
}

#[test]
fn the_shared_frontend_as_synapse_assembled_it() {
    let text = web(
        "",
        r#""haproxy": {"shared_frontend": ["acl is_web hdr_dom(host) -i web.lb", "use_backend web if is_web"]}"#,
    )
    .replace(r#""global": []"#, r#""global": [], "shared_frontend": ["bind 127.0.0.1:8081"]"#);
    let imported = convert(&text);
    assert!(
        imported.haproxy.ends_with(
            "\n# Synapse's shared frontend.\nfrontend shared-frontend from axon-http\n    bind 127.0.0.1:8081\n    \
             acl is_web hdr_dom(host) -i web.lb\n    use_backend web if is_web\n"
        ),
        "{}",
        imported.haproxy
    );
    // Without the top-level lines, Synapse skipped the service's.
    let imported = convert(&web("", r#""haproxy": {"shared_frontend": ["use_backend web"]}"#));
    assert_eq!(
        lines(&imported)[2..],
        ["synapse.json: services.web.haproxy.shared_frontend: the top-level haproxy section has no shared_frontend, \
          so Synapse skipped these lines: not converted either"]
    );
    assert!(!imported.haproxy.contains("shared-frontend"));
}

#[test]
fn service_conf_dir_services_follow_and_replace() {
    let text = web("", "").replacen('{', r#"{"service_conf_dir": "svc.d", "#, 1);
    assert_eq!(service_conf_dir(&text).as_deref(), Some("svc.d"));
    let file = |name: &str| ServiceFile {
        name: name.to_owned(),
        file: format!("svc.d/{name}.json"),
        text: format!(
            r#"{{"discovery": {{"method": "zookeeper", "path": "/{name}", "hosts": ["zk1:2181", "zk2:2181"]}}}}"#
        ),
    };
    let dir = ServiceDir::Read { files: vec![file("api"), file("web")], skipped: vec!["svc.d/x.yaml".into()] };
    let imported = import("synapse.json", &text, &dir).unwrap();
    assert_eq!(
        lines(&imported)[..2],
        [
            "svc.d/x.yaml: (document): YAML, which Synapse reads and this conversion does not: convert it to JSON and \
             run again",
            "synapse.json: services.web: replaced by svc.d/web.json, as Synapse does",
        ]
    );
    let config = config(&imported);
    let paths: Vec<(&str, &str)> = config.services.iter().map(|s| (s.name.as_str(), s.zk_path.as_str())).collect();
    assert_eq!(paths, [("web", "/web"), ("api", "/api")]);
    let unread = import("synapse.json", &text, &ServiceDir::NotRead).unwrap();
    assert_eq!(
        lines(&unread)[0],
        "synapse.json: service_conf_dir: \"svc.d\" was not read: its services are not converted"
    );
}

#[test]
fn inputs_that_cannot_be_converted_at_all() {
    let cases = [
        ("{\"services\": [", "synapse.json: not JSON: EOF while parsing a list at line 1 column 14"),
        (
            "services:\n  web: {}\n",
            "synapse.json: not JSON: expected value at line 1 column 1 (Synapse also reads YAML and ERB: render it to \
             JSON first)",
        ),
        ("\"x\"", "synapse.json: `(document)`: expected an object with `services` and `haproxy`, found a string"),
        ("{}", "synapse.json: `services`: no service could be converted (see the warnings above): nothing to write"),
    ];
    for (text, expected) in cases {
        let err = import("synapse.json", text, &ServiceDir::NotRead).unwrap_err().to_string();
        assert_eq!(err, expected);
    }
}

/// JSON made of the words Synapse's configuration uses, nested at random.
fn synapse_like() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let words = [
        "services",
        "web",
        "api",
        "discovery",
        "method",
        "path",
        "hosts",
        "label_filters",
        "label",
        "value",
        "condition",
        "default_servers",
        "host",
        "port",
        "name",
        "haproxy",
        "server_options",
        "listen",
        "backend",
        "frontend",
        "backend_name",
        "bind_address",
        "bind_options",
        "shared_frontend",
        "socket_file_path",
        "defaults",
        "disabled",
        "use_previous_backends",
        "keep_default_servers",
        "state_file_path",
        "decode",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "zookeeper",
            "zookeeper_poll",
            "dns",
            "/nerve/x",
            "zk1:2181",
            "10.0.0.5",
            "::1",
            "localhost",
            "mode tcp",
            "mode http",
            "balance static-rr",
            "balance source",
            "check inter 2s",
            "weight 3",
            "%{name}",
            "equals",
            "not-equals",
            "axon",
            "web",
            "use-server x",
            "reqadd x",
            "cookie S insert",
            "default-server inter 1s",
            "",
            "a\nbackend evil",
            "x;y",
            "axon-agents",
            "a-name-of-seventy-characters-which-is-longer-than-haproxy-names-may-be",
        ])
        .prop_map(Value::from),
        "[ -~]{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(words.to_vec()), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// The section headers of HAProxy output: only those the conversion writes, each line of a
/// section indented, nothing a value could inject.
fn assert_well_formed(haproxy: &str, text: &str) {
    for line in haproxy.lines() {
        let ok = line.is_empty()
            || line.starts_with('#')
            || line.starts_with("    ")
            || (line.starts_with("frontend ") || line.starts_with("backend ")) && line.ends_with(" from axon-http");
        assert!(ok && !line.chars().any(char::is_control), "{line:?} in\n{haproxy}\nfrom {text}");
    }
}

proptest! {
    /// Whatever the input, the conversion ends without a panic, what it writes axon-spoa
    /// accepts, and the HAProxy sections are only those it means to write.
    #[test]
    fn any_input_converts_or_is_refused_never_invalid(value in synapse_like()) {
        let text = value.to_string();
        match import("synapse.json", &text, &ServiceDir::NotRead) {
            Ok(imported) => assert_well_formed(&imported.haproxy, &text),
            Err(err @ ImportError::Invalid { .. }) => panic!("{err}\n{text}"),
            Err(_) => {}
        }
    }

    /// A well-formed service with random values in its fields.
    #[test]
    fn any_service_converts_or_is_refused_never_invalid(
        fields in prop::collection::vec((prop::sample::select(vec![
            "default_servers", "keep_default_servers", "use_previous_backends", "haproxy", "leader_election",
        ]), synapse_like()), 0..3),
        haproxy in prop::collection::vec((prop::sample::select(vec![
            "port", "server_options", "listen", "backend", "frontend", "backend_name", "bind_address",
            "bind_options", "shared_frontend", "disabled",
        ]), synapse_like()), 0..5),
    ) {
        let mut service = serde_json::json!({
            "discovery": {"method": "zookeeper", "path": "/a", "hosts": ["zk:2181"]}, "haproxy": {},
        });
        for (key, value) in fields {
            service[key] = value;
        }
        if service["haproxy"].is_object() {
            for (key, value) in haproxy {
                service["haproxy"][key] = value;
            }
        }
        let text = serde_json::json!({
            "services": {"web": service},
            "haproxy": {"socket_file_path": "/s", "global": [], "defaults": [], "shared_frontend": ["bind :1"]},
        })
        .to_string();
        match import("synapse.json", &text, &ServiceDir::NotRead) {
            Ok(imported) => assert_well_formed(&imported.haproxy, &text),
            Err(err @ ImportError::Invalid { .. }) => panic!("{err}\n{text}"),
            Err(_) => {}
        }
    }
}
