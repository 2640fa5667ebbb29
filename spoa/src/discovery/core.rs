//! The discovery core: what axon-spoa knows of each watched path in ZooKeeper, and the reads
//! it still owes. Watch events, read results (each kind of failure included) and session
//! transitions go in; the reads to issue and, per path, what was found come out. No I/O; time
//! is passed in.
//!
//! Rules:
//! 1. **Nothing is dropped because it arrived at the wrong moment.** A read is owed until it
//!    succeeds or ZooKeeper answers definitively (no node, no access). A read that fails
//!    otherwise (connection reset, no answer: the outcome is unknown) stays owed and is
//!    issued again once connected, after a short backoff. An event about something whose read
//!    is in flight makes it owed again once that read returns, since the answer may predate
//!    the change.
//! 2. **One watch per path.** With ZooKeeper 3.6 and later, one persistent recursive watch per
//!    distinct service path (`addWatch`): a created, deleted or changed child is one event and
//!    at most one read; nothing is re-listed per event. A server that refuses `addWatch` (3.5
//!    and older) switches the core, once, to one-shot watches: a children watch per path and
//!    a data watch per child, re-armed by the read that follows each event. The two kinds are
//!    never mixed on one path (ZooKeeper 3.8 keeps one mode per connection and path).
//! 3. **Reconnections and new sessions.** Any reconnection re-adds the persistent watches
//!    (zookeeper-client 0.11.2 does not restore them, and ZooKeeper does not replay events of
//!    the disconnection) and re-reads every path and every child's data (not the data of a
//!    child whose name carries its record: rule 6); one-shot watches are restored by
//!    ZooKeeper, so only the paths are listed again. A new session (after an expiry) owes
//!    everything. The re-read starts after a jitter (so a fleet whose sessions all
//!    ended together does not read at once) and keeps at most `max_in_flight` reads in flight,
//!    a listing counting as [`LISTING_COST`] of them; meanwhile the last published state serves.
//! 4. **A fault stays where it is.** A child whose data cannot be read (its ACL denies it) is a
//!    problem of that child; a path that cannot be listed keeps its previous state and reports
//!    it; both are read again later. Every other path goes on.
//! 5. **Consistency per path.** A path's state is given out only when it is settled: listed,
//!    and every child read, since the last change; until then the previous one stands.
//! 6. Records carried in the child's name (Nerve's path encoding) need no data read and no
//!    data watch, ever: a re-read of such a path is its listing. (A name whose record does not
//!    decode is read from its data, as Synapse does.)
//! 7. **Work in proportion to change.** Each path indexes the children that owe a read or a
//!    recheck; [`Core::reads`], [`Core::next_wake`] and [`Core::quiet`] look at those only.
//!
//! Lifecycle of the link: `Down` → `Up` (connected) ⇄ `Down` (disconnected); an expiry drops
//! the session, and the next `Up` is a new session.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axon_record::Record;

use super::policy;

/// How watches are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One persistent recursive watch per path.
    Persistent,
    /// One-shot watches, re-armed by reads (servers without `addWatch`).
    Oneshot,
}

/// A read the shell should issue. `path` indexes [`Core::paths`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Read {
    /// Add the persistent recursive watch on the path (persistent mode), on connection `link`
    /// (see [`Core::link`]): a watch added on an earlier connection is gone with it.
    Watch { path: usize, link: u64 },
    /// List the path's children. With `watch` (one-shot mode), arm a children watch; when the
    /// path is missing, an existence watch instead.
    List { path: usize, watch: bool },
    /// Read one child's data; with `watch` (one-shot mode), arm its data watch. `generation`
    /// names the child's incarnation (see [`Core::done`]).
    Data { path: usize, child: Arc<str>, watch: bool, generation: u64 },
}

/// What a listing counts for against `max_in_flight`. Its answer carries every child's name
/// (with path encoding, every record: kilobytes where a data read's answer is a record), and a
/// connection's answers come in order, so many listings in flight put all that ahead of the
/// session's own pings. Measured with 1,000 sessions re-reading at once on a starved host
/// (docs/benchmarks.md, herd control): with up to 64 listings in flight per session the client
/// dropped 262 sessions' connections as silent; with `max_reads_in_flight = 8`, none; with 64
/// and a listing counting as 8, 4.
pub const LISTING_COST: usize = 8;

