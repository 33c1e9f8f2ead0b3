//! S3 Object Lock for the objects of immaculate and sacred snapshots at a
//! sync destination (`relic sync --to s3://… --object-lock DAYS`).
//!
//! object_store has no call for Object Lock, and it adds its default headers
//! after signing (S3 refuses unsigned `x-amz-*` headers), so the three
//! requests needed here are built by hand and signed with object_store's own
//! public SigV4 signer ([`AwsAuthorizer`]), then sent through its HTTP
//! client, with the same credentials, region and endpoint as every other
//! request:
//!
//! - `GET /bucket?object-lock`: is Object Lock enabled on the bucket? Asked
//!   before anything is sent, so a bucket without it fails cleanly;
//! - `HEAD /bucket/key`: the retention the object has now
//!   (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`);
//! - `PUT /bucket/key?retention`: sets or extends it (PutObjectRetention,
//!   with the Content-MD5 S3 and MinIO require).
//!
//! Retention can only ever be extended in COMPLIANCE mode, never shortened,
//! so an object already retained past the requested date is left alone.

use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, ReqwestConnector};
use object_store::ClientOptions;

/// The two retention modes of S3 Object Lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Nobody, not even the account's root user, can delete the object's
    /// version or shorten its retention before the date.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Compliance => "COMPLIANCE",
            Mode::Governance => "GOVERNANCE",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "compliance" => Ok(Mode::Compliance),
            "governance" => Ok(Mode::Governance),
            _ => Err(format!(
                "unknown object lock mode {s:?}: compliance or governance"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Http(String),
    #[error("--object-lock needs an s3:// destination (a bucket with Object Lock enabled); nothing was sent")]
    NotS3,
    #[error("the server does not support S3 Object Lock ({0})")]
    Unsupported(String),
    #[error("Object Lock is not enabled on bucket {bucket}: it can only be enabled when the bucket is created (for example `aws s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket`); nothing was sent")]
    NotEnabled { bucket: String },
    #[error("access denied: {0}")]
    Denied(String),
    #[error("{what}: HTTP {status}: {code}{message}")]
    Refused {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
}

/// Signed requests to one bucket, beside object_store's own.
pub struct Client {
    http: HttpClient,
    credentials: AwsCredentialProvider,
    region: String,
    /// `scheme://host[:port]`, no trailing slash.
    endpoint: String,
    bucket: String,
}

impl Client {
    pub fn new(
        options: &ClientOptions,
        credentials: AwsCredentialProvider,
        region: String,
        endpoint: Option<String>,
        bucket: String,
    ) -> Result<Self, Error> {
        let http = ReqwestConnector::default()
            .connect(options)
            .map_err(|e| Error::Http(e.to_string()))?;
        let endpoint = endpoint
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        Ok(Client {
            http,
            credentials,
            region,
            endpoint,
            bucket,
        })
    }

    fn url(&self, key: Option<&str>, query: &str) -> String {
        let mut u = format!("{}/{}", self.endpoint, encode_path(&self.bucket));
        if let Some(k) = key {
            u.push('/');
            u.push_str(&encode_path(k));
        }
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }

    async fn send(
        &self,
        method: http::Method,
        url: String,
        body: Bytes,
        headers: &[(&'static str, String)],
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), Error> {
        let mut req: HttpRequest = http::Request::builder()
            .method(method)
            .uri(&url)
            .body(body.into())
            .map_err(|e| Error::Http(format!("{url}: {e}")))?;
        for (k, v) in headers {
            req.headers_mut().insert(
                *k,
                http::HeaderValue::from_str(v).map_err(|e| Error::Http(e.to_string()))?,
            );
        }
        let cred = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| Error::Denied(e.to_string()))?;
        AwsAuthorizer::new(&cred, "s3", &self.region).authorize(&mut req, None);
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| Error::Http(format!("cannot reach {}: {e}", self.endpoint)))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .bytes()
            .await
            .map_err(|e| Error::Http(format!("{url}: {e}")))?;
        Ok((parts.status, parts.headers, body))
    }

    /// Fails unless Object Lock is enabled on the bucket.
    pub async fn check_enabled(&self) -> Result<(), Error> {
        let url = self.url(None, "object-lock");
        let (status, _, body) = self.send(http::Method::GET, url, Bytes::new(), &[]).await?;
        let text = String::from_utf8_lossy(&body);
        if status.is_success() {
            return if xml_field(&text, "ObjectLockEnabled").as_deref() == Some("Enabled") {
                Ok(())
            } else {
                Err(Error::NotEnabled {
                    bucket: self.bucket.clone(),
                })
            };
        }
        let code = xml_field(&text, "Code").unwrap_or_default();
        match (status.as_u16(), code.as_str()) {
            (404, "ObjectLockConfigurationNotFoundError") | (400, "InvalidRequest") => {
                Err(Error::NotEnabled {
                    bucket: self.bucket.clone(),
                })
            }
            (404, "NoSuchBucket") => Err(self.refused("GetObjectLockConfiguration", status, &text)),
            (501, _) | (400, "NotImplemented") | (404, _) | (405, _) => {
                Err(Error::Unsupported(format!(
                    "GetObjectLockConfiguration answered HTTP {status} {code}; nothing was sent"
                )))
            }
            _ => Err(self.refused("GetObjectLockConfiguration", status, &text)),
        }
    }

    fn refused(&self, what: &str, status: http::StatusCode, body: &str) -> Error {
        let code = xml_field(body, "Code").unwrap_or_default();
        let message = xml_field(body, "Message")
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        if status.as_u16() == 403 {
            return Error::Denied(format!("{what} on s3://{}: {code}{message}", self.bucket));
        }
        Error::Refused {
            what: format!("{what} on s3://{}", self.bucket),
            status: status.as_u16(),
            code,
            message,
        }
    }

    /// The object's retain-until date, if it has one.
    pub async fn retention(&self, key: &str) -> Result<Option<jiff::Timestamp>, Error> {
        let url = self.url(Some(key), "");
        let (status, headers, _) = self
            .send(http::Method::HEAD, url, Bytes::new(), &[])
            .await?;
        if !status.is_success() {
            return Err(self.refused(&format!("HEAD {key}"), status, ""));
        }
        Ok(headers
            .get("x-amz-object-lock-retain-until-date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<jiff::Timestamp>().ok()))
    }

    /// PutObjectRetention: keep the object until `until`.
    pub async fn retain(&self, key: &str, mode: Mode, until: jiff::Timestamp) -> Result<(), Error> {
        let body = retention_xml(mode, until);
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(body.as_bytes()));
        let url = self.url(Some(key), "retention");
        let (status, _, resp) = self
            .send(
                http::Method::PUT,
                url,
                Bytes::from(body),
                &[
                    ("content-md5", md5),
                    ("content-type", "application/xml".into()),
                ],
            )
            .await?;
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&resp);
        let code = xml_field(&text, "Code").unwrap_or_default();
        if status.as_u16() == 501 || code == "NotImplemented" {
            return Err(Error::Unsupported(format!(
                "PutObjectRetention answered {code}; the data was sent but is not locked"
            )));
        }
        Err(self.refused(&format!("PutObjectRetention {key}"), status, &text))
    }
}

/// The PutObjectRetention body. Whole seconds: every server parses that.
pub fn retention_xml(mode: Mode, until: jiff::Timestamp) -> String {
    format!(
        "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
        mode.as_str(),
        until.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The text of the first `<name>…</name>` in an S3 XML answer.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].trim().to_string())
}

/// Percent-encodes a key for the URL path, as S3's SigV4 canonical URI
/// expects: unreserved characters and `/` stay, everything else is %XX.
fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_body_names_mode_and_whole_second_date() {
        let t: jiff::Timestamp = "2026-12-22T10:00:00.75Z".parse().unwrap();
        let x = retention_xml(Mode::Compliance, t);
        assert!(x.contains("<Mode>COMPLIANCE</Mode>"));
        assert!(x.contains("<RetainUntilDate>2026-12-22T10:00:00Z</RetainUntilDate>"));
    }

    #[test]
    fn xml_fields_and_paths() {
        let body = "<?xml version=\"1.0\"?><Error><Code>InvalidRequest</Code><Message>Bucket is missing ObjectLockConfiguration</Message></Error>";
        assert_eq!(xml_field(body, "Code").as_deref(), Some("InvalidRequest"));
        assert_eq!(xml_field(body, "Nope"), None);
        assert_eq!(encode_path("pre fix/packs/ab"), "pre%20fix/packs/ab");
        assert_eq!("governance".parse::<Mode>(), Ok(Mode::Governance));
        assert!("forever".parse::<Mode>().is_err());
    }
}
