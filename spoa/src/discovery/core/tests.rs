//! The core against a model of ZooKeeper and of zookeeper-client 0.11.2: random interleavings
//! of changes, lost replies, disconnections and expiries; once the faults stop, what the core
//! gives out must be exactly what ZooKeeper holds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::*;

const PATHS: [&str; 2] = ["/svc/a", "/svc/b"];
/// The third carries its record in its name (Nerve's path encoding): it is never read.
const CHILDREN: [&str; 3] = [
    "c1_0000000001",
    "c2_0000000002",
    "base64_60_eyJob3N0IjoiMTAuMC4wLjMiLCJwb3J0Ijo4MDgwLCJuYW1lIjoiZW5jIn0=_0000000003",
];
/// A child whose ACL denies reading (its name is in neither path until created).
const DENIED: &str = "denied_0000000009";

fn record(port: u16) -> Vec<u8> {
    format!(r#"{{"host":"10.0.0.1","port":{port},"name":"x"}}"#).into_bytes()
}

/// What ZooKeeper holds: path → (child → data); a path absent is missing.
#[derive(Debug, Clone, Default)]
struct Zk {
    nodes: BTreeMap<usize, BTreeMap<String, Vec<u8>>>,
}

/// A message from the server to the client, in order.
#[derive(Debug, Clone)]
enum Msg {
    Reply(Read, Outcome),
    Event(Event),
}

/// The server side of one client: its watches, what it is processing, what it sends.
#[derive(Debug, Default)]
struct Server {
    supports_add_watch: bool,
    up: bool,
    session: i64,
    /// Requests sent, not yet processed.
    issued: VecDeque<Read>,
    /// Replies and events on their way to the client.
    channel: VecDeque<Msg>,
    /// Persistent watches (per connection: gone when the connection is).
    persistent: BTreeSet<usize>,
    /// One-shot watches (per session), with whether their node changed while disconnected.
    children_watches: BTreeMap<usize, bool>,
    data_watches: BTreeMap<(usize, String), bool>,
}

/// One step of the simulation.
#[derive(Debug, Clone)]
enum Step {
    Create(usize),
    DeletePath(usize),
    CreateChild(usize, usize),
    CreateDenied(usize),
    DeleteChild(usize, usize),
    SetData(usize, usize, u16),
    /// A change made during a short disconnection: no event reaches the client for it.
    SetDataWhileAway(usize, usize, u16),
    /// Everything sent is processed and delivered (the client catches up).
    Quiesce,
    /// The next event overtakes the replies before it: the shell forwards events through a
    /// channel of their own, so its loop may see an event before a reply sent earlier.
    DeliverEventFirst,
    Process,
    Deliver,
    LoseReply,
    Disconnect,
    Reconnect,
    Expire,
    Tick(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..2usize).prop_map(Step::Create),
        1 => (0..2usize).prop_map(Step::DeletePath),
        3 => (0..2usize, 0..3usize).prop_map(|(p, c)| Step::CreateChild(p, c)),
        1 => (0..2usize).prop_map(Step::CreateDenied),
        1 => (0..2usize, 0..3usize).prop_map(|(p, c)| Step::DeleteChild(p, c)),
        4 => (0..2usize, 0..3usize, 1..5u16).prop_map(|(p, c, d)| Step::SetData(p, c, d)),
        2 => (0..2usize, 0..3usize, 1..5u16).prop_map(|(p, c, d)| Step::SetDataWhileAway(p, c, d)),
        3 => Just(Step::Quiesce),
        2 => Just(Step::DeliverEventFirst),
        6 => Just(Step::Process),
        6 => Just(Step::Deliver),
        2 => Just(Step::LoseReply),
        2 => Just(Step::Disconnect),
        2 => Just(Step::Reconnect),
        1 => Just(Step::Expire),
        4 => (1..3000u64).prop_map(Step::Tick),
    ]
}

struct Sim {
    zk: Zk,
    server: Server,
    core: Core,
    now: Instant,
    draws: u64,
    /// The views as the shell keeps them, from [`Core::changed_views`] only.
    followed: Vec<PathView>,
}

impl Sim {
    /// `max_in_flight` 3 puts a listing (which counts as 8) alone in flight; 17, two listings
    /// beside a data read.
    fn new(mode: Mode, supports_add_watch: bool, max_in_flight: usize) -> Sim {
        let paths: Vec<String> = PATHS.iter().map(|p| (*p).to_owned()).collect();
        let limits = Limits { max_in_flight, jitter: Duration::from_millis(50), recheck: Duration::from_secs(5) };
        let mut sim = Sim {
            zk: Zk::default(),
            server: Server { supports_add_watch, session: 1, ..Server::default() },
            core: Core::new(&paths, mode, limits),
            now: Instant::now(),
            draws: 0,
            followed: vec![PathView { found: None, problem: None }; PATHS.len()],
        };
        sim.reconnect();
        sim
    }