impl Read {
    fn path(&self) -> usize {
        match self {
            Read::Watch { path, .. } | Read::List { path, .. } | Read::Data { path, .. } => *path,
        }
    }

    /// What the read counts for against `max_in_flight`.
    fn cost(&self) -> usize {
        match self {
            Read::List { .. } => LISTING_COST,
            Read::Watch { .. } | Read::Data { .. } => 1,
        }
    }
}

/// Why a read did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The node does not exist: definitive.
    NoNode,
    /// ZooKeeper denies the read (an ACL): definitive for now, read again later.
    NoAuth,
    /// The server does not know the operation (`addWatch` before ZooKeeper 3.6).
    Unimplemented,
    /// The outcome is unknown (the connection failed, no answer in time, the session is being
    /// replaced): read again.
    Lost(String),
}

/// What a read gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The watch is added.
    Watching,
    /// The path's children.
    Listed(Vec<String>),
    /// One-shot mode: the path is missing (an existence watch is armed) — or it appeared
    /// between the listing and the existence check (`appeared`), and must be listed again.
    Missing {
        appeared: bool,
    },
    /// A child's data.
    Data(Vec<u8>),
    Failed(Failure),
}

/// A watch event, as the shell receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Persistent mode: a node at or under a watched path was created.
    Created(String),
    /// Persistent mode: a node at or under a watched path was deleted.
    Deleted(String),
    /// Persistent mode: a node's data changed.
    DataChanged(String),
    /// One-shot mode: the children (or existence) watch of a path fired.
    ChildrenChanged { path: usize },
    /// One-shot mode: a child's data watch fired (its data changed, or it was deleted).
    ChildChanged { path: usize, child: Arc<str> },
}

/// The limits the core keeps to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many reads in flight, a listing counting as [`LISTING_COST`] (one read is
    /// always let through: a limit under a listing's cost still lists, one path at a time).
    pub max_in_flight: usize,
    /// A re-read after a reconnection or a new session starts within this, at random.
    pub jitter: Duration,
    /// How long after a definitive refusal (no access) a path or child is read again.
    pub recheck: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_in_flight: crate::config::DEFAULT_MAX_READS_IN_FLIGHT,
            jitter: crate::config::DEFAULT_REREAD_JITTER,
            recheck: Duration::from_secs(30),
        }
    }
}

/// Whether a read is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Due {
    #[default]
    No,
    /// To issue, not before `at` (if any).
    Owed { at: Option<Instant> },
    /// Issued; `again` when something happened since that the answer may predate.
    InFlight { again: bool },
}

impl Due {
    fn owe(&mut self) {
        match self {
            Due::No => *self = Due::Owed { at: None },
            Due::Owed { .. } => {}
            Due::InFlight { again } => *again = true,
        }
    }

    fn pending(self) -> bool {
        self != Due::No
    }
}

/// One child of a path.
#[derive(Debug, Clone, Default)]
struct ChildState {
    /// The record, or why it cannot be used; `None` until first read.
    record: Option<Shared>,
    due: Due,
    /// One-shot mode: a data watch is armed.
    armed: bool,
    /// Failed reads in a row, for the backoff.
    failures: u32,
    /// A refused read is tried again at this time.
    recheck_at: Option<Instant>,
    /// The record came from the name: it never needs a data read.
    from_name: bool,
    /// Which incarnation of the name this is: a child deleted and created again is another
    /// child, and an answer to a read of the one before counts for neither.
    generation: u64,
}

impl ChildState {
    /// Whether it owes a read (due, or in flight) or a recheck: what the path's index holds.
    fn owes(&self) -> bool {
        self.due.pending() || self.recheck_at.is_some()
    }
}

