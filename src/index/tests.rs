//! The index against a real RocksDB in a temp dir.

use super::*;
use crate::pack::{Base, BlobKind};

fn entry(id: u8, offset: u32) -> Entry {
    Entry {
        id: ChunkId([id; 32]),
        kind: BlobKind::Data,
        offset,
        length: 10,
        raw_length: 20,
        base: None,
        sketch: None,
    }
}

#[test]
fn deltas_and_sketches() {
    let d = tempfile::tempdir().unwrap();
    let idx = Index::open(&d.path().join("index")).unwrap();
    let mut a = entry(1, 8);
    a.sketch = Some([10, 11, 12]);
    let mut b = entry(2, 18);
    b.base = Some(Base {
        id: ChunkId([1; 32]),
        depth: 1,
    });
    b.sketch = Some([10, 21, 22]);
    idx.add_pack(PackId([9; 32]), 100, &[a]).unwrap();
    // One shared super-feature finds the chunk.
    let (id, e) = idx.similar(&[10, 0, 0]).unwrap().unwrap();
    assert_eq!((id, e.depth()), (ChunkId([1; 32]), 0));
    assert!(idx.similar(&[1, 2, 3]).unwrap().is_none());
    idx.add_pack(PackId([8; 32]), 100, &[b]).unwrap();
    // The newest chunk with a feature wins; most votes win over that.
    let (id, e) = idx.similar(&[10, 0, 0]).unwrap().unwrap();
    assert_eq!((id, e.depth()), (ChunkId([2; 32]), 1));
    assert_eq!(e.base.unwrap().id, ChunkId([1; 32]));
    assert_eq!(
        idx.similar(&[0, 11, 12]).unwrap().unwrap().0,
        ChunkId([1; 32])
    );
    // A removed chunk is no candidate.
    idx.remove_pack(&PackId([8; 32])).unwrap();
    assert!(idx.similar(&[0, 21, 22]).unwrap().is_none());
    // Entries round-trip through their encoding.
    let e = idx.get(&ChunkId([1; 32])).unwrap().unwrap();
    assert_eq!(ChunkEntry::decode(&e.encode()), Some(e));
    let mut f = e;
    f.base = Some(Base {
        id: ChunkId([3; 32]),
        depth: 4,
    });
    assert_eq!(f.encode().len(), DELTA_VALUE_LEN);
    assert_eq!(ChunkEntry::decode(&f.encode()), Some(f));
}

#[test]
fn add_get_remove() {
    let d = tempfile::tempdir().unwrap();
    let idx = Index::open(&d.path().join("index")).unwrap();
    assert!(!idx.is_secondary());
    let p = PackId([9; 32]);
    idx.add_pack(p, 100, &[entry(1, 8), entry(2, 18)]).unwrap();
    let e = idx.get(&ChunkId([2; 32])).unwrap().unwrap();
    assert_eq!((e.pack, e.offset, e.raw_length), (p, 18, 20));
    assert_eq!(
        idx.packs().unwrap(),
        vec![(
            p,
            PackInfo {
                size: 100,
                blobs: 2
            }
        )]
    );
    assert_eq!(idx.remove_pack(&p).unwrap(), 2);
    assert!(idx.get(&ChunkId([1; 32])).unwrap().is_none());
    assert!(idx.packs().unwrap().is_empty());
}

#[test]
fn second_opener_becomes_secondary() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("index");
    let a = Index::open(&path).unwrap();
    a.add_pack(PackId([1; 32]), 1, &[entry(5, 8)]).unwrap();
    a.flush().unwrap();
    let b = Index::open(&path).unwrap();
    assert!(b.is_secondary());
    assert!(b.get(&ChunkId([5; 32])).unwrap().is_some());
    b.add_pack(PackId([2; 32]), 1, &[entry(6, 8)]).unwrap();
    assert!(b.get(&ChunkId([6; 32])).unwrap().is_some());
    assert!(a.get(&ChunkId([6; 32])).unwrap().is_none());
    assert!(matches!(Index::open_exclusive(&path), Err(Error::Busy)));
    drop(b);
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "secondary directory removed"
    );
}
