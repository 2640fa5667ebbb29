//! Parsing `show servers state`, `show map` and `show info`. No I/O.
//!
//! `show servers state [<backend>]` prints a format version (`1`), a `# be_id be_name …`
//! header, and one space-separated line per server. Columns are found by header name, not
//! position, so added columns in later versions change nothing.

use std::net::IpAddr;

use crate::model::Endpoint;

/// `srv_admin_state` bits that mean "in maintenance": forced, inherited, by DNS, by health.
/// (0x04, "maintenance from configuration", only remembers the `disabled` keyword.)
const ADMIN_MAINT: u8 = 0x01 | 0x02 | 0x20 | 0x40;
/// `srv_admin_state` bits that mean "draining": forced, inherited.
const ADMIN_DRAIN: u8 = 0x08 | 0x10;

/// A server's administrative state, as Axon drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

/// One server of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub name: String,
    pub id: u32,
    /// `None` when HAProxy has no address for it.
    pub endpoint: Option<Endpoint>,
    pub admin: Admin,
    /// The user-set weight (`srv_uweight`).
    pub weight: u16,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// HAProxy has no backend of that name (a typo, or a backend renamed and reloaded away).
    #[error("HAProxy has no such backend")]
    UnknownBackend,
    #[error("`show servers state` answered {0:?}")]
    Refused(String),
    #[error("`show servers state` has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("`show servers state` line {line}: {reason}")]
    BadLine { line: usize, reason: String },
}

/// Parses one `show servers state` reply.
pub fn parse_servers_state(text: &str) -> Result<Vec<ServerState>, StateError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, "1")) => {}
        // HAProxy's whole reply to `show servers state <backend>` for a backend it lacks.
        Some((_, other)) if other.starts_with("Can't find backend") => return Err(StateError::UnknownBackend),
        Some((_, other)) => return Err(StateError::Refused(other.trim().to_owned())),
        None => return Ok(Vec::new()),
    }
    let Some((_, header)) = lines.next() else { return Ok(Vec::new()) };
    let columns: Vec<&str> = header.trim_start_matches('#').split_whitespace().collect();
    let column = |name: &'static str| columns.iter().position(|c| *c == name).ok_or(StateError::MissingColumn(name));
    let (be, name, id, addr, port) =
        (column("be_name")?, column("srv_name")?, column("srv_id")?, column("srv_addr")?, column("srv_port")?);
    let (op, admin, weight) = (column("srv_op_state")?, column("srv_admin_state")?, column("srv_uweight")?);
    let mut servers = Vec::new();
    for (index, line) in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = |reason: String| StateError::BadLine { line: index + 1, reason };
        let field = |i: usize| fields.get(i).copied().ok_or_else(|| bad(format!("{} fields", fields.len())));
        let number = |i: usize| -> Result<u64, StateError> {
            let text = field(i)?;
            text.parse().map_err(|_| bad(format!("{:?} is not a number", text)))
        };
        let admin_bits = u8::try_from(number(admin)?).map_err(|_| bad("admin state out of range".into()))?;
        let ip = field(addr)?.parse::<IpAddr>().ok();
        let port = u16::try_from(number(port)?).map_err(|_| bad("port out of range".into()))?;
        servers.push(ServerState {
            backend: field(be)?.to_owned(),
            name: field(name)?.to_owned(),
            id: u32::try_from(number(id)?).map_err(|_| bad("id out of range".into()))?,
            endpoint: ip.map(|ip| Endpoint::new(ip, port)),
            admin: if admin_bits & ADMIN_MAINT != 0 {
                Admin::Maint
            } else if admin_bits & ADMIN_DRAIN != 0 {
                Admin::Drain
            } else {
                Admin::Ready
            },
            weight: u16::try_from(number(weight)?).map_err(|_| bad("weight out of range".into()))?,
            op_state: u8::try_from(number(op)?).map_err(|_| bad("op state out of range".into()))?,
        });
    }
    Ok(servers)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// HAProxy's configuration does not name this map (`Unknown map identifier`).
    #[error("HAProxy's configuration uses no map of this name")]
    Unknown,
    #[error("`show map` answered {0:?}")]
    Refused(String),
}

/// Parses one `show map <file>` reply: one `<pointer> <key> <value>` line per entry, in
/// HAProxy's order (a key may appear more than once).
pub fn parse_map(text: &str) -> Result<Vec<(String, String)>, MapError> {
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(pointer), Some(key), value) if pointer.starts_with("0x") && !key.is_empty() => {
                entries.push((key.to_owned(), value.unwrap_or_default().trim().to_owned()));
            }
            _ if line.starts_with("Unknown map identifier") => return Err(MapError::Unknown),
            _ => return Err(MapError::Refused(line.trim().to_owned())),
        }
    }
    Ok(entries)
}

