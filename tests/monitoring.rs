//! Operators' monitoring (`monitoring/`, `docs/monitoring.md`) against the real thing: the
//! Prometheus rules pass `promtool check rules` and their unit tests (`promtool test rules`); the
//! Grafana dashboard's queries parse as PromQL (promtool again); and every metric name the rules,
//! the dashboard and the runbook use is one the daemons export, read from the `/metrics` of a
//! real axon-spoa (beside a real HAProxy, with its SPOE agent) and a real axon-registrar, around
//! a real ZooKeeper, after a registration has gone through. The runbook documents every metric
//! they export and every alert. A misspelt name anywhere fails here, not in production.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use axon_harness::haproxy::{self, Backend, HaproxyDir};
use axon_harness::registrar::RegistrarDir;
use axon_harness::sample::Sample;
use axon_harness::spoa::SpoaDir;
use axon_harness::wait::{self, SECOND};
use axon_harness::{bins, ports, zk};
use serde_json::Value;

const RULES: &str = "monitoring/axon.rules.yml";
const RULE_TESTS: &str = "monitoring/axon.rules.test.yml";
const DASHBOARD: &str = "monitoring/axon-dashboard.json";
const DOCS: &str = "docs/monitoring.md";

fn promtool() -> PathBuf {
    bins::system("promtool", "install it with `apt-get install -y prometheus` (or run `make deps`)")
}

fn read(relative: &str) -> String {
    let path = bins::workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// Runs promtool with `args` in the workspace's root; panics with its output unless it succeeds.
fn run_promtool(args: &[&std::ffi::OsStr]) -> String {
    let (ok, text) = try_promtool(args);
    assert!(ok, "promtool {args:?} failed:\n{text}");
    text
}

/// Runs promtool with `args` in the workspace's root: whether it succeeded, and its output.
fn try_promtool(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output =
        Command::new(promtool()).args(args).current_dir(bins::workspace_root()).output().expect("running promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// The rules file: its rules and expressions, read line by line. (No YAML parser in the
// workspace; the count is checked against promtool's, which does parse it.)

#[derive(Debug)]
struct Rule {
    /// `alert` or `record`.
    kind: &'static str,
    name: String,
    expr: String,
    /// The rule's own lines (labels and annotations).
    body: String,
}

/// The rules of a rules file, in order: `- alert:` or `- record:` starts one; its `expr:` is a
/// one-line scalar (plain, or quoted) or a `|` / `>` block (lines indented deeper than the key).
fn rules(yaml: &str) -> Vec<Rule> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    // Whether the lines read belong to the last rule (not to a group's header).
    let mut in_rule = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let start = [("alert", "- alert:"), ("record", "- record:")]
            .into_iter()
            .find_map(|(kind, key)| trimmed.strip_prefix(key).map(|name| (kind, name.trim())));
        if let Some((kind, name)) = start {
            rules.push(Rule { kind, name: name.to_owned(), expr: String::new(), body: String::new() });
            in_rule = true;
        } else if trimmed.starts_with("- name:") {
            in_rule = false;
        } else if let Some(rule) = rules.last_mut().filter(|_| in_rule) {
            rule.body.push_str(trimmed);
            rule.body.push('\n');
            if let Some(value) = trimmed.strip_prefix("expr:") {
                let value = value.trim();
                if matches!(value, "|" | "|-" | ">" | ">-") {
                    let mut block = Vec::new();
                    while let Some(next) = lines.get(i + 1) {
                        let next_indent = next.len() - next.trim_start().len();
                        if !next.trim().is_empty() && next_indent <= indent {
                            break;
                        }
                        block.push(next.trim());
                        i += 1;
                    }
                    rule.expr = block.join("\n").trim().to_owned();
                } else if let Some(quoted) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                    rule.expr = quoted.replace("''", "'");
                } else if let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    rule.expr = quoted.replace("\\\"", "\"").replace("\\\\", "\\");
                } else {
                    rule.expr = value.to_owned();
                }
            }
        }
        i += 1;
    }
    rules
}

