//! Access tokens: HS256 JWTs with `sub` (user id), `iat`, `exp`, a random
//! `jti` that logout revokes, and `gen`, the account's token generation when
//! it was issued (logging out everywhere raises it; tokens from before the
//! field existed count as generation 0). Only HS256 is accepted (so `alg: none` and
//! algorithm confusion fail), and expiry is checked against the relay's
//! [`Clock`](crate::clock::Clock) rather than inside the JWT library, so tests
//! can move time.

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kavro_proto::UserId;
use serde::{Deserialize, Serialize};

use crate::store::TokenGeneration;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
    #[serde(default)]
    r#gen: u64,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub user_id: UserId,
    pub jti: String,
    pub expires_at: DateTime<Utc>,
    pub generation: TokenGeneration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Bad signature, wrong algorithm, malformed, or wrong claims.
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
}

/// Issues and checks tokens with the relay's secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
#[error("the JWT secret must be at least 32 bytes")]
pub struct WeakSecret;

impl Tokens {
    pub fn new(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < 32 {
            return Err(WeakSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = false; // checked against our clock below
        validation.required_spec_claims = ["sub", "exp", "iat"]
            .into_iter()
            .map(String::from)
            .collect();
        Ok(Self {
            encoding: EncodingKey::from_secret(secret).map_err(|_| WeakSecret)?,
            decoding: DecodingKey::from_secret(secret).map_err(|_| WeakSecret)?,
            validation,
        })
    }

    /// A new token for `user` of `generation`, valid from `now` for `ttl`.
    pub fn issue(
        &self,
        user: UserId,
        generation: TokenGeneration,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let exp = crate::clock::after(now, ttl);
        let claims = Claims {
            sub: user.0.to_string(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            r#gen: generation.0,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verifies signature, algorithm and expiry. Revocation is the caller's next step.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<TokenClaims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let (user_id, expires_at) =
            check_standard_claims(&claims.sub, &claims.jti, claims.exp, now)?;
        Ok(TokenClaims {
            user_id,
            jti: claims.jti,
            expires_at,
            generation: TokenGeneration(claims.r#gen),
        })
    }
}

/// The checks every Kavro token shares once its signature verified: the
/// subject is a user id, the token id is present and bounded, and it has not
/// expired at `now`. Returns the user and the expiry.
pub(crate) fn check_standard_claims(
    sub: &str,
    jti: &str,
    exp: i64,
    now: DateTime<Utc>,
) -> Result<(UserId, DateTime<Utc>), TokenError> {
    let user_id = sub.parse::<i64>().map_err(|_| TokenError::Invalid)?;
    if jti.is_empty() || jti.len() > 64 {
        return Err(TokenError::Invalid);
    }
    let expires_at = Utc
        .timestamp_opt(exp, 0)
        .single()
        .ok_or(TokenError::Invalid)?;
    if expires_at <= now {
        return Err(TokenError::Expired);
    }
    Ok((UserId(user_id), expires_at))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;

    use super::*;
    use kavro_proto::implements_debug;

    /// The signing secret lives only in jsonwebtoken's keys, which are
    /// zeroized on drop and print redacted; `Tokens` itself has no `Debug`.
    #[test]
    fn keys_are_zeroized_and_never_printed() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let tokens = Tokens::new(b"a-secret-of-at-least-32-bytes!!!").unwrap();
        zeroized_on_drop(&tokens.encoding);
        zeroized_on_drop(&tokens.decoding);
        assert!(!implements_debug!(Tokens));
        for shown in [
            format!("{:?}", tokens.encoding),
            format!("{:?}", tokens.decoding),
        ] {
            assert!(shown.contains("redacted"), "{shown}");
            assert!(!shown.contains("97, 45"), "no key bytes: {shown}");
        }
    }

    fn tokens() -> Tokens {
        Tokens::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_expiry() {
        let t = tokens();
        let now = Utc::now();
        let token = t
            .issue(UserId(42), TokenGeneration(3), now, Duration::from_secs(60))
            .unwrap();
        let claims = t.verify(&token, now).unwrap();
        assert_eq!(claims.user_id, UserId(42));
        assert_eq!(claims.generation, TokenGeneration(3));
        assert_eq!(claims.jti.len(), 32);
        assert_eq!(
            t.verify(&token, now + chrono::Duration::seconds(61)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn weak_secret_is_refused() {
        assert!(Tokens::new(b"short").is_err());
    }

    #[test]
    fn forged_tokens_are_refused() {
        let t = tokens();
        let now = Utc::now();
        let token = t
            .issue(UserId(1), TokenGeneration(0), now, Duration::from_secs(60))
            .unwrap();
        // Another key.
        let other = Tokens::new(&[8u8; 32]).unwrap();
        assert_eq!(other.verify(&token, now), Err(TokenError::Invalid));
        // Tampered payload: sub changed to 2, signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = "2".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        assert_eq!(t.verify(&forged, now), Err(TokenError::Invalid));
        // alg: none, no signature.
        let none_header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            t.verify(&format!("{none_header}.{}.", parts[1]), now),
            Err(TokenError::Invalid)
        );
        // Garbage.
        for bad in ["", "a.b.c", "not a token", "....", &"x".repeat(5000)] {
            assert_eq!(t.verify(bad, now), Err(TokenError::Invalid), "{bad:?}");
        }
    }
}
