//! The plan against a model of ZooKeeper that can lose any reply: random interleavings of
//! health changes, record changes, lost replies (the request carried out or not), dropped
//! connections, expiries (the old session dead, or still alive for a while as after a
//! client-side expiry) and other clients' deletes and writes. Checked throughout: the plan
//! never deletes the znode it publishes for a wanted place, and (without other clients
//! deleting) none of its deletes leaves a wanted, registered place without a znode. Checked
//! once the faults stop: exactly one znode per wanted service, with its name and data, and none
//! for anything else, in any living session of this process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axon_core::zk::{Refusal, Verdict};
use axon_record::{Record, child_prefix, encoded_child_prefix, sequential_name};
use proptest::prelude::*;

use super::*;
use crate::state::Registration;

const INSTANCE: &str = "host1";

/// The services: (name, zk_path, port, path encoding). Two share a path; one encodes.
const SERVICES: [(&str, &str, u16, bool); 4] =
    [("a", "/svc/x", 1, false), ("b", "/svc/x", 2, false), ("c", "/svc/y", 1, false), ("d", "/svc/y", 3, true)];

fn registration(service: usize, weight: u32) -> Registration {
    let (_, zk_path, port, encoded) = SERVICES[service];
    let record = Record {
        host: "10.0.0.1".into(),
        port,
        name: INSTANCE.into(),
        weight: Some(weight),
        haproxy_server_options: None,
        labels: None,
    };
    let data = record.to_json();
    let prefix = if encoded { encoded_child_prefix(&data).unwrap() } else { child_prefix(INSTANCE) };
    Registration { zk_path: zk_path.into(), prefix, host: "10.0.0.1".into(), port, data }
}

#[derive(Clone)]
struct Node {
    data: Vec<u8>,
    owner: i64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in session {}", String::from_utf8_lossy(&self.data), self.owner)
    }
}

/// What ZooKeeper holds, and the sessions alive.
#[derive(Debug, Default)]
struct Zk {
    parents: BTreeSet<String>,
    nodes: BTreeMap<String, Node>,
    sequence: i64,
    alive: BTreeSet<i64>,
    /// One-shot data watches of the current session's client.
    watches: BTreeSet<String>,
    /// Paths whose watch fired, waiting for the plan to hear.
    fired: Vec<String>,
}

impl Zk {
    fn parent(path: &str) -> &str {
        path.rsplit_once('/').map_or("/", |(parent, _)| parent)
    }

    fn touch(&mut self, path: &str) {
        if self.watches.remove(path) {
            self.fired.push(path.to_owned());
        }
    }

    fn end_session(&mut self, session: i64) {
        self.alive.remove(&session);
        let gone: Vec<String> = self.nodes.iter().filter(|(_, n)| n.owner == session).map(|(p, _)| p.clone()).collect();
        for path in gone {
            self.nodes.remove(&path);
            self.touch(&path);
        }
    }

