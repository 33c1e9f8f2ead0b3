//! A repository's objects in an S3-compatible bucket (AWS, MinIO, Ceph,
//! Garage, R2, B2…), under a prefix, laid out as in a directory.
//!
//! Objects are put with `If-None-Match: *` (or a HEAD before a multipart
//! upload), so nothing is ever overwritten; Object Lock retention goes
//! through [`objectlock`], since object_store has no call for it.

use super::{object_path, Error, Kind, Result, Store};
use crate::objectlock;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

/// Objects bigger than this go up in parts.
const MULTIPART_ABOVE: u64 = 16 << 20;
const PART_SIZE: usize = 8 << 20;
/// Ranges of one object closer than this are fetched by one GET: a small
/// gap costs less than another request.
const COALESCE: u64 = 16 << 10;

/// An S3-compatible bucket (AWS, MinIO, Ceph, Garage, R2, B2…), configured
/// from the variables the AWS tools read: AWS_ENDPOINT_URL, AWS_REGION,
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Path-style requests; plain
/// http allowed when the endpoint says so.
pub struct S3 {
    store: AmazonS3,
    /// Signed requests object_store has no call for (Object Lock).
    lock: objectlock::Client,
    bucket: String,
    prefix: String,
    rt: &'static crate::runtime::Runtime,
}

impl S3 {
    pub fn new(bucket_and_prefix: &str) -> Result<Self> {
        let (bucket, prefix) = bucket_and_prefix
            .split_once('/')
            .unwrap_or((bucket_and_prefix, ""));
        let describe = format!("s3://{bucket_and_prefix}");
        let bad = |what: String| Error::Remote {
            store: describe.clone(),
            what,
        };
        if bucket.is_empty() {
            return Err(bad("no bucket: write s3://BUCKET/PREFIX".into()));
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        let client_options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(600))
            .with_allow_http(
                endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..Default::default()
            })
            .with_client_options(client_options.clone());
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        let region = b
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let store = b.build().map_err(|e| bad(e.to_string()))?;
        let lock = objectlock::Client::new(
            &client_options,
            store.credentials().clone(),
            region,
            endpoint,
            bucket.to_string(),
        )
        .map_err(|e| bad(e.to_string()))?;
        let rt = crate::runtime::get().map_err(|source| Error::Io {
            store: describe.clone(),
            source,
        })?;
        Ok(S3 {
            store,
            lock,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            rt,
        })
    }

    fn path(&self, kind: Kind, name: &str) -> ObjectPath {
        let p = object_path(kind, name);
        if self.prefix.is_empty() {
            ObjectPath::from(p)
        } else {
            ObjectPath::from(format!("{}/{p}", self.prefix))
        }
    }

    fn err(&self, e: object_store::Error) -> Error {
        let store = self.describe();
        let what = e.to_string();
        let denied = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
            // A refused list request comes back as a generic error: the S3
            // error code in the body says what it was.
            || [
                "<Code>SignatureDoesNotMatch<",
                "<Code>InvalidAccessKeyId<",
                "<Code>AccessDenied<",
            ]
            .iter()
            .any(|c| what.contains(c));
        if matches!(e, object_store::Error::NotFound { .. }) {
            Error::Io {
                store,
                source: io::Error::new(io::ErrorKind::NotFound, what),
            }
        } else if denied {
            Error::AccessDenied { store, what }
        } else if what.contains("error sending request") {
            Error::Unreachable {
                store,
                endpoint: std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS S3".into()),
                what,
            }
        } else {
            Error::Remote { store, what }
        }
    }

    fn io_err(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
        move |source| Error::Io {
            store: path.display().to_string(),
            source,
        }
    }
}

