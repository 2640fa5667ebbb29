//! Entry points for the fuzz targets (fuzz/) and for the test that replays their corpus: bytes
//! from the network, through the same code a connection runs. Panics only where an invariant
//! of Axon's own output breaks.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{Endpoint, Instance, ServiceView, Snapshot, Source};
use crate::spoe::agent::{Agent, Next};
use crate::spoe::codec::decode_frame;
use crate::spoe::handler::RouteHandler;
use crate::spoe::route::Routes;

const CONFIG: &str = r#"
[zookeeper]
connect = "127.0.0.1:2181"
[haproxy]
socket = "/s"
[routing]
host_suffixes = [".example"]
[[routing.route]]
path_prefix = "/api/"
service = "api"
[[service]]
name = "web"
zk_path = "/web"
backend = "web"
[[service]]
name = "api"
zk_path = "/api"
"#;

fn handler() -> &'static RouteHandler {
    static HANDLER: OnceLock<(RouteHandler, watch::Sender<Arc<Snapshot>>)> = OnceLock::new();
    &HANDLER
        .get_or_init(|| {
            let config = Config::parse(Path::new("fuzz.toml"), CONFIG).expect("the fuzz configuration");
            let instance = |last: u8, labels: &[(&str, &str)]| {
                Instance::unnamed(Endpoint::new([10, 0, 0, last].into(), 80), u16::from(last), labels)
            };
            let view = ServiceView {
                instances: vec![instance(1, &[("canary", "true")]), instance(2, &[])],
                source: Source::Discovered,
                problems: vec![],
            };
            let snapshot = Snapshot {
                services: [("web".into(), Arc::new(view.clone())), ("api".into(), Arc::new(view))]
                    .into_iter()
                    .collect(),
                version: 1,
                taken: None,
            };
            let (tx, rx) = watch::channel(Arc::new(snapshot));
            let (metrics, _) = Metrics::new();
            (RouteHandler::new(Routes::new(&config), rx, metrics), tx)
        })
        .0
}

/// How far a connection's bytes took the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reached {
    /// Frames the agent decoded.
    pub frames: usize,
    /// ACKs it wrote (NOTIFYs answered).
    pub acks: usize,
}

/// A connection's bytes, as the agent reads them: frames answered until the agent closes.
/// Everything the agent writes must decode as whole frames.
pub fn agent_stream(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let mut agent = Agent::new(16380);
    let mut input = data;
    let mut output = BytesMut::new();
    loop {
        match decode_frame(input, agent.read_limit()) {
            Ok(Some((frame, used))) => {
                input = &input[used..];
                reached.frames += 1;
                if agent.on_frame(&frame, handler(), &mut output) == Next::Close {
                    break;
                }
            }
            Ok(None) => break,
            Err(err) => {
                agent.on_decode_error(&err, &mut output);
                break;
            }
        }
    }
    let mut written = &output[..];
    while !written.is_empty() {
        match decode_frame(written, u32::MAX) {
            Ok(Some((frame, used))) => {
                reached.acks += usize::from(frame.kind == crate::spoe::codec::FrameType::Ack);
                written = &written[used..];
            }
            other => panic!("the agent wrote something that is not a frame: {other:?}"),
        }
    }
    reached
}
