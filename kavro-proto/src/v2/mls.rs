//! What a Delivery Service reads of MLS (RFC 9420), on openmls: the framing
//! of a group message (group id, epoch, content type), that a Welcome is a
//! Welcome, and the checks on a key package (it parses, both its signatures
//! verify, its leaf's signature key is the device's registered key, its
//! lifetime covers now). Nothing here needs or sees a group secret.
//!
//! Every parse is exact: trailing bytes are refused.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    ContentType, KeyPackageIn, MlsMessageBodyIn, MlsMessageIn, ProtocolVersion, SignatureScheme,
};
use openmls_rust_crypto::RustCrypto;

use super::api::QueueKind;
use super::ids::GroupId;
use super::link::SignatureKey;

/// The framing of a group message, as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    pub group_id: GroupId,
    pub epoch: u64,
    pub kind: QueueKind,
}

/// Why MLS bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlsError {
    #[error("not a well-formed MLS message")]
    Malformed,
    #[error("not a group message (expected a PublicMessage or PrivateMessage)")]
    NotAGroupMessage,
    #[error("not a Welcome message")]
    NotAWelcome,
    #[error("the group id in the message is not a valid group id")]
    BadGroupId,
}

/// Parses a group message (commit, proposal or application) and reads its framing.
pub fn group_message_framing(bytes: &[u8]) -> Result<Framing, MlsError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
    let (group_id, epoch, content_type) = match message.extract() {
        MlsMessageBodyIn::PublicMessage(m) => (
            m.group_id().as_slice().to_vec(),
            m.epoch().as_u64(),
            m.content_type(),
        ),
        MlsMessageBodyIn::PrivateMessage(m) => (
            m.group_id().as_slice().to_vec(),
            m.epoch().as_u64(),
            m.content_type(),
        ),
        _ => return Err(MlsError::NotAGroupMessage),
    };
    let kind = match content_type {
        ContentType::Application => QueueKind::Application,
        ContentType::Proposal => QueueKind::Proposal,
        ContentType::Commit => QueueKind::Commit,
    };
    Ok(Framing {
        group_id: GroupId::from_bytes(&group_id).map_err(|_| MlsError::BadGroupId)?,
        epoch,
        kind,
    })
}

/// Checks that `bytes` are an `MLSMessage` carrying a Welcome.
pub fn check_welcome(bytes: &[u8]) -> Result<(), MlsError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
    match message.extract() {
        MlsMessageBodyIn::Welcome(_) => Ok(()),
        _ => Err(MlsError::NotAWelcome),
    }
}

/// A key package that passed [`check_key_package`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedKeyPackage {
    /// It carries the last-resort extension.
    pub last_resort: bool,
    /// Unix seconds after which it is no longer valid.
    pub not_after: u64,
    /// Its ciphersuite (one of [`super::suites::ALL`]).
    pub ciphersuite: u16,
}

/// Why a key package was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPackageError {
    #[error("not a well-formed KeyPackage")]
    Malformed,
    #[error("the ciphersuite is not one Kavro speaks (0x0001, or 0x004F for post-quantum groups)")]
    UnsupportedCiphersuite,
    #[error("signed by another key than the device's")]
    WrongKey,
    #[error("its signature does not verify")]
    BadSignature,
    #[error("it has expired, or is not valid yet")]
    Expired,
}

