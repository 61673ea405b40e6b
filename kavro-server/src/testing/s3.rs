//! A private S3-compatible server (moto's server mode, `python3 -m
//! moto.server`) on a free loopback port, with one bucket, for tests of the
//! relay's S3 blob storage. Without python3 and moto the test skips (or
//! fails under `KAVRO_REQUIRE_SERVICES=1`). Killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, skip};

/// moto answers these (it checks no signature); never real credentials.
const DUMMY_KEY: &str = "kavro-test-key";
const DUMMY_SECRET: &str = "kavro-test-secret";

/// A running moto server and the bucket made on it.
pub struct PrivateS3 {
    child: Child,
    port: u16,
    bucket: String,
    http: reqwest::Client,
}

impl PrivateS3 {
    /// Starts moto and creates a uniquely named bucket; `None` (the test
    /// skips) when moto cannot run or does not answer within 30 s.
    pub async fn start() -> Option<Self> {
        let started = Self::try_start().await;
        if let Err(why) = &started {
            skip(&format!(
                "cannot start moto (python3 -m moto.server): {why}"
            ));
        }
        started.ok()
    }

    async fn try_start() -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port().ok_or("no free loopback port")?;
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        // From here on, Drop kills the process whatever happens.
        let mut s3 = Self {
            child,
            port,
            bucket: format!("kavro-test-{}", uuid::Uuid::new_v4().simple()),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // moto creates a bucket on a plain, unsigned `PUT /bucket`.
            match s3.http.put(s3.bucket_url()).send().await {
                Ok(response) if response.status().is_success() => return Ok(s3),
                Ok(response) => return Err(format!("creating the bucket: {}", response.status())),
                Err(_) => {}
            }
            if let Ok(Some(status)) = s3.child.try_wait() {
                return Err(format!(
                    "moto exited ({status}); is moto[server] installed?"
                ));
            }
            if Instant::now() > deadline {
                return Err("no answer within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn bucket_url(&self) -> String {
        format!("{}/{}", self.endpoint(), self.bucket)
    }

    /// The relay's `blob_url` for `prefix` in this bucket.
    pub fn blob_url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The relay's `blob_s3_settings` for this server (dummy credentials).
    pub fn settings(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", DUMMY_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// The keys of the objects under `prefix`, through moto's S3 API
    /// (`ListObjectsV2`), not through the relay's store.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        assert!(
            prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c)),
            "a prefix that needs no URL encoding: {prefix}"
        );
        let url = format!("{}?list-type=2&prefix={prefix}", self.bucket_url());
        let response = self.http.get(url).send().await.expect("list the bucket");
        assert!(response.status().is_success(), "{}", response.status());
        let body = response.text().await.expect("read the bucket listing");
        assert!(
            !body.contains("<IsTruncated>true</IsTruncated>"),
            "more than one page of objects: {body}"
        );
        xml_values(&body, "Key")
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The texts of every `<tag>…</tag>` in `xml` (S3 listings escape `<` and
/// `&` in keys; ours have neither).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(v, _)| v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_keys_are_read_from_the_xml() {
        let xml = "<ListBucketResult><Contents><Key>p/a</Key><Size>1</Size></Contents>\
                   <Contents><Key>p/b</Key></Contents><KeyCount>2</KeyCount></ListBucketResult>";
        assert_eq!(xml_values(xml, "Key"), vec!["p/a", "p/b"]);
        assert!(xml_values("<ListBucketResult/>", "Key").is_empty());
        assert!(xml_values("<Key>unterminated", "Key").is_empty());
    }
}