// ---------------------------------------------------------------------------------------------
// The dashboard: every PromQL expression in it.

/// Every query in a Grafana dashboard, with where it is: each `expr` anywhere in the document
/// (panels, rows' nested panels, library panels alike), and each query variable's query.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(value: &Value, place: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).map(|t| format!("{place} / {t}"));
                let place = title.as_deref().unwrap_or(place);
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push((place.to_owned(), expr.clone()));
                }
                for (key, child) in map {
                    if key != "templating" {
                        walk(child, place, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, place, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "dashboard", &mut out);
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            other => other["query"].as_str().unwrap_or_default().to_owned(),
        };
        if let Some(expr) = variable_expr(&query) {
            out.push((format!("variable ${}", variable["name"].as_str().unwrap_or("?")), expr));
        }
    }
    out
}

/// The PromQL inside a Grafana Prometheus variable query: `label_values(<selector>, <label>)`
/// gives its selector, `query_result(<expr>)` its expression; `label_values(<label>)`,
/// `label_names()` and `metrics(<regex>)` name no metric.
fn variable_expr(query: &str) -> Option<String> {
    let query = query.trim();
    if let Some(inner) = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
        let (selector, _label) = inner.rsplit_once(',')?;
        return Some(selector.trim().to_owned());
    }
    if let Some(inner) = query.strip_prefix("query_result(").and_then(|q| q.strip_suffix(')')) {
        return Some(inner.trim().to_owned());
    }
    None
}

/// A Grafana expression as plain PromQL: the built-in intervals become `5m`, and variables
/// (meant inside label matchers' strings) `.*`; a variable anywhere else then fails to parse.
fn grafana_to_promql(expr: &str) -> String {
    let mut out = expr.to_owned();
    for interval in ["$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}", "$__range", "${__range}"]
    {
        out = out.replace(interval, "5m");
    }
    let mut plain = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find('$') {
        plain.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let skip = if let Some(braced) = after.strip_prefix('{') {
            braced.find('}').map_or(after.len(), |end| end + 2)
        } else {
            after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len())
        };
        plain.push_str(".*");
        rest = &after[skip..];
    }
    plain.push_str(rest);
    plain
}

// ---------------------------------------------------------------------------------------------
// Metric names in PromQL.