impl Store for S3 {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn list_sized(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let sub = match kind {
            Kind::Config => {
                let head = self
                    .rt
                    .block_on(self.store.head(&self.path(Kind::Config, "config")));
                return match head {
                    Ok(m) => Ok(vec![("config".to_string(), m.size)]),
                    Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                    Err(e) => Err(self.err(e)),
                };
            }
            Kind::Pack => "packs",
            Kind::Snapshot => "snapshots",
            Kind::Key => "keys",
            Kind::Audit => "audit",
            Kind::Lock => "locks",
        };
        let dir = if self.prefix.is_empty() {
            ObjectPath::from(sub)
        } else {
            ObjectPath::from(format!("{}/{sub}", self.prefix))
        };
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut s = self.store.list(Some(&dir));
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| self.err(e))?;
                if let Some(name) = m.location.filename() {
                    out.push((name.to_string(), m.size));
                }
            }
            Ok(out)
        })
    }

    fn put_file(&self, kind: Kind, name: &str, src: &Path, size: u64) -> Result<bool> {
        let path = self.path(kind, name);
        let io_err = Self::io_err(src);
        self.rt.block_on(async {
            if size > MULTIPART_ABOVE {
                // Multipart uploads cannot be conditional: look first. The
                // object is content-addressed, so a racing writer would put
                // the same bytes.
                match self.store.head(&path).await {
                    Ok(_) => return Ok(false),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(e)),
                }
                let mut up = self
                    .store
                    .put_multipart(&path)
                    .await
                    .map_err(|e| self.err(e))?;
                let r = async {
                    let mut f = std::fs::File::open(src).map_err(&io_err)?;
                    let mut parts = Vec::new();
                    loop {
                        let mut buf = vec![0u8; PART_SIZE];
                        let n = crate::chunker::read_full(&mut f, &mut buf).map_err(&io_err)?;
                        if n == 0 {
                            break;
                        }
                        buf.truncate(n);
                        parts.push(up.put_part(PutPayload::from(buf)));
                        if parts.len() >= 4 {
                            for p in parts.drain(..) {
                                p.await.map_err(|e| self.err(e))?;
                            }
                        }
                    }
                    for p in parts {
                        p.await.map_err(|e| self.err(e))?;
                    }
                    up.complete().await.map_err(|e| self.err(e))?;
                    Ok(true)
                }
                .await;
                if r.is_err() {
                    let _ = up.abort().await;
                }
                r
            } else {
                let bytes = std::fs::read(src).map_err(&io_err)?;
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                match self
                    .store
                    .put_opts(&path, PutPayload::from(bytes), opts)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(self.err(e)),
                }
            }
        })
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        self.rt.block_on(async {
            let r = self.store.get(&path).await.map_err(|e| self.err(e))?;
            Ok(r.bytes().await.map_err(|e| self.err(e))?.to_vec())
        })
    }

    fn read_ranges(
        &self,
        kind: Kind,
        name: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Vec<u8>>> {
        let path = self.path(kind, name);
        // Ranges less than COALESCE apart go as one GET (the gap is read
        // and dropped), up to ten GETs at once. object_store's own default
        // gap (1 MiB) would read a restore's unneeded neighbours too.
        let got = self
            .rt
            .block_on(object_store::coalesce_ranges(
                ranges,
                |r| self.store.get_range(&path, r),
                COALESCE,
            ))
            .map_err(|e| self.err(e))?;
        // A range past the end comes back cut short (HTTP range rules):
        // that is an object shorter than the index says, an error.
        ranges
            .iter()
            .zip(got)
            .map(|(r, b)| {
                if b.len() as u64 == r.end.saturating_sub(r.start) {
                    Ok(b.to_vec())
                } else {
                    Err(Error::Io {
                        store: self.describe(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "{}: bytes {}..{} asked, {} came",
                                object_path(kind, name),
                                r.start,
                                r.end,
                                b.len()
                            ),
                        ),
                    })
                }
            })
            .collect()
    }

    fn get_into(&self, kind: Kind, name: &str, out: &mut dyn Write) -> Result<u64> {
        let path = self.path(kind, name);
        let io_err = |source| Error::Io {
            store: format!("the local copy of {}", object_path(kind, name)),
            source,
        };
        self.rt.block_on(async {
            let r = self.store.get(&path).await.map_err(|e| self.err(e))?;
            let mut f = io::BufWriter::with_capacity(1 << 20, out);
            let mut s = r.into_stream();
            let mut n = 0u64;
            while let Some(b) = s.next().await {
                let b = b.map_err(|e| self.err(e))?;
                n += b.len() as u64;
                f.write_all(&b).map_err(&io_err)?;
            }
            f.flush().map_err(&io_err)?;
            Ok(n)
        })
    }

    fn put_bytes(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.path(kind, name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.rt.block_on(async {
            match self
                .store
                .put_opts(&path, PutPayload::from(bytes.to_vec()), opts)
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    fn rewrite_lock(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(Kind::Lock, name);
        self.rt.block_on(async {
            self.store
                .put(&path, PutPayload::from(bytes.to_vec()))
                .await
                .map_err(|e| self.err(e))
                .map(|_| ())
        })
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        self.rt.block_on(async {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.err(e)),
            }
        })
    }

    fn object_lock_check(&self) -> Result<()> {
        self.rt
            .block_on(self.lock.check_enabled())
            .map_err(|why| Error::ObjectLock {
                store: self.describe(),
                why,
            })
    }

    fn retain(
        &self,
        kind: Kind,
        name: &str,
        mode: objectlock::Mode,
        min: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> Result<bool> {
        let key = self.path(kind, name);
        self.rt
            .block_on(async {
                if let Some(now) = self.lock.retention(key.as_ref()).await? {
                    if now >= min {
                        return Ok(false);
                    }
                }
                self.lock.retain(key.as_ref(), mode, until).await?;
                Ok(true)
            })
            .map_err(|why| Error::ObjectLock {
                store: self.describe(),
                why,
            })
    }

    fn hash(&self, kind: Kind, name: &str) -> Result<([u8; 32], u64)> {
        let path = self.path(kind, name);
        self.rt.block_on(async {
            let r = self.store.get(&path).await.map_err(|e| self.err(e))?;
            let mut s = r.into_stream();
            let mut h = blake3::Hasher::new();
            let mut n = 0u64;
            while let Some(b) = s.next().await {
                let b = b.map_err(|e| self.err(e))?;
                n += b.len() as u64;
                h.update(&b);
            }
            Ok((*h.finalize().as_bytes(), n))
        })
    }
}
