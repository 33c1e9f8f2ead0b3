//! Ranges of an object read alone, from a directory and from a real S3
//! server (s3s-fs): what a reader of a few blobs of a pack asks a
//! repository on object storage for, instead of the whole pack. In a test
//! binary of its own: the S3 store takes its settings from the process's
//! environment, which this test sets.

mod common;
use common::s3::*;
use relic::store::Kind;

#[test]
fn ranges_of_a_pack_come_alone_from_a_directory_and_from_s3() {
    let s3 = S3::start();
    for (k, v) in s3_env(&s3) {
        std::env::set_var(k, v);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = common::random(3 << 20, 9);
    let name = "ab".repeat(32);
    let ranges = [0..10, 10..4096, (2 << 20)..(3 << 20), 100..200, 7..7];
    for url in [
        "s3://bucket/ranges".to_string(),
        dir.path().display().to_string(),
    ] {
        let store = relic::store::open(&url).unwrap();
        assert!(store.put_bytes(Kind::Pack, &name, &data).unwrap(), "{url}");
        let got = store.read_ranges(Kind::Pack, &name, &ranges).unwrap();
        assert_eq!(got.len(), ranges.len(), "{url}");
        for (r, g) in ranges.iter().zip(&got) {
            assert!(
                g[..] == data[r.start as usize..r.end as usize],
                "{url}: {r:?}"
            );
        }
        let past = (3 << 20) - 1..(3 << 20) + 1;
        assert!(
            store.read_ranges(Kind::Pack, &name, &[past]).is_err(),
            "{url}"
        );
    }
}