/// `show servers state` as the server-state file a reload reads, for servers declared by a
/// `server-template … disabled`: every server `managed` says is a slot gets the "maintenance
/// from configuration" bit (0x04), as a template slot has. Servers added with `add server`
/// lack it, and HAProxy, finding it in the configuration but not in the file, takes that for a
/// configuration change and leaves the slot in maintenance; with it, each slot gets its state
/// back (ready, draining or in maintenance), as the template slots do.
pub fn for_reload(text: &str, managed: impl Fn(&str, &str) -> bool) -> String {
    let mut columns: Vec<&str> = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if let Some(header) = body.strip_prefix('#') {
            columns = header.split_whitespace().collect();
            out.push_str(line);
            continue;
        }
        let column = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(be), Some(srv), Some(admin)) = (column("be_name"), column("srv_name"), column("srv_admin_state"))
        else {
            out.push_str(line);
            continue;
        };
        let mut fields: Vec<String> = body.split(' ').map(str::to_owned).collect();
        let slot = matches!((fields.get(be), fields.get(srv)), (Some(b), Some(s)) if managed(b, s));
        match fields.get(admin).and_then(|a| a.parse::<u8>().ok()) {
            Some(bits) if slot => {
                fields[admin] = (bits | 0x04).to_string();
                out.push_str(&fields.join(" "));
                out.push_str(&line[body.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// The `Pid` field of `show info`.
pub fn parse_pid(info: &str) -> Option<u32> {
    info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_backend_is_told_apart() {
        // HAProxy 2.6.12's whole reply to `show servers state nosuch`.
        assert_eq!(parse_servers_state("Can't find backend.\n"), Err(StateError::UnknownBackend));
        assert!(matches!(parse_servers_state("Permission denied\n"), Err(StateError::Refused(_))));
    }

    #[test]
    fn parses_map_entries_and_refusals() {
        // As HAProxy 2.6.12 prints them; the value is the rest of the line.
        let text = "0x5581fa2c8a90 web.example web/be_web\n0x5581fa2c8b10 api.example api/be api\n\n";
        assert_eq!(
            parse_map(text).unwrap(),
            [("web.example".into(), "web/be_web".into()), ("api.example".into(), "api/be api".into())]
        );
        assert_eq!(parse_map(""), Ok(vec![]));
        assert_eq!(parse_map("Unknown map identifier. Please use #<id> or <file>.\n"), Err(MapError::Unknown));
        assert!(matches!(parse_map("Permission denied\n"), Err(MapError::Refused(_))));
        assert!(matches!(parse_map("0x55\n"), Err(MapError::Refused(_))));
    }

    /// Captured from HAProxy 2.6.12: three template slots, one set ready, one draining.
    const STATE: &str = "1\n\
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
3 be_web 1 web1 127.0.0.1 2 4 10 1 42 6 3 3 6 0 0 0 - 18081 - 0 0 - - 0\n\
3 be_web 2 web2 127.0.0.1 2 12 5 1 38 6 3 3 6 0 0 0 - 18082 - 0 0 - - 0\n\
3 be_web 3 web3 127.0.0.1 0 5 3 1 43 1 0 0 14 0 0 0 - 1 - 0 0 - - 0\n\n";

    #[test]
    fn parses_slots_by_column_name() {
        let servers = parse_servers_state(STATE).unwrap();
        assert_eq!(servers.len(), 3);
        assert_eq!(
            servers[0],
            ServerState {
                backend: "be_web".into(),
                name: "web1".into(),
                id: 1,
                endpoint: Some(Endpoint::new("127.0.0.1".parse().unwrap(), 18081)),
                admin: Admin::Ready,
                weight: 10,
                op_state: 2,
            }
        );
        assert_eq!(servers[1].admin, Admin::Drain);
        assert_eq!(servers[2].admin, Admin::Maint);
        assert_eq!(servers[2].endpoint.unwrap().port, 1);
    }

    #[test]
    fn columns_may_move() {
        let moved = "1\n# srv_name be_name srv_id srv_addr srv_port srv_op_state srv_admin_state srv_uweight extra\nweb1 be 7 10.0.0.1 80 2 0 3 x\n";
        let servers = parse_servers_state(moved).unwrap();
        assert_eq!((servers[0].name.as_str(), servers[0].id, servers[0].weight), ("web1", 7, 3));
    }

    #[test]
    fn refusals_and_damage_are_errors() {
        assert_eq!(parse_servers_state("Can't find backend.\n\n"), Err(StateError::UnknownBackend));
        assert_eq!(parse_servers_state("1\n# be_name srv_name\nx y\n"), Err(StateError::MissingColumn("srv_id")));
        let short = STATE.replace(" 18081 - 0 0 - - 0", "");
        assert!(matches!(parse_servers_state(&short), Err(StateError::BadLine { line: 3, .. })));
        assert_eq!(parse_servers_state(""), Ok(Vec::new()));
    }

    #[test]
    fn slots_get_the_configuration_maintenance_bit_for_a_reload() {
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n\
                    5 web 1 web1 10.0.0.1 2 4 1\n\
                    5 web 11 web11 10.0.0.2 2 0 1\n\
                    5 web 12 web12 10.0.0.3 0 1 1\n\
                    5 web 13 web13 10.0.0.4 2 8 1\n\
                    5 web 14 static 10.0.0.5 2 0 1\n";
        let reloaded = for_reload(text, |be, srv| be == "web" && srv.starts_with("web"));
        let admin: Vec<&str> = reloaded.lines().skip(2).map(|l| l.split(' ').nth(6).unwrap()).collect();
        // ready, ready, maintenance, draining — each with the bit; the unmanaged server as is.
        assert_eq!(admin, ["4", "4", "5", "12", "0"]);
        assert!(reloaded.starts_with("1\n# be_id"));
        assert!(reloaded.ends_with('\n'));
    }

    #[test]
    fn reads_the_pid() {
        assert_eq!(parse_pid("Name: HAProxy\nVersion: 2.6.12\nPid: 1724\nUptime_sec: 1\n"), Some(1724));
        assert_eq!(parse_pid("Name: HAProxy\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,400}") {
            let _ = parse_servers_state(&text);
            let _ = parse_servers_state(&format!("1\n{text}"));
            let _ = parse_map(&text);
            let _ = parse_map(&format!("0x1 {text}"));
        }
    }
}