/// Words that are PromQL syntax, not metric names, when not followed by `(` (which makes any
/// word a function or an aggregation).
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end", "atan2"];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names an expression selects: identifiers outside strings, label matchers
/// (`{…}`) and ranges (`[…]`) that are neither keywords nor followed by `(` (or by `by` or
/// `without`, as an aggregation's name is), nor the label
/// lists of `by (…)`, `on (…)` and the like; and `__name__="…"` matchers. A `__name__` matched
/// by a regular expression names no metric that can be checked: it is an error.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // The index just past the string starting at `i`.
    let skip_string = |i: usize| -> usize {
        let quote = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' && quote != '`' { 2 } else { 1 };
        }
        j + 1
    };
    // The index just past the group opened at `i`, and its text.
    let skip_group = |i: usize, open: char, close: char| -> Result<(usize, String), String> {
        let mut depth = 0;
        let mut j = i;
        while j < chars.len() {
            match chars[j] {
                '"' | '\'' | '`' => {
                    j = skip_string(j);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok((j + 1, chars[i + 1..j].iter().collect()));
                    }
                }
                _ => {}
            }
            j += 1;
        }
        Err(format!("unbalanced {open}{close} in {expr:?}"))
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(i),
            '#' => i = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n),
            '{' => {
                let (end, matchers) = skip_group(i, '{', '}')?;
                if let Some(at) = matchers.find("__name__") {
                    let rest = matchers[at + "__name__".len()..].trim_start();
                    let value = rest
                        .strip_prefix('=')
                        .filter(|r| !r.starts_with('~'))
                        .map(str::trim_start)
                        .and_then(|r| r.strip_prefix('"'))
                        .and_then(|r| r.split_once('"'))
                        .map(|(name, _)| name.to_owned());
                    match value {
                        Some(name) => {
                            names.insert(name);
                        }
                        None => return Err(format!("a __name__ matcher other than `=\"name\"` in {expr:?}")),
                    }
                }
                i = end;
            }
            '[' => i = skip_group(i, '[', ']')?.0,
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                // A number or a duration (`5m`, `1h30m`, `0x1f`, `1e3`).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                    i += 1;
                }
            }
            c if is_start(c) => {
                let start = i;
                while i < chars.len() && is_part(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                // `f (` is a function or an aggregation, and so is `sum by (…)` / `sum without (…)`.
                let next_word: String = chars[next..].iter().take_while(|c| is_part(**c)).collect();
                let followed_by_paren = chars.get(next) == Some(&'(')
                    || ["by", "without"].contains(&next_word.to_ascii_lowercase().as_str());
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if followed_by_paren {
                        i = skip_group(next, '(', ')')?.0;
                    }
                } else if !followed_by_paren && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// What a daemon exports.

#[derive(Debug, Default)]
struct Exported {
    /// Names of the samples served (`axon_spoa_commands_total`, `…_bucket`), each with a series.
    samples: BTreeSet<String>,
    /// Metric families and their types, from `# TYPE` lines.
    families: BTreeMap<String, String>,
}

impl Exported {
    fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    self.families.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                self.samples.insert(line[..end].to_owned());
            }
        }
    }

    /// How the runbook must write each family: a counter with `_total` (as it is queried), any
    /// other family by its name (a histogram's samples add `_bucket`, `_sum`, `_count`).
    fn documented_names(&self) -> BTreeSet<String> {
        self.families
            .iter()
            .map(|(name, kind)| if kind == "counter" { format!("{name}_total") } else { name.clone() })
            .collect()
    }
}

/// Every word in `text` that could be a metric name.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let text = read(RULES);
    let checked = run_promtool(&["check".as_ref(), "rules".as_ref(), RULES.as_ref()]);
    let rules = rules(&text);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "promtool counts other rules than this test reads ({}):\n{checked}",
        rules.len()
    );
    run_promtool(&["test".as_ref(), "rules".as_ref(), RULE_TESTS.as_ref()]);

    let mut names = BTreeSet::new();
    for rule in &rules {
        assert!(!rule.expr.is_empty(), "{} has no expression this test can read", rule.name);
        assert!(names.insert(rule.name.clone()), "{} is defined twice", rule.name);
        if rule.kind == "alert" {
            assert!(rule.name.starts_with("Axon"), "{}: alert names start with Axon", rule.name);
            let severity = rule.body.lines().find_map(|l| l.strip_prefix("severity:")).map(str::trim);
            assert!(
                matches!(severity, Some("critical" | "warning" | "info")),
                "{}: severity {severity:?}, expected critical, warning or info",
                rule.name
            );
            for annotation in ["summary:", "description:"] {
                assert!(rule.body.contains(annotation), "{} has no {annotation}", rule.name);
            }
        } else {
            assert!(rule.name.split(':').count() == 3, "{}: recording rules are level:metric:operations", rule.name);
        }
    }
    let alerts = rules.iter().filter(|r| r.kind == "alert").count();
    assert!(alerts >= 15, "only {alerts} alerts read from {RULES}");
}

