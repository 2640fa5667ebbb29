//! The runtime API commands Axon sends, how they are written, and which replies mean they
//! were accepted. No I/O.

use std::fmt;

use crate::haproxy::state::Admin;
use crate::model::Endpoint;

/// One runtime API command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    SetAddr {
        backend: String,
        server: String,
        endpoint: Endpoint,
    },
    SetWeight {
        backend: String,
        server: String,
        weight: u16,
    },
    SetState {
        backend: String,
        server: String,
        state: Admin,
    },
    /// A dynamic server; HAProxy adds it in maintenance.
    AddServer {
        backend: String,
        server: String,
        endpoint: Endpoint,
        weight: u16,
        options: String,
    },
    EnableHealth {
        backend: String,
        server: String,
    },
    ShowServersState {
        backend: String,
    },
    /// A map's entries (`show map <file>`).
    ShowMap {
        map: String,
    },
    /// A key the map lacks.
    AddMap {
        map: String,
        key: String,
        value: String,
    },
    /// A new value for every entry of `key`.
    SetMap {
        map: String,
        key: String,
        value: String,
    },
    /// Every entry of `key`.
    DelMap {
        map: String,
        key: String,
    },
}

impl fmt::Display for Command {
    /// The command as written on the socket. Names and options were validated to hold no `;`,
    /// `\` or line break, so nothing needs escaping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::SetAddr { backend, server, endpoint } => {
                write!(f, "set server {backend}/{server} addr {} port {}", endpoint.ip, endpoint.port)
            }
            Command::SetWeight { backend, server, weight } => {
                write!(f, "set server {backend}/{server} weight {weight}")
            }
            Command::SetState { backend, server, state } => {
                let state = match state {
                    Admin::Ready => "ready",
                    Admin::Drain => "drain",
                    Admin::Maint => "maint",
                };
                write!(f, "set server {backend}/{server} state {state}")
            }
            Command::AddServer { backend, server, endpoint, weight, options } => {
                write!(f, "add server {backend}/{server} {endpoint} weight {weight}")?;
                if !options.is_empty() {
                    write!(f, " {options}")?;
                }
                Ok(())
            }
            Command::EnableHealth { backend, server } => write!(f, "enable health {backend}/{server}"),
            Command::ShowServersState { backend } => write!(f, "show servers state {backend}"),
            Command::ShowMap { map } => write!(f, "show map {map}"),
            Command::AddMap { map, key, value } => write!(f, "add map {map} {key} {value}"),
            Command::SetMap { map, key, value } => write!(f, "set map {map} {key} {value}"),
            Command::DelMap { map, key } => write!(f, "del map {map} {key}"),
        }
    }
}

