//! Authentication building blocks for Marquee: password hashing and policy,
//! signed access tokens, opaque secrets for refresh tokens and email links,
//! and time-based one-time passwords for two-factor sign-in.

pub mod access;
mod error;
pub mod opaque;
pub mod password;
pub mod totp;

pub use error::Error;
