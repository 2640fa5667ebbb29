//! Migration from SmartStack, end to end: `axon-registrar import-nerve` and `axon-spoa
//! import-synapse` run as built on the configurations in tests/import/ (written in Nerve's and
//! Synapse's documented formats), every warning checked, their output checked against
//! tests/import/expected/ and accepted by the daemons' `--check`, the HAProxy sections by
//! `haproxy -c` beside the shipped snippet, and every TOML block of docs/migration.md by the
//! daemon it names. `AXON_UPDATE_EXPECTED=1` rewrites the expected files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use axon_harness::{bins, haproxy};

fn inputs() -> PathBuf {
    bins::workspace_root().join("tests/import")
}

/// Runs `binary` with `args` in tests/import/ (the inputs name their service directories
/// relative to it, as Nerve and Synapse take them from their working directory).
fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(bins::axon(binary)).args(args).current_dir(inputs()).output().expect("running the import")
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr).lines().map(str::to_owned).collect()
}

/// `actual` equals tests/import/expected/`name` (or replaces it with AXON_UPDATE_EXPECTED).
fn assert_expected(name: &str, actual: &str) {
    let file = inputs().join("expected").join(name);
    if std::env::var_os("AXON_UPDATE_EXPECTED").is_some() {
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).unwrap_or(0);
        panic!(
            "{} differs from the output, first at line {}:\n  expected: {:?}\n  actual:   {:?}\nwhole output:\n{actual}",
            file.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or_default(),
            actual.lines().nth(first).unwrap_or_default(),
        );
    }
}

