//! The registrar's Prometheus metrics.

use axon_core::zk::SessionMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type ServiceCheck = [(&'static str, String); 2];
type ServiceLabel = [(&'static str, String); 1];

/// Counters and gauges, cheap to clone (each is an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub checks: Family<ServiceCheck, Counter>,
    pub check_failures: Family<ServiceCheck, Counter>,
    pub service_up: Family<ServiceLabel, Gauge>,
    pub registrations: Counter,
    pub deregistrations: Counter,
    pub zk: SessionMetrics,
    pub zk_errors: Counter,
}

impl Metrics {
    /// New metrics and the registry that exposes them.
    pub fn new() -> (Metrics, Registry) {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("axon_registrar");
        registry.register("checks", "Checks run", metrics.checks.clone());
        registry.register("check_failures", "Checks that failed", metrics.check_failures.clone());
        registry.register("service_up", "1 when every check of the service is up", metrics.service_up.clone());
        registry.register("registrations", "Znodes created", metrics.registrations.clone());
        registry.register("deregistrations", "Znodes deleted", metrics.deregistrations.clone());
        metrics.zk.register(&mut registry);
        registry.register("zk_errors", "ZooKeeper operations that failed", metrics.zk_errors.clone());
        (metrics, registry)
    }

    /// The (runs, failures) counters of one check of a service, to keep and increment.
    pub fn check_counters(&self, service: &str, kind: &'static str) -> (Counter, Counter) {
        let labels = [("service", service.to_owned()), ("type", kind.to_owned())];
        (self.checks.get_or_create(&labels).clone(), self.check_failures.get_or_create(&labels).clone())
    }

    pub fn set_service_up(&self, service: &str, up: bool) {
        self.service_up.get_or_create(&[("service", service.to_owned())]).set(i64::from(up));
    }

    pub fn forget_service(&self, service: &str) {
        self.service_up.remove(&[("service", service.to_owned())]);
    }
}
