//! Planning one backend: HAProxy's servers as they are, the instances wanted, and the drains in
//! progress → the commands that make them agree. No I/O; time is passed in.
//!
//! Rules, in the order they are applied:
//! 1. An instance keeps its slot while it exists: a ready slot holding a wanted endpoint stays
//!    (its weight corrected if needed), and a draining slot whose instance came back is made
//!    ready again. No live server is ever moved or reshuffled.
//! 2. A slot whose instance is no longer wanted drains for the service's grace period, then
//!    goes to maintenance, which frees it. (With no grace, it goes to maintenance at once.) A
//!    second slot holding an endpoint already placed is treated the same way.
//! 3. Each wanted instance without a slot takes a free slot (maintenance), preferring one that
//!    already has its address, then the lowest-numbered one: address, weight, ready.
//! 4. When no slot is free, `add server` grows the backend with the service's options, as
//!    `<prefix><highest number + 1>`; HAProxy adds it in maintenance, so it is then made ready.
//!    Servers are never deleted (unsafe on HAProxy 2.6); retired ones wait in maintenance for
//!    reuse.
//! 5. Where HAProxy applies a new address later than the command (2.9 and later apply `set
//!    server … addr` asynchronously, `state ready` at once), a slot given a new address is made
//!    ready only by a later plan that sees the address in place: never ready at its previous
//!    address or the placeholder, even for a moment.
//!
//! Only differences produce commands: a plan for a backend that agrees is empty. [`apply`] is
//! what the commands do to HAProxy's servers, so the caller can keep HAProxy's state without
//! reading it back after every change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::haproxy::command::Command;
use crate::haproxy::state::{Admin, ServerState};
use crate::model::Endpoint;

/// What is needed to plan one backend.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub backend: &'a str,
    pub prefix: &'a str,
    /// Every server of the backend (those not named `<prefix><number>` are left alone).
    pub servers: &'a [ServerState],
    /// Wanted endpoints and their weights.
    pub wanted: &'a BTreeMap<Endpoint, u16>,
    /// Slot name → when its drain started, as remembered from earlier plans.
    pub drains: &'a BTreeMap<String, Instant>,
    pub drain: Duration,
    pub server_options: &'a str,
    pub now: Instant,
    /// HAProxy applies addresses asynchronously (rule 5).
    pub address_lag: bool,
}

/// How soon a slot given a new address is looked at again (rule 5).
pub const ADDRESS_RECHECK: Duration = Duration::from_millis(20);

/// The commands for one backend, and what to remember until the next plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub commands: Vec<Command>,
    /// Slot name → drain start, for the slots draining after these commands.
    pub drains: BTreeMap<String, Instant>,
    /// When a drain ends and the backend must be planned again.
    pub wake: Option<Instant>,
    /// Slot name → endpoint, for every slot ready after these commands.
    pub assignment: BTreeMap<String, Endpoint>,
    /// Slots given a new address, to be made ready once it is in place (rule 5).
    pub awaiting_address: Vec<String>,
}

/// A managed slot: a server named `<prefix><number>`.
#[derive(Debug, Clone)]
struct Slot<'a> {
    number: u32,
    server: &'a ServerState,
}