impl Command {
    /// Whether `reply` means the command was carried out. Anything unknown counts as refused:
    /// the caller then reads HAProxy's state again, so a success worded differently by another
    /// version costs one resync, never a wrong belief.
    pub fn accepted(&self, reply: &str) -> bool {
        let reply = reply.trim();
        match self {
            Command::SetAddr { .. } => {
                // 2.6: "no need to change the addr, port changed from …"; 3.0: "port changed
                // from …", "IP changed from …", "nothing changed". A port-map refusal can follow
                // an IP change in the same reply.
                let lower = reply.to_ascii_lowercase();
                let changed = ["no need to change the addr", "ip changed from", "port changed from", "nothing changed"]
                    .iter()
                    .any(|ok| lower.starts_with(ok));
                changed && !lower.contains("can't")
            }
            // A warning may come first (an option HAProxy adjusted, say): a line says it.
            Command::AddServer { .. } => reply.lines().any(|l| l.trim().starts_with("New server registered")),
            Command::SetWeight { .. }
            | Command::SetState { .. }
            | Command::EnableHealth { .. }
            | Command::AddMap { .. }
            | Command::SetMap { .. }
            | Command::DelMap { .. } => reply.is_empty(),
            Command::ShowServersState { .. } => reply.starts_with('1'),
            // Entries (`0x… key value`) or nothing.
            Command::ShowMap { .. } => reply.is_empty() || reply.starts_with("0x"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint::new("10.0.0.5".parse().unwrap(), 8080)
    }

    #[test]
    fn writes_commands_as_haproxy_reads_them() {
        let (b, s) = ("be_web".to_string(), "web3".to_string());
        let cases = [
            (
                Command::SetAddr { backend: b.clone(), server: s.clone(), endpoint: endpoint() },
                "set server be_web/web3 addr 10.0.0.5 port 8080",
            ),
            (
                Command::SetWeight { backend: b.clone(), server: s.clone(), weight: 256 },
                "set server be_web/web3 weight 256",
            ),
            (
                Command::SetState { backend: b.clone(), server: s.clone(), state: Admin::Drain },
                "set server be_web/web3 state drain",
            ),
            (
                Command::AddServer {
                    backend: b.clone(),
                    server: "web11".into(),
                    endpoint: endpoint(),
                    weight: 2,
                    options: "check inter 1s".into(),
                },
                "add server be_web/web11 10.0.0.5:8080 weight 2 check inter 1s",
            ),
            (Command::EnableHealth { backend: b.clone(), server: s.clone() }, "enable health be_web/web3"),
            (Command::ShowServersState { backend: b.clone() }, "show servers state be_web"),
        ];
        for (command, text) in cases {
            assert_eq!(command.to_string(), text);
        }
        let map = "/var/lib/haproxy/axon-hosts.map".to_string();
        let (key, value) = ("web.example".to_string(), "web/be_web".to_string());
        let maps = [
            (Command::ShowMap { map: map.clone() }, "show map /var/lib/haproxy/axon-hosts.map"),
            (
                Command::AddMap { map: map.clone(), key: key.clone(), value: value.clone() },
                "add map /var/lib/haproxy/axon-hosts.map web.example web/be_web",
            ),
            (
                Command::SetMap { map: map.clone(), key: key.clone(), value },
                "set map /var/lib/haproxy/axon-hosts.map web.example web/be_web",
            ),
            (Command::DelMap { map, key }, "del map /var/lib/haproxy/axon-hosts.map web.example"),
        ];
        for (command, text) in maps {
            assert_eq!(command.to_string(), text);
        }
        let v6 = Command::SetAddr { backend: b, server: s, endpoint: Endpoint::new("::1".parse().unwrap(), 80) };
        assert_eq!(v6.to_string(), "set server be_web/web3 addr ::1 port 80");
    }

    #[test]
    fn classifies_replies_seen_on_haproxy() {
        let set_addr = Command::SetAddr { backend: "b".into(), server: "s".into(), endpoint: endpoint() };
        assert!(
            set_addr
                .accepted("no need to change the addr, port changed from '1' to '18081' by 'stats socket command'\n")
        );
        assert!(set_addr.accepted(
            "IP changed from '127.0.0.1' to '10.0.0.5', port changed from '1' to '8080' by 'stats socket command'"
        ));
        assert!(!set_addr.accepted("No such server."));
        // HAProxy 3.0's wordings.
        assert!(set_addr.accepted("port changed from '1' to '39751' by 'stats socket command'"));
        assert!(set_addr.accepted("nothing changed"));
        assert!(!set_addr.accepted(
            "IP changed from '127.0.0.1' to '10.0.0.5', can't change <port> to port map because it is incompatible"
        ));
        assert!(!set_addr.accepted("invalid addr 'x'"));
        let weight = Command::SetWeight { backend: "b".into(), server: "s".into(), weight: 1 };
        assert!(weight.accepted(""));
        assert!(!weight.accepted("Absolute weight can only be between 0 and 256 inclusive."));
        let add = Command::AddServer {
            backend: "b".into(),
            server: "s".into(),
            endpoint: endpoint(),
            weight: 1,
            options: String::new(),
        };
        assert!(add.accepted("New server registered."));
        assert!(add.accepted("[WARNING] 'slowstart' ignored: no health checks\nNew server registered."));
        assert!(!add.accepted("Already exists a server with the same name in backend."));
        // Maps, as HAProxy 2.6.12 answers.
        let map = "/m".to_string();
        let del = Command::DelMap { map: map.clone(), key: "k".into() };
        assert!(del.accepted(""));
        assert!(!del.accepted("Key not found."));
        assert!(!del.accepted("Unknown map identifier. Please use #<id> or <file>."));
        let show = Command::ShowMap { map };
        assert!(show.accepted("0x55d5c8c0a0 web.example web/web\n0x55d5c8c0b0 api.example api/api"));
        assert!(show.accepted(""));
        assert!(!show.accepted("Unknown map identifier. Please use #<id> or <file>."));
    }
}