/// `<binary> --check <file>`: (passed, what it printed).
fn check(binary: &str, file: &Path) -> (bool, String) {
    let output = Command::new(bins::axon(binary)).arg("--check").arg(file).output().expect("running --check");
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

const NERVE_WARNINGS: &[&str] = &[
    "warning: nerve_services/ledger.yaml: (document): YAML, which Nerve reads and this conversion does not: convert it to JSON and run again",
    "warning: nerve.json: heartbeat_path: no equivalent: Axon's liveness is its status endpoint (`[status] listen`, GET /status), not a file it touches",
    "warning: nerve.json: max_repeated_report_failures: no equivalent: Axon never gives up on ZooKeeper: a failed request is retried with backoff (100 ms doubling to 10 s) and the session is reopened",
    "warning: nerve.json: statsd: no equivalent: Axon serves Prometheus metrics at `[status] listen` (GET /metrics)",
    "warning: nerve.json: services.web.labels.canary: false is written as the string \"false\": Axon's labels are strings (a reader comparing it with a boolean no longer matches)",
    "warning: nerve.json: services.web.checks[1].ssl_timeout: no equivalent: it sets Ruby's TLS session lifetime, which does not limit the check (the handshake counts in open_timeout, so in Axon's timeout)",
    "warning: nerve.json: services.web.check_interval: 1s is shorter than the longest check timeout (1500ms): Axon runs checks at a fixed rate and wants each to end within the interval, so check_interval = 1500ms is written",
    "warning: nerve.json: services.api.rate_limiting: no equivalent: Axon writes only on a change of health, with at most one request in flight per znode and a backoff after a failure",
    "warning: nerve.json: services.events.checks[0].type: \"rabbitmq\": Axon has no AMQP check: converted to a tcp check of the same address (Nerve's check also published and consumed a message; an `exec` check running a client that does so would match it)",
    "warning: nerve.json: services.batch.node_type: \"persistent\": Axon creates ephemeral sequential znodes only (Nerve's default), which go with the session; znodes Nerve created persistent stay after it stops: delete them",
    "warning: nerve.json: services.batch.ttl_seconds: no equivalent: Axon's znodes are ephemeral and need no refresh (Nerve touches only persistent ones)",
    "warning: nerve.json: services.batch.check_mocked: no equivalent: Axon always runs the checks (they are converted below)",
    "warning: nerve.json: services.search.reporter_type: \"etcd\": Axon registers in ZooKeeper only (its etcd_* fields are not converted): service left out",
    "warning: nerve.json: services.reports.checks[0].type: \"mysql\" is an external check (its `module`) Axon does not have: check left out (an `exec` check can run a command doing it)",
    "warning: nerve.json: services.reports.checks: no check could be converted: service left out (write an `exec` check for it)",
    "warning: nerve.json: services.cron.load_test_concurrency: no equivalent: Axon registers each service once",
    "warning: nerve.json: services.cron.checks: none: Nerve registers such a service while it runs; Axon needs a check, so an `exec` check of `true` is written",
    "warning: nerve_services/billing.json: checks[0].retries: unknown field for a http check: not converted",
    "warning: nerve_services/billing.json: check_interval: 200ms is shorter than the longest check timeout (300ms): Axon runs checks at a fixed rate and wants each to end within the interval, so check_interval = 300ms is written",
    "warning: nerve.json: services.batch.zk_hosts: zk-batch1.use1:2181,zk-batch2.use1:2181 is not the ensemble of service \"web\" (zk1.use1:2181,zk2.use1:2181,zk3.use1:2181), the first one: Axon keeps one ZooKeeper session, so this service registers there; run another axon-registrar with a configuration of its own to register it with zk-batch1.use1:2181,zk-batch2.use1:2181",
];

#[test]
fn import_nerve() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("registrar.toml");
    let output = run("axon-registrar", &["import-nerve", "nerve.json", "-o", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stderr_lines(&output), NERVE_WARNINGS);
    assert!(output.stdout.is_empty());
    let toml = std::fs::read_to_string(&out).unwrap();
    assert_expected("registrar.toml", &toml);
    let (ok, text) = check("axon-registrar", &out);
    assert!(ok && text.contains("ok (7 services)"), "{text}");

    // The key mappings, as the registrar reads them.
    for expected in [
        "instance_id = \"web-7.use1\"",
        "[zookeeper]\nconnect = \"zk1.use1:2181,zk2.use1:2181,zk3.use1:2181\"",
        // use_path_encoding, weight, labels, haproxy_server_options: the record as Nerve wrote it.
        "weight = 10\nlabels = { az = \"us-east-1a\", canary = \"false\" }\nhaproxy_server_options = \"maxconn 200\"\npath_encoding = \"base64\"",
        // An http check: Nerve's connect time (0.2 s) plus its read time (the timeout).
        "type = \"http\"\nuri = \"/health\"\nheaders = { Host = \"web.internal\", X-Health-Check = \"nerve\" }\nexpect_body = \"OK\"\ntimeout = \"400ms\"\nrise = 3\nfall = 2",
        "type = \"http\"\nport = 8443\nuri = \"/status\"\nhttps = true\ntimeout = \"1500ms\"",
        "type = \"redis\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2",
        // Nerve's defaults, written out: 0.5 s interval, 0.1 s timeout (here 0.3), rise and fall 1.
        "name = \"api\"\nhost = \"10.1.2.7\"\nport = 9090\nzk_path = \"/nerve/services/api/services\"\ncheck_interval = \"500ms\"",
        "type = \"exec\"\ncommand = \"true\"\nrise = 1\nfall = 1",
        // A service of the service_conf_dir, after those of the file.
        "name = \"billing\"",
    ] {
        assert!(toml.contains(expected), "{expected:?} not in:\n{toml}");
    }
    assert!(!toml.contains("nerve-secret"), "a rabbitmq password is not carried anywhere");

    // To stdout without -o: the same text.
    let output = run("axon-registrar", &["import-nerve", "nerve.json"]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), toml);
}