/// The number of a server named `<prefix><number>`.
pub fn slot_number(prefix: &str, name: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

pub fn plan(input: &Input<'_>) -> Plan {
    let mut slots: Vec<Slot<'_>> = input
        .servers
        .iter()
        .filter(|s| s.backend == input.backend)
        .filter_map(|server| slot_number(input.prefix, &server.name).map(|number| Slot { number, server }))
        .collect();
    slots.sort_by_key(|s| s.number);
    let mut plan = Plan::default();
    let mut placed: BTreeSet<Endpoint> = BTreeSet::new();
    let mut free: Vec<&Slot<'_>> = Vec::new();
    let backend = input.backend.to_owned();
    let command_for = |server: &str| (backend.clone(), server.to_owned());

    // Rules 1 and 2: slots in use keep, regain, or give up their instance.
    for slot in &slots {
        let server = slot.server;
        let wanted_here = server.endpoint.filter(|e| input.wanted.contains_key(e) && !placed.contains(e));
        match (server.admin, wanted_here) {
            (Admin::Maint, _) => free.push(slot),
            (Admin::Ready | Admin::Drain, Some(endpoint)) => {
                placed.insert(endpoint);
                let (backend, name) = command_for(&server.name);
                let weight = input.wanted[&endpoint];
                if server.weight != weight {
                    plan.commands.push(Command::SetWeight { backend: backend.clone(), server: name.clone(), weight });
                }
                if server.admin == Admin::Drain {
                    plan.commands.push(Command::SetState { backend, server: name.clone(), state: Admin::Ready });
                }
                plan.assignment.insert(name, endpoint);
            }
            (Admin::Ready, None) if input.drain.is_zero() => {
                let (backend, server) = command_for(&server.name);
                plan.commands.push(Command::SetState { backend, server, state: Admin::Maint });
            }
            (Admin::Ready, None) => {
                let (backend, server) = command_for(&server.name);
                plan.commands.push(Command::SetState { backend, server: server.clone(), state: Admin::Drain });
                plan.drains.insert(server, input.now);
                plan.wake = earliest(plan.wake, input.now + input.drain);
            }
            (Admin::Drain, None) => {
                let started = input.drains.get(&server.name).copied().unwrap_or(input.now);
                let ends = started + input.drain;
                if ends <= input.now {
                    let (backend, server) = command_for(&server.name);
                    plan.commands.push(Command::SetState { backend, server, state: Admin::Maint });
                } else {
                    plan.drains.insert(server.name.clone(), started);
                    plan.wake = earliest(plan.wake, ends);
                }
            }
        }
    }

    // Rule 3: free slots for the instances still without one.
    let mut next_number = slots.last().map_or(1, |s| s.number + 1);
    for (&endpoint, &weight) in input.wanted {
        if placed.contains(&endpoint) {
            continue;
        }
        let reuse = free.iter().position(|s| s.server.endpoint == Some(endpoint)).or(if free.is_empty() {
            None
        } else {
            Some(0)
        });
        if let Some(index) = reuse {
            let server = free.remove(index).server;
            let (backend, name) = command_for(&server.name);
            let moved = server.endpoint != Some(endpoint);
            if moved {
                plan.commands.push(Command::SetAddr { backend: backend.clone(), server: name.clone(), endpoint });
            }
            if server.weight != weight {
                plan.commands.push(Command::SetWeight { backend: backend.clone(), server: name.clone(), weight });
            }
            if moved && input.address_lag {
                // Rule 5: ready once the address is seen in place.
                plan.awaiting_address.push(name);
                plan.wake = earliest(plan.wake, input.now + ADDRESS_RECHECK);
            } else {
                plan.commands.push(Command::SetState { backend, server: name.clone(), state: Admin::Ready });
                plan.assignment.insert(name, endpoint);
            }
        } else {
            // Rule 4: grow the backend.
            let name = format!("{}{next_number}", input.prefix);
            next_number += 1;
            let (backend, name) = command_for(&name);
            plan.commands.push(Command::AddServer {
                backend: backend.clone(),
                server: name.clone(),
                endpoint,
                weight,
                options: input.server_options.to_owned(),
            });
            if has_check(input.server_options) {
                plan.commands.push(Command::EnableHealth { backend: backend.clone(), server: name.clone() });
            }
            plan.commands.push(Command::SetState { backend, server: name.clone(), state: Admin::Ready });
            plan.assignment.insert(name, endpoint);
        }
        placed.insert(endpoint);
    }
    plan
}

/// What `commands` do to `backend`'s servers in `servers`, as HAProxy carries them out (an
/// added server starts in maintenance). Commands for other backends, and reads, change nothing.
pub fn apply(servers: &mut Vec<ServerState>, backend: &str, commands: &[Command]) {
    for command in commands {
        match command {
            Command::AddServer { backend: b, server, endpoint, weight, .. } if b == backend => {
                if servers.iter().any(|s| s.backend == backend && &s.name == server) {
                    continue;
                }
                let id = servers.iter().filter(|s| s.backend == backend).map(|s| s.id).max().unwrap_or(0) + 1;
                servers.push(ServerState {
                    backend: backend.to_owned(),
                    name: server.clone(),
                    id,
                    endpoint: Some(*endpoint),
                    admin: Admin::Maint,
                    weight: *weight,
                    op_state: 0,
                });
            }
            Command::SetAddr { backend: b, server, endpoint } if b == backend => {
                if let Some(s) = servers.iter_mut().find(|s| s.backend == backend && &s.name == server) {
                    s.endpoint = Some(*endpoint);
                }
            }
            Command::SetWeight { backend: b, server, weight } if b == backend => {
                if let Some(s) = servers.iter_mut().find(|s| s.backend == backend && &s.name == server) {
                    s.weight = *weight;
                }
            }
            Command::SetState { backend: b, server, state } if b == backend => {
                if let Some(s) = servers.iter_mut().find(|s| s.backend == backend && &s.name == server) {
                    s.admin = *state;
                }
            }
            _ => {}
        }
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn has_check(options: &str) -> bool {
    options.split_whitespace().any(|word| word == "check")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const BE: &str = "be_web";

    fn ep(last: u8, port: u16) -> Endpoint {
        Endpoint::new([10, 0, 0, last].into(), port)
    }

    fn placeholder() -> Endpoint {
        Endpoint::new([127, 0, 0, 1].into(), 1)
    }

    fn slot(n: u32, endpoint: Endpoint, admin: Admin, weight: u16) -> ServerState {
        ServerState {
            backend: BE.into(),
            name: format!("web{n}"),
            id: n,
            endpoint: Some(endpoint),
            admin,
            weight,
            op_state: 2,
        }
    }

    /// A fresh `server-template web 1-<n> 127.0.0.1:1 disabled`.
    fn template(n: u32) -> Vec<ServerState> {
        (1..=n).map(|i| slot(i, placeholder(), Admin::Maint, 1)).collect()
    }

    fn wanted(pairs: &[(Endpoint, u16)]) -> BTreeMap<Endpoint, u16> {
        pairs.iter().copied().collect()
    }

    fn run(
        servers: &[ServerState],
        wanted: &BTreeMap<Endpoint, u16>,
        drains: &BTreeMap<String, Instant>,
        now: Instant,
        drain: Duration,
    ) -> Plan {
        run_lagging(servers, wanted, drains, now, drain, false)
    }

    fn run_lagging(
        servers: &[ServerState],
        wanted: &BTreeMap<Endpoint, u16>,
        drains: &BTreeMap<String, Instant>,
        now: Instant,
        drain: Duration,
        address_lag: bool,
    ) -> Plan {
        plan(&Input {
            backend: BE,
            prefix: "web",
            servers,
            wanted,
            drains,
            drain,
            server_options: "check inter 1s",
            now,
            address_lag,
        })
    }

    fn apply(servers: &mut Vec<ServerState>, commands: &[Command]) {
        super::apply(servers, BE, commands);
    }

    #[test]
    fn where_addresses_lag_a_slot_is_ready_only_once_its_address_is_in_place() {
        let now = Instant::now();
        let mut servers = vec![slot(1, ep(9, 80), Admin::Maint, 1)];
        let wanted = wanted(&[(ep(1, 80), 1)]);
        let first = run_lagging(&servers, &wanted, &BTreeMap::new(), now, Duration::ZERO, true);
        assert_eq!(texts(&first), ["set server be_web/web1 addr 10.0.0.1 port 80"]);
        assert_eq!(first.awaiting_address, ["web1"]);
        assert_eq!(first.wake, Some(now + ADDRESS_RECHECK));
        // Not applied yet (HAProxy still shows the old address): nothing is made ready.
        let early = run_lagging(&servers, &wanted, &BTreeMap::new(), now, Duration::ZERO, true);
        assert!(texts(&early).iter().all(|c| !c.ends_with("state ready")), "{:?}", texts(&early));
        // In place: ready.
        apply(&mut servers, &first.commands);
        let second = run_lagging(&servers, &wanted, &BTreeMap::new(), now, Duration::ZERO, true);
        assert_eq!(texts(&second), ["set server be_web/web1 state ready"]);
    }

    fn texts(plan: &Plan) -> Vec<String> {
        plan.commands.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn fills_free_slots_in_order() {
        let now = Instant::now();
        let p = run(&template(3), &wanted(&[(ep(1, 80), 1), (ep(2, 80), 5)]), &BTreeMap::new(), now, Duration::ZERO);
        assert_eq!(
            texts(&p),
            [
                "set server be_web/web1 addr 10.0.0.1 port 80",
                "set server be_web/web1 state ready",
                "set server be_web/web2 addr 10.0.0.2 port 80",
                "set server be_web/web2 weight 5",
                "set server be_web/web2 state ready",
            ]
        );
        assert_eq!(p.assignment.len(), 2);
    }

    #[test]
    fn an_agreeing_backend_needs_nothing() {
        let now = Instant::now();
        let servers = vec![slot(1, ep(1, 80), Admin::Ready, 1), slot(2, placeholder(), Admin::Maint, 1)];
        let p = run(&servers, &wanted(&[(ep(1, 80), 1)]), &BTreeMap::new(), now, Duration::ZERO);
        assert!(p.commands.is_empty(), "{:?}", texts(&p));
        assert_eq!(p.assignment, BTreeMap::from([("web1".to_string(), ep(1, 80))]));
    }

    #[test]
    fn removed_instances_drain_then_go_to_maintenance() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(5);
        let servers = vec![slot(1, ep(1, 80), Admin::Ready, 1)];
        let p = run(&servers, &wanted(&[]), &BTreeMap::new(), t0, grace);
        assert_eq!(texts(&p), ["set server be_web/web1 state drain"]);
        assert_eq!(p.wake, Some(t0 + grace));
        let draining = vec![slot(1, ep(1, 80), Admin::Drain, 1)];
        let later = run(&draining, &wanted(&[]), &p.drains, t0 + Duration::from_secs(2), grace);
        assert!(later.commands.is_empty());
        assert_eq!(later.wake, Some(t0 + grace));
        let done = run(&draining, &wanted(&[]), &p.drains, t0 + grace, grace);
        assert_eq!(texts(&done), ["set server be_web/web1 state maint"]);
        assert!(done.drains.is_empty());
    }

    #[test]
    fn an_instance_back_during_its_drain_keeps_its_slot() {
        let t0 = Instant::now();
        let draining = vec![slot(1, placeholder(), Admin::Maint, 1), slot(2, ep(1, 80), Admin::Drain, 1)];
        let drains = BTreeMap::from([("web2".to_string(), t0)]);
        let p = run(&draining, &wanted(&[(ep(1, 80), 3)]), &drains, t0, Duration::from_secs(5));
        assert_eq!(texts(&p), ["set server be_web/web2 weight 3", "set server be_web/web2 state ready"]);
    }

    #[test]
    fn grows_with_add_server_when_slots_run_out() {
        let now = Instant::now();
        let servers = vec![slot(1, ep(1, 80), Admin::Ready, 1)];
        let p = run(&servers, &wanted(&[(ep(1, 80), 1), (ep(2, 80), 2)]), &BTreeMap::new(), now, Duration::ZERO);
        assert_eq!(
            texts(&p),
            [
                "add server be_web/web2 10.0.0.2:80 weight 2 check inter 1s",
                "enable health be_web/web2",
                "set server be_web/web2 state ready",
            ]
        );
    }

    #[test]
    fn prefers_a_free_slot_that_already_has_the_address() {
        let now = Instant::now();
        let servers = vec![slot(1, placeholder(), Admin::Maint, 1), slot(2, ep(2, 80), Admin::Maint, 1)];
        let p = run(&servers, &wanted(&[(ep(2, 80), 1)]), &BTreeMap::new(), now, Duration::ZERO);
        assert_eq!(texts(&p), ["set server be_web/web2 state ready"]);
    }

    #[test]
    fn leaves_unmanaged_servers_and_other_backends_alone() {
        let now = Instant::now();
        let mut other = slot(1, ep(9, 80), Admin::Ready, 1);
        other.name = "static1".into();
        let mut elsewhere = slot(1, ep(8, 80), Admin::Ready, 1);
        elsewhere.backend = "be_other".into();
        let p = run(&[other, elsewhere], &wanted(&[]), &BTreeMap::new(), now, Duration::ZERO);
        assert!(p.commands.is_empty(), "{:?}", texts(&p));
    }

    #[test]
    fn a_duplicated_endpoint_keeps_one_slot() {
        let now = Instant::now();
        let servers = vec![slot(1, ep(1, 80), Admin::Ready, 1), slot(2, ep(1, 80), Admin::Ready, 1)];
        let p = run(&servers, &wanted(&[(ep(1, 80), 1)]), &BTreeMap::new(), now, Duration::ZERO);
        assert_eq!(texts(&p), ["set server be_web/web2 state maint"]);
    }

    #[test]
    fn slot_numbers() {
        assert_eq!(slot_number("web", "web12"), Some(12));
        assert_eq!(slot_number("web", "web"), None);
        assert_eq!(slot_number("web", "web01"), None);
        assert_eq!(slot_number("web", "webx"), None);
        assert_eq!(slot_number("web", "api1"), None);
    }

    fn ready(servers: &[ServerState]) -> BTreeMap<Endpoint, Vec<String>> {
        let mut out: BTreeMap<Endpoint, Vec<String>> = BTreeMap::new();
        for s in servers.iter().filter(|s| s.admin == Admin::Ready) {
            out.entry(s.endpoint.unwrap()).or_default().push(s.name.clone());
        }
        out
    }

    proptest! {
        /// Random sequences of wanted sets over a template, time passing between them: after
        /// each plan is applied, exactly the wanted endpoints are ready, each in one slot with
        /// its weight; no endpoint sits in two live slots; an instance wanted before and after
        /// a step never moves; and planning again changes nothing.
        #[test]
        fn plans_keep_their_invariants(
            steps in proptest::collection::vec(
                (proptest::collection::btree_map((1u8..12, 1u16..3), 0u16..=256, 0..9), 0u64..4000),
                1..25,
            ),
            template_size in 0u32..6,
            grace_ms in prop_oneof![Just(0u64), 1u64..3000],
            address_lag in proptest::bool::ANY,
        ) {
            let t0 = Instant::now();
            let grace = Duration::from_millis(grace_ms);
            let mut servers = template(template_size);
            let mut drains = BTreeMap::new();
            let mut now = t0;
            for (step, advance) in steps {
                let wanted: BTreeMap<Endpoint, u16> = step.into_iter().map(|((last, port), w)| (ep(last, port), w)).collect();
                now += Duration::from_millis(advance);
                let before = ready(&servers);
                let mut p = run_lagging(&servers, &wanted, &drains, now, grace, address_lag);
                apply(&mut servers, &p.commands);
                // Where addresses lag, no slot is ready at an address it is being moved from;
                // the next plan (the address in place) makes them ready.
                if !p.awaiting_address.is_empty() {
                    for name in &p.awaiting_address {
                        let server = servers.iter().find(|s| &s.name == name).unwrap();
                        prop_assert_eq!(server.admin, Admin::Maint);
                    }
                    drains = p.drains.clone();
                    p = run_lagging(&servers, &wanted, &drains, now, grace, address_lag);
                    prop_assert!(p.awaiting_address.is_empty());
                    apply(&mut servers, &p.commands);
                }
                drains = p.drains.clone();
                let after = ready(&servers);
                prop_assert_eq!(after.keys().copied().collect::<BTreeSet<_>>(), wanted.keys().copied().collect::<BTreeSet<_>>());
                for (endpoint, names) in &after {
                    prop_assert_eq!(names.len(), 1, "{} in {:?}", endpoint, names);
                    let server = servers.iter().find(|s| s.name == names[0]).unwrap();
                    prop_assert_eq!(server.weight, wanted[endpoint]);
                    if let Some(previous) = before.get(endpoint) {
                        prop_assert_eq!(previous, names, "{} moved", endpoint);
                    }
                }
                let live: Vec<Endpoint> = servers.iter().filter(|s| s.admin != Admin::Maint).filter_map(|s| s.endpoint).collect();
                prop_assert_eq!(live.iter().collect::<BTreeSet<_>>().len(), live.len(), "an endpoint in two live slots: {:?}", live);
                for name in p.assignment.keys() {
                    prop_assert!(servers.iter().any(|s| &s.name == name && s.admin == Admin::Ready));
                }
                let again = run_lagging(&servers, &wanted, &drains, now, grace, address_lag);
                prop_assert!(again.commands.is_empty(), "not idempotent: {:?}", texts(&again));
            }
        }
    }
}