    /// Carries out `op` for `session`; the answer ZooKeeper would give.
    fn apply(&mut self, plan: &Plan, session: i64, op: &Op) -> Result<Reply, Failure> {
        let refused = |refusal| Err(Failure { verdict: Verdict::Refused(refusal), error: format!("{refusal:?}") });
        match op {
            Op::List { zk_path } => {
                if !self.parents.contains(zk_path) {
                    return refused(Refusal::NoNode);
                }
                let children = self
                    .nodes
                    .iter()
                    .filter(|(path, _)| Zk::parent(path) == zk_path)
                    .map(|(path, node)| Child {
                        name: path.rsplit('/').next().unwrap().to_owned(),
                        owner: node.owner,
                        data: node.data.clone(),
                    })
                    .filter(|child| plan.ours().may_be(&child.name))
                    .collect();
                Ok(Reply::Listed(children))
            }
            Op::MakeParent { zk_path } => {
                if self.parents.insert(zk_path.clone()) {
                    Ok(Reply::Done)
                } else {
                    refused(Refusal::NodeExists)
                }
            }
            Op::Create { zk_path, prefix, data } => {
                if !self.parents.contains(zk_path) {
                    return refused(Refusal::NoNode);
                }
                self.sequence += 1;
                let path = format!("{zk_path}/{}", sequential_name(prefix, self.sequence));
                self.nodes.insert(path.clone(), Node { data: data.clone(), owner: session });
                Ok(Reply::Created(path))
            }
            Op::SetData { path, data } => match self.nodes.get_mut(path) {
                Some(node) => {
                    node.data.clone_from(data);
                    self.touch(path);
                    Ok(Reply::Done)
                }
                None => refused(Refusal::NoNode),
            },
            Op::Delete { path } => match self.nodes.remove(path) {
                Some(_) => {
                    self.touch(path);
                    Ok(Reply::Done)
                }
                None => refused(Refusal::NoNode),
            },
            Op::Watch { path } => match self.nodes.get(path) {
                Some(node) => {
                    self.watches.insert(path.clone());
                    Ok(Reply::Watched(Some(node.data.clone())))
                }
                None => Ok(Reply::Watched(None)),
            },
        }
    }

