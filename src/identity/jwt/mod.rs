//! Bearer JWTs from trusted issuers (`identity.jwt` in `inferguard.yaml`) and from inferguard's
//! own token endpoint.
//!
//! A token is refused before any parsing when it is larger than 16 KiB. Its unverified `iss`
//! only chooses whose keys to try; the signature is then checked with that issuer's key named
//! by `kid`, with the algorithm allowed by both the issuer's configuration and the key (the
//! header never widens it: `none` and `HS*` are never accepted), and `iss`, `aud`, `exp` and
//! `nbf` are checked with the issuer's leeway. Keys named by the token itself (`jku`, `jwk`,
//! `x5u`) are ignored.
//!
//! Keys come from the issuer's JWKS, found by OIDC discovery unless `jwks_url` is set. They are
//! fetched on first use, refreshed in the background, and refetched when a token names an
//! unknown `kid` — at most once per issuer per 10 s, concurrent refetches sharing one request.
//! A failed fetch keeps the keys in hand, so an IdP outage does not break tokens already
//! verifiable. Verified tokens are cached by their SHA-256 until their `exp`.

pub(crate) mod claims;
mod config;
mod jwks;
mod verify;

#[cfg(test)]
mod tests;

pub use config::{
    ClaimMapping, DEFAULT_LEEWAY_SECS, JwtConfigError, JwtIssuerConfig, MAX_LEEWAY_SECS,
    SUPPORTED_ALGORITHMS,
};
pub use verify::{DEFAULT_REFETCH_INTERVAL, JwtError, JwtVerifier, MAX_TOKEN_BYTES, VerifiedToken};
