//! The MLS ciphersuites Kavro v2 speaks, by their RFC 9420 registry value.
//! Key packages are stored, counted and claimed per ciphersuite: a group has
//! one, and every member joins it with a key package of that one.

/// `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`: every group unless `--pq`.
pub const CLASSIC: u16 = 0x0001;
/// `MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519` (draft-ietf-mls-pq-ciphersuites):
/// the X-Wing hybrid KEM (ML-KEM-768 + X25519) for HPKE, so the group's key
/// schedule stays secret unless both ML-KEM-768 and X25519 are broken; the
/// signatures (device keys) stay Ed25519.
pub const POST_QUANTUM: u16 = 0x004F;
/// Every ciphersuite the relay accepts key packages for.
pub const ALL: [u16; 2] = [CLASSIC, POST_QUANTUM];

/// Whether Kavro speaks `suite`.
pub fn is_supported(suite: u16) -> bool {
    ALL.contains(&suite)
}

/// The short name the CLI and docs use.
pub fn name(suite: u16) -> &'static str {
    match suite {
        CLASSIC => "classic (X25519)",
        POST_QUANTUM => "post-quantum hybrid (X-Wing: ML-KEM-768 + X25519)",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_kavro_suites_are_supported() {
        assert!(is_supported(CLASSIC));
        assert!(is_supported(POST_QUANTUM));
        assert!(!is_supported(0x0002));
        assert!(!is_supported(0x004D));
        assert_eq!(name(0x0003), "unknown");
    }
}