const SYNAPSE_WARNINGS: &[&str] = &[
    "warning: synapse_services/ledger.yaml: (document): YAML, which Synapse reads and this conversion does not: convert it to JSON and run again",
    "warning: synapse.json: haproxy.socket_file_path: several sockets (one per nbproc process): axon-spoa drives one HAProxy process, through \"/var/haproxy/stats.sock\"",
    "warning: synapse.json: haproxy.state_file_path: \"/var/lib/synapse/state.json\": axon-spoa keeps its own cache of what it discovered, in another format: cache_file = \"/var/lib/axon/spoa-cache.json\" is written (Synapse's file is not read)",
    "warning: synapse.json: haproxy.reload_command: no equivalent: axon-spoa never reloads HAProxy: servers change through the runtime API",
    "warning: synapse.json: haproxy.config_file_path: no equivalent: axon-spoa never writes haproxy.cfg: the converted sections are loaded beside it",
    "warning: synapse.json: haproxy.do_writes: no equivalent: axon-spoa never writes haproxy.cfg: the converted sections are loaded beside it",
    "warning: synapse.json: haproxy.do_reloads: no equivalent: axon-spoa never reloads HAProxy: servers change through the runtime API",
    "warning: synapse.json: haproxy.do_checks: no equivalent: axon-spoa writes no configuration to check (check yours with `haproxy -c`)",
    "warning: synapse.json: haproxy.check_command: no equivalent: axon-spoa writes no configuration to check (check yours with `haproxy -c`)",
    "warning: synapse.json: haproxy.candidate_config_file_path: no equivalent: axon-spoa writes no configuration to check (check yours with `haproxy -c`)",
    "warning: synapse.json: haproxy.restart_interval: no equivalent: axon-spoa never reloads HAProxy: servers change through the runtime API",
    "warning: synapse.json: haproxy.restart_jitter: no equivalent: axon-spoa never reloads HAProxy: servers change through the runtime API",
    "warning: synapse.json: haproxy.server_order_seed: no equivalent: servers are slots <prefix>1…<prefix>N, filled in order; HAProxy numbers them",
    "warning: synapse.json: haproxy.max_server_id: no equivalent: servers are slots <prefix>1…<prefix>N, filled in order; HAProxy numbers them",
    "warning: synapse.json: haproxy.global: Synapse wrote these lines into haproxy.cfg; axon-spoa writes no global section: keep them in your haproxy.cfg (haproxy/axon.cfg adds its runtime socket and state file)",
    "warning: synapse.json: haproxy.defaults: the converted sections use haproxy/axon.cfg's `defaults axon-http` instead, with `mode tcp` and `log global` written into each; these lines no longer apply to them: option dontlognull; retries 3; timeout connect 5s; timeout client 1m; timeout server 1m; option redispatch; balance roundrobin",
    "warning: synapse.json: haproxy.extra_sections: axon-spoa writes no section of its own: keep `listen stats :3212` in your haproxy.cfg",
    "warning: synapse.json: statsd: no equivalent: axon-spoa serves Prometheus metrics at `[status] listen` (GET /metrics)",
    "warning: synapse.json: services.web.discovery.retry_policy: no equivalent: axon-spoa retries every read until it succeeds, with backoff, and never gives up",
    "warning: synapse.json: services.web.haproxy.backend[0]: hashing with `balance source` is map-based unless `hash-type consistent`, and `add server` refuses map-based backends: `hash-type consistent` added",
    "warning: synapse.json: services.web.haproxy.server_options: `cookie %{name}` left out: every slot gets the same options, and axon-spoa sets each slot's address and weight from its record",
    "warning: synapse.json: services.web.haproxy.backend_order: no equivalent: slots are filled in order and the backend's `balance` spreads requests",
    "warning: synapse.json: services.web.haproxy.cookie_value_method: no equivalent: Synapse gave each server `cookie <its name>`; slots have no cookie value",
    "warning: synapse.json: services.api.discovery.generator_config_path: \"/synapse/config/api\": axon-spoa reads no HAProxy settings from ZooKeeper: put them in the converted backend",
    "warning: synapse.json: services.api.discovery.discovery_jitter: no equivalent: axon-spoa reads a change at once (it spreads only its re-reads after a reconnection, over `[discovery] reread_jitter`)",
    "warning: synapse.json: services.api.haproxy.backend[3]: \"reqadd X-Synapse:\\\\ 1\": HAProxy no longer takes `reqadd` (Axon needs 2.6 or later): left out; use `http-request add-header`",
    "warning: synapse.json: services.api.haproxy.backend[4]: \"frobnicate on\" is not a backend keyword Synapse knew: it discarded it too",
    "warning: synapse.json: services.api.haproxy.backend[1]: `balance static-rr` cannot take servers added at run time (`add server`): left out, so haproxy/axon.cfg's roundrobin applies",
    "warning: synapse.json: services.api.haproxy.server_options: `weight 10` left out: every slot gets the same options, and axon-spoa sets each slot's address and weight from its record",
    "warning: synapse.json: services.db.discovery.method: \"zookeeper_poll\" (reading the path every 30 s): axon-spoa watches the path instead, so a change arrives at once",
    "warning: synapse.json: services.db.default_servers[0].host: \"localhost\": axon-spoa's default servers are IP addresses: 127.0.0.1 written",
    "warning: synapse.json: services.db.default_servers[1].host: \"db-replica.use1\": axon-spoa's default servers are IP addresses: write its address; server left out",
    "warning: synapse.json: services.search.discovery.method: \"zookeeper_dns\": converted as \"zookeeper\": axon-spoa resolves the host names records hold by itself (each answer kept 60 s), so its HAProxy needs no DNS",
    "warning: synapse.json: services.search.backend_port_override: 9200: axon-spoa connects to the port each record gives: register the port clients should reach (the registrar's `port`)",
    "warning: synapse.json: services.search.haproxy.port: none, so Synapse made no frontend for this service: its frontend and bind lines are not converted either",
    "warning: synapse.json: services.reports.file_output: another config generator's section: axon-spoa drives HAProxy only",
    "warning: synapse.json: services.leader.leader_election: axon-spoa has no leader election (Synapse sent traffic to the instance with the lowest sequence number only): service left out, so that traffic does not spread over every instance",
    "warning: synapse.json: services.aurora.discovery.decode.method: \"serverset\": axon-spoa reads Nerve's records only: service left out",
    "warning: synapse.json: services.proddb.discovery.method: \"ec2tag\": axon-spoa discovers services in ZooKeeper only: service left out",
    "warning: synapse.json: services.legacy.discovery.method: \"dns\": axon-spoa discovers services in ZooKeeper only: service left out",
    "warning: synapse.json: services.mirror.discovery_multi: several watchers merged by a resolver: axon-spoa reads one ZooKeeper path per service: service left out",
    "warning: synapse.json: services.search.discovery.hosts: zk-search1.use1:2181,zk-search2.use1:2181 is not the ensemble of service \"web\" (zk1.use1:2181,zk2.use1:2181,zk3.use1:2181), the first one: axon-spoa keeps one ZooKeeper session, so this service is read from there: its instances must be registered in that ensemble",
];

