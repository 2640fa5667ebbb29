//! The SPOP 2.0 wire format (HAProxy's doc/SPOE.txt): frames, varints, typed data, kv-lists,
//! NOTIFY messages and ACK actions. Decoding borrows from the input and allocates nothing;
//! encoding appends to a `BytesMut`. No I/O.
//!
//! ```text
//! stream  := { len:u32be frame[len] }
//! frame   := type:u8 flags:u32be stream-id:varint frame-id:varint payload
//! ```
//! "Not enough bytes yet" is a normal outcome (`Ok(None)`), never an error: every prefix of a
//! valid stream decodes as incomplete.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use nom::IResult;
use nom::Parser as _;
use nom::bytes::complete::take;
use nom::number::complete::be_u32;

/// Frame flag: last fragment of a frame (always set: Axon never fragments).
pub const FLAG_FIN: u32 = 0x01;
/// Frame flag: abort a fragmented frame (implies FIN).
pub const FLAG_ABORT: u32 = 0x02;
/// The smallest `max-frame-size` a peer may announce.
pub const MIN_FRAME_SIZE: u32 = 256;

/// A frame's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A fragment continuation (2.6–3.0 only; Axon never accepts fragments).
    Unset,
    HaproxyHello,
    HaproxyDisconnect,
    Notify,
    AgentHello,
    AgentDisconnect,
    Ack,
}

impl FrameType {
    pub fn from_u8(byte: u8) -> Option<FrameType> {
        Some(match byte {
            0 => FrameType::Unset,
            1 => FrameType::HaproxyHello,
            2 => FrameType::HaproxyDisconnect,
            3 => FrameType::Notify,
            101 => FrameType::AgentHello,
            102 => FrameType::AgentDisconnect,
            103 => FrameType::Ack,
            _ => return None,
        })
    }

    pub fn to_u8(self) -> u8 {
        match self {
            FrameType::Unset => 0,
            FrameType::HaproxyHello => 1,
            FrameType::HaproxyDisconnect => 2,
            FrameType::Notify => 3,
            FrameType::AgentHello => 101,
            FrameType::AgentDisconnect => 102,
            FrameType::Ack => 103,
        }
    }
}

/// One frame, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameType,
    pub flags: u32,
    pub stream_id: u64,
    pub frame_id: u64,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    pub fn fin(&self) -> bool {
        self.flags & FLAG_FIN != 0
    }

    pub fn aborted(&self) -> bool {
        self.flags & FLAG_ABORT != 0
    }
}

/// Why bytes are not valid SPOP. Each maps to the AGENT-DISCONNECT status it deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes, more than the {max} agreed")]
    TooBig { len: u32, max: u32 },
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
}

impl CodecError {
    /// The SPOP status code for an AGENT-DISCONNECT about this error.
    pub fn status(&self) -> Status {
        match self {
            CodecError::TooBig { .. } => Status::TooBig,
            CodecError::Invalid(_) => Status::Invalid,
        }
    }
}

/// SPOP status codes (AGENT-DISCONNECT and HAPROXY-DISCONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Normal = 0,
    Io = 1,
    Timeout = 2,
    TooBig = 3,
    Invalid = 4,
    NoVersion = 5,
    NoFrameSize = 6,
    NoCapabilities = 7,
    BadVersion = 8,
    BadFrameSize = 9,
    FragmentationNotSupported = 10,
    InterlacedFrames = 11,
    FrameIdNotFound = 12,
    Resource = 13,
    Unknown = 99,
}

impl Status {
    pub fn code(self) -> u32 {
        self as u32
    }
}

type Res<'a, T> = IResult<&'a [u8], T>;

/// One byte (nom's `be_u8`, without its generic input machinery on the hot path).
fn byte(input: &[u8]) -> Res<'_, u8> {
    match input.split_first() {
        Some((&b, rest)) => Ok((rest, b)),
        None => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Eof))),
    }
}

fn invalid(reason: &'static str) -> impl FnOnce(nom::Err<nom::error::Error<&[u8]>>) -> CodecError {
    move |_| CodecError::Invalid(reason)
}

