//! The agent's side of one SPOP connection, as a state machine: frames in, frames out. No I/O.
//!
//! Lifecycle: `AwaitingHello` → `Serving` → `Closed` (terminal). The rules that make one agent
//! work with HAProxy 2.6 through 3.1+ (where SPOE was rebuilt on a multiplexer):
//! - AGENT-HELLO offers version 2.0, `max-frame-size` = min(ours, HAProxy's) and only the
//!   `pipelining` capability (no `async`, no `fragmentation`); a health-check HELLO is answered
//!   and the connection closed;
//! - every NOTIFY is answered on its own connection by an ACK with its stream-id and frame-id,
//!   FIN set, and at least one action (3.1 stalls on an empty ACK until its processing timeout);
//! - a fragment (no FIN, or a continuation frame) ends the connection with status 10; a frame
//!   that cannot be decoded with 4; one over the agreed size with 3; an idle connection with 2;
//!   HAPROXY-DISCONNECT is answered with status 0.

use bytes::BytesMut;

use super::codec::{
    Action, CodecError, FLAG_FIN, Frame, FrameType, MIN_FRAME_SIZE, Messages, Scope, Status, Typed, kv_list, messages,
    put_action, put_frame, put_kv, validate_messages,
};

/// The only protocol version there is.
const VERSION: &[u8] = b"2.0";
/// The capabilities Axon's agent offers.
const CAPABILITIES: &[u8] = b"pipelining";

/// Answers NOTIFY messages.
pub trait Handler {
    /// Appends the actions answering `messages` (already validated) to `ack`.
    fn notify(&self, messages: Messages<'_>, ack: &mut AckWriter<'_>);
}

/// The actions of one ACK being written.
pub struct AckWriter<'a> {
    out: &'a mut BytesMut,
    count: usize,
}

impl AckWriter<'_> {
    pub fn push(&mut self, action: &Action<'_>) {
        put_action(self.out, action);
        self.count += 1;
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AwaitingHello,
    Serving { max_frame_size: u32 },
    Closed,
}

/// What the connection should do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Write what was produced, then close.
    Close,
}

#[derive(Debug)]
pub struct Agent {
    state: State,
    own_max_frame_size: u32,
    /// The status of the AGENT-DISCONNECT sent, if one was.
    disconnected: Option<Status>,
}

