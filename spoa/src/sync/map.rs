//! The host map's side of the sync: what HAProxy's map should hold ([`crate::hostmap`]), what it
//! is known to hold, and its file. The sync's passes call it: `wanted` and `due` to decide,
//! `read` to read the map back (every full pass, and whenever what HAProxy holds is unknown),
//! `commands` for the differences, `settle` with HAProxy's replies.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tracing::{info, warn};

use crate::config::Config;
use crate::haproxy::command::Command;
use crate::haproxy::state::{MapError, parse_map};
use crate::hostmap::{self, Entries, HostMap};
use crate::metrics::Metrics;
use crate::model::Snapshot;

/// The host map as of the last pass that planned it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostMapStatus {
    pub file: String,
    /// Host → `<service>/<backend>`, as wanted.
    pub entries: BTreeMap<String, String>,
    /// Whether HAProxy holds exactly these entries.
    pub applied: bool,
    /// Why not, when it does not.
    pub problem: Option<String>,
}

pub struct MapSync {
    /// As HAProxy's configuration and the runtime API name it.
    name: String,
    hosts: HostMap,
    /// What HAProxy holds, as far as known (`None`: read it back before changing it).
    applied: Option<Entries>,
    /// What the file holds, as last written.
    written: Option<Entries>,
    /// What the map could not be made to hold (not in HAProxy's configuration, say): tried
    /// again in the next full pass, or when what it should hold changes.
    failed: Option<Entries>,
    /// Why, as last reported.
    problem: Option<String>,
}

impl MapSync {
    pub fn new(config: &Config) -> Option<MapSync> {
        let path = config.haproxy.host_map.as_ref()?;
        Some(MapSync {
            name: path.display().to_string(),
            hosts: HostMap::new(&crate::spoe::route::Routes::new(config)),
            applied: None,
            written: None,
            failed: None,
            problem: None,
        })
    }

    /// What the map should hold now: only services with a server ready in their backend (so
    /// a host never reaches a backend before its slots are ready, nor one HAProxy lacks).
    pub fn wanted(&self, snapshot: &Snapshot, serving: impl Fn(&str, &str) -> bool) -> Entries {
        self.hosts.wanted(snapshot, serving)
    }

    /// Whether a pass is owed: a full one, or what it should hold changed (and did not just
    /// fail).
    pub fn due(&self, wanted: &Entries, full: bool) -> bool {
        full || (self.applied.as_ref() != Some(wanted) && self.failed.as_ref() != Some(wanted))
    }

    /// The read a pass should do first: every full pass reads the map back (drift made by
    /// hand), and so does any pass while what HAProxy holds is unknown.
    pub fn read(&self, full: bool) -> Option<Command> {
        (full || self.applied.is_none()).then(|| Command::ShowMap { map: self.name.clone() })
    }

    /// The commands that make HAProxy's map `wanted`, from the map read back (`reply`) or, if
    /// none was read, from what it is known to hold.
    pub fn commands(&self, reply: Option<&str>, wanted: &Entries) -> Result<Vec<Command>, MapError> {
        let actual: Vec<(String, String)> = match reply {
            Some(reply) => parse_map(reply)?,
            None => self.applied.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        Ok(hostmap::plan(&self.name, &actual, wanted))
    }

    /// After the pass: HAProxy's replies to `commands` (or why they could not be planned),
    /// what is known now, the file; returns how many commands HAProxy refused.
    pub async fn settle(
        &mut self,
        commands: &[Command],
        replies: &[String],
        wanted: Entries,
        mut problem: Option<String>,
        full: bool,
        metrics: &Metrics,
    ) -> (usize, HostMapStatus) {
        let mut refusals = Vec::new();
        for (command, reply) in commands.iter().zip(replies) {
            if !command.accepted(reply) {
                warn!(command = %command, reply = %reply.trim(), "HAProxy refused a host map command");
                refusals.push(format!("{command}: {}", reply.trim()));
            }
        }
        if !commands.is_empty() {
            info!(commands = commands.len(), hosts = wanted.len(), "host map updated");
        }
        if problem.is_none() && !refusals.is_empty() {
            problem = Some(refusals.join("; "));
        }
        if let Some(problem) = &problem {
            // Logged once per problem, not at every full pass.
            if self.problem.as_ref() != Some(problem) {
                warn!(map = %self.name, %problem, "the host map cannot be kept; tried again at every full pass");
            }
            self.applied = None;
            self.failed = Some(wanted.clone());
        } else {
            if self.problem.is_some() {
                info!(map = %self.name, "the host map is kept again");
            }
            self.applied = Some(wanted.clone());
            self.failed = None;
        }
        self.problem = problem.clone();
        metrics.host_map_entries.set(i64::try_from(wanted.len()).unwrap_or(i64::MAX));
        metrics.host_map_applied.set(i64::from(problem.is_none()));
        // The file too: what a reload or restart starts with. A full pass also repairs it if
        // someone edited it.
        if full {
            self.written = None;
        }
        if self.written.as_ref() != Some(&wanted) {
            let text = hostmap::file_text(&wanted);
            let path = Path::new(&self.name);
            let same = tokio::fs::read_to_string(path).await.is_ok_and(|current| current == text);
            match if same { Ok(()) } else { super::write_atomically(path, text).await } {
                Ok(()) => self.written = Some(wanted.clone()),
                Err(err) => warn!(file = %self.name, %err, "cannot write the host map's file"),
            }
        }
        let status = HostMapStatus { file: self.name.clone(), applied: problem.is_none(), entries: wanted, problem };
        (refusals.len(), status)
    }
}