    fn draw(&mut self) -> f64 {
        self.draws += 1;
        (self.draws % 7) as f64 / 7.0
    }

    /// A change made by another client: events to the watches it concerns.
    fn change(&mut self, path: usize, child: Option<&str>, kind: &str) {
        let server = &mut self.server;
        let up = server.up;
        // Persistent watch on the path: every creation, deletion and data change at or under it.
        if server.persistent.contains(&path) && up {
            let node = match child {
                Some(c) => format!("{}/{c}", PATHS[path]),
                None => PATHS[path].to_owned(),
            };
            let event = match kind {
                "created" => Event::Created(node),
                "deleted" => Event::Deleted(node),
                _ => Event::DataChanged(node),
            };
            server.channel.push_back(Msg::Event(event));
        }
        // One-shot: the children (or existence) watch fires on creations and deletions of the
        // path or its children; a data watch on its child's change or deletion.
        let children_fire = kind != "changed";
        if children_fire && let Some(fired) = server.children_watches.get_mut(&path) {
            if up {
                server.children_watches.remove(&path);
                server.channel.push_back(Msg::Event(Event::ChildrenChanged { path }));
            } else {
                *fired = true;
            }
        }
        if let Some(c) = child {
            let key = (path, c.to_owned());
            if kind != "created"
                && let Some(fired) = server.data_watches.get_mut(&key)
            {
                if up {
                    server.data_watches.remove(&key);
                    server.channel.push_back(Msg::Event(Event::ChildChanged { path, child: c.into() }));
                } else {
                    *fired = true;
                }
            }
        }
    }

    /// Takes the changed views, as the shell does, and checks that what it then holds is
    /// every view: no change goes unreported.
    fn follow(&mut self) {
        self.core.check_index();
        for (i, view) in self.core.changed_views() {
            self.followed[i] = view;
        }
        assert_eq!(self.followed, self.core.views(), "a changed view was not reported as changed");
    }

    fn apply(&mut self, step: &Step) {
        self.apply_step(step);
        self.follow();
    }

    fn apply_step(&mut self, step: &Step) {
        match *step {
            Step::Create(p) => {
                if let std::collections::btree_map::Entry::Vacant(entry) = self.zk.nodes.entry(p) {
                    entry.insert(BTreeMap::new());
                    self.change(p, None, "created");
                }
            }
            Step::DeletePath(p) => {
                if let Some(children) = self.zk.nodes.get(&p).cloned() {
                    for child in children.keys() {
                        self.zk.nodes.get_mut(&p).map(|c| c.remove(child));
                        self.change(p, Some(child), "deleted");
                    }
                    self.zk.nodes.remove(&p);
                    self.change(p, None, "deleted");
                }
            }
            Step::CreateChild(p, c) | Step::SetData(p, c, _) if !self.zk.nodes.contains_key(&p) => {
                let _ = c;
            }
            Step::CreateChild(p, c) => {
                let name = CHILDREN[c];
                if !self.zk.nodes[&p].contains_key(name) {
                    self.zk.nodes.get_mut(&p).map(|n| n.insert(name.to_owned(), record(80)));
                    self.change(p, Some(name), "created");
                }
            }
            Step::CreateDenied(p) => {
                if self.zk.nodes.get(&p).is_some_and(|n| !n.contains_key(DENIED)) {
                    self.zk.nodes.get_mut(&p).map(|n| n.insert(DENIED.to_owned(), record(99)));
                    self.change(p, Some(DENIED), "created");
                }
            }
            Step::DeleteChild(p, c) => {
                let name = CHILDREN[c];
                if self.zk.nodes.get_mut(&p).and_then(|n| n.remove(name)).is_some() {
                    self.change(p, Some(name), "deleted");
                }
            }
            Step::SetData(p, c, d) => {
                let name = CHILDREN[c];
                if let Some(data) = self.zk.nodes.get_mut(&p).and_then(|n| n.get_mut(name)) {
                    *data = record(80 + d);
                    self.change(p, Some(name), "changed");
                }
            }
            Step::SetDataWhileAway(p, c, d) => {
                let was_up = self.server.up;
                self.disconnect();
                self.apply(&Step::SetData(p, c, d));
                if was_up {
                    self.reconnect();
                }
            }
            Step::Quiesce => {
                if self.server.up {
                    self.settle();
                }
            }
            Step::DeliverEventFirst => {
                if let Some(index) = self.server.channel.iter().position(|m| matches!(m, Msg::Event(_)))
                    && let Some(Msg::Event(event)) = self.server.channel.remove(index)
                {
                    self.core.event(event);
                }
            }
            Step::Process => self.process(),
            Step::Deliver => self.deliver(),
            Step::LoseReply => {
                // The reply is lost (no answer in time): the request may have been carried
                // out, watches and all; the client reports an unknown outcome.
                if let Some(index) = self.server.channel.iter().position(|m| matches!(m, Msg::Reply(..)))
                    && let Some(Msg::Reply(read, _)) = self.server.channel.remove(index)
                {
                    let lost = Outcome::Failed(Failure::Lost("lost".into()));
                    self.server.channel.insert(index, Msg::Reply(read, lost));
                }
            }
            Step::Disconnect => self.disconnect(),
            Step::Reconnect => {
                if !self.server.up {
                    self.reconnect();
                }
            }
            Step::Expire => {
                self.disconnect();
                self.server.session += 1;
                self.server.children_watches.clear();
                self.server.data_watches.clear();
                self.core.expired();
            }
            Step::Tick(ms) => self.now += Duration::from_millis(ms),
        }
        self.issue();
    }

