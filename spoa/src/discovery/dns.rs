//! Host names in records, resolved to the IP literals HAProxy needs — off the read path. No
//! I/O; time is passed in, the shell runs the lookups.
//!
//! - A name is resolved as soon as a record names it, several at once but at most
//!   `max_in_flight`, each lookup on its own: a slow or unresolvable name delays only the
//!   instances that use it (they wait, reported as such), never a read or another service.
//! - A failed lookup is tried again after a backoff (1 s doubling to a minute); an answer is
//!   refreshed after `ttl`, the old one serving meanwhile, so a refresh never takes an instance
//!   out.
//! - A name no record uses any more is forgotten. Names are kept per user (a watched path), so
//!   a path that changed costs its own names only, and a path being read again keeps its names
//!   (and their answers) until its new state says otherwise.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an answer is used before it is refreshed.
pub const TTL: Duration = Duration::from_secs(60);
/// Lookups in flight at most.
pub const MAX_IN_FLIGHT: usize = 8;
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Entry {
    /// The last answer, if any.
    answer: Option<Result<IpAddr, String>>,
    resolving: bool,
    /// When to look it up (again).
    due_at: Instant,
    failures: u32,
    /// How many users name it.
    users: usize,
}

/// The names in use and what they resolve to.
#[derive(Debug, Clone, Default)]
pub struct Dns {
    entries: HashMap<String, Entry>,
    /// The names each user uses.
    users: HashMap<usize, BTreeSet<String>>,
}