impl Agent {
    pub fn new(own_max_frame_size: u32) -> Agent {
        Agent {
            state: State::AwaitingHello,
            own_max_frame_size: own_max_frame_size.max(MIN_FRAME_SIZE),
            disconnected: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The status of the AGENT-DISCONNECT this agent sent, if it sent one.
    pub fn disconnected(&self) -> Option<Status> {
        self.disconnected
    }

    /// The largest frame to accept now: ours until HELLO, then the agreed size.
    pub fn read_limit(&self) -> u32 {
        match self.state {
            State::Serving { max_frame_size } => max_frame_size,
            _ => self.own_max_frame_size,
        }
    }

    /// Handles one frame, appending any answer to `out`.
    pub fn on_frame(&mut self, frame: &Frame<'_>, handler: &impl Handler, out: &mut BytesMut) -> Next {
        match (self.state, frame.kind) {
            (State::Closed, _) => Next::Close,
            (_, FrameType::HaproxyDisconnect) => self.close(out, Status::Normal, "disconnected as asked"),
            (State::AwaitingHello, FrameType::HaproxyHello) => self.hello(frame, out),
            (State::AwaitingHello, _) => self.close(out, Status::Invalid, "expected HAPROXY-HELLO first"),
            (State::Serving { .. }, FrameType::Notify) => self.notify(frame, handler, out),
            (State::Serving { .. }, FrameType::Unset) => {
                self.close(out, Status::FragmentationNotSupported, "fragmentation is not supported")
            }
            (State::Serving { .. }, FrameType::HaproxyHello) => {
                self.close(out, Status::Invalid, "a second HAPROXY-HELLO")
            }
            (State::Serving { .. }, FrameType::AgentHello | FrameType::AgentDisconnect | FrameType::Ack) => {
                self.close(out, Status::Invalid, "an agent frame sent to the agent")
            }
        }
    }

    /// Bytes that cannot be a frame: the connection ends with the matching status.
    pub fn on_decode_error(&mut self, error: &CodecError, out: &mut BytesMut) -> Next {
        let message = match error {
            CodecError::TooBig { .. } => "frame too big",
            CodecError::Invalid(reason) => reason,
        };
        self.close(out, error.status(), message)
    }

    /// Nothing arrived for the idle timeout.
    pub fn on_idle(&mut self, out: &mut BytesMut) -> Next {
        self.close(out, Status::Timeout, "idle timeout")
    }

    /// The agent has no room for another connection.
    pub fn on_overload(&mut self, out: &mut BytesMut) -> Next {
        self.close(out, Status::Resource, "too many connections")
    }

    /// The agent is stopping.
    pub fn on_shutdown(&mut self, out: &mut BytesMut) -> Next {
        self.close(out, Status::Normal, "agent stopping")
    }

    fn hello(&mut self, frame: &Frame<'_>, out: &mut BytesMut) -> Next {
        if !frame.fin() {
            return self.close(out, Status::FragmentationNotSupported, "fragmented HELLO");
        }
        let (mut versions, mut max_frame_size, mut capabilities, mut healthcheck) = (None, None, None, false);
        for entry in kv_list(frame.payload) {
            let (key, value) = match entry {
                Ok(entry) => entry,
                Err(err) => return self.on_decode_error(&err, out),
            };
            match key {
                b"supported-versions" => versions = value.as_bytes(),
                b"max-frame-size" => max_frame_size = value.as_u64(),
                b"capabilities" => capabilities = value.as_bytes(),
                b"healthcheck" => healthcheck = value == Typed::Bool(true),
                _ => {}
            }
        }
        let Some(versions) = versions else { return self.close(out, Status::NoVersion, "no supported-versions") };
        if !versions.split(|&b| b == b',').any(|v| v.trim_ascii() == VERSION) {
            return self.close(out, Status::BadVersion, "version 2.0 not supported by HAProxy");
        }
        let Some(theirs) = max_frame_size else { return self.close(out, Status::NoFrameSize, "no max-frame-size") };
        if theirs < u64::from(MIN_FRAME_SIZE) {
            return self.close(out, Status::BadFrameSize, "max-frame-size below 256");
        }
        if capabilities.is_none() {
            return self.close(out, Status::NoCapabilities, "no capabilities");
        }
        let agreed = u32::try_from(theirs).unwrap_or(u32::MAX).min(self.own_max_frame_size);
        put_frame(out, FrameType::AgentHello, FLAG_FIN, 0, 0, |out| {
            put_kv(out, "version", &Typed::Str(VERSION));
            put_kv(out, "max-frame-size", &Typed::Uint32(agreed));
            put_kv(out, "capabilities", &Typed::Str(CAPABILITIES));
        });
        if healthcheck {
            self.state = State::Closed;
            return Next::Close;
        }
        self.state = State::Serving { max_frame_size: agreed };
        Next::Continue
    }

    fn notify(&mut self, frame: &Frame<'_>, handler: &impl Handler, out: &mut BytesMut) -> Next {
        if !frame.fin() {
            return self.close(out, Status::FragmentationNotSupported, "fragmented NOTIFY");
        }
        if frame.aborted() {
            // An aborted frame wants no answer.
            return Next::Continue;
        }
        if let Err(err) = validate_messages(frame.payload) {
            return self.on_decode_error(&err, out);
        }
        put_frame(out, FrameType::Ack, FLAG_FIN, frame.stream_id, frame.frame_id, |out| {
            let mut ack = AckWriter { out, count: 0 };
            handler.notify(messages(frame.payload), &mut ack);
            if ack.count == 0 {
                // Never an empty ACK: a harmless action instead.
                ack.push(&Action::UnsetVar { scope: Scope::Txn, name: b"status" });
            }
        });
        Next::Continue
    }

    fn close(&mut self, out: &mut BytesMut, status: Status, message: &str) -> Next {
        if self.state != State::Closed {
            self.disconnected = Some(status);
            put_frame(out, FrameType::AgentDisconnect, FLAG_FIN, 0, 0, |out| {
                put_kv(out, "status-code", &Typed::Uint32(status.code()));
                let message = message.as_bytes();
                put_kv(out, "message", &Typed::Str(&message[..message.len().min(255)]));
            });
        }
        self.state = State::Closed;
        Next::Close
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spoe::codec::{FLAG_ABORT, actions, decode_frame, put_message};

    /// Answers every message with one set-var naming the message.
    struct Echo;

    impl Handler for Echo {
        fn notify(&self, messages: Messages<'_>, ack: &mut AckWriter<'_>) {
            for message in messages.flatten() {
                ack.push(&Action::SetVar { scope: Scope::Txn, name: b"msg", value: Typed::Str(message.name) });
            }
        }
    }

    /// Answers nothing.
    struct Silent;

    impl Handler for Silent {
        fn notify(&self, _: Messages<'_>, _: &mut AckWriter<'_>) {}
    }

    fn hello(entries: &[(&str, Typed<'_>)], flags: u32) -> BytesMut {
        let mut out = BytesMut::new();
        put_frame(&mut out, FrameType::HaproxyHello, flags, 0, 0, |out| {
            for (k, v) in entries {
                put_kv(out, k, v);
            }
        });
        out
    }

    fn standard_hello() -> BytesMut {
        hello(
            &[
                ("supported-versions", Typed::Str(b"2.0")),
                ("max-frame-size", Typed::Uint32(16380)),
                ("capabilities", Typed::Str(b"pipelining,async")),
                ("engine-id", Typed::Str(b"x")),
            ],
            FLAG_FIN,
        )
    }

    fn notify(flags: u32, stream_id: u64, frame_id: u64, name: &str) -> BytesMut {
        let mut out = BytesMut::new();
        put_frame(&mut out, FrameType::Notify, flags, stream_id, frame_id, |out| {
            put_message(out, name, &[("host", Typed::Str(b"web.example"))]);
        });
        out
    }

    /// Feeds frames; returns the agent, every frame it wrote (kind, ids, kv or actions), and
    /// the last `Next`.
    fn feed(agent: &mut Agent, handler: &impl Handler, inputs: &[BytesMut]) -> (Vec<BytesMut>, Next) {
        let mut replies = Vec::new();
        let mut next = Next::Continue;
        for input in inputs {
            let (frame, _) = decode_frame(input, agent.read_limit()).unwrap().unwrap();
            let mut out = BytesMut::new();
            next = agent.on_frame(&frame, handler, &mut out);
            if !out.is_empty() {
                replies.push(out);
            }
        }
        (replies, next)
    }

    fn disconnect_status(bytes: &[u8]) -> (u64, String) {
        let (frame, _) = decode_frame(bytes, u32::MAX).unwrap().unwrap();
        assert_eq!(
            (frame.kind, frame.fin(), frame.stream_id, frame.frame_id),
            (FrameType::AgentDisconnect, true, 0, 0)
        );
        let mut status = (u64::MAX, String::new());
        for entry in kv_list(frame.payload) {
            match entry.unwrap() {
                (b"status-code", value) => status.0 = value.as_u64().unwrap(),
                (b"message", value) => status.1 = String::from_utf8_lossy(value.as_bytes().unwrap()).into_owned(),
                _ => {}
            }
        }
        status
    }

    #[test]
    fn hello_agrees_on_version_size_and_pipelining_only() {
        let mut agent = Agent::new(8192);
        let (replies, next) = feed(&mut agent, &Echo, &[standard_hello()]);
        assert_eq!(next, Next::Continue);
        let (frame, _) = decode_frame(&replies[0], u32::MAX).unwrap().unwrap();
        assert_eq!((frame.kind, frame.fin(), frame.stream_id, frame.frame_id), (FrameType::AgentHello, true, 0, 0));
        let kv: Vec<_> = kv_list(frame.payload).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            kv,
            [
                (&b"version"[..], Typed::Str(b"2.0")),
                (b"max-frame-size", Typed::Uint32(8192)),
                (b"capabilities", Typed::Str(b"pipelining")),
            ]
        );
        assert_eq!(agent.state(), State::Serving { max_frame_size: 8192 });
        assert_eq!(agent.read_limit(), 8192);
    }

    #[test]
    fn a_healthcheck_hello_is_answered_then_closed() {
        let mut agent = Agent::new(16380);
        let check = hello(
            &[
                ("supported-versions", Typed::Str(b"2.0")),
                ("max-frame-size", Typed::Uint32(16380)),
                ("capabilities", Typed::Str(b"")),
                ("healthcheck", Typed::Bool(true)),
            ],
            FLAG_FIN,
        );
        let (replies, next) = feed(&mut agent, &Echo, &[check]);
        assert_eq!(next, Next::Close);
        assert_eq!(decode_frame(&replies[0], u32::MAX).unwrap().unwrap().0.kind, FrameType::AgentHello);
        assert_eq!(agent.state(), State::Closed);
    }

    #[test]
    fn bad_hellos_get_their_status() {
        let cases: &[(&[(&str, Typed<'_>)], u64)] = &[
            (&[("max-frame-size", Typed::Uint32(16380)), ("capabilities", Typed::Str(b""))], 5),
            (
                &[
                    ("supported-versions", Typed::Str(b"1.0, 3.0")),
                    ("max-frame-size", Typed::Uint32(16380)),
                    ("capabilities", Typed::Str(b"")),
                ],
                8,
            ),
            (&[("supported-versions", Typed::Str(b"2.0")), ("capabilities", Typed::Str(b""))], 6),
            (
                &[
                    ("supported-versions", Typed::Str(b"2.0")),
                    ("max-frame-size", Typed::Uint32(100)),
                    ("capabilities", Typed::Str(b"")),
                ],
                9,
            ),
            (&[("supported-versions", Typed::Str(b"2.0")), ("max-frame-size", Typed::Uint32(16380))], 7),
        ];
        for (entries, status) in cases {
            let mut agent = Agent::new(16380);
            let (replies, next) = feed(&mut agent, &Echo, &[hello(entries, FLAG_FIN)]);
            assert_eq!(next, Next::Close);
            assert_eq!(disconnect_status(&replies[0]).0, *status, "{entries:?}");
        }
        let mut agent = Agent::new(16380);
        let (replies, _) = feed(&mut agent, &Echo, &[hello(&[], 0)]);
        assert_eq!(disconnect_status(&replies[0]).0, 10);
    }

    /// The 3.1+ rules: ACKs carry their NOTIFY's ids, always FIN, never empty, whatever order
    /// pipelined NOTIFYs come in.
    #[test]
    fn pipelined_notifies_get_acks_with_their_own_ids_fin_and_an_action() {
        let mut agent = Agent::new(16380);
        feed(&mut agent, &Echo, &[standard_hello()]);
        let ids = [(5u64, 1u64), (3, 9), (300, 2), (5, 2)];
        let inputs: Vec<BytesMut> = ids.iter().map(|&(s, f)| notify(FLAG_FIN, s, f, "route")).collect();
        let (replies, next) = feed(&mut agent, &Echo, &inputs);
        assert_eq!(next, Next::Continue);
        for (reply, &(stream_id, frame_id)) in replies.iter().zip(&ids) {
            let (frame, _) = decode_frame(reply, u32::MAX).unwrap().unwrap();
            assert_eq!(
                (frame.kind, frame.flags, frame.stream_id, frame.frame_id),
                (FrameType::Ack, FLAG_FIN, stream_id, frame_id)
            );
            let actions: Vec<_> = actions(frame.payload).collect::<Result<_, _>>().unwrap();
            assert_eq!(actions, [Action::SetVar { scope: Scope::Txn, name: b"msg", value: Typed::Str(b"route") }]);
        }
        // A handler with nothing to say still yields an action.
        let (replies, _) = feed(&mut agent, &Silent, &[notify(FLAG_FIN, 1, 1, "other")]);
        let (frame, _) = decode_frame(&replies[0], u32::MAX).unwrap().unwrap();
        assert_eq!(actions(frame.payload).count(), 1);
    }

    #[test]
    fn fragments_and_out_of_order_frames_end_the_connection() {
        // A NOTIFY before HELLO.
        let mut agent = Agent::new(16380);
        let (replies, next) = feed(&mut agent, &Echo, &[notify(FLAG_FIN, 1, 1, "route")]);
        assert_eq!((next, disconnect_status(&replies[0]).0), (Next::Close, 4));
        // A fragment (no FIN), and a continuation frame.
        for (flags, kind) in [(0u32, FrameType::Notify), (FLAG_FIN, FrameType::Unset)] {
            let mut agent = Agent::new(16380);
            feed(&mut agent, &Echo, &[standard_hello()]);
            let mut frame = BytesMut::new();
            put_frame(&mut frame, kind, flags, 1, 1, |out| put_message(out, "route", &[]));
            let (replies, next) = feed(&mut agent, &Echo, &[frame]);
            assert_eq!((next, disconnect_status(&replies[0]).0), (Next::Close, 10), "{kind:?}");
        }
        // A second HELLO.
        let mut agent = Agent::new(16380);
        let (replies, _) = feed(&mut agent, &Echo, &[standard_hello(), standard_hello()]);
        assert_eq!(disconnect_status(&replies[1]).0, 4);
        // Nothing is answered once closed.
        let (replies, next) = feed(&mut agent, &Echo, &[notify(FLAG_FIN, 1, 1, "route")]);
        assert!(replies.is_empty());
        assert_eq!(next, Next::Close);
    }

    #[test]
    fn an_aborted_notify_gets_no_answer() {
        let mut agent = Agent::new(16380);
        feed(&mut agent, &Echo, &[standard_hello()]);
        let (replies, next) = feed(&mut agent, &Echo, &[notify(FLAG_FIN | FLAG_ABORT, 1, 1, "route")]);
        assert!(replies.is_empty());
        assert_eq!(next, Next::Continue);
    }

    #[test]
    fn disconnects_carry_their_status() {
        let mut agent = Agent::new(16380);
        feed(&mut agent, &Echo, &[standard_hello()]);
        let mut bye = BytesMut::new();
        put_frame(&mut bye, FrameType::HaproxyDisconnect, FLAG_FIN, 0, 0, |out| {
            put_kv(out, "status-code", &Typed::Uint32(0));
            put_kv(out, "message", &Typed::Str(b"bye"));
        });
        let (replies, next) = feed(&mut agent, &Echo, &[bye]);
        assert_eq!((next, disconnect_status(&replies[0]).0), (Next::Close, 0));

        let mut out = BytesMut::new();
        assert_eq!(Agent::new(16380).on_idle(&mut out), Next::Close);
        assert_eq!(disconnect_status(&out), (2, "idle timeout".into()));
        let mut out = BytesMut::new();
        Agent::new(16380).on_decode_error(&CodecError::TooBig { len: 99999, max: 16380 }, &mut out);
        assert_eq!(disconnect_status(&out).0, 3);
        let mut out = BytesMut::new();
        Agent::new(16380).on_overload(&mut out);
        assert_eq!(disconnect_status(&out).0, 13);
    }
}