    fn issue(&mut self) {
        for read in self.core.reads(self.now) {
            self.server.issued.push_back(read);
        }
    }

    /// The server processes the next request.
    fn process(&mut self) {
        if !self.server.up {
            return;
        }
        let Some(read) = self.server.issued.pop_front() else { return };
        let outcome = match &read {
            Read::Watch { path, .. } => {
                if self.server.supports_add_watch {
                    self.server.persistent.insert(*path);
                    Outcome::Watching
                } else {
                    Outcome::Failed(Failure::Unimplemented)
                }
            }
            Read::List { path, watch } => {
                if *watch {
                    self.server.children_watches.insert(*path, false);
                }
                match self.zk.nodes.get(path) {
                    Some(children) => Outcome::Listed(children.keys().cloned().collect()),
                    None => Outcome::Missing { appeared: false },
                }
            }
            Read::Data { child, .. } if policy::encoded_in_name(child) => {
                panic!("a child whose name carries its record was read: {child}")
            }
            Read::Data { path, child, watch, .. } => match self.zk.nodes.get(path).and_then(|n| n.get(&**child)) {
                Some(_) if &**child == DENIED => Outcome::Failed(Failure::NoAuth),
                Some(data) => {
                    if *watch {
                        self.server.data_watches.insert((*path, child.to_string()), false);
                    }
                    Outcome::Data(data.clone())
                }
                None => Outcome::Failed(Failure::NoNode),
            },
        };
        self.server.channel.push_back(Msg::Reply(read, outcome));
    }

    fn deliver(&mut self) {
        let Some(msg) = self.server.channel.pop_front() else { return };
        match msg {
            Msg::Reply(read, outcome) => self.core.done(read, outcome, self.now),
            Msg::Event(event) => self.core.event(event),
        }
    }

    /// The connection breaks: every request without its reply fails, events in transit are
    /// lost, persistent watches go with the connection (0.11.2 does not restore them).
    fn disconnect(&mut self) {
        if !self.server.up {
            return;
        }
        self.server.up = false;
        self.server.persistent.clear();
        let mut failed = Vec::new();
        for msg in self.server.channel.drain(..) {
            match msg {
                Msg::Reply(read, _) => failed.push(read),
                // A one-shot event lost in transit: the client still holds the watch and sends
                // it back with SetWatches on reconnection, where it fires at once (the node
                // changed since).
                Msg::Event(Event::ChildrenChanged { path }) => {
                    self.server.children_watches.insert(path, true);
                }
                Msg::Event(Event::ChildChanged { path, child }) => {
                    self.server.data_watches.insert((path, child.to_string()), true);
                }
                Msg::Event(_) => {}
            }
        }
        failed.extend(self.server.issued.drain(..));
        self.core.disconnected();
        for read in failed {
            self.core.done(read, Outcome::Failed(Failure::Lost("connection reset".into())), self.now);
        }
    }

    fn reconnect(&mut self) {
        self.server.up = true;
        let draw = self.draw();
        self.core.connected(self.server.session, self.now, draw);
        // One-shot watches whose node changed meanwhile fire now (ZooKeeper's SetWatches).
        let fired: Vec<usize> = self.server.children_watches.iter().filter(|(_, f)| **f).map(|(p, _)| *p).collect();
        for path in fired {
            self.server.children_watches.remove(&path);
            self.server.channel.push_back(Msg::Event(Event::ChildrenChanged { path }));
        }
        let fired: Vec<(usize, String)> =
            self.server.data_watches.iter().filter(|(_, f)| **f).map(|(k, _)| k.clone()).collect();
        for (path, child) in fired {
            self.server.data_watches.remove(&(path, child.clone()));
            self.server.channel.push_back(Msg::Event(Event::ChildChanged { path, child: child.into() }));
        }
    }

