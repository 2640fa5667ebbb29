//! What the registrar knows about its services and what it therefore wants in ZooKeeper.
//!
//! Owns each service's configuration, rise/fall health, maintenance flag and last results;
//! turns them into the set of registrations the publisher makes true. A configuration reload
//! is applied as a difference, without flaps: a change of timing, thresholds, record or path
//! keeps a service's health; changed checks start where the service stands (a healthy
//! instance stays registered until a new check has failed `fall` times); only another
//! endpoint is learnt from scratch. No I/O.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axon_record::{child_prefix, encoded_child_prefix};
use serde::Serialize;

use crate::check::Outcome;
use crate::config::Config;
use crate::health::{CheckState, ServiceHealth};
use crate::service::{Change, PathEncoding, ServiceConfig};

/// A znode the registrar wants to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub zk_path: String,
    /// The child name prefix: `<instance_id>_`, or Nerve's path encoding of the record.
    pub prefix: String,
    pub host: String,
    pub port: u16,
    /// The record's JSON.
    pub data: Vec<u8>,
}

/// One service's state.
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub config: ServiceConfig,
    pub health: ServiceHealth,
    pub maintenance: bool,
    /// The last outcome of each check, in configuration order.
    pub last: Vec<Option<Outcome>>,
    pub last_run: Option<SystemTime>,
}

impl ServiceState {
    fn new(config: ServiceConfig) -> ServiceState {
        let health = ServiceHealth::new(config.checks.iter().map(|c| (c.rise, c.fall)));
        let last = vec![None; config.checks.len()];
        ServiceState { config, health, maintenance: false, last, last_run: None }
    }

    /// Registered when healthy and not in maintenance.
    pub fn wants_registration(&self) -> bool {
        self.health.is_up() && !self.maintenance
    }

    pub fn phase(&self) -> Phase {
        match (self.maintenance, self.health.is_up()) {
            (true, _) => Phase::Maintenance,
            (false, true) => Phase::Up,
            (false, false) => Phase::Down,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Up,
    Down,
    Maintenance,
}

/// What a configuration reload changed, by service name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reload {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Another endpoint: health starts again from down.
    pub replaced: Vec<String>,
    /// Checks changed: new checks start where the service stands; runs in progress are stale.
    pub rechecked: Vec<String>,
    /// Only the record, path, timing or thresholds changed: health kept.
    pub updated: Vec<String>,
}

impl Reload {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.replaced.is_empty()
            && self.rechecked.is_empty()
            && self.updated.is_empty()
    }
}

/// All services of this registrar.
#[derive(Debug, Clone)]
pub struct State {
    instance_id: String,
    services: BTreeMap<String, ServiceState>,
}