/// Decodes the frame at the start of `buf`, if it is all there: `Ok(None)` while bytes are
/// missing, else the frame and how many bytes it took (length prefix included). A frame longer
/// than `max_frame_size` is refused from its length prefix alone, before its bytes arrive.
pub fn decode_frame(buf: &[u8], max_frame_size: u32) -> Result<Option<(Frame<'_>, usize)>, CodecError> {
    let Some(prefix) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len > max_frame_size {
        return Err(CodecError::TooBig { len, max: max_frame_size });
    }
    let total = 4 + len as usize;
    let Some(body) = buf.get(4..total) else { return Ok(None) };
    let (rest, kind) = byte(body).map_err(invalid("no frame type"))?;
    let kind = FrameType::from_u8(kind).ok_or(CodecError::Invalid("unknown frame type"))?;
    let (rest, flags) = be_u32(rest).map_err(invalid("no frame flags"))?;
    let (rest, stream_id) = varint(rest).map_err(invalid("bad stream-id"))?;
    let (payload, frame_id) = varint(rest).map_err(invalid("bad frame-id"))?;
    Ok(Some((Frame { kind, flags, stream_id, frame_id, payload }, total)))
}

/// A varint: values below 240 in one byte, larger ones continued 7 bits at a time.
pub fn varint(input: &[u8]) -> Res<'_, u64> {
    // The common case (lengths, small ids) in one byte, without the general loop.
    if let Some((&first, rest)) = input.split_first()
        && first < 240
    {
        return Ok((rest, u64::from(first)));
    }
    let (mut input, first) = byte(input)?;
    let mut value = u64::from(first);
    if value < 240 {
        return Ok((input, value));
    }
    let mut shift = 4u32;
    loop {
        let (rest, byte) = byte(input)?;
        input = rest;
        let overflow = || nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::TooLarge));
        let add = u64::from(byte).checked_shl(shift).filter(|a| a >> shift == u64::from(byte)).ok_or_else(overflow)?;
        value = value.checked_add(add).ok_or_else(overflow)?;
        if byte < 128 {
            return Ok((input, value));
        }
        shift += 7;
        if shift > 63 {
            return Err(overflow());
        }
    }
}

/// Appends a varint.
pub fn put_varint(out: &mut BytesMut, mut value: u64) {
    if value < 240 {
        out.put_u8(value as u8);
        return;
    }
    out.put_u8((value as u8) | 0xF0);
    value = (value - 240) >> 4;
    while value >= 128 {
        out.put_u8((value as u8) | 0x80);
        value = (value - 128) >> 7;
    }
    out.put_u8(value as u8);
}

/// A length-prefixed string (keys, names: no type byte).
fn string(input: &[u8]) -> Res<'_, &[u8]> {
    let (input, len) = varint(input)?;
    let len = usize::try_from(len)
        .map_err(|_| nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::TooLarge)))?;
    take(len).parse(input)
}