    /// Faults over: connected, everything processed and delivered until the core is quiet.
    fn settle(&mut self) {
        if !self.server.up {
            self.reconnect();
        }
        for _ in 0..10_000 {
            self.follow();
            self.issue();
            if self.core.quiet() && self.server.issued.is_empty() && self.server.channel.is_empty() {
                return;
            }
            if !self.server.issued.is_empty() {
                self.process();
            } else if !self.server.channel.is_empty() {
                self.deliver();
            } else {
                match self.core.next_wake(self.now) {
                    Some(at) => self.now = at,
                    None => panic!("the core owes reads it will never issue: {:#?}", self.core),
                }
            }
        }
        panic!("not quiet after 10,000 steps");
    }

    /// What ZooKeeper holds, as the core should give it.
    fn expected(&self) -> Vec<Found> {
        (0..PATHS.len())
            .map(|p| match self.zk.nodes.get(&p) {
                None => Found::Missing,
                Some(children) => Found::Children(
                    children
                        .iter()
                        .map(|(name, data)| {
                            let record = if name == DENIED {
                                Err("ZooKeeper refuses to read it (ACL)".to_owned())
                            } else {
                                policy::record_of(name, Some(data))
                            };
                            (Arc::from(name.as_str()), Arc::new(record))
                        })
                        .collect(),
                ),
            })
            .collect()
    }
}

fn run(mode: Mode, supports_add_watch: bool, max_in_flight: usize, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(mode, supports_add_watch, max_in_flight);
    for step in steps {
        sim.apply(step);
    }
    sim.settle();
    let found: Vec<Option<Found>> = sim.core.views().into_iter().map(|v| v.found).collect();
    let expected: Vec<Option<Found>> = sim.expected().into_iter().map(Some).collect();
    prop_assert_eq!(found, expected, "steps: {:?}", steps);
    if !supports_add_watch {
        prop_assert_eq!(sim.core.mode(), Mode::Oneshot);
    }
    // One watch per path in persistent mode, never a one-shot watch beside it.
    if sim.core.mode() == Mode::Persistent {
        prop_assert!(sim.server.children_watches.is_empty() && sim.server.data_watches.is_empty());
        prop_assert_eq!(sim.server.persistent.len(), PATHS.len());
    }
    Ok(())
}

/// The core's read limit: a listing alone in flight, or beside other reads.
fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![Just(3usize), Just(17usize)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn persistent_watches_end_with_zookeepers_state(max in limit(), steps in proptest::collection::vec(step(), 0..120)) {
        run(Mode::Persistent, true, max, &steps)?;
    }

    #[test]
    fn one_shot_watches_end_with_zookeepers_state(max in limit(), steps in proptest::collection::vec(step(), 0..120)) {
        run(Mode::Oneshot, true, max, &steps)?;
    }

    #[test]
    fn a_server_without_add_watch_falls_back_and_ends_with_its_state(max in limit(), steps in proptest::collection::vec(step(), 0..120)) {
        run(Mode::Persistent, false, max, &steps)?;
    }
}

fn paths() -> Vec<String> {
    PATHS.iter().map(|p| (*p).to_owned()).collect()
}

/// Connected, watches added, the path listed with `children` and their data read.
fn watching(children: &[(&str, u16)]) -> (Core, Instant) {
    let now = Instant::now();
    let mut core = Core::new(&paths()[..1], Mode::Persistent, Limits { jitter: Duration::ZERO, ..Limits::default() });
    core.connected(7, now, 0.0);
    assert_eq!(core.reads(now), [Read::Watch { path: 0, link: 1 }]);
    core.done(Read::Watch { path: 0, link: 1 }, Outcome::Watching, now);
    assert_eq!(core.reads(now), [Read::List { path: 0, watch: false }]);
    let names = children.iter().map(|(n, _)| (*n).to_owned()).collect();
    core.done(Read::List { path: 0, watch: false }, Outcome::Listed(names), now);
    for read in core.reads(now) {
        let Read::Data { child, .. } = &read else { panic!("{read:?}") };
        let port = children.iter().find(|(n, _)| *n == &**child).map(|(_, p)| *p).unwrap();
        core.done(read.clone(), Outcome::Data(record(port)), now);
    }
    assert!(core.quiet());
    (core, now)
}