impl State {
    pub fn new(config: &Config) -> State {
        let services = config.services.iter().map(|s| (s.name.clone(), ServiceState::new(s.clone()))).collect();
        State { instance_id: config.instance_id.clone(), services }
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceState> {
        self.services.values()
    }

    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        self.services.get(name)
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Applies a new configuration as a difference.
    pub fn reload(&mut self, config: &Config) -> Reload {
        let mut reload = Reload::default();
        self.instance_id.clone_from(&config.instance_id);
        let wanted: BTreeMap<&str, &ServiceConfig> = config.services.iter().map(|s| (s.name.as_str(), s)).collect();
        self.services.retain(|name, _| {
            let keep = wanted.contains_key(name.as_str());
            if !keep {
                reload.removed.push(name.clone());
            }
            keep
        });
        for (name, new) in wanted {
            let Some(old) = self.services.get_mut(name) else {
                reload.added.push(name.to_owned());
                self.services.insert(name.to_owned(), ServiceState::new(new.clone()));
                continue;
            };
            match old.config.change_to(new) {
                Change::None => {}
                Change::Endpoint => {
                    reload.replaced.push(name.to_owned());
                    *old = ServiceState::new(new.clone());
                }
                change @ (Change::Checks | Change::Settings) => {
                    let same = |i: usize| old.config.checks.get(i).is_some_and(|c| c.kind == new.checks[i].kind);
                    let checks = new.checks.iter().enumerate().map(|(i, c)| (c.rise, c.fall, same(i)));
                    old.health = old.health.carried(checks);
                    if change == Change::Checks {
                        reload.rechecked.push(name.to_owned());
                        old.last = vec![None; new.checks.len()];
                    } else {
                        reload.updated.push(name.to_owned());
                    }
                    old.config = new.clone();
                }
            }
        }
        reload
    }

    /// Records one run of a service's checks; returns the service's phase before and after.
    pub fn record(
        &mut self,
        service: &str,
        maintenance: bool,
        outcomes: Vec<Outcome>,
        at: SystemTime,
    ) -> Option<(Phase, Phase)> {
        let state = self.services.get_mut(service)?;
        let before = state.phase();
        state.maintenance = maintenance;
        state.health.record(outcomes.iter().map(|o| o.passed));
        for (slot, outcome) in state.last.iter_mut().zip(outcomes) {
            *slot = Some(outcome);
        }
        state.last_run = Some(at);
        Some((before, state.phase()))
    }

    /// The znodes that should exist, by service name.
    pub fn registrations(&self) -> BTreeMap<String, Registration> {
        self.services
            .values()
            .filter(|s| s.wants_registration())
            .map(|s| {
                let data = s.config.record(&self.instance_id).to_json();
                let prefix = match s.config.path_encoding {
                    PathEncoding::Base64 => encoded_child_prefix(&data),
                    PathEncoding::None => None,
                }
                .unwrap_or_else(|| child_prefix(&self.instance_id));
                let registration = Registration {
                    zk_path: s.config.zk_path.clone(),
                    prefix,
                    host: s.config.host.clone(),
                    port: s.config.port,
                    data,
                };
                (s.config.name.clone(), registration)
            })
            .collect()
    }
}

/// How a check's state is shown in the status document.
pub fn check_state_name(state: CheckState) -> (&'static str, u32) {
    match state {
        CheckState::Up { failures } => ("up", failures),
        CheckState::Down { passes } => ("down", passes),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    const CONFIG: &str = r#"
instance_id = "host1"
[zookeeper]
connect = "127.0.0.1:2181"
[[service]]
name = "web"
host = "127.0.0.1"
port = 8080
zk_path = "/services/web"
[[service.checks]]
type = "tcp"
rise = 2
fall = 2
[[service]]
name = "db"
host = "127.0.0.1"
port = 5432
zk_path = "/services/db"
[[service.checks]]
type = "tcp"
rise = 1
fall = 1
"#;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("t.toml"), text).unwrap()
    }

    fn outcome(passed: bool) -> Outcome {
        Outcome { passed, detail: "".into(), elapsed: Duration::ZERO }
    }

    fn run(state: &mut State, service: &str, passed: bool) -> Option<(Phase, Phase)> {
        state.record(service, false, vec![outcome(passed)], SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn registers_after_rise_and_deregisters_after_fall() {
        let mut state = State::new(&config(CONFIG));
        assert!(state.registrations().is_empty());
        assert_eq!(run(&mut state, "web", true), Some((Phase::Down, Phase::Down)));
        assert_eq!(run(&mut state, "web", true), Some((Phase::Down, Phase::Up)));
        let regs = state.registrations();
        assert_eq!(regs.keys().collect::<Vec<_>>(), ["web"]);
        assert_eq!(regs["web"].prefix, "host1_");
        assert_eq!(regs["web"].data, br#"{"host":"127.0.0.1","port":8080,"name":"host1"}"#);
        run(&mut state, "web", false);
        assert_eq!(state.registrations().len(), 1);
        assert_eq!(run(&mut state, "web", false), Some((Phase::Up, Phase::Down)));
        assert!(state.registrations().is_empty());
        assert_eq!(run(&mut state, "nope", true), None);
    }

    #[test]
    fn maintenance_withholds_registration_but_keeps_health() {
        let mut state = State::new(&config(CONFIG));
        run(&mut state, "db", true);
        assert_eq!(
            state.record("db", true, vec![outcome(true)], SystemTime::UNIX_EPOCH),
            Some((Phase::Up, Phase::Maintenance))
        );
        assert!(state.registrations().is_empty());
        // Back from maintenance: registered at once, no new rise needed.
        assert_eq!(run(&mut state, "db", true), Some((Phase::Maintenance, Phase::Up)));
        assert!(state.registrations().contains_key("db"));
    }

    #[test]
    fn reload_applies_only_the_difference() {
        let mut state = State::new(&config(CONFIG));
        run(&mut state, "db", true);
        run(&mut state, "web", true);
        run(&mut state, "web", true);
        let before = state.registrations();

        // db: a new weight; web: a new path and a new check timeout and fall; cache: added.
        let text = CONFIG
            .replace("port = 5432", "port = 5432\nweight = 5")
            .replace("zk_path = \"/services/web\"", "zk_path = \"/services/web2\"")
            .replacen("fall = 2", "fall = 3\ntimeout = \"250ms\"", 1)
            + "[[service]]\nname = \"cache\"\nhost = \"127.0.0.1\"\nport = 11211\nzk_path = \"/c\"\n[[service.checks]]\ntype = \"tcp\"\n";
        let reload = state.reload(&config(&text));
        assert_eq!(
            reload,
            Reload { added: vec!["cache".into()], updated: vec!["db".into(), "web".into()], ..Reload::default() }
        );
        let after = state.registrations();
        // Both kept their health: db with the new weight, web at its new path.
        assert_eq!(after.keys().collect::<Vec<_>>(), ["db", "web"]);
        assert_eq!(after["db"].data, br#"{"host":"127.0.0.1","port":5432,"name":"host1","weight":5}"#);
        assert_ne!(before["db"].data, after["db"].data);
        assert_eq!(after["web"].zk_path, "/services/web2");

        let reload = state.reload(&config(&text));
        assert!(reload.is_empty());
        // Another port: web is another instance, learnt from scratch; an added check: db stays.
        let text2 = text.replace("port = 8080", "port = 8081")
            + "[[service]]\nname = \"x\"\nhost = \"127.0.0.1\"\nport = 1\nzk_path = \"/x\"\n[[service.checks]]\ntype = \"tcp\"\n";
        let text2 = text2.replacen(
            "rise = 1\nfall = 1",
            "rise = 1\nfall = 1\n[[service.checks]]\ntype = \"tcp\"\nport = 5433",
            1,
        );
        let reload = state.reload(&config(&text2));
        assert_eq!(reload.replaced, ["web"]);
        assert_eq!(reload.rechecked, ["db"]);
        assert_eq!(state.registrations().keys().collect::<Vec<_>>(), ["db"]);
        let reload = state.reload(&config(CONFIG));
        assert_eq!(reload.removed, ["cache", "x"]);
    }

    #[test]
    fn path_encoding_names_the_child_after_the_record() {
        let text =
            CONFIG.replacen("zk_path = \"/services/db\"", "zk_path = \"/services/db\"\npath_encoding = \"base64\"", 1);
        let mut state = State::new(&config(&text));
        run(&mut state, "db", true);
        let db = &state.registrations()["db"];
        let name = axon_record::sequential_name(&db.prefix, 1);
        assert_eq!(
            axon_record::ChildName::parse(&name).unwrap(),
            axon_record::ChildName::Encoded { json: db.data.clone(), sequence: Some(1) }
        );
    }
}