#[test]
fn dashboard_is_grafana_json_whose_queries_parse() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    assert!(
        variable("datasource").is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a `datasource` variable of Prometheus data sources"
    );
    assert!(variable("instance").is_some_and(|v| v["type"] == "query"), "an `instance` variable");

    // Every panel: an id of its own, a place on the grid, the `${datasource}`, and queries.
    let mut ids = BTreeSet::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().expect("panels").iter().collect();
    let mut i = 0;
    while i < panels.len() {
        let panel = panels[i];
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(ids.insert(panel["id"].as_u64().expect("a panel id")), "panel id of {title} repeated");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title} has no gridPos");
        if panel["type"] == "row" {
            panels.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}'s data source");
            let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
            assert!(!targets.is_empty(), "{title} has no query");
            for target in targets {
                assert!(target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "{title}: empty query");
            }
        }
        i += 1;
    }
    let rows: Vec<&str> = panels.iter().filter(|p| p["type"] == "row").filter_map(|p| p["title"].as_str()).collect();
    assert!(rows.contains(&"axon-spoa") && rows.contains(&"axon-registrar"), "rows: {rows:?}");

    // promtool parses each query, as a recording rule of a scratch rules file (JSON is YAML).
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 30, "only {} queries found in the dashboard", queries.len());
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(n, (_, expr))| serde_json::json!({"record": format!("dashboard:query_{n}:check"), "expr": grafana_to_promql(expr)}))
        .collect();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let file = scratch.path().join("dashboard.rules.json");
    std::fs::write(&file, serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string())
        .expect("writing the scratch rules");
    let (ok, checked) = try_promtool(&["check".as_ref(), "rules".as_ref(), file.as_os_str()]);
    let numbered: Vec<String> =
        queries.iter().enumerate().map(|(n, (place, expr))| format!("query_{n}: {place}: {expr}")).collect();
    assert!(
        ok && checked.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "promtool does not accept the dashboard's queries:\n{checked}\n{}",
        numbered.join("\n")
    );
}

