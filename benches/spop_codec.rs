//! The SPOP codec, side by side with the `spop` crate on the same bytes:
//! - decode: a typical NOTIFY (HAProxy's `route` message: host, path, an absent label header)
//!   down to the three arguments a handler reads;
//! - encode: a typical ACK (three set-var actions) into a reused buffer.
//!
//! Time per frame from criterion; allocations per frame counted by a counting allocator over
//! 10,000 frames after warm-up. Run with `cargo bench --bench spop_codec`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use axon_spoa::spoe::codec::{self, Action, FLAG_FIN, FrameType, Scope, Typed};
use bytes::BytesMut;
use criterion::Criterion;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A NOTIFY as HAProxy sends it for the shipped `route` message.
fn notify() -> Vec<u8> {
    let mut out = BytesMut::new();
    codec::put_frame(&mut out, FrameType::Notify, FLAG_FIN, 4211, 17, |out| {
        codec::put_message(
            out,
            "route",
            &[
                ("host", Typed::Str(b"web.example")),
                ("path", Typed::Str(b"/api/v1/items?id=42")),
                ("label", Typed::Null),
            ],
        );
    });
    out.to_vec()
}

/// Axon: frame, validation, and the three arguments.
fn axon_decode(bytes: &[u8]) -> usize {
    let (frame, _) = codec::decode_frame(bytes, 16380).unwrap().unwrap();
    codec::validate_messages(frame.payload).unwrap();
    let mut found = 0;
    for message in codec::messages(frame.payload).flatten() {
        for (name, value) in message.args().flatten() {
            match name {
                b"host" | b"path" | b"label" => found += value.as_bytes().map_or(0, <[u8]>::len) + 1,
                _ => {}
            }
        }
    }
    found
}

/// spop: the frame parsed into its types, and the same three arguments.
fn spop_decode(bytes: &[u8]) -> usize {
    let (_, frame) = spop::parser::parse_frame(bytes).unwrap();
    let mut found = 0;
    if let spop::FramePayload::ListOfMessages(messages) = frame.payload() {
        for message in messages {
            for name in ["host", "path", "label"] {
                if let Some(value) = message.get(name) {
                    found += match value {
                        spop::TypedData::String(s) => s.len(),
                        _ => 0,
                    } + 1;
                }
            }
        }
    }
    found
}

fn axon_encode(out: &mut BytesMut) {
    out.clear();
    codec::put_frame(out, FrameType::Ack, FLAG_FIN, 4211, 17, |out| {
        codec::put_action(out, &Action::SetVar { scope: Scope::Txn, name: b"svc", value: Typed::Str(b"web") });
        codec::put_action(out, &Action::SetVar { scope: Scope::Txn, name: b"be", value: Typed::Str(b"web") });
        codec::put_action(out, &Action::SetVar { scope: Scope::Txn, name: b"status", value: Typed::Str(b"found") });
    });
}

fn spop_encode(out: &mut Vec<u8>) {
    use spop::SpopFrame as _;
    out.clear();
    let ack = spop::frames::Ack::new(4211, 17)
        .set_var(spop::VarScope::Transaction, "svc", "web")
        .set_var(spop::VarScope::Transaction, "be", "web")
        .set_var(spop::VarScope::Transaction, "status", "found");
    ack.serialize_into(out).unwrap();
}

/// Allocations per call of `f`, over 10,000 calls after 1,000 to warm up.
fn allocations(mut f: impl FnMut()) -> f64 {
    for _ in 0..1_000 {
        f();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..10_000 {
        f();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 10_000.0
}

fn main() {
    let bytes = notify();
    assert_eq!(axon_decode(&bytes), spop_decode(&bytes), "both read the same arguments");
    let (mut ours, mut theirs) = (BytesMut::with_capacity(256), Vec::with_capacity(256));
    axon_encode(&mut ours);
    spop_encode(&mut theirs);
    assert_eq!(ours.to_vec(), theirs, "both write the same ACK");

    let mut c = Criterion::default().configure_from_args();
    let mut decode = c.benchmark_group("decode NOTIFY");
    decode.bench_function("axon", |b| b.iter(|| axon_decode(black_box(&bytes))));
    decode.bench_function("spop", |b| b.iter(|| spop_decode(black_box(&bytes))));
    decode.finish();
    let mut encode = c.benchmark_group("encode ACK");
    encode.bench_function("axon", |b| b.iter(|| axon_encode(black_box(&mut ours))));
    encode.bench_function("spop", |b| b.iter(|| spop_encode(black_box(&mut theirs))));
    encode.finish();
    c.final_summary();

    println!("\nallocations per frame (10,000 frames after warm-up):");
    println!("| | axon | spop |");
    println!("|---|---|---|");
    println!(
        "| decode NOTIFY | {} | {} |",
        allocations(|| {
            black_box(axon_decode(black_box(&bytes)));
        }),
        allocations(|| {
            black_box(spop_decode(black_box(&bytes)));
        })
    );
    println!(
        "| encode ACK | {} | {} |",
        allocations(|| axon_encode(black_box(&mut ours))),
        allocations(|| spop_encode(black_box(&mut theirs)))
    );
}
