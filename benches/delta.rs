//! Delta encoders on the pairs relic actually encodes: every chunk of a day
//! that is not stored exactly, against the chunk of the day before that
//! relic's sketch lookup picks as its base.
//!
//!   cargo bench --bench delta -- DAY_A DAY_B [DAY_C DAY_D ...]
//!
//! Consecutive files form pairs (A→B, C→D...). For each encoder: delta
//! bytes, encode and decode MB/s (of new-chunk bytes, one core). Prints a
//! markdown table. `scripts/gen-pgbench-series.sh DIR 7` makes a series.

use relic::chunker::{Chunker, ChunkerParams};
use relic::delta;
use relic::internals::compress::{Compressor, Decompressor, DeltaFormat};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

struct Pair {
    data: Vec<u8>,
    base: Vec<u8>,
}

/// The (new chunk, base) pairs of day `a` → day `b`, as relic's sketch
/// lookup forms them (most super-features in common, newest wins).
fn pairs(a: &[u8], b: &[u8]) -> (Vec<Pair>, usize, usize) {
    let chunker = Chunker::new(ChunkerParams::default(), 0);
    let old: Vec<&[u8]> = chunker.split(a).collect();
    let exact: HashSet<blake3::Hash> = old.iter().map(|c| blake3::hash(c)).collect();
    let mut by_feature: HashMap<(usize, u64), usize> = HashMap::new();
    for (i, c) in old.iter().enumerate() {
        if let Some(sk) = delta::sketch(c) {
            for (n, f) in sk.iter().enumerate() {
                by_feature.insert((n, *f), i);
            }
        }
    }
    let (mut out, mut unmatched, mut same) = (Vec::new(), 0, 0);
    for c in chunker.split(b) {
        if exact.contains(&blake3::hash(c)) {
            same += 1;
            continue;
        }
        let Some(sk) = delta::sketch(c) else {
            unmatched += 1;
            continue;
        };
        let mut votes: Vec<(usize, u32)> = Vec::new();
        for (n, f) in sk.iter().enumerate() {
            if let Some(&i) = by_feature.get(&(n, *f)) {
                match votes.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, k)) => *k += 1,
                    None => votes.push((i, 1)),
                }
            }
        }
        votes.sort_by_key(|(_, k)| std::cmp::Reverse(*k));
        match votes.first() {
            Some(&(i, _)) => out.push(Pair {
                data: c.to_vec(),
                base: old[i].to_vec(),
            }),
            None => unmatched += 1,
        }
    }
    (out, unmatched, same)
}

type Encode = fn(&mut Ctx, &[u8], &[u8], &mut Vec<u8>);
type Decode = fn(&mut Ctx, &[u8], &[u8], usize, &mut Vec<u8>);

struct Ctx {
    cctx: zstd::zstd_safe::CCtx<'static>,
    dctx: zstd::zstd_safe::DCtx<'static>,
    comp: Compressor,
    dec: Decompressor,
    tmp: Vec<u8>,
    level: i32,
    copy: delta::copy::Encoder,
}

fn zstd_dict(c: &mut Ctx, data: &[u8], base: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    let mut cur = std::io::Cursor::new(&mut *out);
    c.cctx
        .compress_using_dict(&mut cur, data, base, c.level)
        .expect("zstd");
}

fn zstd_dict_decode(c: &mut Ctx, frame: &[u8], base: &[u8], n: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(n);
    let mut cur = std::io::Cursor::new(&mut *out);
    c.dctx
        .decompress_using_dict(&mut cur, frame, base)
        .expect("zstd");
}

fn v2_encode(c: &mut Ctx, data: &[u8], base: &[u8], out: &mut Vec<u8>) {
    assert!(c.comp.encode_delta(data, base, out).expect("encode"));
}

fn v2_decode(c: &mut Ctx, body: &[u8], base: &[u8], n: usize, out: &mut Vec<u8>) {
    out.clear();
    c.dec.decode_with(body, Some(base), n, out).expect("decode");
}

fn copy_enc(c: &mut Ctx, data: &[u8], base: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if !c.copy.encode(&mut c.cctx, data, base, out).expect("copy") {
        out.clear();
        out.extend_from_slice(data);
    }
}

fn copy_dec(c: &mut Ctx, d: &[u8], base: &[u8], n: usize, out: &mut Vec<u8>) {
    out.clear();
    if delta::copy::decode(&mut c.dctx, d, base, n, &mut c.tmp, out).is_err() {
        out.clear();
        out.extend_from_slice(d);
    }
}

