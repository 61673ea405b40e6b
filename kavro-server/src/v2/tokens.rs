//! Device tokens: HS256 JWTs naming an account (`sub`) and one of its devices
//! (`dev`), issued after a proof of possession of the device key and valid
//! for an hour. They are signed with a key derived from the relay's JWT
//! secret under its own label, so a device token is never accepted as an
//! account token nor the reverse. A revoked device's tokens are refused (the
//! handlers look the device up), and logout revokes a token's `jti` like v1.

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kavro_proto::UserId;
use kavro_proto::v2::MlsDeviceId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::auth::tokens::{TokenError, WeakSecret, check_standard_claims};
use crate::store::TokenGeneration;

/// Label of the device-token key derivation.
const KEY_LABEL: &[u8] = b"kavro-v2 device token key\0";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    dev: i64,
    /// The account's token generation of the account token that opened the
    /// session: logging out everywhere (a new generation) ends it too.
    r#gen: u64,
    iat: i64,
    exp: i64,
    jti: String,
}

/// A verified device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceClaims {
    pub user_id: UserId,
    pub device_id: MlsDeviceId,
    pub jti: String,
    pub expires_at: DateTime<Utc>,
    pub generation: TokenGeneration,
}

pub struct DeviceTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl DeviceTokens {
    /// Derives the device-token key from the relay's JWT secret.
    pub fn new(jwt_secret: &[u8]) -> Result<Self, WeakSecret> {
        if jwt_secret.len() < 32 {
            return Err(WeakSecret);
        }
        let key = Sha256::new()
            .chain_update(KEY_LABEL)
            .chain_update(jwt_secret)
            .finalize();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = false; // checked against our clock
        validation.required_spec_claims = ["sub", "exp", "iat"]
            .into_iter()
            .map(String::from)
            .collect();
        Ok(Self {
            encoding: EncodingKey::from_secret(&key).map_err(|_| WeakSecret)?,
            decoding: DecodingKey::from_secret(&key).map_err(|_| WeakSecret)?,
            validation,
        })
    }

    pub fn issue(
        &self,
        user: UserId,
        device: MlsDeviceId,
        generation: TokenGeneration,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<(String, DateTime<Utc>), jsonwebtoken::errors::Error> {
        let exp = crate::clock::after(now, ttl);
        let claims = Claims {
            sub: user.0.to_string(),
            dev: device.0,
            r#gen: generation.0,
            iat: now.timestamp(),
            exp: exp.timestamp(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        let exp = Utc
            .timestamp_opt(exp.timestamp(), 0)
            .single()
            .unwrap_or(exp);
        Ok((token, exp))
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<DeviceClaims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let (user_id, expires_at) =
            check_standard_claims(&claims.sub, &claims.jti, claims.exp, now)?;
        Ok(DeviceClaims {
            user_id,
            device_id: MlsDeviceId(claims.dev),
            jti: claims.jti,
            expires_at,
            generation: TokenGeneration(claims.r#gen),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::tokens::Tokens;

    #[test]
    fn device_and_account_tokens_are_not_interchangeable() {
        let secret = [7u8; 32];
        let devices = DeviceTokens::new(&secret).unwrap();
        let accounts = Tokens::new(&secret).unwrap();
        let now = Utc::now();
        let (token, exp) = devices
            .issue(
                UserId(3),
                MlsDeviceId(9),
                TokenGeneration(2),
                now,
                Duration::from_secs(60),
            )
            .unwrap();
        let claims = devices.verify(&token, now).unwrap();
        assert_eq!(
            (claims.user_id, claims.device_id, claims.expires_at),
            (UserId(3), MlsDeviceId(9), exp)
        );
        assert_eq!(claims.generation, TokenGeneration(2));
        assert_eq!(accounts.verify(&token, now), Err(TokenError::Invalid));
        let account = accounts
            .issue(UserId(3), TokenGeneration(0), now, Duration::from_secs(60))
            .unwrap();
        assert_eq!(devices.verify(&account, now), Err(TokenError::Invalid));
        assert_eq!(
            devices.verify(&token, now + chrono::Duration::seconds(61)),
            Err(TokenError::Expired)
        );
        assert!(DeviceTokens::new(b"short").is_err());
    }
}
