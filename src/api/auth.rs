//! Bearer tokens: random, prefixed by role (`ffb_`, `ffo_`, `ffc_`, `ffa_`),
//! stored only as SHA-256 hashes, never logged. A caller carries its role and
//! scope (brand id, courier id, factory ids or `*`).

use super::problem::ApiError;
use crate::runtime::Shared;
use crate::store::{Store, StoreError, TokenRecord};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::Rng;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Brand,
    Operator,
    Courier,
    Admin,
}

impl Role {
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Brand => "ffb_",
            Role::Operator => "ffo_",
            Role::Courier => "ffc_",
            Role::Admin => "ffa_",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Brand => "brand",
            Role::Operator => "operator",
            Role::Courier => "courier",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Brand, Role::Operator, Role::Courier, Role::Admin]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub scope: String,
}

impl Caller {
    /// The brand whose orders this caller may see: Some(brand) for brands, None for all.
    pub fn brand_scope(&self) -> Option<&str> {
        (self.role == Role::Brand).then_some(self.scope.as_str())
    }

    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a {} token cannot do this (needs {})",
                self.role.as_str(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// Whether an operator's scope covers a factory.
    pub fn covers_factory(&self, factory: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Operator => self.scope == "*" || self.scope.split(',').any(|f| f == factory),
            _ => false,
        }
    }
}

pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a token for `role` and `scope`, stores its hash, returns the token (shown once).
pub async fn issue(
    store: &Store,
    role: Role,
    scope: &str,
    name: &str,
    now: i64,
) -> Result<String, StoreError> {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    let body: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{}{body}", role.prefix());
    let record = TokenRecord {
        role: role.as_str().into(),
        scope: scope.into(),
        name: name.into(),
    };
    store.insert_token(&hash(&token), &record, now).await?;
    Ok(token)
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing Authorization: Bearer <token>",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
        let record = state
            .store
            .find_token(&hash(token))
            .await
            .map_err(ApiError::internal)?;
        let Some(record) = record else {
            metrics::counter!("fabflow_auth_failures_total").increment(1);
            return Err(ApiError::unauthorized("unknown token"));
        };
        let role = Role::parse(&record.role)
            .filter(|role| token.starts_with(role.prefix()))
            .ok_or_else(|| ApiError::unauthorized("token role does not match its prefix"))?;
        Ok(Caller {
            role,
            scope: record.scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_hex_sha256_and_scopes_work() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let operator = Caller {
            role: Role::Operator,
            scope: "north,south".into(),
        };
        assert!(operator.covers_factory("north"));
        assert!(!operator.covers_factory("centre"));
        assert_eq!(operator.brand_scope(), None);
        let brand = Caller {
            role: Role::Brand,
            scope: "acme".into(),
        };
        assert_eq!(brand.brand_scope(), Some("acme"));
        assert!(brand.require(&[Role::Admin]).is_err());
        assert!(!brand.covers_factory("north"));
        assert_eq!(Role::parse("courier"), Some(Role::Courier));
    }
}