/// The heart of it: real daemons, scraped; every name used must be one of theirs.
#[test]
fn every_metric_name_in_rules_dashboard_and_docs_is_exported() {
    let exported = scrape_running_daemons();

    // What the monitoring files use, with where.
    let rules = rules(&read(RULES));
    let recorded: BTreeSet<String> = rules.iter().filter(|r| r.kind == "record").map(|r| r.name.clone()).collect();
    let mut used: Vec<(String, String)> = Vec::new();
    for rule in &rules {
        let names = metric_names(&rule.expr).unwrap_or_else(|e| panic!("{RULES}: {}: {e}", rule.name));
        assert!(!names.is_empty(), "{RULES}: {}: no metric name read in {:?}", rule.name, rule.expr);
        used.extend(names.into_iter().map(|n| (format!("{RULES}: {}", rule.name), n)));
    }
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    for (place, expr) in dashboard_queries(&dashboard) {
        let names = metric_names(&expr).unwrap_or_else(|e| panic!("{DASHBOARD}: {place}: {e}"));
        assert!(!names.is_empty(), "{DASHBOARD}: {place}: no metric name read in {expr:?}");
        used.extend(names.into_iter().map(|n| (format!("{DASHBOARD}: {place}"), n)));
    }
    let distinct: BTreeSet<&str> = used.iter().map(|(_, n)| n.as_str()).collect();
    assert!(
        distinct.len() >= 25,
        "only {} metric names found in the rules and dashboard: {distinct:?}",
        distinct.len()
    );

    // `up` is Prometheus's own; recording rules are the rules file's.
    let unknown: Vec<String> = used
        .iter()
        .filter(|(_, name)| name != "up" && !recorded.contains(name) && !exported.samples.contains(name))
        .map(|(place, name)| format!("{place}: {name}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "metric names that neither daemon exports:\n  {}\nexported: {:?}",
        unknown.join("\n  "),
        exported.samples
    );

    // The runbook: every exported metric, every alert; and no name that does not exist.
    let docs = read(DOCS);
    let doc_words = words(&docs);
    let histograms: BTreeSet<&String> =
        exported.families.iter().filter(|(_, kind)| *kind == "histogram").map(|(name, _)| name).collect();
    let mut problems: Vec<String> = Vec::new();
    for name in exported.documented_names().into_iter().filter(|n| !doc_words.contains(n)) {
        problems.push(format!("exported but not listed: {name}"));
    }
    for rule in rules.iter().filter(|r| r.kind == "alert" && !doc_words.contains(&r.name)) {
        problems.push(format!("alert without a runbook entry: {}", rule.name));
    }
    for word in &doc_words {
        let metric = word.starts_with("axon_spoa_") || word.starts_with("axon_registrar_");
        if metric && !exported.samples.contains(word) && !histograms.contains(word) {
            problems.push(format!("names a metric that does not exist: {word}"));
        }
        let record = word.starts_with("axon_spoa:") || word.starts_with("axon_registrar:");
        if record && !recorded.contains(word) {
            problems.push(format!("names a recording rule that does not exist: {word}"));
        }
    }
    assert!(problems.is_empty(), "{DOCS}:\n  {}", problems.join("\n  "));
}

/// ZooKeeper, HAProxy from the shipped snippet, axon-spoa with its SPOE agent, a sample service
/// and a registrar that registers it; once the instance has reached HAProxy, and the agent has
/// ended one bad SPOE connection, both daemons' `/metrics`.
fn scrape_running_daemons() -> Exported {
    let zk = zk::shared();
    let base = zk::unique_path("monitoring");
    let web = Sample::start("web", "w1");
    let agent = SocketAddr::from(([127, 0, 0, 1], ports::free_port()));

    let dir = HaproxyDir::new();
    let config = haproxy::axon_config(
        &dir,
        ports::free_port(),
        &[Backend { name: "web", prefix: "web", slots: 2 }, Backend { name: "web-canary", prefix: "canary", slots: 2 }],
        Some(agent.port()),
    );
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let spoa_config = spoa_dir.header(zk, &haproxy, None)
        + "[routing]\nhost_suffixes = [\".example\"]\n\n"
        + &format!("[spoe]\nlisten = \"{agent}\"\n\n")
        + &format!("[[service]]\nname = \"web\"\nzk_path = \"{base}/web\"\nbackend = \"web\"\nslot_prefix = \"web\"\n")
        // A declared selector, for its own gauge (no instance matches it).
        + &format!(
            "[[service]]\nname = \"web-canary\"\nzk_path = \"{base}/web\"\nbackend = \"web-canary\"\nslot_prefix = \"canary\"\n\
             label_filters = [{{ label = \"canary\", value = \"true\" }}]\nselector_of = \"web\"\n"
        );
    let spoa = spoa_dir.start(&spoa_config);

    let registrar_dir = RegistrarDir::new();
    let registrar_config = registrar_dir.header(zk, "host1", "4s")
        + &format!(
            "[[service]]\nname = \"web\"\nhost = \"127.0.0.1\"\nport = {}\nzk_path = \"{base}/web\"\ncheck_interval = \"200ms\"\n\n\
             [[service.checks]]\ntype = \"http\"\nuri = \"/health\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1\n",
            web.port()
        );
    let registrar = registrar_dir.start(&registrar_config);

    wait::for_true("the registration", SECOND * 10, || registrar.metric("axon_registrar_registrations_total") >= 1.0);
    wait::for_true("web in HAProxy", SECOND * 10, || {
        spoa.metric("axon_spoa_instances{service=\"web\"}") == 1.0
            && spoa.metrics().contains("axon_spoa_selector_instances{service=\"web-canary\"} 0")
            && spoa.metric("axon_spoa_propagation_seconds_count") >= 1.0
    });
    // A frame longer than any the agent accepts: it ends the connection (status 3, counted).
    let mut stream = TcpStream::connect(agent).expect("connecting to the SPOE agent");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("a read timeout");
    stream.write_all(&[0xff, 0xff, 0xff, 0xff, 0x01]).expect("sending to the SPOE agent");
    let _ = stream.read_to_end(&mut Vec::new());
    wait::for_true("the bad SPOE connection counted", SECOND * 5, || {
        spoa.metric("axon_spoa_spoe_disconnects_total") >= 1.0
    });

    let mut exported = Exported::default();
    exported.add(&spoa.metrics());
    exported.add(&registrar.metrics());
    for prefix in ["axon_spoa_", "axon_registrar_"] {
        assert!(exported.samples.iter().any(|s| s.starts_with(prefix)), "no {prefix} metric scraped: {exported:?}");
    }
    exported
}

// The tokenizer, on the shapes of query the monitoring files use and a few they might.

fn names(expr: &str) -> Vec<String> {
    metric_names(expr).unwrap_or_else(|e| panic!("{e}")).into_iter().collect()
}

#[test]
fn metric_names_skip_functions_keywords_labels_and_strings() {
    assert_eq!(
        names(r#"histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{x="y", le!="+Inf"}[5m])))"#),
        ["a_bucket"]
    );
    assert_eq!(
        names("sum(rate(a_total[5m])) by (service) / sum without(type)(rate(b_total[5m:1m] offset 1h))"),
        ["a_total", "b_total"]
    );
    assert_eq!(names("a == 0 and on (instance) b > 0 or c unless ignoring(x) group_left(y) d"), ["a", "b", "c", "d"]);
    assert_eq!(names("count(x == 0) or vector(0)"), ["x"]);
    assert_eq!(names(r#"label_replace(up{job="a"}, "dst", "$1 inf", "src", "(.*)") > bool 1e3"#), ["up"]);
    assert_eq!(names("SUM BY (le) (rate(m[1h30m])) > Inf"), ["m"]);
    assert_eq!(names("rec:name:rate5m > 1 # a comment naming not_a_metric\n"), ["rec:name:rate5m"]);
    assert_eq!(names(r#"{__name__="named", job="x"}"#), ["named"]);
    assert!(metric_names(r#"{__name__=~"axon_.*"}"#).is_err());
    assert!(metric_names("a{b=\"c\"").is_err());
}

#[test]
fn grafana_variables_become_promql() {
    assert_eq!(
        grafana_to_promql(r#"rate(a{instance=~"$instance", x="${registrar}"}[$__rate_interval])"#),
        r#"rate(a{instance=~".*", x=".*"}[5m])"#
    );
    assert_eq!(
        variable_expr("label_values(axon_spoa_haproxy_up{job=\"x\"}, instance)").as_deref(),
        Some("axon_spoa_haproxy_up{job=\"x\"}")
    );
    assert_eq!(variable_expr("label_values(instance)"), None);
    assert_eq!(variable_expr("query_result(topk(3, a))").as_deref(), Some("topk(3, a)"));
}

#[test]
fn rules_are_read_with_their_block_expressions() {
    let yaml = "groups:\n  - name: g\n    rules:\n      - record: a:b:c\n        expr: |\n          sum(x)\n            /\n          sum(y)\n      - alert: A\n        expr: z > 0\n        labels:\n          severity: warning\n  - name: h\n    rules:\n      - alert: B\n        expr: >-\n          w\n        for: 1m\n      - alert: C\n        expr: 'v{a=''b''}'\n      - alert: D\n        expr: \"u{a=\\\"b\\\"}\"\n";
    let rules = rules(yaml);
    let read: Vec<(&str, &str, &str)> = rules.iter().map(|r| (r.kind, r.name.as_str(), r.expr.as_str())).collect();
    assert_eq!(
        read,
        [
            ("record", "a:b:c", "sum(x)\n/\nsum(y)"),
            ("alert", "A", "z > 0"),
            ("alert", "B", "w"),
            ("alert", "C", "v{a='b'}"),
            ("alert", "D", "u{a=\"b\"}")
        ]
    );
    assert!(rules[1].body.contains("severity: warning"));
    assert!(!rules[1].body.contains("name: h"));
}