impl Dns {
    /// What `host` resolves to: at once for an IP literal; `None` while its first lookup is
    /// pending.
    pub fn lookup(&self, host: &str) -> Option<Result<IpAddr, String>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Ok(ip));
        }
        self.entries.get(host).and_then(|e| e.answer.clone())
    }

    /// The names `user`'s records use now: new ones are looked up at once; those no user
    /// names any more are forgotten (once answered, if being looked up).
    pub fn keep<'a>(&mut self, user: usize, hosts: impl IntoIterator<Item = &'a str>, now: Instant) {
        let used: BTreeSet<String> =
            hosts.into_iter().filter(|h| h.parse::<IpAddr>().is_err()).map(str::to_owned).collect();
        let before = self.users.remove(&user).unwrap_or_default();
        for host in used.difference(&before) {
            let entry = self.entries.entry(host.clone()).or_insert(Entry {
                answer: None,
                resolving: false,
                due_at: now,
                failures: 0,
                users: 0,
            });
            entry.users += 1;
        }
        for host in before.difference(&used) {
            if let Some(entry) = self.entries.get_mut(host) {
                entry.users = entry.users.saturating_sub(1);
                if entry.users == 0 && !entry.resolving {
                    self.entries.remove(host);
                }
            }
        }
        if !used.is_empty() {
            self.users.insert(user, used);
        }
    }

    /// The names to look up now (marked as being looked up), at most enough to have
    /// `MAX_IN_FLIGHT` in flight.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut room = MAX_IN_FLIGHT.saturating_sub(self.entries.values().filter(|e| e.resolving).count());
        let mut out = Vec::new();
        for (host, entry) in &mut self.entries {
            if room == 0 {
                break;
            }
            if !entry.resolving && entry.users > 0 && entry.due_at <= now {
                entry.resolving = true;
                out.push(host.clone());
                room -= 1;
            }
        }
        out
    }

    /// A lookup's result. A failure keeps a previous good answer (it serves until a lookup
    /// succeeds again) and is tried again after the backoff. Says whether what `host`
    /// resolves to changed.
    pub fn resolved(&mut self, host: &str, result: Result<IpAddr, String>, now: Instant) -> bool {
        let Some(entry) = self.entries.get_mut(host) else { return false };
        entry.resolving = false;
        if entry.users == 0 {
            self.entries.remove(host);
            return false;
        }
        let before = entry.answer.clone();
        match result {
            Ok(ip) => {
                entry.answer = Some(Ok(ip));
                entry.failures = 0;
                entry.due_at = now + TTL;
            }
            Err(err) => {
                entry.failures = entry.failures.saturating_add(1);
                let delay = RETRY_MIN.saturating_mul(1 << entry.failures.min(6).saturating_sub(1)).min(RETRY_MAX);
                entry.due_at = now + delay;
                if !matches!(entry.answer, Some(Ok(_))) {
                    entry.answer = Some(Err(err));
                }
            }
        }
        entry.answer != before
    }

    /// The lookups in flight were dropped (the shell's session ended): each is due again now,
    /// or forgotten if no user names it any more.
    pub fn abandon_lookups(&mut self) {
        self.entries.retain(|_, entry| {
            entry.resolving = false;
            entry.users > 0
        });
    }

    /// The next time a lookup falls due (never in the past).
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        self.entries.values().filter(|e| !e.resolving && e.users > 0 && e.due_at > now).map(|e| e.due_at).min()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_need_no_lookup_and_names_are_looked_up_once_at_a_time() {
        let now = Instant::now();
        let mut dns = Dns::default();
        assert_eq!(dns.lookup("10.0.0.1"), Some(Ok("10.0.0.1".parse().unwrap())));
        dns.keep(0, ["10.0.0.1", "web1.internal", "web1.internal"], now);
        assert_eq!(dns.len(), 1);
        assert_eq!(dns.lookup("web1.internal"), None, "pending");
        assert_eq!(dns.due(now), ["web1.internal"]);
        assert!(dns.due(now).is_empty(), "already being looked up");
        dns.resolved("web1.internal", Ok("10.0.0.7".parse().unwrap()), now);
        assert_eq!(dns.lookup("web1.internal"), Some(Ok("10.0.0.7".parse().unwrap())));
        assert_eq!(dns.next_wake(now), Some(now + TTL));
    }

    #[test]
    fn failures_are_retried_with_backoff_and_a_good_answer_survives_a_failed_refresh() {
        let now = Instant::now();
        let mut dns = Dns::default();
        dns.keep(0, ["late.internal"], now);
        dns.due(now);
        dns.resolved("late.internal", Err("no such host".into()), now);
        assert!(dns.lookup("late.internal").is_some_and(|r| r.is_err()));
        assert_eq!(dns.next_wake(now), Some(now + Duration::from_secs(1)));
        let later = now + Duration::from_secs(1);
        assert_eq!(dns.due(later), ["late.internal"]);
        dns.resolved("late.internal", Err("no such host".into()), later);
        assert_eq!(dns.next_wake(later), Some(later + Duration::from_secs(2)), "backing off");
        let then = later + Duration::from_secs(2);
        dns.due(then);
        dns.resolved("late.internal", Ok("10.0.0.9".parse().unwrap()), then);
        assert!(dns.lookup("late.internal").is_some_and(|r| r.is_ok()), "resolving after a while");
        // The refresh fails: the good answer stays.
        let expired = then + TTL;
        assert_eq!(dns.due(expired), ["late.internal"]);
        dns.resolved("late.internal", Err("timed out".into()), expired);
        assert_eq!(dns.lookup("late.internal"), Some(Ok("10.0.0.9".parse().unwrap())));
    }

    #[test]
    fn at_most_eight_in_flight_and_unused_names_are_forgotten() {
        let now = Instant::now();
        let mut dns = Dns::default();
        let names: Vec<String> = (0..20).map(|i| format!("h{i}.internal")).collect();
        dns.keep(0, names.iter().map(String::as_str), now);
        assert_eq!(dns.due(now).len(), MAX_IN_FLIGHT);
        assert!(dns.due(now).is_empty());
        dns.keep(0, ["h0.internal"], now);
        // Those being looked up stay until answered; the rest go.
        assert!(dns.len() <= MAX_IN_FLIGHT + 1);
        for name in &names {
            dns.resolved(name, Ok("10.0.0.1".parse().unwrap()), now);
        }
        dns.keep(0, ["h0.internal"], now);
        assert_eq!(dns.len(), 1);
    }

    #[test]
    fn a_name_stays_while_any_user_names_it_with_its_answer() {
        let now = Instant::now();
        let mut dns = Dns::default();
        dns.keep(0, ["shared.internal", "a.internal"], now);
        dns.keep(1, ["shared.internal"], now);
        for name in dns.due(now) {
            dns.resolved(&name, Ok("10.0.0.2".parse().unwrap()), now);
        }
        dns.keep(0, [], now);
        assert_eq!(dns.lookup("shared.internal"), Some(Ok("10.0.0.2".parse().unwrap())), "user 1 still names it");
        assert_eq!(dns.lookup("a.internal"), None, "no user names it");
        assert!(dns.due(now).is_empty(), "nothing to look up again");
        dns.keep(1, [], now);
        assert!(dns.is_empty());
    }

    #[test]
    fn lookups_dropped_with_a_session_are_due_again_and_only_new_answers_count() {
        let now = Instant::now();
        let mut dns = Dns::default();
        let names: Vec<String> = (0..MAX_IN_FLIGHT + 1).map(|i| format!("h{i}.internal")).collect();
        dns.keep(0, names.iter().map(String::as_str), now);
        dns.keep(1, ["gone.internal"], now);
        let first = dns.due(now);
        assert_eq!(first.len(), MAX_IN_FLIGHT);
        dns.keep(1, [], now);
        // The session ends: every lookup in flight is dropped, unanswered.
        dns.abandon_lookups();
        assert_eq!(dns.due(now).len(), MAX_IN_FLIGHT, "looked up again, not stuck as in flight");
        assert!(dns.lookup("gone.internal").is_none() && dns.len() == names.len(), "an unused name forgotten");
        assert!(dns.resolved("h0.internal", Ok("10.0.0.3".parse().unwrap()), now), "a first answer");
        dns.due(now + TTL);
        assert!(!dns.resolved("h0.internal", Ok("10.0.0.3".parse().unwrap()), now + TTL), "the same answer again");
    }
}