fn gdelta_raw(_: &mut Ctx, data: &[u8], base: &[u8], out: &mut Vec<u8>) {
    *out = gdelta::encode(data, base).expect("gdelta");
}

fn gdelta_raw_decode(_: &mut Ctx, d: &[u8], base: &[u8], _: usize, out: &mut Vec<u8>) {
    *out = gdelta::decode(d, base).expect("gdelta");
}

fn gdelta_zstd(c: &mut Ctx, data: &[u8], base: &[u8], out: &mut Vec<u8>) {
    let d = gdelta::encode(data, base).expect("gdelta");
    *out = zstd::bulk::compress(&d, c.level).expect("zstd");
}

fn gdelta_zstd_decode(c: &mut Ctx, d: &[u8], base: &[u8], n: usize, out: &mut Vec<u8>) {
    c.tmp = zstd::bulk::decompress(d, n * 2 + 1024).expect("zstd");
    *out = gdelta::decode(&c.tmp, base).expect("gdelta");
}

struct Row {
    name: String,
    bytes: u64,
    enc: Duration,
    dec: Duration,
}

fn main() {
    let files: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if files.len() < 2 {
        eprintln!("usage: cargo bench --bench delta -- DAY_A DAY_B [DAY_C DAY_D ...]");
        std::process::exit(2);
    }
    let mut all = Vec::new();
    for p in files.chunks(2) {
        let a = std::fs::read(&p[0]).expect("read day");
        let b = std::fs::read(&p[1]).expect("read day");
        let (ps, unmatched, same) = pairs(&a, &b);
        eprintln!(
            "{} → {}: {} pairs, {} without a base, {} unchanged",
            p[0],
            p[1],
            ps.len(),
            unmatched,
            same
        );
        all.extend(ps);
    }
    let raw: u64 = all.iter().map(|p| p.data.len() as u64).sum();
    let encoders: Vec<(String, i32, Encode, Decode)> = vec![
        (
            "format 2: zstd, base as dictionary, level 10".into(),
            0,
            v2_encode,
            v2_decode,
        ),
        (
            "format 3: copy/insert list (+ zstd 1)".into(),
            0,
            copy_enc,
            copy_dec,
        ),
        (
            "zstd, base as dictionary, level 3".into(),
            3,
            zstd_dict,
            zstd_dict_decode,
        ),
        (
            "zstd, base as dictionary, level 5".into(),
            5,
            zstd_dict,
            zstd_dict_decode,
        ),
        ("gdelta".into(), 0, gdelta_raw, gdelta_raw_decode),
        ("gdelta + zstd 1".into(), 1, gdelta_zstd, gdelta_zstd_decode),
        ("gdelta + zstd 3".into(), 3, gdelta_zstd, gdelta_zstd_decode),
    ];
    let mut rows = Vec::new();
    for (name, level, enc, dec) in encoders {
        let mut c = Ctx {
            cctx: zstd::zstd_safe::CCtx::create(),
            dctx: zstd::zstd_safe::DCtx::create(),
            comp: Compressor::with_deltas(1, DeltaFormat::ZstdDict).expect("zstd"),
            dec: Decompressor::new().expect("zstd"),
            tmp: Vec::new(),
            level,
            copy: Default::default(),
        };
        let (mut out, mut back) = (Vec::new(), Vec::new());
        let mut row = Row {
            name,
            bytes: 0,
            enc: Duration::ZERO,
            dec: Duration::ZERO,
        };
        for p in &all {
            let t = Instant::now();
            enc(&mut c, &p.data, &p.base, &mut out);
            row.enc += t.elapsed();
            row.bytes += out.len() as u64;
            let t = Instant::now();
            dec(&mut c, &out, &p.base, p.data.len(), &mut back);
            row.dec += t.elapsed();
            assert!(back == p.data, "{} does not round-trip", row.name);
        }
        rows.push(row);
    }
    println!(
        "{} pairs, {:.1} MB of new chunks\n",
        all.len(),
        raw as f64 / 1e6
    );
    println!("| encoder | delta MB | × format 2 | encode MB/s | decode MB/s |");
    println!("|---|---:|---:|---:|---:|");
    let v2 = rows[0].bytes as f64;
    for r in rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.0} |",
            r.name,
            r.bytes as f64 / 1e6,
            r.bytes as f64 / v2,
            raw as f64 / r.enc.as_secs_f64() / 1e6,
            raw as f64 / r.dec.as_secs_f64() / 1e6
        );
    }
}