/// Checks a TLS-serialised `KeyPackage` (not wrapped in an `MLSMessage`):
/// it parses exactly, uses one of Kavro's ciphersuites, its leaf's signature key
/// is `device_key`, its leaf node and package signatures verify (openmls'
/// `KeyPackageIn::validate`, which also checks the protocol version and that
/// the init and encryption keys differ), and `now` (Unix seconds, the
/// relay's clock) lies within its lifetime.
pub fn check_key_package(
    bytes: &[u8],
    device_key: &SignatureKey,
    now: u64,
) -> Result<CheckedKeyPackage, KeyPackageError> {
    let package =
        KeyPackageIn::tls_deserialize_exact(bytes).map_err(|_| KeyPackageError::Malformed)?;
    let credential = package.unverified_credential();
    if credential.signature_key.as_slice() != device_key.as_bytes() {
        return Err(KeyPackageError::WrongKey);
    }
    let package = package
        .validate(&RustCrypto::default(), ProtocolVersion::Mls10)
        .map_err(|e| match e {
            openmls::prelude::KeyPackageVerifyError::LifetimeError(_)
            | openmls::prelude::KeyPackageVerifyError::MissingLifetime => KeyPackageError::Expired,
            openmls::prelude::KeyPackageVerifyError::InvalidLeafNodeSignature
            | openmls::prelude::KeyPackageVerifyError::InvalidSignature => {
                KeyPackageError::BadSignature
            }
            _ => KeyPackageError::Malformed,
        })?;
    let ciphersuite = u16::from(package.ciphersuite());
    if !super::suites::is_supported(ciphersuite)
        || package.ciphersuite().signature_algorithm() != SignatureScheme::ED25519
    {
        return Err(KeyPackageError::UnsupportedCiphersuite);
    }
    let lifetime = package.life_time();
    if now < lifetime.not_before() || now >= lifetime.not_after() {
        return Err(KeyPackageError::Expired);
    }
    Ok(CheckedKeyPackage {
        last_resort: package.last_resort(),
        not_after: lifetime.not_after(),
        ciphersuite,
    })
}

#[cfg(test)]
mod tests {
    use openmls::prelude::OpenMlsProvider as _;
    use openmls::prelude::tls_codec::Serialize as _;
    use openmls::prelude::{
        BasicCredential, Capabilities, Ciphersuite, CredentialWithKey, ExtensionType, KeyPackage,
        Lifetime, MlsGroup, MlsGroupCreateConfig,
    };
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_rust_crypto::OpenMlsRustCrypto;

    use super::*;

    const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

    struct Client {
        provider: OpenMlsRustCrypto,
        signer: SignatureKeyPair,
        credential: CredentialWithKey,
    }

    fn client(name: &str) -> Client {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
        signer.store(provider.storage()).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Client {
            provider,
            signer,
            credential,
        }
    }

    fn key_package(c: &Client, last_resort: bool) -> KeyPackage {
        key_package_in(c, last_resort, SUITE)
    }

