//! The publisher's decisions, without I/O: from what should be registered, what this session
//! owns, what it is unsure of and what ZooKeeper lists, the next ZooKeeper operations.
//!
//! The unit is a **place**: one endpoint (`host:port`) under one `zk_path`. A place holds at
//! most one znode that this session publishes for it (`current`), znodes of this process it no
//! longer wants there (`extra`: duplicates, an earlier session's, a replaced name), and a
//! doubt: this session may have znodes there it does not know of. Each place has at most one
//! request in flight, and every rule is per place, so a fault in one place (a refused create,
//! an unreadable path) delays nothing else.
//!
//! The rules, in order, for a place with no request in flight:
//! 1. in doubt → list its znodes (after `sync`): the listing says what this session and the
//!    earlier ones of this process have there, and the doubt is over;
//! 2. wanted, no znode → create it (its parent first, once a create said it is missing);
//! 3. wanted, a znode of another name (Nerve's path encoding: the record changed) → create the
//!    new one; the old one joins `extra` once the new one exists (make before break);
//! 4. wanted, other data → set it; not watched → read it with a watch;
//! 5. wanted and in place → delete `extra`, one by one: never before the place's own znode
//!    exists, and never that znode itself;
//! 6. not wanted → delete `current`, then `extra`; a place with nothing left is forgotten.
//!
//! What an answer means is decided once ([`axon_core::zk::verdict`]): a result code is
//! definitive; anything else (connection lost or reset, no answer in time) leaves the request
//! possibly carried out. A create answered that way puts the place in doubt (rule 1 then finds
//! the znode if it was made); the other requests are idempotent and are simply sent again.
//! A failed request waits (exponential backoff per place with jitter, so that a fleet does not
//! retry in step; reset by a success, and cut short when the connection comes back); nothing
//! is retried at once, so nothing spins.
//!
//! A new session (after an expiry, or new ZooKeeper settings) starts every known place in
//! doubt: the earlier session may still be alive and hold znodes, which are deleted only once
//! the new ones exist.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use axon_core::backoff::Backoff;
use axon_core::zk::{Refusal, Verdict};
use axon_record::{ChildName, Record, child_path, is_sequential_of};

use crate::state::Registration;

/// The instance ids this process registered under: a child named after one of them (or
/// whose encoded record names one) may be this process's.
#[derive(Debug, Clone)]
pub struct Ours {
    instances: BTreeSet<String>,
}

impl Ours {
    pub fn may_be(&self, name: &str) -> bool {
        match ChildName::parse(name) {
            Ok(ChildName::Plain { instance, .. }) => self.instances.contains(instance),
            Ok(ChildName::Encoded { json, .. }) => {
                Record::from_json(&json).is_ok_and(|record| self.instances.contains(&record.name))
            }
            Err(_) => false,
        }
    }
}

/// One endpoint under one path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    pub zk_path: String,
    pub host: String,
    pub port: u16,
}

impl Place {
    fn of(registration: &Registration) -> Place {
        Place { zk_path: registration.zk_path.clone(), host: registration.host.clone(), port: registration.port }
    }
}

/// A request for the shell to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `sync` the path, list its children, and read those [`Ours::may_be`] accepts.
    List {
        zk_path: String,
    },
    /// Create the path and its missing ancestors (persistent).
    MakeParent {
        zk_path: String,
    },
    /// Create `<zk_path>/<prefix><sequence>`, ephemeral and sequential.
    Create {
        zk_path: String,
        prefix: String,
        data: Vec<u8>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
    },
    Delete {
        path: String,
    },
    /// Read the znode's data and leave a watch on it.
    Watch {
        path: String,
    },
}

/// A child the shell read during a [`Op::List`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub name: String,
    pub owner: i64,
    pub data: Vec<u8>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The children listed (only those read; a child gone between listing and reading is left
    /// out); an empty list when the path does not exist.
    Listed(Vec<Child>),
    /// The path of the created znode.
    Created(String),
    /// MakeParent, SetData or Delete done.
    Done,
    /// A watch is set; the data read, or `None` when the znode does not exist.
    Watched(Option<Vec<u8>>),
}