    /// This process's znodes (any living session) at a service's place.
    fn at(&self, service: usize) -> Vec<(&String, &Node)> {
        let (_, zk_path, port, _) = SERVICES[service];
        self.nodes
            .iter()
            .filter(|(path, node)| {
                Zk::parent(path) == zk_path
                    && self.alive.contains(&node.owner)
                    && Record::from_json(&node.data).is_ok_and(|r| r.port == port && r.name == INSTANCE)
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Answered,
    /// Carried out, the reply lost.
    LostAfter,
    /// Lost before ZooKeeper saw it.
    LostBefore,
}

#[derive(Debug, Clone)]
enum Step {
    Deliver(usize, Fate),
    Toggle(usize),
    Reweight(usize, u32),
    /// The connection drops: each request in flight was carried out or not (by the bits).
    Disconnect(u64),
    /// The session expires on the server: its znodes are gone (and those of any session
    /// given up before).
    Expire(u64),
    /// The client gives the session up while the server still holds it (and its znodes).
    ClientExpire(u64),
    /// Sessions the client gave up end on the server.
    EndOld,
    /// Another client deletes, or rewrites, one of this process's znodes.
    ExternalDelete(usize),
    ExternalSet(usize),
    Tick,
}

fn step(external: bool) -> impl Strategy<Value = Step> {
    let external = if external { 1 } else { 0 };
    prop_oneof![
        12 => (0..8usize, prop_oneof![6 => Just(Fate::Answered), 1 => Just(Fate::LostAfter), 1 => Just(Fate::LostBefore)])
            .prop_map(|(i, fate)| Step::Deliver(i, fate)),
        3 => (0..4usize).prop_map(Step::Toggle),
        2 => (0..4usize, 1..4u32).prop_map(|(s, w)| Step::Reweight(s, w)),
        1 => any::<u64>().prop_map(Step::Disconnect),
        1 => any::<u64>().prop_map(Step::Expire),
        1 => any::<u64>().prop_map(Step::ClientExpire),
        1 => Just(Step::EndOld),
        external => (0..8usize).prop_map(Step::ExternalDelete),
        external => (0..8usize).prop_map(Step::ExternalSet),
        2 => Just(Step::Tick),
    ]
}

struct Sim {
    plan: Plan,
    zk: Zk,
    session: i64,
    now: Instant,
    wanted: BTreeMap<usize, u32>,
    /// Requests sent, with the services wanted when each was made.
    pending: Vec<(Request, BTreeSet<usize>)>,
    strict: bool,
}

impl Sim {
    fn new(strict: bool) -> Sim {
        let mut sim = Sim {
            plan: Plan::new(INSTANCE, 7),
            zk: Zk::default(),
            session: 1,
            now: Instant::now(),
            wanted: BTreeMap::new(),
            pending: Vec::new(),
            strict,
        };
        sim.zk.alive.insert(1);
        sim.plan.new_session(1);
        sim
    }

    fn registrations(&self) -> BTreeMap<String, Registration> {
        self.wanted.iter().map(|(&s, &w)| (SERVICES[s].0.to_owned(), registration(s, w))).collect()
    }

    fn set_wanted(&mut self) {
        let registrations = self.registrations();
        self.plan.set_wanted(INSTANCE, &registrations);
    }

    fn service_of(&self, path: &str) -> Option<usize> {
        let node = self.zk.nodes.get(path)?;
        let record = Record::from_json(&node.data).ok()?;
        (0..SERVICES.len()).find(|&s| SERVICES[s].1 == Zk::parent(path) && SERVICES[s].2 == record.port)
    }

    /// Asks the plan for requests, checking that none deletes the znode it publishes for a
    /// wanted place.
    fn poll(&mut self) {
        for request in self.plan.poll(self.now) {
            if let Op::Delete { path } = &request.op {
                let published = self
                    .plan
                    .places
                    .values()
                    .any(|slot| slot.want.is_some() && slot.current.as_ref().is_some_and(|c| &c.path == path));
                assert!(!published, "deletes {path}, the znode it publishes for a wanted service");
            }
            self.pending.push((request, self.wanted.keys().copied().collect()));
        }
    }

    /// Carries out a request; a delete must not leave a service that was wanted when the
    /// request was made without a znode.
    fn carry_out(&mut self, request: &Request, wanted: &BTreeSet<usize>) -> Result<Reply, Failure> {
        if let Op::Delete { path } = &request.op
            && let Some(service) = self.service_of(path)
            && wanted.contains(&service)
            && self.strict
        {
            let before = self.zk.at(service);
            let left = before.iter().filter(|(p, _)| *p != path).count();
            let (name, ..) = SERVICES[service];
            assert!(before.len() == left || left > 0, "deleting {path} left wanted service {name} without a znode");
        }
        self.zk.apply(&self.plan, self.session, &request.op)
    }

    fn deliver_fired(&mut self) {
        for path in std::mem::take(&mut self.zk.fired) {
            self.plan.watch_fired(&path);
        }
    }

    /// Each request in flight is carried out or not, by the bits of `bits`; no answer comes.
    fn drop_in_flight(&mut self, bits: u64) -> Vec<Request> {
        let pending = std::mem::take(&mut self.pending);
        for (i, (request, wanted)) in pending.iter().enumerate() {
            if bits >> (i % 64) & 1 == 1 {
                let _ = self.carry_out(request, wanted);
            }
        }
        pending.into_iter().map(|(request, _)| request).collect()
    }

    fn new_session(&mut self) {
        self.session += 1;
        self.zk.alive.insert(self.session);
        self.zk.watches.clear();
        self.zk.fired.clear();
        self.plan.new_session(self.session);
    }

    fn run(&mut self, step: &Step) {
        self.poll();
        match *step {
            Step::Deliver(i, fate) => {
                if self.pending.is_empty() {
                    return;
                }
                let (request, wanted) = self.pending.remove(i % self.pending.len());
                let lost = Failure { verdict: Verdict::Unknown, error: "no response".into() };
                let answer = match fate {
                    Fate::Answered => self.carry_out(&request, &wanted),
                    Fate::LostAfter => {
                        let _ = self.carry_out(&request, &wanted);
                        // A lost reply's watch is not the client's.
                        if let Op::Watch { path } = &request.op {
                            self.zk.watches.remove(path);
                        }
                        Err(lost)
                    }
                    Fate::LostBefore => Err(lost),
                };
                // Notifications reach the client before the reply that follows them.
                self.deliver_fired();
                self.plan.answer(request.id, answer, self.now);
            }
            Step::Toggle(s) => {
                if self.wanted.remove(&s).is_none() {
                    self.wanted.insert(s, 1);
                }
                self.set_wanted();
            }
            Step::Reweight(s, w) => {
                if let Some(weight) = self.wanted.get_mut(&s) {
                    *weight = w;
                    self.set_wanted();
                }
            }
            Step::Disconnect(bits) => {
                for request in self.drop_in_flight(bits) {
                    let failure = Failure { verdict: Verdict::Unknown, error: "connection lost".into() };
                    self.plan.answer(request.id, Err(failure), self.now);
                }
                self.deliver_fired();
                self.plan.reconnected();
            }
            Step::Expire(bits) => {
                self.drop_in_flight(bits);
                // A session timeout has passed: the sessions given up earlier are over too.
                let alive: Vec<i64> = self.zk.alive.iter().copied().collect();
                for session in alive {
                    self.zk.end_session(session);
                }
                self.new_session();
            }
            Step::ClientExpire(bits) => {
                self.drop_in_flight(bits);
                self.new_session();
                // A session the client gave up ends on the server within one session timeout
                // of its last word, and giving one up takes the client longer (1.4 timeouts
                // without an answer): ZooKeeper never holds more given-up sessions of one
                // process than the plan remembers.
                let mut old: Vec<i64> = self.zk.alive.iter().copied().filter(|&s| s != self.session).collect();
                old.sort_unstable();
                while old.len() > REMEMBERED_SESSIONS {
                    self.zk.end_session(old.remove(0));
                }
            }
            Step::EndOld => {
                let old: Vec<i64> = self.zk.alive.iter().copied().filter(|&s| s != self.session).collect();
                for session in old {
                    self.zk.end_session(session);
                }
                self.zk.fired.clear();
            }
            Step::ExternalDelete(i) | Step::ExternalSet(i) => {
                let ours: Vec<String> = self.zk.nodes.keys().cloned().collect();
                if ours.is_empty() {
                    return;
                }
                let path = ours[i % ours.len()].clone();
                if matches!(step, Step::ExternalDelete(_)) {
                    self.zk.nodes.remove(&path);
                } else if let Some(node) = self.zk.nodes.get_mut(&path) {
                    node.data = b"{\"host\":\"10.0.0.1\",\"port\":1,\"name\":\"someone\"}".to_vec();
                }
                self.zk.touch(&path);
                self.deliver_fired();
            }
            Step::Tick => {
                self.now = self.plan.next_wake().unwrap_or(self.now).max(self.now + Duration::from_millis(10));
            }
        }
    }

    /// No more faults: everything is answered, time moves on, until the plan has nothing to do.
    fn settle(&mut self) {
        self.plan.reconnected();
        for _ in 0..200 {
            self.poll();
            if self.pending.is_empty() {
                if self.plan.is_idle() {
                    return;
                }
                self.now = self.plan.next_wake().unwrap_or(self.now).max(self.now + Duration::from_millis(10));
                continue;
            }
            let (request, wanted) = self.pending.remove(0);
            let answer = self.carry_out(&request, &wanted);
            self.deliver_fired();
            self.plan.answer(request.id, answer, self.now);
        }
        panic!("the plan did not settle: {:#?}", self.plan.places);
    }

    fn check_settled(&self) {
        let mut expected = BTreeMap::new();
        for (s, (name, ..)) in SERVICES.iter().enumerate() {
            let at = self.zk.at(s);
            match self.wanted.get(&s) {
                Some(&weight) => {
                    let want = registration(s, weight);
                    assert_eq!(at.len(), 1, "service {name}: {at:?}");
                    let (path, node) = at[0];
                    assert_eq!(node.owner, self.session, "{path} is not in the current session");
                    assert_eq!(node.data, want.data, "{path}");
                    let child = path.rsplit('/').next().unwrap();
                    assert!(is_sequential_of(child, &want.prefix), "{child} is not named by {}", want.prefix);
                    expected.insert((*name).to_owned(), path.clone());
                }
                None => assert!(at.is_empty(), "service {name} is not wanted, yet: {at:?}"),
            }
        }
        // Nothing else of this process's, anywhere.
        let ours = self.zk.nodes.values().filter(|n| self.zk.alive.contains(&n.owner) && n.owner != 0).count();
        assert_eq!(ours, expected.len(), "session {}: {:#?}", self.session, self.zk.nodes);
        assert_eq!(self.plan.registered(), expected);
        assert!(self.plan.errors().is_empty(), "{:?}", self.plan.errors());
    }
}

fn simulate(strict: bool, steps: &[Step]) {
    let mut sim = Sim::new(strict);
    for step in steps {
        sim.run(step);
    }
    sim.settle();
    sim.check_settled();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Lost replies, disconnections and expiries; nobody else touches the znodes.
    #[test]
    fn exactly_one_znode_per_wanted_service_and_no_gap_of_its_own_making(steps in proptest::collection::vec(step(false), 0..120)) {
        simulate(true, &steps);
    }

    /// The same with other clients deleting and rewriting this process's znodes.
    #[test]
    fn converges_whatever_other_clients_do(steps in proptest::collection::vec(step(true), 0..120)) {
        simulate(false, &steps);
    }
}

/// The reported defect: the create committed, its reply lost; the next pass must adopt it,
/// not make a second.
#[test]
fn a_create_whose_reply_was_lost_is_adopted_not_repeated() {
    let mut sim = Sim::new(true);
    sim.zk.parents.insert("/svc/x".into());
    sim.run(&Step::Toggle(0));
    sim.run(&Step::Deliver(0, Fate::LostAfter)); // the create, carried out
    assert_eq!(sim.zk.at(0).len(), 1);
    sim.plan.reconnected();
    sim.settle();
    sim.check_settled();
    assert!(sim.plan.drain_events().iter().any(|e| matches!(e, Event::Adopted { .. })));
}

/// The reported defect: the watch after a create fails; the znode stays and is watched later.
#[test]
fn a_failed_watch_keeps_the_znode() {
    let mut sim = Sim::new(true);
    sim.zk.parents.insert("/svc/x".into());
    sim.run(&Step::Toggle(0));
    sim.run(&Step::Deliver(0, Fate::Answered)); // create
    let path = sim.zk.at(0)[0].0.clone();
    sim.run(&Step::Deliver(0, Fate::LostBefore)); // watch
    sim.run(&Step::Disconnect(u64::MAX));
    sim.settle();
    sim.check_settled();
    assert_eq!(sim.plan.registered()["a"], path, "the same znode, never deleted");
    assert!(sim.zk.watches.contains(&path));
}

/// Nothing is retried before its wait is over, and the wait grows.
#[test]
fn a_failing_place_waits_and_others_go_on() {
    let mut plan = Plan::new(INSTANCE, 7);
    plan.new_session(1);
    let now = Instant::now();
    let wanted: BTreeMap<String, Registration> =
        [("a".to_owned(), registration(0, 1)), ("c".to_owned(), registration(2, 1))].into();
    plan.set_wanted(INSTANCE, &wanted);
    let requests = plan.poll(now);
    assert_eq!(requests.len(), 2, "one request per place");
    let refused = || Err(Failure { verdict: Verdict::Refused(Refusal::NoAuth), error: "not authorised".into() });
    plan.answer(requests[0].id, refused(), now);
    let first_wait = plan.next_wake().unwrap() - now;
    assert!(first_wait >= RETRY_INITIAL / 2, "{first_wait:?}");
    let again = plan.poll(now);
    assert!(again.is_empty(), "retried at once: {again:?}");
    plan.answer(requests[1].id, Ok(Reply::Created("/svc/y/host1_0000000001".into())), now);
    assert!(!plan.poll(now).is_empty(), "the other place goes on");
    let later = now + first_wait;
    let retry: Vec<Request> = plan.poll(later).into_iter().filter(|r| matches!(r.op, Op::Create { .. })).collect();
    assert_eq!(retry.len(), 1);
    plan.answer(retry[0].id, refused(), later);
    assert!(plan.next_wake().unwrap() - later >= RETRY_INITIAL, "the wait grows");
    assert_eq!(plan.errors().len(), 1);
}
