//! Criterion benches of the per-byte stages of the data path: FastCDC,
//! keyed BLAKE3, zstd at the levels worth choosing between, decoding, and
//! resemblance sketches.
//! Input: pseudo-random bytes and a synthetic pg_dump-like text.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use relic::chunker::{Chunker, ChunkerParams};
use relic::internals::compress::{Compressor, Decompressor};
use relic::internals::keys::Keys;
use std::hint::black_box;

const SIZE: usize = 16 << 20;

fn random(n: usize) -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Rows shaped like a `COPY ... FROM stdin` block of a plain dump.
fn dump_text(n: usize) -> Vec<u8> {
    let names = [
        "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Edsger",
    ];
    let mut out = String::with_capacity(n + 200);
    let mut i = 0u64;
    while out.len() < n {
        i += 1;
        out.push_str(&format!(
            "{i}\t{}\t{}@example.org\t2026-{:02}-{:02} 0{}:00:00+00\t{}\t\\N\n",
            names[(i % 7) as usize],
            names[(i * 3 % 7) as usize].to_lowercase(),
            i % 12 + 1,
            i % 28 + 1,
            i % 10,
            (i * 2654435761) % 100000
        ));
    }
    out.truncate(n);
    out.into_bytes()
}

fn chunking(c: &mut Criterion) {
    let data = random(SIZE);
    let mut g = c.benchmark_group("fastcdc");
    g.throughput(Throughput::Bytes(SIZE as u64));
    for avg in [16 << 10, 64 << 10, 256 << 10] {
        let chunker = Chunker::new(ChunkerParams::with_avg(avg), 42);
        g.bench_with_input(BenchmarkId::from_parameter(avg), &data, |b, d| {
            b.iter(|| chunker.split(black_box(d)).count())
        });
    }
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let data = random(SIZE);
    let keys = Keys::from_master([7; 32], true);
    let mut g = c.benchmark_group("blake3");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("keyed-64KiB-chunks", |b| {
        b.iter(|| {
            data.chunks(64 << 10)
                .map(|c| keys.chunk_id(black_box(c)).0[0])
                .fold(0u8, |a, b| a ^ b)
        })
    });
    g.bench_function("stream", |b| b.iter(|| blake3::hash(black_box(&data))));
    g.finish();
}

fn compression(c: &mut Criterion) {
    let data = dump_text(SIZE);
    let mut g = c.benchmark_group("zstd-dump-64KiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    for level in [-1, 1, 3] {
        let mut comp = Compressor::new(level).unwrap();
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::new("encode", level), |b| {
            b.iter(|| {
                let mut n = 0;
                for c in data.chunks(64 << 10) {
                    comp.encode(black_box(c), &mut out).unwrap();
                    n += out.len();
                }
                n
            })
        });
    }
    let mut comp = Compressor::new(3).unwrap();
    let bodies: Vec<(Vec<u8>, usize)> = data
        .chunks(64 << 10)
        .map(|c| {
            let mut o = Vec::new();
            comp.encode(c, &mut o).unwrap();
            (o, c.len())
        })
        .collect();
    let mut dec = Decompressor::new().unwrap();
    let mut out = Vec::new();
    g.bench_function("decode-3", |b| {
        b.iter(|| {
            for (body, len) in &bodies {
                dec.decode(black_box(body), *len, &mut out).unwrap();
            }
        })
    });
    g.finish();
}

/// Resemblance sketches, computed for every new chunk of 64 KiB.
fn sketching(c: &mut Criterion) {
    let mut g = c.benchmark_group("sketch");
    g.throughput(Throughput::Bytes(SIZE as u64));
    for (name, data) in [("random", random(SIZE)), ("dump", dump_text(SIZE))] {
        g.bench_with_input(BenchmarkId::new("64k", name), &data, |b, d| {
            b.iter(|| {
                for c in d.chunks(64 << 10) {
                    black_box(relic::delta::sketch(black_box(c)));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, chunking, hashing, compression, sketching);
criterion_main!(benches);