#[test]
fn import_synapse() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("axon-spoa.toml");
    let backends = dir.path().join("backends.cfg");
    let output = run(
        "axon-spoa",
        &[
            "import-synapse",
            "synapse.json",
            "-o",
            out.to_str().unwrap(),
            "--haproxy-backends",
            backends.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stderr_lines(&output), SYNAPSE_WARNINGS);
    let toml = std::fs::read_to_string(&out).unwrap();
    let sections = std::fs::read_to_string(&backends).unwrap();
    assert_expected("axon-spoa.toml", &toml);
    assert_expected("backends.cfg", &sections);

    let (ok, text) = check("axon-spoa", &out);
    assert!(ok && text.contains("ok (6 services)"), "{text}");
    // The template lines --check prints are those of the converted backends.
    for line in text.lines().filter_map(|l| l.strip_prefix("backend ")) {
        let (_, template) = line.split_once(": ").unwrap();
        assert!(sections.contains(template), "{template} not in:\n{sections}");
    }

    // What axon-spoa reads: the key mappings.
    let config = axon_spoa::Config::parse(&out, &toml).unwrap();
    assert_eq!(config.zookeeper.hosts, "zk1.use1:2181,zk2.use1:2181,zk3.use1:2181");
    assert_eq!(config.haproxy.socket, axon_spoa::haproxy::RuntimeAddress::Unix("/var/haproxy/stats.sock".into()));
    let services: Vec<(&str, &str, Option<&str>)> =
        config.services.iter().map(|s| (s.name.as_str(), s.zk_path.as_str(), s.backend.as_deref())).collect();
    assert_eq!(
        services,
        [
            ("web", "/nerve/services/web/services", Some("web")),
            ("api", "/nerve/services/api/services", Some("api_v2")),
            ("db", "/nerve/services/db/services", Some("db")),
            ("search", "/nerve/services/search/services", Some("search")),
            ("reports", "/nerve/services/reports/services", None),
            ("payments", "/nerve/services/payments/services", Some("payments")),
        ]
    );
    let web = &config.services[0];
    let filters: Vec<(&str, &str, bool)> =
        web.label_filters.iter().map(|f| (f.label.as_str(), f.value.as_str(), f.equals)).collect();
    assert_eq!(filters, [("az", "us-east-1a", true), ("canary", "true", false)]);
    assert_eq!(web.default_servers.iter().map(|e| e.to_string()).collect::<Vec<_>>(), ["10.1.9.1:8080"]);
    let db = &config.services[2];
    assert!(db.keep_default_servers);
    assert_eq!(config.services[1].on_empty, axon_spoa::model::OnEmpty::Empty);
    // Servers added past the template get what the slots get.
    assert_eq!(web.server_options, "observe layer4 error-limit 5 on-error mark-down check inter 2s rise 3 fall 2");
    for expected in [
        "frontend web-in from axon-http\n    log global\n    timeout client 1m\n    mode http\n    option httplog\n    bind localhost:3213 backlog 1024\n    default_backend web\n",
        "    server-template web 1-\"${AXON_SLOTS_WEB_WEB-10}\" 127.0.0.1:1 disabled check inter 2s rise 3 fall 2\n",
        "backend db from axon-http\n    mode tcp\n    log global\n    server-template db 1-",
        "frontend shared-frontend from axon-http\n    log global\n    bind 127.0.0.1:8081\n    mode http\n",
    ] {
        assert!(sections.contains(expected), "{expected:?} not in:\n{sections}");
    }

    // HAProxy takes the sections beside the shipped snippet (without its example backend),
    // under the global section Synapse's users keep, without a warning.
    let hdir = haproxy::HaproxyDir::new();
    std::fs::write(hdir.state_file(), "1\n").unwrap();
    let snippet = haproxy::shipped_config(&hdir, "axon.cfg");
    let snippet = &snippet[..snippet.find("\n# One backend per service.").expect("the snippet's example backend")];
    let files = [
        ("haproxy.cfg", "global\n    log stdout format raw local0\n".to_owned()),
        ("axon.cfg", snippet.to_owned()),
        ("backends.cfg", sections.clone()),
    ];
    let mut paths = vec![hdir.slots_file()];
    for (name, text) in files {
        let path = hdir.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let text = haproxy::check_configs(&paths).unwrap_or_else(|e| panic!("haproxy -c refused the sections: {e}"));
    assert!(!text.contains("[WARNING]"), "{text}");

    // Without --haproxy-backends, a note says what was not written.
    let output = run("axon-spoa", &["import-synapse", "synapse.json"]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), toml);
    assert_eq!(
        stderr_lines(&output).last().map(String::as_str),
        Some("note: the HAProxy sections of 5 backends were not written: pass --haproxy-backends FILE")
    );
}

