//! Where blob bytes live: an `object_store` (the data directory by default,
//! S3 for `blob_url = s3://bucket/prefix`), the honest mapping of "out of
//! space", and the free-space check taken before a blob is reserved.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// Why the blob storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("blob_url must be empty (the data directory) or s3://bucket[/prefix]")]
    Scheme,
    /// An S3 setting the relay was given is not one `object_store` knows
    /// (the name only: values may be secrets).
    #[error("unknown S3 setting {0}")]
    Setting(String),
    #[error("cannot create the blob directory {0}: {1}")]
    Directory(String, #[source] std::io::Error),
    #[error("cannot open the blob storage: {0}")]
    Store(#[source] object_store::Error),
}

/// How much room is left for new blobs, when the storage can tell.
pub trait FreeSpace: Send + Sync + 'static {
    /// Bytes available, or `None` when unknown (S3: unlimited as far as we know).
    fn available(&self) -> Option<u64>;
}

/// The free space of the file system holding `dir` (`statvfs`).
pub struct DiskSpace(pub PathBuf);

impl FreeSpace for DiskSpace {
    fn available(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.0).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}

/// No free-space knowledge (object stores without a notion of "full").
pub struct Unknown;

impl FreeSpace for Unknown {
    fn available(&self) -> Option<u64> {
        None
    }
}

/// An opened blob storage: the store, the key prefix, and its free space.
pub struct Storage {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    pub space: Arc<dyn FreeSpace>,
    /// For logs: `data directory` or the S3 bucket (never credentials).
    pub description: String,
    /// Whether a chunk's object is written as its body arrives (a local
    /// file takes writes of any size, so the disk works while the rest
    /// comes in); S3 wants multipart parts of at least 5 MiB, so a chunk
    /// goes up there in one `PUT` once it is all in.
    pub streams: bool,
}

/// Opens the storage `blob_url` names: empty for `<data_dir>/blobs`,
/// `s3://bucket/prefix` for S3 with the usual AWS environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and
/// `AWS_ENDPOINT_URL` for an S3-compatible server; plain `http://`
/// endpoints are allowed). `s3_settings` (`AWS_*` names) override the
/// process environment: they let one relay in a test process use a private
/// S3 server without changing the environment every other test shares.
pub fn open(
    blob_url: &str,
    data_dir: &FsPath,
    s3_settings: &[(String, String)],
) -> Result<Storage, OpenError> {
    let blob_url = blob_url.trim();
    if blob_url.is_empty() {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(&dir)
            .map_err(|e| OpenError::Directory(dir.display().to_string(), e))?;
        // A chunk the relay answered for must survive a crash: its object
        // is flushed to disk (file and directory) before it is recorded.
        // object_store leaves this off by default.
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(OpenError::Store)?
            .with_fsync(true);
        return Ok(Storage {
            store: Arc::new(store),
            prefix: Path::default(),
            space: Arc::new(DiskSpace(dir.clone())),
            description: format!("directory {}", dir.display()),
            streams: true,
        });
    }
    let (bucket, prefix) = parse_s3_url(blob_url)?;
    // object_store's client is our reqwest without a built-in TLS provider:
    // building it panics unless one is installed. The binary installs ring
    // at start; a relay built as a library (tests, embedders) may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env();
    for (name, value) in s3_settings {
        let key: AmazonS3ConfigKey = name
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| OpenError::Setting(name.clone()))?;
        builder = builder.with_config(key, value);
    }
    if let Some(endpoint) = builder.get_config_value(&AmazonS3ConfigKey::Endpoint) {
        builder = builder.with_allow_http(endpoint.starts_with("http://"));
    }
    let store = builder
        .with_bucket_name(&bucket)
        .build()
        .map_err(OpenError::Store)?;
    Ok(Storage {
        store: Arc::new(store),
        prefix: Path::from(prefix.as_str()),
        space: Arc::new(Unknown),
        description: format!("s3://{bucket}/{prefix}"),
        streams: false,
    })
}

/// `s3://bucket[/prefix]` → (bucket, prefix without surrounding slashes).
pub fn parse_s3_url(url: &str) -> Result<(String, String), OpenError> {
    let rest = url.strip_prefix("s3://").ok_or(OpenError::Scheme)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.is_empty() || !bucket.chars().all(valid) || prefix.contains("//") {
        return Err(OpenError::Scheme);
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

/// Whether an object store error is a full disk (ENOSPC) somewhere in its
/// chain. (S3 has no "full"; its errors stay `503`.)
pub fn is_out_of_space(err: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28))
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://kavro-blobs/relay/one/").unwrap(),
            ("kavro-blobs".to_owned(), "relay/one".to_owned())
        );
        assert_eq!(
            parse_s3_url("s3://b").unwrap(),
            ("b".to_owned(), String::new())
        );
        for bad in [
            "s3://",
            "s3:///x",
            "http://b/x",
            "s3://Bad_Name/x",
            "s3://b/x//y",
            "b/x",
        ] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enospc_is_out_of_space_and_other_errors_are_not() {
        let full = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from_raw_os_error(28)),
        };
        assert!(is_out_of_space(&full));
        let denied = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        assert!(!is_out_of_space(&denied));
    }

    #[test]
    fn disk_space_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DiskSpace(dir.path().to_owned()).available().is_some());
        assert!(DiskSpace(dir.path().join("missing")).available().is_none());
        assert!(open("ftp://x", dir.path(), &[]).is_err());
        assert!(open("", dir.path(), &[]).is_ok());
    }

    #[test]
    fn unknown_s3_settings_are_refused_by_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let settings = [("AWS_NO_SUCH_THING".to_owned(), "hunter2".to_owned())];
        let Err(err) = open("s3://b/p", dir.path(), &settings) else {
            panic!("an unknown setting must be refused");
        };
        let shown = err.to_string();
        assert!(shown.contains("AWS_NO_SUCH_THING"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn s3_settings_open_an_s3_store_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let settings = [
            (
                "AWS_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ),
            ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ];
        let storage = open("s3://b/relay/one", dir.path(), &settings).unwrap();
        assert_eq!(storage.prefix.as_ref(), "relay/one");
        assert_eq!(storage.description, "s3://b/relay/one");
        assert!(storage.space.available().is_none());
        assert!(!dir.path().join("blobs").exists(), "no local directory");
    }
}