    fn key_package_in(c: &Client, last_resort: bool, suite: Ciphersuite) -> KeyPackage {
        let mut builder = KeyPackage::builder().key_package_lifetime(Lifetime::new(3600));
        if last_resort {
            // The leaf must announce the extension it carries.
            builder = builder.mark_as_last_resort().leaf_node_capabilities(
                Capabilities::builder()
                    .extensions(vec![ExtensionType::LastResort])
                    .build(),
            );
        }
        builder
            .build(suite, &c.provider, &c.signer, c.credential.clone())
            .unwrap()
            .key_package()
            .clone()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn device_key(c: &Client) -> SignatureKey {
        SignatureKey::from_bytes(c.signer.public()).unwrap()
    }

    #[test]
    fn key_packages_are_checked() {
        let alice = client("alice");
        let bob = client("bob");
        let package = key_package(&alice, false);
        let bytes = package.tls_serialize_detached().unwrap();
        let checked = check_key_package(&bytes, &device_key(&alice), now()).unwrap();
        assert!(!checked.last_resort);
        assert!(checked.not_after > now());
        let last = key_package(&alice, true).tls_serialize_detached().unwrap();
        assert!(
            check_key_package(&last, &device_key(&alice), now())
                .unwrap()
                .last_resort
        );
        // Another device's key.
        assert_eq!(
            check_key_package(&bytes, &device_key(&bob), now()),
            Err(KeyPackageError::WrongKey)
        );
        // Expired, or not valid yet, by the relay's clock.
        assert_eq!(
            check_key_package(&bytes, &device_key(&alice), checked.not_after),
            Err(KeyPackageError::Expired)
        );
        assert_eq!(
            check_key_package(&bytes, &device_key(&alice), now() - 3 * 3600),
            Err(KeyPackageError::Expired)
        );
        // A flipped bit in the signature (the last bytes), or anywhere else.
        let mut tampered = bytes.clone();
        let last_byte = tampered.len() - 1;
        tampered[last_byte] ^= 1;
        assert_eq!(
            check_key_package(&tampered, &device_key(&alice), now()),
            Err(KeyPackageError::BadSignature)
        );
        // Garbage, truncation and trailing bytes.
        for bad in [
            Vec::new(),
            b"not mls".to_vec(),
            bytes[..bytes.len() / 2].to_vec(),
            [bytes.clone(), vec![0]].concat(),
        ] {
            assert_eq!(
                check_key_package(&bad, &device_key(&alice), now()),
                Err(KeyPackageError::Malformed)
            );
        }
    }

    #[test]
    fn post_quantum_key_packages_are_checked_and_other_suites_refused() {
        let alice = client("alice");
        let pq = key_package_in(
            &alice,
            false,
            Ciphersuite::MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519,
        )
        .tls_serialize_detached()
        .unwrap();
        let checked = check_key_package(&pq, &device_key(&alice), now()).unwrap();
        assert_eq!(checked.ciphersuite, crate::v2::suites::POST_QUANTUM);
        assert!(pq.len() <= crate::v2::limits::MAX_KEY_PACKAGE_BYTES);
        let classic = key_package(&alice, false).tls_serialize_detached().unwrap();
        assert_eq!(
            check_key_package(&classic, &device_key(&alice), now())
                .unwrap()
                .ciphersuite,
            crate::v2::suites::CLASSIC
        );
        // An Ed25519 suite Kavro does not speak.
        let other = key_package_in(
            &alice,
            false,
            Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
        )
        .tls_serialize_detached()
        .unwrap();
        assert_eq!(
            check_key_package(&other, &device_key(&alice), now()),
            Err(KeyPackageError::UnsupportedCiphersuite)
        );
    }

    #[test]
    fn group_messages_and_welcomes_are_framed() {
        let alice = client("alice");
        let bob = client("bob");
        let mut group = MlsGroup::new(
            &alice.provider,
            &alice.signer,
            &MlsGroupCreateConfig::default(),
            alice.credential.clone(),
        )
        .unwrap();
        let group_id = group.group_id().as_slice().to_vec();
        let (commit, welcome, _) = group
            .add_members(&alice.provider, &alice.signer, &[key_package(&bob, false)])
            .unwrap();
        let commit = commit.tls_serialize_detached().unwrap();
        let welcome = welcome.tls_serialize_detached().unwrap();
        let framing = group_message_framing(&commit).unwrap();
        assert_eq!(framing.group_id.as_bytes(), group_id.as_slice());
        assert_eq!((framing.epoch, framing.kind), (0, QueueKind::Commit));
        check_welcome(&welcome).unwrap();
        assert_eq!(check_welcome(&commit), Err(MlsError::NotAWelcome));
        assert_eq!(
            group_message_framing(&welcome),
            Err(MlsError::NotAGroupMessage)
        );
        group.merge_pending_commit(&alice.provider).unwrap();
        let hello = group
            .create_message(&alice.provider, &alice.signer, b"hello")
            .unwrap()
            .tls_serialize_detached()
            .unwrap();
        let framing = group_message_framing(&hello).unwrap();
        assert_eq!((framing.epoch, framing.kind), (1, QueueKind::Application));
        for bad in [
            Vec::new(),
            vec![0, 1, 0, 2],
            hello[..hello.len() - 1].to_vec(),
            [hello.clone(), vec![0]].concat(),
        ] {
            assert_eq!(group_message_framing(&bad), Err(MlsError::Malformed));
            assert_eq!(check_welcome(&bad), Err(MlsError::Malformed));
        }
    }
}