fn put_string(out: &mut BytesMut, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

/// A typed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed<'a> {
    Null,
    Bool(bool),
    Int32(i32),
    Uint32(u32),
    Int64(i64),
    Uint64(u64),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Str(&'a [u8]),
    Bin(&'a [u8]),
}

impl<'a> Typed<'a> {
    /// The value as an unsigned integer, if it is an integer that fits.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Typed::Int32(v) => u64::try_from(v).ok(),
            Typed::Uint32(v) => Some(u64::from(v)),
            Typed::Int64(v) => u64::try_from(v).ok(),
            Typed::Uint64(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes of a string or binary value.
    pub fn as_bytes(self) -> Option<&'a [u8]> {
        match self {
            Typed::Str(b) | Typed::Bin(b) => Some(b),
            _ => None,
        }
    }
}

fn typed(input: &[u8]) -> Res<'_, Typed<'_>> {
    let (input, tag) = byte(input)?;
    let error = |input| nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Tag));
    match tag & 0x0F {
        0 => Ok((input, Typed::Null)),
        1 => Ok((input, Typed::Bool(tag & 0x10 != 0))),
        2 => {
            let (rest, v) = varint(input)?;
            Ok((rest, Typed::Int32(u32::try_from(v).map_err(|_| error(input))? as i32)))
        }
        3 => {
            let (rest, v) = varint(input)?;
            Ok((rest, Typed::Uint32(u32::try_from(v).map_err(|_| error(input))?)))
        }
        4 => varint(input).map(|(rest, v)| (rest, Typed::Int64(v as i64))),
        5 => varint(input).map(|(rest, v)| (rest, Typed::Uint64(v))),
        6 => {
            let (rest, b) = take(4usize).parse(input)?;
            Ok((rest, Typed::Ipv4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
        }
        7 => {
            let (rest, b) = take(16usize).parse(input)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(b);
            Ok((rest, Typed::Ipv6(Ipv6Addr::from(octets))))
        }
        8 => string(input).map(|(rest, s)| (rest, Typed::Str(s))),
        9 => string(input).map(|(rest, s)| (rest, Typed::Bin(s))),
        _ => Err(error(input)),
    }
}

/// Appends a typed value.
pub fn put_typed(out: &mut BytesMut, value: &Typed<'_>) {
    match *value {
        Typed::Null => out.put_u8(0x00),
        Typed::Bool(b) => out.put_u8(if b { 0x11 } else { 0x01 }),
        Typed::Int32(v) => {
            out.put_u8(0x02);
            put_varint(out, u64::from(v as u32));
        }
        Typed::Uint32(v) => {
            out.put_u8(0x03);
            put_varint(out, u64::from(v));
        }
        Typed::Int64(v) => {
            out.put_u8(0x04);
            put_varint(out, v as u64);
        }
        Typed::Uint64(v) => {
            out.put_u8(0x05);
            put_varint(out, v);
        }
        Typed::Ipv4(ip) => {
            out.put_u8(0x06);
            out.put_slice(&ip.octets());
        }
        Typed::Ipv6(ip) => {
            out.put_u8(0x07);
            out.put_slice(&ip.octets());
        }
        Typed::Str(s) => {
            out.put_u8(0x08);
            put_string(out, s);
        }
        Typed::Bin(s) => {
            out.put_u8(0x09);
            put_string(out, s);
        }
    }
}

/// The entries of a kv-list payload (HELLO, DISCONNECT).
#[derive(Debug, Clone)]
pub struct KvList<'a> {
    rest: &'a [u8],
}

pub fn kv_list(payload: &[u8]) -> KvList<'_> {
    KvList { rest: payload }
}

/// A name (no type byte) followed by a typed value: a kv entry or a message argument.
fn named_value<'a>(
    input: &'a [u8],
    bad_name: &'static str,
    bad_value: &'static str,
) -> Result<(&'a [u8], &'a [u8], Typed<'a>), CodecError> {
    let (rest, name) = string(input).map_err(invalid(bad_name))?;
    let (rest, value) = typed(rest).map_err(invalid(bad_value))?;
    Ok((rest, name, value))
}

impl<'a> Iterator for KvList<'a> {
    type Item = Result<(&'a [u8], Typed<'a>), CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match named_value(self.rest, "bad kv key", "bad kv value") {
            Ok((rest, key, value)) => {
                self.rest = rest;
                Some(Ok((key, value)))
            }
            Err(err) => {
                self.rest = &[];
                Some(Err(err))
            }
        }
    }
}

/// Appends one kv entry.
pub fn put_kv(out: &mut BytesMut, key: &str, value: &Typed<'_>) {
    put_string(out, key.as_bytes());
    put_typed(out, value);
}

/// One NOTIFY message: its name and its arguments (unparsed until iterated).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub name: &'a [u8],
    count: u8,
    args: &'a [u8],
}

impl<'a> Message<'a> {
    /// The arguments, in order: (name, possibly empty; value).
    pub fn args(&self) -> Args<'a> {
        Args { left: self.count, rest: self.args }
    }

    pub fn arg_count(&self) -> u8 {
        self.count
    }
}

/// The messages of a NOTIFY payload.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

pub fn messages(payload: &[u8]) -> Messages<'_> {
    Messages { rest: payload }
}

