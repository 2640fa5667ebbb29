//! Answering the `route` message: HAProxy's arguments in, [`crate::spoe::route`]'s decision out as
//! variables (`txn.<prefix>.svc`, `be`, `addr`, `port`, `status` with the shipped prefix `axon`).

use std::sync::Arc;

use tokio::sync::watch;

use super::agent::{AckWriter, Handler};
use super::codec::{Action, Messages, Scope, Typed};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::spoe::route::{Decision, Request, Routes};

/// The message Axon's SPOE configuration sends.
pub const ROUTE: &[u8] = b"route";

/// Routes requests from the latest snapshot; never waits on anything.
pub struct RouteHandler {
    routes: Routes,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Decisions counted by status, the counters looked up once.
    found: Counter,
    unknown_service: Counter,
    no_instance: Counter,
    notifies: Counter,
}

impl RouteHandler {
    pub fn new(routes: Routes, snapshots: watch::Receiver<Arc<Snapshot>>, metrics: Metrics) -> RouteHandler {
        RouteHandler {
            routes,
            snapshots,
            found: metrics.spoe_decisions("found"),
            unknown_service: metrics.spoe_decisions("unknown_service"),
            no_instance: metrics.spoe_decisions("no_instance"),
            notifies: metrics.spoe_notifies.clone(),
        }
    }
}

fn set<'a>(name: &'static [u8], value: Typed<'a>) -> Action<'a> {
    Action::SetVar { scope: Scope::Txn, name, value }
}

impl Handler for RouteHandler {
    fn notify(&self, messages: Messages<'_>, ack: &mut AckWriter<'_>) {
        self.notifies.inc();
        for message in messages.flatten().filter(|m| m.name == ROUTE) {
            let mut request = Request::default();
            for (name, value) in message.args().flatten() {
                match name {
                    b"host" => request.host = value.as_bytes().unwrap_or_default(),
                    b"path" => request.path = value.as_bytes().unwrap_or_default(),
                    b"label" => request.label = value.as_bytes(),
                    _ => {}
                }
            }
            let snapshot = self.snapshots.borrow();
            let decision = self.routes.decide(&snapshot, &request);
            match decision {
                Decision::Backend { service, backend } => {
                    ack.push(&set(b"svc", Typed::Str(service.as_bytes())));
                    ack.push(&set(b"be", Typed::Str(backend.as_bytes())));
                }
                Decision::Instance { service, endpoint } => {
                    ack.push(&set(b"svc", Typed::Str(service.as_bytes())));
                    ack.push(&set(
                        b"addr",
                        match endpoint.ip {
                            std::net::IpAddr::V4(ip) => Typed::Ipv4(ip),
                            std::net::IpAddr::V6(ip) => Typed::Ipv6(ip),
                        },
                    ));
                    ack.push(&set(b"port", Typed::Uint32(u32::from(endpoint.port))));
                }
                Decision::NoInstance { service } => ack.push(&set(b"svc", Typed::Str(service.as_bytes()))),
                Decision::UnknownService => {}
            }
            ack.push(&set(b"status", Typed::Str(decision.status().as_bytes())));
            match decision {
                Decision::Backend { .. } | Decision::Instance { .. } => self.found.inc(),
                Decision::UnknownService => self.unknown_service.inc(),
                Decision::NoInstance { .. } => self.no_instance.inc(),
            };
        }
    }
}
