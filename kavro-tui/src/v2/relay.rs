//! The relay's `/v2` routes as typed calls ([`V2Relay`]): devices and links,
//! key packages, groups, and a device's queue. Wire types come from
//! `kavro_proto::v2::api`; errors are the v1 client's [`RelayError`], plus
//! [`Posted::Conflict`] for the `409` of a message made in an old epoch.

use std::time::Duration;

use kavro_proto::UserId;
use kavro_proto::v2::api::{
    Accepted, AckQueue, ApproveLink, ClaimedKeyPackages, CreateGroup, DeviceToken, EpochConflict,
    GroupState, KeyPackageCount, LinkRequestCreated, LinkRequestStatus, LinkRequestView, MlsDevice,
    MlsDeviceList, NewLinkRequest, PostCommit, PostGroupMessage, QueueAcked, QueuePage,
    RegisterDevice, SessionProof, UploadKeyPackages,
};
use kavro_proto::v2::{BlobHolder, BlobId, BlobStatus, GroupId, MlsDeviceId, NewBlob, QueueSeq};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::config::ServerUrl;
use crate::keystore::AccessToken;
use crate::relay::{RelayError, error_from, innermost};

/// Added to a long-poll's `wait` for the request timeout.
const LONG_POLL_GRACE: Duration = Duration::from_secs(15);
/// A blob download as a whole (its pieces each come far sooner).
const BLOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// A commit or group message as the relay took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Accepted(Accepted),
    /// `409`: the group is at `epoch` now; apply the queue and retry.
    Conflict {
        epoch: u64,
    },
}

/// The `/v2` routes over HTTP(S).
#[derive(Clone)]
pub struct V2Relay {
    client: reqwest::Client,
    base: String,
}

impl V2Relay {
    /// The `/v2` routes of `server` over `client`, the process's one
    /// [`crate::relay::http_client`] (the v1 relay client's: same roots,
    /// same timeouts).
    pub fn with_client(server: &ServerUrl, client: reqwest::Client) -> Self {
        Self {
            client,
            base: server.as_str().trim_end_matches('/').to_owned(),
        }
    }