/// A watch added on a connection that is gone, whose answer the core sees only after the
/// reconnection, is not taken for the new connection's: the watch is added again.
#[test]
fn a_watch_answered_on_an_earlier_connection_is_added_again() {
    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    // The watch is re-added after a reconnection, and the connection drops again at once.
    core.disconnected();
    core.connected(7, now, 0.0);
    let first = core.reads(now);
    assert_eq!(first, [Read::Watch { path: 0, link: 2 }]);
    core.disconnected();
    core.connected(7, now, 0.0);
    let second = core.reads(now);
    assert_eq!(second, [Read::Watch { path: 0, link: 3 }]);
    // The first one's success arrives now: stale, it changes nothing.
    core.done(first[0].clone(), Outcome::Watching, now);
    assert!(core.reads(now).is_empty(), "nothing listed before the current watch is there");
    assert!(!core.quiet());
    core.done(second[0].clone(), Outcome::Watching, now);
    assert!(core.reads(now).contains(&Read::List { path: 0, watch: false }), "listed once the watch is there");
}

fn ports(core: &Core) -> BTreeMap<String, u16> {
    match core.views()[0].found.clone() {
        Some(Found::Children(children)) => {
            children.iter().filter_map(|(n, r)| (**r).as_ref().ok().map(|r| (n.to_string(), r.port))).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_event_one_read_and_no_listing() {
    let (mut core, now) = watching(&[("a_0000000001", 80), ("b_0000000002", 81)]);
    core.event(Event::DataChanged("/svc/a/a_0000000001".into()));
    assert_eq!(core.reads(now), [Read::Data { path: 0, child: "a_0000000001".into(), watch: false, generation: 1 }]);
    core.event(Event::Created("/svc/a/c_0000000003".into()));
    assert_eq!(core.reads(now), [Read::Data { path: 0, child: "c_0000000003".into(), watch: false, generation: 3 }]);
    // Deeper nodes and other paths are not this path's children.
    core.event(Event::Created("/svc/a/c_0000000003/deeper".into()));
    core.event(Event::Created("/svc/ab/x".into()));
    assert!(core.reads(now).is_empty());
}

/// A child being read, then deleted and created again under the same name: the core, the
/// first read (for the old child) and the second one (for the new child), both in flight.
fn recreated_while_read() -> (Core, Instant, Read, Read) {
    let x = "/svc/a/a_0000000001";
    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    core.event(Event::DataChanged(x.into()));
    let first = core.reads(now).remove(0);
    core.event(Event::Deleted(x.into()));
    core.event(Event::Created(x.into()));
    let second = core.reads(now);
    assert_eq!(second.len(), 1, "the new child is read");
    (core, now, first, second[0].clone())
}

/// A child deleted and created again under the same name while its read is in flight is
/// another child: the first read's answer, whatever it is, counts for neither.
#[test]
fn an_answer_for_a_child_deleted_and_created_again_counts_for_neither() {
    let (mut core, now, first, second) = recreated_while_read();
    // The first read's answer (the old child's data) comes after the second read left.
    core.done(first, Outcome::Data(record(80)), now);
    assert!(core.reads(now).is_empty());
    // The second one is lost: the new child is read again after the backoff.
    core.done(second, Outcome::Failed(Failure::Lost("reset".into())), now);
    let later = now + Duration::from_secs(3);
    let third = core.reads(later);
    assert_eq!(third.len(), 1, "the new child is read again");
    core.done(third[0].clone(), Outcome::Data(record(81)), later);
    assert!(core.quiet());
    assert_eq!(ports(&core)["a_0000000001"], 81);

    // Whatever else the first read's answer says (the old child gone, refused, lost), it says
    // nothing of the new one: no problem reported, nothing read again, now or later.
    for answer in [Failure::NoNode, Failure::NoAuth, Failure::Lost("reset".into())] {
        let (mut core, now, first, second) = recreated_while_read();
        core.done(first, Outcome::Failed(answer.clone()), now);
        core.done(second, Outcome::Data(record(82)), now);
        assert!(core.quiet(), "{answer:?}");
        assert_eq!(ports(&core).get("a_0000000001"), Some(&82), "{answer:?}");
        assert!(core.reads(now + Duration::from_secs(60)).is_empty(), "{answer:?}: nothing owed");
        core.check_index();
    }
}

#[test]
fn a_change_during_a_read_is_read_again() {
    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    core.event(Event::DataChanged("/svc/a/a_0000000001".into()));
    let read = core.reads(now).remove(0);
    // Changed again while the read is in flight: its answer may predate the change.
    core.event(Event::DataChanged("/svc/a/a_0000000001".into()));
    core.done(read.clone(), Outcome::Data(record(90)), now);
    assert_eq!(core.views()[0].found, None, "not settled: a read is owed");
    assert_eq!(core.reads(now), std::slice::from_ref(&read));
    core.done(read, Outcome::Data(record(91)), now);
    assert_eq!(ports(&core)["a_0000000001"], 91);
}

#[test]
fn a_lost_read_stays_owed_and_the_previous_state_stands_meanwhile() {
    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    core.event(Event::DataChanged("/svc/a/a_0000000001".into()));
    let read = core.reads(now).remove(0);
    core.done(read.clone(), Outcome::Failed(Failure::Lost("connection reset".into())), now);
    assert_eq!(core.views()[0].found, None);
    // Not at once (no spin), but soon.
    assert!(core.reads(now).is_empty());
    let wake = core.next_wake(now).expect("a retry");
    assert!(wake > now && wake <= now + Duration::from_secs(2));
    assert_eq!(core.reads(wake), std::slice::from_ref(&read));
    core.done(read, Outcome::Data(record(85)), wake);
    assert_eq!(ports(&core)["a_0000000001"], 85);
}

#[test]
fn nothing_is_due_while_disconnected_and_the_wake_is_never_in_the_past() {
    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    core.event(Event::DataChanged("/svc/a/a_0000000001".into()));
    let read = core.reads(now).remove(0);
    core.disconnected();
    core.done(read, Outcome::Failed(Failure::Lost("reset".into())), now);
    let later = now + Duration::from_secs(60);
    assert!(core.reads(later).is_empty());
    assert_eq!(core.next_wake(later), None, "nothing to wake for while disconnected");
    // Back: the watch is added again, then everything is read again.
    core.connected(7, later, 0.0);
    assert!(matches!(core.reads(later)[..], [Read::Watch { path: 0, .. }]));
}

#[test]
fn an_unreadable_child_is_that_childs_problem_and_an_unreadable_path_keeps_its_state() {
    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    core.event(Event::Created("/svc/a/b_0000000002".into()));
    let read = core.reads(now).remove(0);
    core.done(read, Outcome::Failed(Failure::NoAuth), now);
    let Some(Found::Children(children)) = core.views()[0].found.clone() else { panic!() };
    let children: BTreeMap<Arc<str>, Shared> = children.into_iter().collect();
    assert!(children["b_0000000002"].as_ref().as_ref().is_err_and(|e| e.contains("ACL")));
    assert!(children["a_0000000001"].is_ok());
    // Read again later, not before.
    assert!(core.reads(now + Duration::from_secs(1)).is_empty());
    assert_eq!(core.reads(now + Duration::from_secs(31)).len(), 1);

    // Refused, then changed and read: it is readable now, and owes no recheck any more.
    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    core.event(Event::DataChanged("/svc/a/a_0000000001".into()));
    let read = core.reads(now).remove(0);
    core.done(read, Outcome::Failed(Failure::NoAuth), now);
    core.event(Event::DataChanged("/svc/a/a_0000000001".into()));
    let read = core.reads(now).remove(0);
    core.done(read, Outcome::Data(record(86)), now);
    assert_eq!(ports(&core)["a_0000000001"], 86);
    assert_eq!(core.next_wake(now), None, "no recheck of a child read since");
    assert!(core.reads(now + Duration::from_secs(31)).is_empty());

    let (mut core, now) = watching(&[("a_0000000001", 80)]);
    core.event(Event::Created("/svc/a".into()));
    let read = core.reads(now).remove(0);
    core.done(read, Outcome::Failed(Failure::NoAuth), now);
    let view = &core.views()[0];
    assert_eq!(view.found, None, "the previous state stands");
    assert!(view.problem.as_ref().is_some_and(|p| p.contains("ACL")));
}

#[test]
fn a_path_appearing_between_listing_and_existence_check_is_listed_again() {
    let now = Instant::now();
    let mut core = Core::new(&paths()[..1], Mode::Oneshot, Limits { jitter: Duration::ZERO, ..Limits::default() });
    core.connected(1, now, 0.0);
    let list = core.reads(now).remove(0);
    assert_eq!(list, Read::List { path: 0, watch: true });
    core.done(list, Outcome::Missing { appeared: true }, now);
    assert_eq!(core.reads(now), [Read::List { path: 0, watch: true }], "listed again, its watch armed again");
}

#[test]
fn names_that_carry_their_record_need_no_data_read() {
    use base64::Engine as _;
    let json = r#"{"host":"10.0.0.2","port":8080,"name":"enc"}"#;
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(json);
    let name = format!("base64_{}_{encoded}_0000000001", encoded.len());
    let (mut core, now) = watching(&[]);
    core.event(Event::Created(format!("/svc/a/{name}")));
    core.event(Event::DataChanged(format!("/svc/a/{name}")));
    assert!(core.reads(now).is_empty());
    assert_eq!(ports(&core)[&name], 8080);
}

/// After a reconnection, a new session, or the fall back to one-shot watches, a path whose
/// children carry their record in their names is one listing: no child's data is read.
#[test]
fn a_re_read_lists_names_that_carry_their_record_and_reads_none_of_them() {
    use base64::Engine as _;
    let json = r#"{"host":"10.0.0.2","port":8080,"name":"enc"}"#;
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(json);
    let name = format!("base64_{}_{encoded}_0000000001", encoded.len());
    for (mode, session) in [(Mode::Persistent, 7), (Mode::Persistent, 8), (Mode::Oneshot, 7), (Mode::Oneshot, 8)] {
        let (mut core, now) = watching(&[]);
        core.event(Event::Created(format!("/svc/a/{name}")));
        assert!(core.reads(now).is_empty());
        if mode == Mode::Oneshot {
            // A server that refuses `addWatch` after a reconnection.
            core.disconnected();
            core.connected(7, now, 0.0);
            let watch = core.reads(now).remove(0);
            core.done(watch, Outcome::Failed(Failure::Unimplemented), now);
            assert_eq!(core.mode(), Mode::Oneshot);
            let reads = core.reads(now);
            assert_eq!(reads, [Read::List { path: 0, watch: true }], "after the fall back");
            core.done(reads[0].clone(), Outcome::Listed(vec![name.clone()]), now);
        }
        if session != 7 {
            core.expired();
        } else {
            core.disconnected();
        }
        core.connected(session, now, 0.0);
        let mut reads = core.reads(now);
        if mode == Mode::Persistent {
            assert_eq!(reads, [Read::Watch { path: 0, link: core.link() }], "{mode:?}, session {session}");
            core.done(reads.remove(0), Outcome::Watching, now);
            reads = core.reads(now);
        }
        let watch = mode == Mode::Oneshot;
        assert_eq!(reads, [Read::List { path: 0, watch }], "{mode:?}, session {session}: one listing, no data");
        core.done(reads.remove(0), Outcome::Listed(vec![name.clone()]), now);
        assert!(core.reads(now).is_empty(), "{mode:?}, session {session}");
        assert!(core.quiet());
        assert_eq!(ports(&core)[&name], 8080);
    }
}

/// A name that looks encoded but whose record does not decode falls back to the data.
#[test]
fn a_name_whose_record_does_not_decode_is_read_from_its_data() {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE.encode("not a record");
    let name = format!("base64_{}_{encoded}_0000000001", encoded.len());
    assert!(policy::encoded_in_name(&name));
    let (mut core, now) = watching(&[]);
    core.event(Event::Created(format!("/svc/a/{name}")));
    let reads = core.reads(now);
    assert_eq!(reads, [Read::Data { path: 0, child: name.as_str().into(), watch: false, generation: 1 }]);
    core.done(reads[0].clone(), Outcome::Data(record(90)), now);
    assert_eq!(ports(&core)[&name], 90);
    // Its data is what counts: a change of it is read, and so is the data after a reconnection.
    core.event(Event::DataChanged(format!("/svc/a/{name}")));
    let reads = core.reads(now);
    assert_eq!(reads, [Read::Data { path: 0, child: name.as_str().into(), watch: false, generation: 1 }]);
    core.done(reads[0].clone(), Outcome::Data(record(91)), now);
    assert_eq!(ports(&core)[&name], 91);
    core.disconnected();
    core.connected(7, now, 0.0);
    let watch = core.reads(now).remove(0);
    core.done(watch, Outcome::Watching, now);
    let data = Read::Data { path: 0, child: name.as_str().into(), watch: false, generation: 1 };
    assert_eq!(core.reads(now), [Read::List { path: 0, watch: false }, data]);
}

#[test]
fn a_new_session_reads_within_the_jitter_and_never_more_than_the_limit_at_once() {
    let now = Instant::now();
    let limits = Limits { max_in_flight: 2, jitter: Duration::from_secs(2), recheck: Duration::from_secs(30) };
    let mut core = Core::new(&paths(), Mode::Persistent, limits);
    core.connected(1, now, 0.5);
    assert!(core.reads(now).is_empty(), "within the jitter");
    assert_eq!(core.next_wake(now), Some(now + Duration::from_secs(1)));
    let later = now + Duration::from_secs(1);
    let first = core.reads(later);
    assert_eq!(first.len(), 2);
    assert!(core.reads(later).is_empty(), "at most two in flight");
    assert_eq!(core.next_wake(later), None, "the next reads wait for answers, not for a time");
}

/// A listing counts as [`LISTING_COST`] reads against the limit (its answer is every child's
/// name), a data read as one; a limit under a listing's cost still lists, one path at a time.
#[test]
fn a_listing_counts_as_eight_reads_against_the_limit() {
    let now = Instant::now();
    let many: Vec<String> = (0..6).map(|i| format!("/svc/p{i}")).collect();
    let children = |path: usize| -> Vec<String> { (0..20).map(|i| format!("c{path}x{i}_{i:010}")).collect() };
    for (max, listings_at_once) in [(16, 2), (64, 6), (4, 1)] {
        let limits = Limits { max_in_flight: max, jitter: Duration::ZERO, recheck: Duration::from_secs(30) };
        let mut core = Core::new(&many, Mode::Persistent, limits);
        core.connected(1, now, 0.0);
        // Watches count one each.
        let mut reads = core.reads(now);
        assert_eq!(reads.len(), max.min(6), "max {max}");
        while reads.iter().all(|r| matches!(r, Read::Watch { .. })) {
            for read in reads {
                core.done(read, Outcome::Watching, now);
            }
            reads = core.reads(now);
        }
        assert_eq!(reads.len(), listings_at_once, "max {max}: {reads:?}");
        assert!(reads.iter().all(|r| matches!(r, Read::List { .. })));
        assert!(core.reads(now).is_empty(), "max {max}: no room for another listing");
        // Every listing answered: data reads fill the limit, one each (a listing, once owed,
        // goes before them).
        let mut data = Vec::new();
        while let Some(read) = reads.pop() {
            let Read::List { path, .. } = read else { panic!("{read:?}") };
            core.done(read, Outcome::Listed(children(path)), now);
            for next in core.reads(now) {
                if matches!(next, Read::List { .. }) { reads.push(next) } else { data.push(next) }
            }
        }
        let in_flight_at_end = core.in_flight();
        assert_eq!(in_flight_at_end, data.len());
        assert_eq!(data.len(), max.min(6 * 20), "max {max}: data reads at once");
    }
}

/// After a reconnection every child of a data-carrying path owes its read again: a listing
/// that does not fit waits for room, and data reads do not take the room answers free.
#[test]
fn a_listing_waiting_for_room_goes_before_data_reads() {
    let now = Instant::now();
    let two: Vec<String> = vec!["/svc/a".into(), "/svc/b".into()];
    let limits = Limits { max_in_flight: 12, jitter: Duration::ZERO, recheck: Duration::from_secs(30) };
    let mut core = Core::new(&two, Mode::Persistent, limits);
    let names: Vec<String> = (0..20).map(|i| format!("c{i}_{i:010}")).collect();
    // Everything read once: /svc/a with 20 children, /svc/b empty.
    let settle = |core: &mut Core| {
        for _ in 0..100 {
            let reads = core.reads(now);
            if reads.is_empty() {
                break;
            }
            for read in reads {
                let outcome = match &read {
                    Read::Watch { .. } => Outcome::Watching,
                    Read::List { path: 0, .. } => Outcome::Listed(names.clone()),
                    Read::List { .. } => Outcome::Listed(Vec::new()),
                    Read::Data { .. } => Outcome::Data(record(80)),
                };
                core.done(read, outcome, now);
            }
        }
        assert!(core.quiet());
    };
    core.connected(1, now, 0.0);
    settle(&mut core);
    // A reconnection: watches, listings and every child's data are owed again.
    core.disconnected();
    core.connected(1, now, 0.0);
    for watch in core.reads(now) {
        core.done(watch, Outcome::Watching, now);
    }
    // One listing fits (8 of 12); the other waits, and no data read takes its room.
    let reads = core.reads(now);
    assert!(matches!(reads.as_slice(), [Read::List { path: 0, .. }]), "{reads:?}");
    core.done(reads[0].clone(), Outcome::Listed(names.clone()), now);
    let reads = core.reads(now);
    assert!(matches!(reads.first(), Some(Read::List { path: 1, .. })), "the waiting listing first: {reads:?}");
    assert_eq!(reads.len(), 1 + 4, "then data reads in the room left: {reads:?}");
}

#[test]
fn a_change_made_while_disconnected_is_read_after_the_reconnection() {
    for mode in [Mode::Persistent, Mode::Oneshot] {
        let steps =
            [Step::Create(0), Step::CreateChild(0, 0), Step::Disconnect, Step::SetData(0, 0, 3), Step::Reconnect];
        let mut sim = Sim::new(mode, true, 3);
        sim.settle();
        for step in &steps[..2] {
            sim.apply(step);
        }
        sim.settle();
        for step in &steps[2..] {
            sim.apply(step);
        }
        sim.settle();
        let found: Vec<Option<Found>> = sim.core.views().into_iter().map(|v| v.found).collect();
        let expected: Vec<Option<Found>> = sim.expected().into_iter().map(Some).collect();
        assert_eq!(found, expected, "{mode:?}");
    }
}