/// Checks a whole NOTIFY payload, so that a malformed frame is refused before anything in it
/// is acted upon. (Finding where each message ends parses every argument.)
pub fn validate_messages(payload: &[u8]) -> Result<(), CodecError> {
    for message in messages(payload) {
        message?;
    }
    Ok(())
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let (rest, name) = string(self.rest).map_err(invalid("bad message name"))?;
            let (rest, count) = byte(rest).map_err(invalid("no argument count"))?;
            // Skip the arguments to find where the next message starts.
            let mut args = Args { left: count, rest };
            for arg in args.by_ref() {
                arg?;
            }
            let used = rest.len() - args.rest.len();
            Ok((args.rest, Message { name, count, args: &rest[..used] }))
        })();
        match parsed {
            Ok((rest, message)) => {
                self.rest = rest;
                Some(Ok(message))
            }
            Err(err) => {
                self.rest = &[];
                Some(Err(err))
            }
        }
    }
}

/// The arguments of one message.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    left: u8,
    rest: &'a [u8],
}

impl<'a> Iterator for Args<'a> {
    type Item = Result<(&'a [u8], Typed<'a>), CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match named_value(self.rest, "bad argument name", "bad argument value") {
            Ok((rest, key, value)) => {
                self.rest = rest;
                Some(Ok((key, value)))
            }
            Err(err) => {
                self.left = 0;
                Some(Err(err))
            }
        }
    }
}

/// Appends a HAPROXY-HELLO frame (HAProxy's side; used by tests and the load generator).
pub fn put_haproxy_hello(out: &mut BytesMut, max_frame_size: u32, capabilities: &[u8]) {
    put_frame(out, FrameType::HaproxyHello, FLAG_FIN, 0, 0, |out| {
        put_kv(out, "supported-versions", &Typed::Str(b"2.0"));
        put_kv(out, "max-frame-size", &Typed::Uint32(max_frame_size));
        put_kv(out, "capabilities", &Typed::Str(capabilities));
    });
}

/// Appends one NOTIFY message (HAProxy's side; used by tests and the load generator).
pub fn put_message(out: &mut BytesMut, name: &str, args: &[(&str, Typed<'_>)]) {
    put_string(out, name.as_bytes());
    out.put_u8(u8::try_from(args.len()).unwrap_or(u8::MAX));
    for (key, value) in args.iter().take(usize::from(u8::MAX)) {
        put_kv(out, key, value);
    }
}

/// A variable's scope in an ACK action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Proc = 0,
    Sess = 1,
    Txn = 2,
    Req = 3,
    Res = 4,
}

impl Scope {
    fn from_u8(byte: u8) -> Option<Scope> {
        Some(match byte {
            0 => Scope::Proc,
            1 => Scope::Sess,
            2 => Scope::Txn,
            3 => Scope::Req,
            4 => Scope::Res,
            _ => return None,
        })
    }
}

/// One ACK action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    SetVar { scope: Scope, name: &'a [u8], value: Typed<'a> },
    UnsetVar { scope: Scope, name: &'a [u8] },
}

/// Appends one ACK action.
pub fn put_action(out: &mut BytesMut, action: &Action<'_>) {
    match action {
        Action::SetVar { scope, name, value } => {
            out.put_slice(&[1, 3, *scope as u8]);
            put_string(out, name);
            put_typed(out, value);
        }
        Action::UnsetVar { scope, name } => {
            out.put_slice(&[2, 2, *scope as u8]);
            put_string(out, name);
        }
    }
}

/// The actions of an ACK payload (HAProxy's side; used by tests and the load generator).
pub fn actions(payload: &[u8]) -> impl Iterator<Item = Result<Action<'_>, CodecError>> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let (r, kind) = byte(rest).map_err(invalid("no action type"))?;
            let (r, count) = byte(r).map_err(invalid("no action argument count"))?;
            let (r, scope) = byte(r).map_err(invalid("no variable scope"))?;
            let scope = Scope::from_u8(scope).ok_or(CodecError::Invalid("unknown variable scope"))?;
            let (r, name) = string(r).map_err(invalid("bad variable name"))?;
            match (kind, count) {
                (1, 3) => {
                    let (r, value) = typed(r).map_err(invalid("bad variable value"))?;
                    Ok((r, Action::SetVar { scope, name, value }))
                }
                (2, 2) => Ok((r, Action::UnsetVar { scope, name })),
                _ => Err(CodecError::Invalid("unknown action")),
            }
        })();
        Some(match parsed {
            Ok((r, action)) => {
                rest = r;
                Ok(action)
            }
            Err(err) => {
                rest = &[];
                Err(err)
            }
        })
    })
}