    #[cfg(test)]
    fn with_base(base: &str, extra_roots: &[reqwest::Certificate]) -> Result<Self, RelayError> {
        let client = crate::relay::http_client(base, extra_roots)?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// A relay at a bare `http://host:port` (tests of the core).
    #[cfg(test)]
    pub fn for_tests(base: &str) -> Self {
        Self::with_base(base, &[]).expect("an HTTP client")
    }

    fn request(&self, method: Method, path: &str, token: &AccessToken) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token.expose())
    }

    async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, RelayError> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        if response.status().is_success() {
            let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
            serde_json::from_slice(&bytes).map_err(|e| RelayError::InvalidResponse(e.to_string()))
        } else {
            Err(error_from(response).await)
        }
    }

    /// A post that may meet `409` (epoch conflict).
    async fn post_epoch(&self, request: RequestBuilder) -> Result<Posted, RelayError> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        match response.status() {
            status if status.is_success() => {
                let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
                serde_json::from_slice(&bytes)
                    .map(Posted::Accepted)
                    .map_err(|e| RelayError::InvalidResponse(e.to_string()))
            }
            StatusCode::CONFLICT => {
                let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
                let conflict: EpochConflict = serde_json::from_slice(&bytes)
                    .map_err(|e| RelayError::InvalidResponse(e.to_string()))?;
                Ok(Posted::Conflict {
                    epoch: conflict.epoch,
                })
            }
            _ => Err(error_from(response).await),
        }
    }

    fn transport(&self, err: &reqwest::Error) -> RelayError {
        let detail = if err.is_timeout() {
            "no answer in time (timed out)".to_owned()
        } else {
            innermost(err)
        };
        RelayError::Unreachable {
            server: self.base.clone(),
            detail,
        }
    }

    // ---- devices ----

    /// Registers a device (the account's first without a link).
    pub async fn register_device(
        &self,
        account: &AccessToken,
        body: &RegisterDevice,
    ) -> Result<MlsDevice, RelayError> {
        self.call(
            self.request(Method::POST, "/v2/devices", account)
                .json(body),
        )
        .await
    }

    /// A device token for `device`, from a proof of possession of its key.
    pub async fn open_session(
        &self,
        account: &AccessToken,
        device: MlsDeviceId,
        proof: &SessionProof,
    ) -> Result<DeviceToken, RelayError> {
        self.call(
            self.request(
                Method::POST,
                &format!("/v2/devices/{device}/session"),
                account,
            )
            .json(proof),
        )
        .await
    }

    pub async fn devices(
        &self,
        token: &AccessToken,
        username: &str,
    ) -> Result<MlsDeviceList, RelayError> {
        self.call(self.request(Method::GET, &format!("/v2/users/{username}/devices"), token))
            .await
    }

    pub async fn revoke_device(
        &self,
        token: &AccessToken,
        device: MlsDeviceId,
    ) -> Result<MlsDevice, RelayError> {
        self.call(self.request(Method::POST, &format!("/v2/devices/{device}/revoke"), token))
            .await
    }

    // ---- device links ----

    pub async fn create_link_request(
        &self,
        account: &AccessToken,
        body: &NewLinkRequest,
    ) -> Result<LinkRequestCreated, RelayError> {
        self.call(
            self.request(Method::POST, "/v2/link-requests", account)
                .json(body),
        )
        .await
    }

    pub async fn link_request_status(
        &self,
        account: &AccessToken,
        request: Uuid,
    ) -> Result<LinkRequestStatus, RelayError> {
        self.call(self.request(
            Method::GET,
            &format!("/v2/link-requests/{request}"),
            account,
        ))
        .await
    }

    pub async fn view_link_code(
        &self,
        token: &AccessToken,
        code: &str,
    ) -> Result<LinkRequestView, RelayError> {
        self.call(self.request(Method::GET, &format!("/v2/link-codes/{code}"), token))
            .await
    }

    pub async fn approve_link(
        &self,
        token: &AccessToken,
        code: &str,
        body: &ApproveLink,
    ) -> Result<MlsDevice, RelayError> {
        self.call(
            self.request(
                Method::POST,
                &format!("/v2/link-codes/{code}/approve"),
                token,
            )
            .json(body),
        )
        .await
    }

    // ---- key packages ----

    pub async fn upload_key_packages(
        &self,
        token: &AccessToken,
        device: MlsDeviceId,
        body: &UploadKeyPackages,
    ) -> Result<KeyPackageCount, RelayError> {
        self.call(
            self.request(
                Method::POST,
                &format!("/v2/devices/{device}/key-packages"),
                token,
            )
            .json(body),
        )
        .await
    }

    /// The device's packages left in `suite` (an older relay ignores the
    /// suite and answers for 0x0001, which its answer then says).
    pub async fn key_package_count(
        &self,
        token: &AccessToken,
        device: MlsDeviceId,
        suite: u16,
    ) -> Result<KeyPackageCount, RelayError> {
        self.call(self.request(
            Method::GET,
            &format!("/v2/devices/{device}/key-packages?ciphersuite={suite}"),
            token,
        ))
        .await
    }

    /// One package per active device of `username`, or of device `only`.
    pub async fn claim_key_packages(
        &self,
        token: &AccessToken,
        username: &str,
        suite: u16,
        only: Option<MlsDeviceId>,
    ) -> Result<ClaimedKeyPackages, RelayError> {
        let device = only.map_or_else(String::new, |d| format!("&device={d}"));
        self.call(self.request(
            Method::POST,
            &format!("/v2/users/{username}/key-packages/claim?ciphersuite={suite}{device}"),
            token,
        ))
        .await
    }

    // ---- groups ----

    pub async fn create_group(
        &self,
        token: &AccessToken,
        group: &GroupId,
    ) -> Result<GroupState, RelayError> {
        let body = CreateGroup {
            group_id: group.to_text().into(),
        };
        self.call(self.request(Method::POST, "/v2/groups", token).json(&body))
            .await
    }

    /// The group's epoch and members (member devices only).
    pub async fn group_state(
        &self,
        token: &AccessToken,
        group: &GroupId,
    ) -> Result<GroupState, RelayError> {
        self.call(self.request(Method::GET, &format!("/v2/groups/{group}"), token))
            .await
    }

    pub async fn post_commit(
        &self,
        token: &AccessToken,
        group: &GroupId,
        body: &PostCommit,
    ) -> Result<Posted, RelayError> {
        self.post_epoch(
            self.request(Method::POST, &format!("/v2/groups/{group}/commits"), token)
                .json(body),
        )
        .await
    }

    pub async fn post_message(
        &self,
        token: &AccessToken,
        group: &GroupId,
        body: &PostGroupMessage,
    ) -> Result<Posted, RelayError> {
        self.post_epoch(
            self.request(Method::POST, &format!("/v2/groups/{group}/messages"), token)
                .json(body),
        )
        .await
    }

    // ---- queue ----

    /// Entries after `after`; with `wait` seconds the relay holds an empty answer.
    pub async fn queue(
        &self,
        token: &AccessToken,
        device: MlsDeviceId,
        after: QueueSeq,
        limit: u32,
        wait: u32,
    ) -> Result<QueuePage, RelayError> {
        let mut request = self.request(
            Method::GET,
            &format!("/v2/devices/{device}/queue?after={after}&limit={limit}&wait={wait}"),
            token,
        );
        if wait > 0 {
            request = request.timeout(Duration::from_secs(u64::from(wait)) + LONG_POLL_GRACE);
        }
        self.call(request).await
    }

    pub async fn ack(
        &self,
        token: &AccessToken,
        device: MlsDeviceId,
        up_to: QueueSeq,
    ) -> Result<QueueAcked, RelayError> {
        self.call(
            self.request(
                Method::POST,
                &format!("/v2/devices/{device}/queue/ack"),
                token,
            )
            .json(&AckQueue { up_to }),
        )
        .await
    }

    // ---- blobs (attachments) ----

    /// `POST /v2/blobs`: announces an upload of `size` bytes of ciphertext.
    pub async fn create_blob(
        &self,
        token: &AccessToken,
        size: u64,
    ) -> Result<BlobStatus, RelayError> {
        self.call(
            self.request(Method::POST, "/v2/blobs", token)
                .json(&NewBlob { size }),
        )
        .await
    }

    /// `PUT /v2/blobs/{id}?offset=N`: the next chunk.
    pub async fn put_blob_chunk(
        &self,
        token: &AccessToken,
        blob: BlobId,
        offset: u64,
        chunk: bytes::Bytes,
    ) -> Result<BlobStatus, RelayError> {
        self.call(
            self.request(
                Method::PUT,
                &format!("/v2/blobs/{blob}?offset={offset}"),
                token,
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(chunk),
        )
        .await
    }

    pub async fn blob_status(
        &self,
        token: &AccessToken,
        blob: BlobId,
    ) -> Result<BlobStatus, RelayError> {
        self.call(self.request(Method::GET, &format!("/v2/blobs/{blob}/status"), token))
            .await
    }

    /// `POST /v2/blobs/{id}/ack`: this device is done with the blob (saved
    /// it, or refused it for good); once every device it was sent to is, the
    /// relay deletes it.
    pub async fn ack_blob(
        &self,
        token: &AccessToken,
        blob: BlobId,
    ) -> Result<BlobStatus, RelayError> {
        self.call(self.request(Method::POST, &format!("/v2/blobs/{blob}/ack"), token))
            .await
    }

    /// `POST /v2/blobs/{id}/holders`: lets account `user` read this complete
    /// blob (the recipient of a v1 message carrying its key) until it
    /// acknowledges it.
    pub async fn add_blob_holder(
        &self,
        token: &AccessToken,
        blob: BlobId,
        user: UserId,
    ) -> Result<BlobStatus, RelayError> {
        self.call(
            self.request(Method::POST, &format!("/v2/blobs/{blob}/holders"), token)
                .json(&BlobHolder { user_id: user }),
        )
        .await
    }

    /// `GET /v2/blobs/{id}` from byte `from`: the response, to read in chunks.
    pub async fn download_blob(
        &self,
        token: &AccessToken,
        blob: BlobId,
        from: u64,
    ) -> Result<reqwest::Response, RelayError> {
        let mut request = self
            .request(Method::GET, &format!("/v2/blobs/{blob}"), token)
            // A large file takes longer than one API call's timeout.
            .timeout(BLOB_TIMEOUT);
        if from > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_from(response).await)
        }
    }

    /// The next piece of a download (`None` at its end).
    pub async fn next_piece(
        &self,
        response: &mut reqwest::Response,
    ) -> Result<Option<bytes::Bytes>, RelayError> {
        response.chunk().await.map_err(|e| self.transport(&e))
    }
}
