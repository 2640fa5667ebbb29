//! axon-spoa's Prometheus metrics.

use axon_core::zk::SessionMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type ServiceLabel = [(&'static str, String); 1];
type ReasonLabel = [(&'static str, &'static str); 1];

/// Counters, gauges and histograms, cheap to clone (each is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub zk: SessionMetrics,
    pub zk_events: Counter,
    pub zk_reads: Counter,
    /// Watches discovery holds (persistent: one per path).
    pub zk_watches: Gauge,
    /// Reads whose outcome was unknown (read again).
    pub zk_read_failures: Counter,
    pub instances: Family<ServiceLabel, Gauge>,
    /// Instances of each service declaring a selector (apart from `instances`: an empty one is
    /// a selector nothing matches now, not a service whose requests fail).
    pub selector_instances: Family<ServiceLabel, Gauge>,
    pub problems: Family<ServiceLabel, Gauge>,
    pub commands: Counter,
    pub refused_commands: Counter,
    /// Commands sent by full passes (repairs and resyncs), apart from changes.
    pub resync_commands: Counter,
    pub resyncs: Family<ReasonLabel, Counter>,
    pub haproxy_up: Gauge,
    /// 1 for a service whose backend cannot be synced.
    pub backend_problems: Family<ServiceLabel, Gauge>,
    /// Hosts the host map should hold.
    pub host_map_entries: Gauge,
    /// 1 while HAProxy's host map holds what it should.
    pub host_map_applied: Gauge,
    /// From a snapshot read from ZooKeeper to HAProxy having accepted its commands.
    pub propagation: Histogram,
    pub spoe_connections: Gauge,
    pub spoe_decisions: Family<ReasonLabel, Counter>,
    pub spoe_notifies: Counter,
    pub spoe_disconnects: Family<[(&'static str, String); 1], Counter>,
}

impl Metrics {
    pub fn new() -> (Metrics, Registry) {
        let metrics = Metrics {
            zk: SessionMetrics::default(),
            zk_events: Counter::default(),
            zk_reads: Counter::default(),
            zk_watches: Gauge::default(),
            zk_read_failures: Counter::default(),
            instances: Family::default(),
            selector_instances: Family::default(),
            problems: Family::default(),
            commands: Counter::default(),
            refused_commands: Counter::default(),
            resync_commands: Counter::default(),
            resyncs: Family::default(),
            haproxy_up: Gauge::default(),
            backend_problems: Family::default(),
            host_map_entries: Gauge::default(),
            host_map_applied: Gauge::default(),
            propagation: Histogram::new(exponential_buckets(0.0002, 2.0, 16)),
            spoe_connections: Gauge::default(),
            spoe_decisions: Family::default(),
            spoe_notifies: Counter::default(),
            spoe_disconnects: Family::default(),
        };
        let mut registry = Registry::with_prefix("axon_spoa");
        metrics.zk.register(&mut registry);
        registry.register("zk_events", "ZooKeeper watch events", metrics.zk_events.clone());
        registry.register("zk_reads", "ZooKeeper reads (listings and data)", metrics.zk_reads.clone());
        registry.register("zk_watches", "Persistent ZooKeeper watches held", metrics.zk_watches.clone());
        registry.register(
            "zk_read_failures",
            "ZooKeeper reads that failed without an answer (read again)",
            metrics.zk_read_failures.clone(),
        );
        registry.register("instances", "Instances the proxy uses, per service", metrics.instances.clone());
        registry.register(
            "selector_instances",
            "Instances matching a declared selector, per service declaring it (selector_of)",
            metrics.selector_instances.clone(),
        );
        registry.register("problems", "Znodes skipped or changed, per service", metrics.problems.clone());
        registry.register("commands", "Runtime API commands sent", metrics.commands.clone());
        registry.register("refused_commands", "Runtime API commands HAProxy refused", metrics.refused_commands.clone());
        registry.register(
            "resync_commands",
            "Runtime API commands sent by full passes (repairs of drift, resyncs after reloads)",
            metrics.resync_commands.clone(),
        );
        registry.register("resyncs", "Full reads and repairs of HAProxy's state, by reason", metrics.resyncs.clone());
        registry.register("haproxy_up", "1 while HAProxy's runtime API answers", metrics.haproxy_up.clone());
        registry.register(
            "backend_problems",
            "1 for a service whose HAProxy backend cannot be synced (missing from HAProxy, unreadable)",
            metrics.backend_problems.clone(),
        );
        registry.register(
            "host_map_entries",
            "Hosts HAProxy's host map should hold (routed without the agent)",
            metrics.host_map_entries.clone(),
        );
        registry.register(
            "host_map_applied",
            "1 while HAProxy's host map holds what it should, 0 while it cannot be kept",
            metrics.host_map_applied.clone(),
        );
        registry.register_with_unit(
            "propagation",
            "From a change read in ZooKeeper to HAProxy having applied it (full passes' repairs not included)",
            prometheus_client::registry::Unit::Seconds,
            metrics.propagation.clone(),
        );
        registry.register("spoe_connections", "SPOE connections open", metrics.spoe_connections.clone());
        registry.register("spoe_decisions", "SPOE route decisions, by status", metrics.spoe_decisions.clone());
        registry.register("spoe_notifies", "SPOE NOTIFY frames answered", metrics.spoe_notifies.clone());
        registry.register(
            "spoe_disconnects",
            "SPOE connections the agent ended, by SPOP status code",
            metrics.spoe_disconnects.clone(),
        );
        (metrics, registry)
    }

    /// The counter of SPOE decisions with `status`, to keep and increment.
    pub fn spoe_decisions(&self, status: &'static str) -> Counter {
        self.spoe_decisions.get_or_create(&[("status", status)]).clone()
    }

    pub fn spoe_disconnect(&self, status: u32) {
        self.spoe_disconnects.get_or_create(&[("status", status.to_string())]).inc();
    }

    pub fn set_discovered(&self, service: &str, instances: usize, problems: usize) {
        let label = [("service", service.to_owned())];
        self.instances.get_or_create(&label).set(i64::try_from(instances).unwrap_or(i64::MAX));
        self.problems.get_or_create(&label).set(i64::try_from(problems).unwrap_or(i64::MAX));
    }

    /// A service declaring a selector: its instances (its path's problems are its parent's).
    pub fn set_selected(&self, service: &str, instances: usize) {
        let label = [("service", service.to_owned())];
        self.selector_instances.get_or_create(&label).set(i64::try_from(instances).unwrap_or(i64::MAX));
    }

    pub fn backend_problem(&self, service: &str, problem: bool) {
        self.backend_problems.get_or_create(&[("service", service.to_owned())]).set(i64::from(problem));
    }

    pub fn resync(&self, reason: &'static str) {
        self.resyncs.get_or_create(&[("reason", reason)]).inc();
    }
}