/// The `[haproxy]` paths a converted configuration names are those haproxy/axon.cfg declares.
#[test]
fn converted_paths_follow_the_snippet() {
    let snippet = std::fs::read_to_string(bins::workspace_root().join("haproxy/axon.cfg")).unwrap();
    let toml = std::fs::read_to_string(inputs().join("expected/axon-spoa.toml")).unwrap();
    for key in ["state_file", "host_map", "slots_file"] {
        let line = toml.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap();
        let path = line.split('"').nth(1).unwrap();
        assert!(snippet.contains(path), "{key} = {path:?} is not in haproxy/axon.cfg");
    }
}

#[test]
fn unusable_inputs_say_which_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"services\": {\"web\": {\"host\": \"10.0.0.5\",}}}").unwrap();
    let yaml = dir.path().join("nerve.yaml");
    std::fs::write(&yaml, "instance_id: web-1\nservices: {}\n").unwrap();
    let missing = dir.path().join("missing.json");
    for (binary, command, product) in
        [("axon-registrar", "import-nerve", "Nerve"), ("axon-spoa", "import-synapse", "Synapse")]
    {
        let output = Command::new(bins::axon(binary)).arg(command).arg(&bad).output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!("{binary}: {}: not JSON: trailing comma at line 1 column 42\n", bad.display())
        );
        let output = Command::new(bins::axon(binary)).arg(command).arg(&yaml).output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!(
                "{binary}: {}: not JSON: expected value at line 1 column 1 ({product} also reads YAML",
                yaml.display()
            )),
            "{stderr}"
        );
        let output = Command::new(bins::axon(binary)).arg(command).arg(&missing).output().unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with(&format!("{binary}: {}: cannot read: ", missing.display())), "{stderr}");
    }
}