/// A failed answer: what it says about the request, and the error as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub verdict: Verdict,
    pub error: String,
}

/// What happened, for the shell to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Registered {
        service: String,
        path: String,
    },
    /// A znode this session made without hearing back (a lost reply), found and kept.
    Adopted {
        service: String,
        path: String,
    },
    Updated {
        service: String,
        path: String,
    },
    /// The place's own znode was deleted because it is no longer wanted.
    Deregistered {
        service: String,
        path: String,
    },
    /// A duplicate, an earlier session's or a replaced znode was deleted.
    Cleaned {
        path: String,
    },
    /// The place's znode disappeared (deleted by someone else); it is created again.
    Vanished {
        service: String,
        path: String,
    },
    /// A request failed; it is retried after `retry_in`.
    Failed {
        place: Place,
        op: &'static str,
        error: String,
        retry_in: Duration,
    },
}

/// The znode a place publishes.
#[derive(Clone, PartialEq, Eq)]
struct Znode {
    path: String,
    name: String,
    /// The data it holds, as last written or read.
    data: Vec<u8>,
    watched: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    /// The service wanting this place, with its child name prefix and data.
    want: Option<Want>,
    current: Option<Znode>,
    extra: BTreeSet<String>,
    doubt: bool,
    parent_missing: bool,
    /// The request in flight, by id.
    busy: Option<u64>,
    not_before: Option<Instant>,
    /// The last failure left the request's outcome unknown (retried as soon as the
    /// connection is back).
    unknown: bool,
    backoff: Backoff,
    error: Option<String>,
    /// The service last served, for events after it stopped wanting the place.
    service: String,
}

#[derive(Clone, PartialEq, Eq)]
struct Want {
    service: String,
    prefix: String,
    data: Vec<u8>,
}

impl std::fmt::Debug for Znode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = String::from_utf8_lossy(&self.data);
        write!(f, "{} ({data}, watched: {})", self.path, self.watched)
    }
}

impl std::fmt::Debug for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}* ({})", self.service, self.prefix, String::from_utf8_lossy(&self.data))
    }
}

/// The first wait after a failure; it doubles up to [`RETRY_MAX`].
pub const RETRY_INITIAL: Duration = Duration::from_millis(100);
pub const RETRY_MAX: Duration = Duration::from_secs(10);
/// Earlier sessions of this process whose znodes are recognised as leftovers.
const REMEMBERED_SESSIONS: usize = 8;

impl Slot {
    fn new(service: &str) -> Slot {
        Slot {
            want: None,
            current: None,
            extra: BTreeSet::new(),
            doubt: false,
            parent_missing: false,
            busy: None,
            not_before: None,
            unknown: false,
            backoff: Backoff::new(RETRY_INITIAL, RETRY_MAX),
            error: None,
            service: service.to_owned(),
        }
    }

    /// The next operation by the rules, if any (without regard to time or what is in flight).
    fn next_op(&self, zk_path: &str) -> Option<Op> {
        if self.doubt {
            return Some(Op::List { zk_path: zk_path.to_owned() });
        }
        let Some(want) = &self.want else {
            return match (&self.current, self.extra.first()) {
                (Some(current), _) => Some(Op::Delete { path: current.path.clone() }),
                (None, Some(path)) => Some(Op::Delete { path: path.clone() }),
                (None, None) => None,
            };
        };
        let create = || {
            if self.parent_missing {
                Op::MakeParent { zk_path: zk_path.to_owned() }
            } else {
                Op::Create { zk_path: zk_path.to_owned(), prefix: want.prefix.clone(), data: want.data.clone() }
            }
        };
        let Some(current) = &self.current else { return Some(create()) };
        if !is_sequential_of(&current.name, &want.prefix) {
            return Some(create());
        }
        if current.data != want.data {
            return Some(Op::SetData { path: current.path.clone(), data: want.data.clone() });
        }
        if !current.watched {
            return Some(Op::Watch { path: current.path.clone() });
        }
        self.extra.first().map(|path| Op::Delete { path: path.clone() })
    }