/// What is known of one watched path.
#[derive(Debug, Clone)]
struct PathState {
    path: String,
    /// Persistent mode: the watch is added (or being added).
    watching: Due,
    watch_active: bool,
    /// One-shot mode: a children or existence watch is armed.
    armed: bool,
    exists: bool,
    children: BTreeMap<Arc<str>, ChildState>,
    /// The children that may owe a read or a recheck: every one that does, and some that no
    /// longer do or are gone (dropped when [`Core::reads`] next goes through the path). Each
    /// turn looks at these, not at every child.
    owing: BTreeSet<Arc<str>>,
    list: Due,
    list_failures: u32,
    /// Why the path cannot be read now, if it cannot.
    problem: Option<String>,
    recheck_at: Option<Instant>,
    /// Something its view is made of may have changed since [`Core::changed_views`].
    changed: bool,
    /// Children created so far (each one's [`ChildState::generation`]).
    generations: u64,
}

impl PathState {
    /// The child `name` (added if new) owes a read of its data — unless its name carries its
    /// record.
    fn owe_child(&mut self, name: &str) {
        if !self.children.contains_key(name) {
            self.generations += 1;
            self.children.insert(Arc::from(name), ChildState { generation: self.generations, ..ChildState::default() });
        }
        self.owe_existing(name, |_| {});
    }

    /// The child `name`, if it is there, owes a read of its data (unless its name carries its
    /// record), after `prepare`; the index knows it.
    fn owe_existing(&mut self, name: &str, prepare: impl FnOnce(&mut ChildState)) {
        let Some(key) = self.children.get_key_value(name).map(|(key, _)| key.clone()) else { return };
        if let Some(child) = self.children.get_mut(&key) {
            prepare(child);
            owe_data(&key, child);
            index_if_owing(&mut self.owing, &key, child);
        }
    }

    /// The path has no children (any more).
    fn forget_children(&mut self) {
        self.children.clear();
        self.owing.clear();
    }

    /// Every child owes a read of its data again (a re-read); `unarm`: its one-shot watch is
    /// gone too.
    fn owe_every_child(&mut self, unarm: bool) {
        for (name, child) in &mut self.children {
            child.armed &= !unarm;
            child.failures = 0;
            owe_data(name, child);
            index_if_owing(&mut self.owing, name, child);
        }
    }

    /// The children of [`PathState::owing`] that are still there.
    fn owing_children(&self) -> impl Iterator<Item = &ChildState> {
        self.owing.iter().filter_map(|name| self.children.get(name))
    }

    /// Listed, every child's record read, and no problem: what it holds can be reported.
    fn settled(&self) -> bool {
        !self.list.pending()
            && self.children.values().all(|c| !c.due.pending() && c.record.is_some())
            && self.problem.is_none()
    }

    fn view(&self) -> PathView {
        let found = self.settled().then(|| {
            if self.exists {
                Found::Children(
                    self.children.iter().filter_map(|(name, c)| c.record.clone().map(|r| (name.clone(), r))).collect(),
                )
            } else {
                Found::Missing
            }
        });
        PathView { found, problem: self.problem.clone() }
    }
}

/// A child's record, or why it cannot be used: shared by the core and every view it gave out
/// (a view copies no record).
pub type Shared = Arc<Result<Record, String>>;

/// What a path holds, as of its last settled read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The path does not exist.
    Missing,
    /// Its children in name order: name, and record or why it cannot be used. (A list, not a
    /// map: made and compared once per change, looked up by no one.)
    Children(Vec<(Arc<str>, Shared)>),
}

/// A path's state for its services: what was found, and what stops it being read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathView {
    /// `None` until the path was first settled (the previous view stands).
    pub found: Option<Found>,
    /// Why the path is not being read, if it is not (its previous state stands).
    pub problem: Option<String>,
}

/// The discovery core.
#[derive(Debug, Clone)]
pub struct Core {
    paths: Vec<PathState>,
    mode: Mode,
    limits: Limits,
    up: bool,
    session: Option<i64>,
    /// Reads wait until then after a reconnection or a new session (the jitter).
    not_before: Option<Instant>,
    in_flight: usize,
    /// What the reads in flight count for against the limit (see [`Read::cost`]).
    load: usize,
    /// Set when the server refused `addWatch`: the shell logs it once.
    fell_back: bool,
    /// Connections so far: a watch's answer from an earlier one is stale.
    link: u64,
}

/// The backoff after a failed read with an unknown outcome: 50 ms doubling to 2 s.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(50).saturating_mul(1u32 << failures.min(6)).min(Duration::from_secs(2))
}