/// The fenced blocks of a Markdown text: (info string, body).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let Some((info, body)) = rest[start + 3..].split_once('\n') else { break };
        let end = body.find("```").expect("a closing fence");
        // The body up to the fence's line, whatever its indentation.
        let text = &body[..body[..end].rfind('\n').map_or(0, |i| i + 1)];
        blocks.push((info.trim().to_owned(), text.to_owned()));
        rest = &body[end + 3..];
    }
    blocks
}

/// Every TOML block of docs/migration.md is a whole configuration its daemon accepts, and a
/// worked example (a JSON block, then a TOML block) is what the command writes for it.
#[test]
fn the_migration_guides_configurations_are_valid() {
    let guide = std::fs::read_to_string(bins::workspace_root().join("docs/migration.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let blocks = fenced_blocks(&guide);
    let mut tomls = 0;
    let mut examples = 0;
    for (i, (info, body)) in blocks.iter().enumerate() {
        let (binary, command, input) = match info.as_str() {
            "toml registrar" => ("axon-registrar", "import-nerve", "nerve.conf.json"),
            "toml spoa" => ("axon-spoa", "import-synapse", "synapse.conf.json"),
            other if other.starts_with("toml") => {
                panic!("a TOML block in docs/migration.md says ```{other}: name its daemon (toml registrar, toml spoa)")
            }
            _ => continue,
        };
        let file = dir.path().join(format!("block{i}.toml"));
        std::fs::write(&file, body).unwrap();
        let (ok, text) = check(binary, &file);
        assert!(ok, "docs/migration.md, TOML block {} ({binary}):\n{body}\n{text}", tomls + 1);
        tomls += 1;
        if let Some((previous, json)) = i.checked_sub(1).and_then(|j| blocks.get(j))
            && previous == "json"
        {
            std::fs::write(dir.path().join(input), json).unwrap();
            let output =
                Command::new(bins::axon(binary)).args([command, input]).current_dir(dir.path()).output().unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            assert_eq!(String::from_utf8_lossy(&output.stdout), *body, "the guide's example of {command}");
            examples += 1;
        }
    }
    assert_eq!((tomls, examples), (2, 2));
}