    fn forgettable(&self) -> bool {
        self.want.is_none() && self.current.is_none() && self.extra.is_empty() && !self.doubt && self.busy.is_none()
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        self.not_before = None;
        self.unknown = false;
        self.error = None;
    }
}

/// The publisher's state for one process: its places, the session and the earlier ones.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Instance ids this process registered under (the current one last).
    instances: BTreeSet<String>,
    session: Option<i64>,
    previous: VecDeque<i64>,
    places: BTreeMap<Place, Slot>,
    /// Requests in flight: id → (place, op).
    in_flight: BTreeMap<u64, (Place, Op)>,
    next_id: u64,
    events: Vec<Event>,
    /// Draws the jitter of each wait (xorshift; the seed is the shell's, or a test's).
    jitter: u64,
}

impl Plan {
    /// A plan for `instance_id`; `seed` draws the waits' jitter.
    pub fn new(instance_id: &str, seed: u64) -> Plan {
        Plan {
            instances: BTreeSet::from([instance_id.to_owned()]),
            session: None,
            previous: VecDeque::new(),
            places: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_id: 0,
            events: Vec::new(),
            jitter: seed | 1,
        }
    }

    /// The next draw in `[0, 1)`.
    fn draw(&mut self) -> f64 {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        (self.jitter >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Starts a new session: what was in flight is forgotten, and every known place is in
    /// doubt (the earlier session may still hold znodes there).
    pub fn new_session(&mut self, id: i64) {
        if let Some(old) = self.session.replace(id) {
            self.previous.push_back(old);
            if self.previous.len() > REMEMBERED_SESSIONS {
                self.previous.pop_front();
            }
        }
        self.in_flight.clear();
        for slot in self.places.values_mut() {
            slot.busy = None;
            slot.current = None;
            slot.extra.clear();
            slot.doubt = true;
            slot.parent_missing = false;
            slot.succeeded();
        }
    }

    /// The connection is back (same session): requests whose outcome was unknown go again now.
    pub fn reconnected(&mut self) {
        for slot in self.places.values_mut() {
            if slot.unknown {
                slot.not_before = None;
            }
        }
    }

    /// Sets what should be registered, by service name; also the instance id in use.
    pub fn set_wanted(&mut self, instance_id: &str, wanted: &BTreeMap<String, Registration>) {
        self.instances.insert(instance_id.to_owned());
        let mut wants: BTreeMap<Place, Want> = BTreeMap::new();
        for (service, registration) in wanted {
            let want =
                Want { service: service.clone(), prefix: registration.prefix.clone(), data: registration.data.clone() };
            wants.insert(Place::of(registration), want);
        }
        for (place, slot) in &mut self.places {
            if !wants.contains_key(place) && slot.want.take().is_some() {
                slot.not_before = None;
            }
        }
        for (place, want) in wants {
            let slot = self.places.entry(place).or_insert_with(|| Slot::new(&want.service));
            if slot.want.as_ref() != Some(&want) {
                slot.not_before = None;
                slot.service.clone_from(&want.service);
                slot.want = Some(want);
            }
        }
        self.places.retain(|_, slot| !slot.forgettable());
    }

    /// Which child names may be this process's znodes, so the shell reads only those.
    pub fn ours(&self) -> Ours {
        Ours { instances: self.instances.clone() }
    }

    /// The requests to send now: at most one per place, none for a place waiting after a
    /// failure.
    pub fn poll(&mut self, now: Instant) -> Vec<Request> {
        let mut requests = Vec::new();
        for (place, slot) in &mut self.places {
            if slot.busy.is_some() || slot.not_before.is_some_and(|at| at > now) {
                continue;
            }
            let Some(op) = slot.next_op(&place.zk_path) else { continue };
            self.next_id += 1;
            let id = self.next_id;
            slot.busy = Some(id);
            self.in_flight.insert(id, (place.clone(), op.clone()));
            requests.push(Request { id, op });
        }
        self.places.retain(|_, slot| !slot.forgettable());
        requests
    }

    /// When a place waiting after a failure has something to do again.
    pub fn next_wake(&self) -> Option<Instant> {
        self.places
            .iter()
            .filter(|(place, slot)| slot.busy.is_none() && slot.next_op(&place.zk_path).is_some())
            .filter_map(|(_, slot)| slot.not_before)
            .min()
    }

    /// The answer to request `id` (an answer to a request of an earlier session is ignored).
    pub fn answer(&mut self, id: u64, result: Result<Reply, Failure>, now: Instant) {
        let Some((place, op)) = self.in_flight.remove(&id) else { return };
        let draw = self.draw();
        let Some(slot) = self.places.get_mut(&place) else { return };
        slot.busy = None;
        let session = self.session.unwrap_or_default();
        match result {
            Ok(Reply::Listed(mut children)) => {
                // What another place publishes or is deleting is that place's, whatever its
                // data now says.
                let claimed: BTreeSet<String> = self
                    .places
                    .iter()
                    .filter(|(other, _)| **other != place)
                    .flat_map(|(_, other)| {
                        other.current.iter().map(|c| c.path.clone()).chain(other.extra.iter().cloned())
                    })
                    .collect();
                children.retain(|child| !claimed.contains(&child_path(&place.zk_path, &child.name)));
                let Some(slot) = self.places.get_mut(&place) else { return };
                slot.succeeded();
                let strays = list(slot, &place, children, session, &self.previous, &mut self.events);
                self.strays(&place.zk_path, strays);
            }
            Ok(reply) => {
                slot.succeeded();
                apply(slot, &op, reply, &mut self.events);
            }
            Err(failure) => fail(slot, &place, &op, failure, now, draw, &mut self.events),
        }
        self.places.retain(|_, slot| !slot.forgettable());
    }

    /// Znodes of this process found listing another place's path: each belongs to the place
    /// its record names, which looks for itself unless it knows the znode. A znode whose record
    /// names no place (rewritten by someone else) is deleted.
    fn strays(&mut self, zk_path: &str, strays: Vec<(Option<Place>, String)>) {
        for (place, path) in strays {
            let Some(place) = place else {
                let unplaced = Place { zk_path: zk_path.to_owned(), host: String::new(), port: 0 };
                self.places.entry(unplaced).or_insert_with(|| Slot::new("")).extra.insert(path);
                continue;
            };
            let slot = self.places.entry(place).or_insert_with(|| Slot::new(""));
            if !slot.extra.contains(&path) && slot.current.as_ref().is_none_or(|c| c.path != path) {
                slot.doubt = true;
            }
        }
    }

    /// A watch on `path` fired (changed, deleted, or the session ended): read it again.
    pub fn watch_fired(&mut self, path: &str) {
        for slot in self.places.values_mut() {
            if let Some(current) = slot.current.as_mut().filter(|c| c.path == path) {
                current.watched = false;
            }
        }
    }

    /// The znode each wanted service has in this session.
    pub fn registered(&self) -> BTreeMap<String, String> {
        self.places
            .values()
            .filter_map(|slot| {
                let want = slot.want.as_ref()?;
                let current = slot.current.as_ref()?;
                Some((want.service.clone(), current.path.clone()))
            })
            .collect()
    }

    /// Whether every wanted place has its znode in this session.
    pub fn all_registered(&self) -> bool {
        self.places.values().all(|slot| slot.want.is_none() || (slot.current.is_some() && !slot.doubt))
    }

    /// Whether nothing is left to do or in flight (wanted znodes in place, nothing to delete).
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.places.iter().all(|(place, slot)| slot.next_op(&place.zk_path).is_none())
    }

    /// The last error of each service whose place is failing (and still has work to do); a
    /// place no service wants (a leftover being deleted) under its path.
    pub fn errors(&self) -> BTreeMap<String, String> {
        self.places
            .iter()
            .filter(|(place, slot)| slot.busy.is_some() || slot.next_op(&place.zk_path).is_some())
            .filter_map(|(place, slot)| {
                let key = if slot.service.is_empty() { place.zk_path.clone() } else { slot.service.clone() };
                Some((key, slot.error.clone()?))
            })
            .collect()
    }

    /// What happened since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

/// Applies a listing to its place; returns the znodes of this process found at other
/// places (with the place their record names, if any).
fn list(
    slot: &mut Slot,
    place: &Place,
    children: Vec<Child>,
    session: i64,
    previous: &VecDeque<i64>,
    events: &mut Vec<Event>,
) -> Vec<(Option<Place>, String)> {
    slot.doubt = false;
    let mut mine = Vec::new();
    let mut strays = Vec::new();
    let mut current_seen = false;
    for child in children {
        let ours = child.owner == session || previous.contains(&child.owner);
        let path = child_path(&place.zk_path, &child.name);
        let at = place_of(&child, &place.zk_path);
        if at.as_ref() != Some(place) {
            if ours {
                strays.push((at, path));
            }
            continue;
        }
        if child.owner == session {
            if slot.current.as_ref().is_some_and(|c| c.path == path) {
                current_seen = true;
            } else {
                mine.push(Znode { path, name: child.name, data: child.data, watched: false });
            }
        } else if ours {
            slot.extra.insert(path);
        }
    }
    if !current_seen && let Some(gone) = slot.current.take() {
        events.push(Event::Vanished { service: slot.service.clone(), path: gone.path });
    }
    // A znode of the wanted name made by a create whose reply was lost, while the current one
    // has the name to be replaced: it is the replacement (rule 3), and the old one goes.
    if let (Some(current), Some(want)) = (&slot.current, &slot.want)
        && !is_sequential_of(&current.name, &want.prefix)
        && let Some(i) = mine.iter().position(|z| is_sequential_of(&z.name, &want.prefix))
    {
        let replacement = mine.swap_remove(i);
        slot.extra.remove(&replacement.path);
        events.push(Event::Adopted { service: slot.service.clone(), path: replacement.path.clone() });
        if let Some(replaced) = slot.current.replace(replacement) {
            slot.extra.insert(replaced.path);
        }
    }
    if slot.current.is_none()
        && !mine.is_empty()
        && let Some(want) = &slot.want
    {
        // Keep the one with the wanted name if there is one, else any: rule 3 replaces it.
        let keep = mine.iter().position(|z| is_sequential_of(&z.name, &want.prefix)).unwrap_or(0);
        let adopted = mine.swap_remove(keep);
        slot.extra.remove(&adopted.path);
        events.push(Event::Adopted { service: slot.service.clone(), path: adopted.path.clone() });
        slot.current = Some(adopted);
    }
    slot.extra.extend(mine.into_iter().map(|z| z.path));
    strays
}

/// Applies a successful answer (other than a listing) to its place.
fn apply(slot: &mut Slot, op: &Op, reply: Reply, events: &mut Vec<Event>) {
    let service = slot.service.clone();
    match (op, reply) {
        (Op::MakeParent { .. }, _) => slot.parent_missing = false,
        (Op::Create { data, .. }, Reply::Created(path)) => {
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            let created = Znode { path: path.clone(), name, data: data.clone(), watched: false };
            if let Some(replaced) = slot.current.replace(created) {
                slot.extra.insert(replaced.path);
            }
            events.push(Event::Registered { service, path });
        }
        (Op::SetData { path, data }, _) => {
            if let Some(current) = slot.current.as_mut().filter(|c| &c.path == path) {
                current.data.clone_from(data);
                events.push(Event::Updated { service, path: path.clone() });
            }
        }
        (Op::Delete { path }, _) => {
            slot.extra.remove(path);
            if slot.current.as_ref().is_some_and(|c| &c.path == path) {
                slot.current = None;
                events.push(Event::Deregistered { service, path: path.clone() });
            } else {
                events.push(Event::Cleaned { path: path.clone() });
            }
        }
        (Op::Watch { path }, Reply::Watched(data)) => {
            if slot.current.as_ref().is_some_and(|c| &c.path == path) {
                match data {
                    Some(data) => {
                        if let Some(current) = slot.current.as_mut() {
                            current.watched = true;
                            current.data = data;
                        }
                    }
                    None => {
                        slot.current = None;
                        events.push(Event::Vanished { service, path: path.clone() });
                    }
                }
            }
        }
        // A reply of the wrong kind is a bug in the shell; asking again is safe.
        _ => slot.doubt = true,
    }
}

/// Applies a failed answer: definitive refusals change what is known; anything else leaves
/// the request's outcome open. Either way the place waits before its next request.
fn fail(slot: &mut Slot, place: &Place, op: &Op, failure: Failure, now: Instant, draw: f64, events: &mut Vec<Event>) {
    let name = op_name(op);
    if resolves(slot, op, failure.verdict, events) {
        slot.succeeded();
        return;
    }
    if let (Op::Create { .. }, Verdict::Unknown | Verdict::SessionOver) = (op, failure.verdict) {
        slot.doubt = true;
    }
    slot.unknown = matches!(failure.verdict, Verdict::Unknown | Verdict::SessionOver);
    let retry_in = slot.backoff.next_with(draw);
    slot.not_before = Some(now + retry_in);
    events.push(Event::Failed { place: place.clone(), op: name, error: failure.error.clone(), retry_in });
    slot.error = Some(format!("{name}: {}", failure.error));
}

/// Applies a refusal that answers the question the request asked (a delete of what is gone,
/// a create whose parent is missing); returns whether it did.
fn resolves(slot: &mut Slot, op: &Op, verdict: Verdict, events: &mut Vec<Event>) -> bool {
    match (op, verdict) {
        // The parent is missing: create it, at once.
        (Op::Create { .. }, Verdict::Refused(Refusal::NoNode)) => slot.parent_missing = true,
        (Op::MakeParent { .. }, Verdict::Refused(Refusal::NodeExists)) => slot.parent_missing = false,
        // No parent, no children: the same as an empty listing.
        (Op::List { .. }, Verdict::Refused(Refusal::NoNode)) => {
            slot.doubt = false;
            if let Some(gone) = slot.current.take() {
                events.push(Event::Vanished { service: slot.service.clone(), path: gone.path });
            }
        }
        (Op::Delete { path }, Verdict::Refused(Refusal::NoNode)) => {
            slot.extra.remove(path);
            if slot.current.as_ref().is_some_and(|c| &c.path == path) {
                slot.current = None;
            }
        }
        (Op::SetData { path, .. } | Op::Watch { path }, Verdict::Refused(Refusal::NoNode)) => {
            if let Some(gone) = slot.current.take_if(|c| &c.path == path) {
                events.push(Event::Vanished { service: slot.service.clone(), path: gone.path });
            }
        }
        _ => return false,
    }
    true
}

/// The place a child's record names: by its data, or by its name when the data is not a
/// record.
fn place_of(child: &Child, zk_path: &str) -> Option<Place> {
    let record = Record::from_json(&child.data).ok().or_else(|| match ChildName::parse(&child.name) {
        Ok(ChildName::Encoded { json, .. }) => Record::from_json(&json).ok(),
        _ => None,
    })?;
    Some(Place { zk_path: zk_path.to_owned(), host: record.host, port: record.port })
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::List { .. } => "list",
        Op::MakeParent { .. } => "create parent",
        Op::Create { .. } => "create",
        Op::SetData { .. } => "set data",
        Op::Delete { .. } => "delete",
        Op::Watch { .. } => "watch",
    }
}

#[cfg(test)]
mod tests;