impl Core {
    /// A core for `paths` (distinct ZooKeeper paths), not connected yet.
    pub fn new(paths: &[String], mode: Mode, limits: Limits) -> Core {
        let paths = paths
            .iter()
            .map(|path| PathState {
                path: path.clone(),
                watching: Due::No,
                watch_active: false,
                armed: false,
                exists: false,
                children: BTreeMap::new(),
                owing: BTreeSet::new(),
                list: Due::No,
                list_failures: 0,
                problem: None,
                recheck_at: None,
                changed: true,
                generations: 0,
            })
            .collect();
        Core {
            paths,
            mode,
            limits,
            up: false,
            session: None,
            not_before: None,
            in_flight: 0,
            load: 0,
            fell_back: false,
            link: 0,
        }
    }

    /// The current connection's number: a [`Read::Watch`] of another one is stale.
    pub fn link(&self) -> u64 {
        self.link
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The watched paths, in order (a [`Read`]'s `path` indexes this).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(|p| p.path.as_str())
    }

    /// Whether the server refused `addWatch` since the last call (to log it once).
    pub fn take_fell_back(&mut self) -> bool {
        std::mem::take(&mut self.fell_back)
    }

    /// Connected, in session `session`. `draw` in `[0, 1)` places the re-read in the jitter.
    pub fn connected(&mut self, session: i64, now: Instant, draw: f64) {
        let new_session = self.session != Some(session);
        self.link += 1;
        self.session = Some(session);
        self.up = true;
        self.not_before = Some(now + self.limits.jitter.mul_f64(draw.clamp(0.0, 1.0)));
        let mode = self.mode;
        for path in &mut self.paths {
            path.changed = true;
            path.list.owe();
            path.list_failures = 0;
            match mode {
                // No persistent watch survives a reconnection (see rule 3), and no event of
                // the disconnection is replayed: every child is read again.
                Mode::Persistent => {
                    path.watch_active = false;
                    path.watching = Due::No;
                    path.watching.owe();
                    path.owe_every_child(false);
                }
                // One-shot watches survive a reconnection (ZooKeeper fires those whose node
                // changed meanwhile), not a new session. The paths are listed again with their
                // watch armed anyway: a second watch costs nothing, a missing one everything.
                Mode::Oneshot => {
                    path.armed = false;
                    if new_session {
                        path.owe_every_child(true);
                    }
                }
            }
        }
    }

    /// The connection is lost; the session may come back. In-flight reads will fail.
    pub fn disconnected(&mut self) {
        self.up = false;
    }

    /// The session ended: every watch is gone, and the reads in flight with it (the shell
    /// drops them); the next [`Core::connected`] is a new session.
    pub fn expired(&mut self) {
        self.up = false;
        self.session = None;
        self.in_flight = 0;
        self.load = 0;
        let unsent = |due: &mut Due| {
            if let Due::InFlight { .. } = due {
                *due = Due::Owed { at: None };
            }
        };
        for path in &mut self.paths {
            path.changed = true;
            path.watch_active = false;
            path.armed = false;
            unsent(&mut path.watching);
            unsent(&mut path.list);
            for child in path.children.values_mut() {
                child.armed = false;
                unsent(&mut child.due);
            }
        }
    }

    /// A watch event.
    pub fn event(&mut self, event: Event) {
        match event {
            Event::Created(node) | Event::Deleted(node) | Event::DataChanged(node) if self.mode == Mode::Oneshot => {
                // A persistent watch's event arriving after the switch: it changes nothing.
                let _ = node;
            }
            Event::Created(node) => self.for_node(&node, |path, child| match child {
                None => {
                    path.exists = true;
                    path.list.owe();
                }
                Some(name) => {
                    path.exists = true;
                    path.owe_child(name);
                    relist_if_listing(path);
                }
            }),
            Event::Deleted(node) => self.for_node(&node, |path, child| match child {
                None => {
                    path.exists = false;
                    path.forget_children();
                    // Listed again: it may have come back meanwhile (and then a creation
                    // event follows anyway).
                    path.list.owe();
                }
                Some(name) => {
                    path.children.remove(name);
                    relist_if_listing(path);
                }
            }),
            Event::DataChanged(node) => self.for_node(&node, |path, child| {
                if let Some(name) = child {
                    path.owe_existing(name, |_| {});
                }
            }),
            Event::ChildrenChanged { path } => {
                if let Some(state) = self.paths.get_mut(path) {
                    state.changed = true;
                    state.armed = false;
                    state.list.owe();
                }
            }
            Event::ChildChanged { path, child } => {
                if let Some(path) = self.paths.get_mut(path) {
                    path.changed = true;
                    path.owe_existing(&child, |state| state.armed = false);
                }
            }
        }
    }

    /// Calls `f` for every watched path that `node` is, or is a direct child of.
    fn for_node(&mut self, node: &str, mut f: impl FnMut(&mut PathState, Option<&str>)) {
        for path in &mut self.paths {
            if node == path.path {
                path.changed = true;
                f(path, None);
            } else if let Some(rest) = node.strip_prefix(path.path.as_str())
                && let Some(name) = rest.strip_prefix('/').or(if path.path.ends_with('/') { Some(rest) } else { None })
                && !name.is_empty()
                && !name.contains('/')
            {
                path.changed = true;
                f(path, Some(name));
            }
        }
    }

    /// The reads to issue now (marked in flight), up to the in-flight limit. Nothing while
    /// disconnected or within the re-read's jitter.
    pub fn reads(&mut self, now: Instant) -> Vec<Read> {
        let mut out = Vec::new();
        if !self.up || self.not_before.is_some_and(|at| at > now) {
            return out;
        }
        let ready = |due: Due| matches!(due, Due::Owed { at } if at.is_none_or(|at| at <= now));
        let (mode, max) = (self.mode, self.limits.max_in_flight);
        // Rechecks whose time came become owed.
        for path in &mut self.paths {
            if path.recheck_at.is_some_and(|at| at <= now) {
                path.recheck_at = None;
                path.list.owe();
                path.changed = true;
            }
            for name in &path.owing {
                if let Some(child) = path.children.get_mut(name)
                    && child.recheck_at.is_some_and(|at| at <= now)
                {
                    child.recheck_at = None;
                    child.due.owe();
                    path.changed = true;
                }
            }
        }
        // One read is always let through, whatever it costs: a limit under a listing's cost
        // lists one path at a time rather than never.
        let fits = |load: usize, cost: usize| load == 0 || load + cost <= max;
        // A listing waiting for room goes before data reads: they would take every slot an
        // answer frees, one at a time, and it would wait for all of them.
        let mut listing_waits = false;
        // Watches first, then listings, then data.
        for pass in 0..3 {
            for (i, path) in self.paths.iter_mut().enumerate() {
                if !fits(self.load, 1) {
                    return out;
                }
                let read = match pass {
                    0 if mode == Mode::Persistent && ready(path.watching) => {
                        path.watching = Due::InFlight { again: false };
                        Read::Watch { path: i, link: self.link }
                    }
                    // In persistent mode a path is listed once its watch is there, so nothing
                    // happens between the listing and the watch unseen.
                    1 if ready(path.list) && (mode == Mode::Oneshot || path.watch_active) => {
                        if !fits(self.load, LISTING_COST) {
                            listing_waits = true;
                            continue;
                        }
                        path.list = Due::InFlight { again: false };
                        Read::List { path: i, watch: mode == Mode::Oneshot && !path.armed }
                    }
                    2 if listing_waits => return out,
                    // Children too wait for the persistent watch: a change between a read
                    // and the watch would go unseen.
                    2 if mode == Mode::Oneshot || path.watch_active => {
                        let PathState { owing, children, .. } = path;
                        let (in_flight, load) = (&mut self.in_flight, &mut self.load);
                        owing.retain(|name| {
                            let Some(child) = children.get_mut(name) else { return false };
                            if fits(*load, 1) && ready(child.due) {
                                child.due = Due::InFlight { again: false };
                                let watch = mode == Mode::Oneshot && !child.armed;
                                let generation = child.generation;
                                out.push(Read::Data { path: i, child: name.clone(), watch, generation });
                                *in_flight += 1;
                                *load += 1;
                            }
                            child.owes()
                        });
                        continue;
                    }
                    _ => continue,
                };
                self.in_flight += 1;
                self.load += read.cost();
                out.push(read);
            }
        }
        out
    }

    /// The next time a read becomes due that is not due now — never a time in the past, and
    /// nothing while disconnected: the loop waits for an event then, never spins.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        if !self.up {
            return None;
        }
        if let Some(at) = self.not_before.filter(|at| *at > now) {
            return Some(at);
        }
        let owed_at = |due: Due| match due {
            Due::Owed { at: Some(at) } if at > now => Some(at),
            _ => None,
        };
        self.paths
            .iter()
            .flat_map(|p| {
                [owed_at(p.list), owed_at(p.watching), p.recheck_at]
                    .into_iter()
                    .chain(p.owing_children().flat_map(|c| [owed_at(c.due), c.recheck_at]))
            })
            .flatten()
            .filter(|at| *at > now)
            .min()
    }

    /// A read's result.
    pub fn done(&mut self, read: Read, outcome: Outcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.load = self.load.saturating_sub(read.cost());
        // A watch added on an earlier connection went with it (rule 3), and the path's watch is
        // owed again on this one: its answer, whatever it is, changes nothing. (It can reach the
        // core after the reconnection: replies and link changes come by different ways.)
        if let Read::Watch { link, .. } = read
            && link != self.link
            && outcome != Outcome::Failed(Failure::Unimplemented)
        {
            return;
        }
        let recheck = self.limits.recheck;
        let Some(path) = self.paths.get_mut(read.path()) else { return };
        path.changed = true;
        match (read, outcome) {
            (Read::Watch { .. }, Outcome::Watching) => {
                path.watching = Due::No;
                path.watch_active = true;
            }
            (Read::Watch { .. }, Outcome::Failed(Failure::Unimplemented)) => {
                // The server has no persistent watches: one-shot watches everywhere, once.
                if self.mode == Mode::Persistent {
                    self.mode = Mode::Oneshot;
                    self.fell_back = true;
                    for path in &mut self.paths {
                        path.changed = true;
                        path.watching = Due::No;
                        path.armed = false;
                        path.list.owe();
                        path.owe_every_child(true);
                    }
                }
            }
            (Read::Watch { .. }, Outcome::Failed(Failure::NoAuth)) => {
                path.problem = Some("ZooKeeper refuses a watch on the path (ACL): its previous state stands".into());
                path.watching = Due::Owed { at: Some(now + recheck) };
            }
            (Read::Watch { .. }, Outcome::Failed(_)) => {
                path.list_failures = path.list_failures.saturating_add(1);
                path.watching = Due::Owed { at: Some(now + retry_delay(path.list_failures)) };
            }
            (Read::List { watch, .. }, Outcome::Listed(children)) => {
                // A watch this listing armed may be the one whose event came in meanwhile
                // (events and replies reach the loop by different ways): armed only if not.
                path.armed = (path.armed || watch) && !was_again(path.list);
                path.exists = true;
                path.problem = None;
                path.list_failures = 0;
                let listed: BTreeSet<&str> = children.iter().map(String::as_str).collect();
                path.children.retain(|name, _| listed.contains(&**name));
                for name in &children {
                    if !path.children.contains_key(name.as_str()) {
                        path.owe_child(name);
                    }
                }
                path.list = finish(path.list);
            }
            (Read::List { watch, .. }, Outcome::Missing { appeared }) => {
                path.armed = (path.armed || watch) && !was_again(path.list);
                path.exists = false;
                path.problem = None;
                path.forget_children();
                path.list = finish(path.list);
                if appeared {
                    path.armed = false;
                    path.list.owe();
                }
            }
            (Read::List { .. }, Outcome::Failed(Failure::NoNode)) => {
                path.exists = false;
                path.problem = None;
                path.forget_children();
                path.list = finish(path.list);
            }
            (Read::List { .. }, Outcome::Failed(Failure::NoAuth)) => {
                path.problem = Some("ZooKeeper refuses to list the path (ACL): its previous state stands".into());
                path.list = Due::No;
                path.recheck_at = Some(now + recheck);
            }
            (Read::List { .. }, Outcome::Failed(_)) => {
                path.list_failures = path.list_failures.saturating_add(1);
                path.list = Due::Owed { at: Some(now + retry_delay(path.list_failures)) };
            }
            (Read::Data { child, watch, generation, .. }, outcome) => {
                let Some(state) = path.children.get_mut(&*child) else { return };
                if state.generation != generation {
                    // The child was deleted and created again since: this answer is about the
                    // one before, and the new one's own read is on its way.
                    return;
                }
                match outcome {
                    Outcome::Data(data) => {
                        state.armed = (state.armed || watch) && !was_again(state.due);
                        state.failures = 0;
                        state.recheck_at = None;
                        state.record = Some(Arc::new(policy::record_of(&child, Some(&data))));
                        state.due = finish(state.due);
                    }
                    Outcome::Failed(Failure::NoNode) => {
                        // Gone: its deletion event (or the next listing) removes it too.
                        path.children.remove(&*child);
                    }
                    Outcome::Failed(Failure::NoAuth) => {
                        state.record = Some(Arc::new(Err("ZooKeeper refuses to read it (ACL)".into())));
                        state.due = Due::No;
                        state.recheck_at = Some(now + recheck);
                    }
                    Outcome::Failed(_) | Outcome::Watching | Outcome::Listed(_) | Outcome::Missing { .. } => {
                        state.failures = state.failures.saturating_add(1);
                        state.due = Due::Owed { at: Some(now + retry_delay(state.failures)) };
                    }
                }
                // Whatever it owes now, the index knows: it has been there since the read left
                // (a child in flight owes).
            }
            (Read::Watch { .. } | Read::List { .. }, _) => {
                // An answer of the wrong kind: read again.
                path.list.owe();
            }
        }
    }

    /// Every path's state for its services, settled or not (see rule 5).
    pub fn views(&self) -> Vec<PathView> {
        self.paths.iter().map(PathState::view).collect()
    }

    /// The views of the paths that may have changed since the last call (every path at the
    /// first), by index: what [`Core::views`] gives, without copying the paths nothing touched.
    pub fn changed_views(&mut self) -> Vec<(usize, PathView)> {
        self.paths
            .iter_mut()
            .enumerate()
            .filter_map(|(i, path)| std::mem::take(&mut path.changed).then(|| (i, path.view())))
            .collect()
    }

    /// Reads in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether every path is settled and nothing is owed (for tests and the status).
    pub fn quiet(&self) -> bool {
        self.in_flight == 0
            && self.paths.iter().all(|p| {
                !p.list.pending()
                    && (self.mode == Mode::Oneshot || !p.watching.pending())
                    && p.owing_children().all(|c| !c.due.pending())
            })
    }

    /// Checks the owed-reads index: every child that owes a read or a recheck is in it.
    #[cfg(test)]
    fn check_index(&self) {
        for path in &self.paths {
            for (name, child) in &path.children {
                if child.owes() {
                    assert!(path.owing.contains(name), "{name} owes a read but is not in the index");
                }
            }
        }
    }
}