/// Appends a whole frame: length prefix, header, then whatever `payload` writes.
pub fn put_frame(
    out: &mut BytesMut,
    kind: FrameType,
    flags: u32,
    stream_id: u64,
    frame_id: u64,
    payload: impl FnOnce(&mut BytesMut),
) {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(kind.to_u8());
    out.put_u32(flags);
    put_varint(out, stream_id);
    put_varint(out, frame_id);
    payload(out);
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode_varint(v: u64) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_varint(&mut out, v);
        out.to_vec()
    }

    /// The reference's vectors (value = bytes).
    #[test]
    fn varint_vectors() {
        let vectors: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (239, &[0xef]),
            (240, &[0xf0, 0x00]),
            (256, &[0xf0, 0x01]),
            (2287, &[0xff, 0x7f]),
            (2288, &[0xf0, 0x80, 0x00]),
            (16380, &[0xfc, 0xf0, 0x06]),
            (4294967295, &[0xff, 0xf0, 0xfe, 0xfe, 0x7e]),
        ];
        for &(value, bytes) in vectors {
            assert_eq!(encode_varint(value), bytes, "encode {value}");
            assert_eq!(varint(bytes), Ok((&[][..], value)), "decode {value}");
        }
    }

    #[test]
    fn varints_that_run_out_or_overflow_are_refused() {
        assert!(varint(&[0xf0]).is_err(), "runs past the input");
        assert!(varint(&[0xff, 0x80]).is_err(), "continuation missing");
        let eleven = [0xff; 11];
        assert!(varint(&eleven).is_err(), "overflows u64");
        assert_eq!(varint(&encode_varint(u64::MAX)).map(|(_, v)| v), Ok(u64::MAX));
    }

    /// A HAPROXY-HELLO as HAProxy 2.6 sends it, field by field.
    fn haproxy_hello() -> Vec<u8> {
        let mut frame = vec![
            0x00, 0x00, 0x00, 0x00, // length, patched below
            0x01, // type: HAPROXY-HELLO
            0x00, 0x00, 0x00, 0x01, // flags: FIN
            0x00, // stream-id: 0
            0x00, // frame-id: 0
        ];
        frame.extend_from_slice(&[0x12]); // key length 18
        frame.extend_from_slice(b"supported-versions");
        frame.extend_from_slice(&[0x08, 0x03]); // STRING, length 3
        frame.extend_from_slice(b"2.0");
        frame.extend_from_slice(&[0x0e]); // key length 14
        frame.extend_from_slice(b"max-frame-size");
        frame.extend_from_slice(&[0x03, 0xfc, 0xf0, 0x06]); // UINT32 16380
        frame.extend_from_slice(&[0x0c]); // key length 12
        frame.extend_from_slice(b"capabilities");
        frame.extend_from_slice(&[0x08, 0x10]); // STRING, length 16
        frame.extend_from_slice(b"pipelining,async");
        frame.extend_from_slice(&[0x09]); // key length 9
        frame.extend_from_slice(b"engine-id");
        frame.extend_from_slice(&[0x08, 0x00]); // STRING, empty
        let len = (frame.len() - 4) as u32;
        assert_eq!(len, 93);
        frame[..4].copy_from_slice(&len.to_be_bytes());
        frame
    }

    #[test]
    fn decodes_a_haproxy_hello_field_by_field() {
        let bytes = haproxy_hello();
        let (frame, used) = decode_frame(&bytes, 16380).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!((frame.kind, frame.fin(), frame.stream_id, frame.frame_id), (FrameType::HaproxyHello, true, 0, 0));
        let kv: Vec<_> = kv_list(frame.payload).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            kv,
            [
                (&b"supported-versions"[..], Typed::Str(b"2.0")),
                (b"max-frame-size", Typed::Uint32(16380)),
                (b"capabilities", Typed::Str(b"pipelining,async")),
                (b"engine-id", Typed::Str(b"")),
            ]
        );
    }

    /// A NOTIFY with one `route` message, field by field.
    fn notify() -> Vec<u8> {
        let mut frame = vec![
            0x00, 0x00, 0x00, 0x00, // length, patched below
            0x03, // type: NOTIFY
            0x00, 0x00, 0x00, 0x01, // flags: FIN
            0xf0, 0x01, // stream-id: 256
            0x07, // frame-id: 7
            0x05, // message name length 5
        ];
        frame.extend_from_slice(b"route");
        frame.push(0x03); // three arguments
        frame.extend_from_slice(&[0x04]); // argument name length 4
        frame.extend_from_slice(b"host");
        frame.extend_from_slice(&[0x08, 0x0b]); // STRING, length 11
        frame.extend_from_slice(b"web.example");
        frame.extend_from_slice(&[0x04]); // argument name length 4
        frame.extend_from_slice(b"path");
        frame.extend_from_slice(&[0x08, 0x01, b'/']); // STRING "/"
        frame.extend_from_slice(&[0x05]); // argument name length 5
        frame.extend_from_slice(b"label");
        frame.extend_from_slice(&[0x00]); // NULL: no label header
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        frame
    }

    #[test]
    fn decodes_a_notify_field_by_field() {
        let bytes = notify();
        let (frame, _) = decode_frame(&bytes, 16380).unwrap().unwrap();
        assert_eq!((frame.kind, frame.stream_id, frame.frame_id), (FrameType::Notify, 256, 7));
        validate_messages(frame.payload).unwrap();
        let messages: Vec<_> = messages(frame.payload).collect::<Result<_, _>>().unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].name, b"route");
        let args: Vec<_> = messages[0].args().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            args,
            [(&b"host"[..], Typed::Str(b"web.example")), (b"path", Typed::Str(b"/")), (b"label", Typed::Null)]
        );
    }

    #[test]
    fn encodes_an_ack_byte_for_byte() {
        let mut out = BytesMut::new();
        put_frame(&mut out, FrameType::Ack, FLAG_FIN, 256, 7, |out| {
            put_action(out, &Action::SetVar { scope: Scope::Txn, name: b"be", value: Typed::Str(b"web") });
            put_action(
                out,
                &Action::SetVar { scope: Scope::Txn, name: b"addr", value: Typed::Ipv4(Ipv4Addr::new(10, 0, 0, 5)) },
            );
            put_action(out, &Action::UnsetVar { scope: Scope::Txn, name: b"x" });
        });
        let expected: Vec<u8> = [
            &[0x00, 0x00, 0x00, 0x25][..],   // length: 37
            &[0x67],                         // type: ACK (103)
            &[0x00, 0x00, 0x00, 0x01],       // flags: FIN
            &[0xf0, 0x01],                   // stream-id: 256
            &[0x07],                         // frame-id: 7
            &[0x01, 0x03, 0x02],             // set-var, 3 arguments, scope txn
            &[0x02, b'b', b'e'],             // name "be"
            &[0x08, 0x03, b'w', b'e', b'b'], // STRING "web"
            &[0x01, 0x03, 0x02],             // set-var, 3 arguments, scope txn
            &[0x04, b'a', b'd', b'd', b'r'], // name "addr"
            &[0x06, 10, 0, 0, 5],            // IPV4 10.0.0.5
            &[0x02, 0x02, 0x02],             // unset-var, 2 arguments, scope txn
            &[0x01, b'x'],                   // name "x"
        ]
        .concat();
        assert_eq!(out.to_vec(), expected);
        let (frame, _) = decode_frame(&out, 16380).unwrap().unwrap();
        let decoded: Vec<_> = actions(frame.payload).collect::<Result<_, _>>().unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(
            decoded[1],
            Action::SetVar { scope: Scope::Txn, name: b"addr", value: Typed::Ipv4(Ipv4Addr::new(10, 0, 0, 5)) }
        );
    }

    #[test]
    fn every_truncated_prefix_is_incomplete() {
        for bytes in [haproxy_hello(), notify()] {
            for cut in 0..bytes.len() {
                assert_eq!(decode_frame(&bytes[..cut], 16380), Ok(None), "prefix of {cut} bytes");
            }
        }
    }

    #[test]
    fn oversized_frames_are_refused_from_the_length_alone() {
        let mut bytes = notify();
        bytes[..4].copy_from_slice(&100_000u32.to_be_bytes());
        assert_eq!(decode_frame(&bytes[..4], 16380), Err(CodecError::TooBig { len: 100_000, max: 16380 }));
        assert_eq!(CodecError::TooBig { len: 1, max: 0 }.status(), Status::TooBig);
    }

    #[test]
    fn malformed_frames_are_invalid() {
        let mut bad_type = notify();
        bad_type[4] = 42;
        assert_eq!(decode_frame(&bad_type, 16380), Err(CodecError::Invalid("unknown frame type")));
        // A message whose argument claims more bytes than the frame has.
        let mut short = notify();
        let at = short.len() - 1;
        short[at] = 0x08; // a STRING tag with no length after it
        let (frame, _) = decode_frame(&short, 16380).unwrap().unwrap();
        assert_eq!(validate_messages(frame.payload), Err(CodecError::Invalid("bad argument value")));
        assert_eq!(kv_list(&[0x05, b'a']).next(), Some(Err(CodecError::Invalid("bad kv key"))));
        let tiny = [0, 0, 0, 1, 3];
        assert_eq!(decode_frame(&tiny, 16380), Err(CodecError::Invalid("no frame flags")));
    }

    fn typed_strategy() -> impl Strategy<Value = (u8, u64, Vec<u8>)> {
        (0u8..10, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40))
    }

    fn make_typed<'a>(kind: u8, n: u64, bytes: &'a [u8]) -> Typed<'a> {
        match kind {
            0 => Typed::Null,
            1 => Typed::Bool(n.is_multiple_of(2)),
            2 => Typed::Int32(n as i32),
            3 => Typed::Uint32(n as u32),
            4 => Typed::Int64(n as i64),
            5 => Typed::Uint64(n),
            6 => Typed::Ipv4(Ipv4Addr::from(n as u32)),
            7 => Typed::Ipv6(Ipv6Addr::from(u128::from(n) << 64 | u128::from(n))),
            8 => Typed::Str(bytes),
            _ => Typed::Bin(bytes),
        }
    }

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let bytes = encode_varint(v);
            prop_assert_eq!(varint(&bytes), Ok((&[][..], v)));
        }

        /// NOTIFY frames built from arbitrary messages decode to what was encoded.
        #[test]
        fn notify_round_trips(
            ids in (any::<u64>(), any::<u64>()),
            msgs in proptest::collection::vec(("[a-z]{0,12}", proptest::collection::vec(("[a-z]{0,8}", typed_strategy()), 0..6)), 0..5),
        ) {
            let mut out = BytesMut::new();
            put_frame(&mut out, FrameType::Notify, FLAG_FIN, ids.0, ids.1, |out| {
                for (name, args) in &msgs {
                    let args: Vec<(&str, Typed<'_>)> = args.iter().map(|(k, (kind, n, b))| (k.as_str(), make_typed(*kind, *n, b))).collect();
                    put_message(out, name, &args);
                }
            });
            let (frame, used) = decode_frame(&out, u32::MAX).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            prop_assert_eq!((frame.stream_id, frame.frame_id), ids);
            let decoded: Vec<Message<'_>> = messages(frame.payload).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(decoded.len(), msgs.len());
            for (message, (name, args)) in decoded.iter().zip(&msgs) {
                prop_assert_eq!(message.name, name.as_bytes());
                let got: Vec<_> = message.args().collect::<Result<_, _>>().unwrap();
                prop_assert_eq!(got.len(), args.len());
                for ((key, value), (k, (kind, n, b))) in got.iter().zip(args) {
                    prop_assert_eq!(*key, k.as_bytes());
                    prop_assert_eq!(*value, make_typed(*kind, *n, b));
                }
            }
            for cut in 0..out.len() {
                prop_assert_eq!(decode_frame(&out[..cut], u32::MAX), Ok(None));
            }
        }

        /// Arbitrary bytes never panic any decoder.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some((frame, _))) = decode_frame(&bytes, 16380) {
                let _ = validate_messages(frame.payload);
                let _ = kv_list(frame.payload).count();
                let _ = actions(frame.payload).count();
            }
            let _ = validate_messages(&bytes);
            let _ = kv_list(&bytes).count();
            let _ = actions(&bytes).count();
        }
    }
}