/// Puts the child `key` in its path's index of children owing something, if it owes a read or
/// a recheck.
fn index_if_owing(owing: &mut BTreeSet<Arc<str>>, key: &Arc<str>, child: &ChildState) {
    if child.owes() {
        owing.insert(key.clone());
    }
}

/// A child whose data must be read — unless its name carries its record. (A name whose
/// record does not decode falls back to the data, as Synapse does.) The name is decoded when
/// the child is first seen (and, if its record does not decode, again until its data is read).
fn owe_data(name: &str, child: &mut ChildState) {
    if child.record.is_none() && policy::encoded_in_name(name) {
        let record = policy::record_of(name, None);
        if record.is_ok() {
            child.record = Some(Arc::new(record));
            child.from_name = true;
        }
    }
    if !child.from_name {
        child.due.owe();
    }
}

/// A listing in flight may predate a child's creation or deletion just seen (events and
/// replies reach the loop by different ways): its answer must not be the last word.
fn relist_if_listing(path: &mut PathState) {
    if let Due::InFlight { .. } = path.list {
        path.list.owe();
    }
}

/// Whether something happened while the read was in flight.
fn was_again(due: Due) -> bool {
    matches!(due, Due::InFlight { again: true })
}

/// After a successful read: done, or owed again if something happened meanwhile.
fn finish(due: Due) -> Due {
    match due {
        Due::InFlight { again: true } => Due::Owed { at: None },
        _ => Due::No,
    }
}

#[cfg(test)]
mod tests;
