//! Rate limiting and sign-in lockout for Marquee's gateway.
//!
//! [`RateLimiter`] keeps one token bucket per key (a client address, an
//! account) shared by all gateway instances through Redis. [`Lockout`] slows
//! down password guessing with a lock that doubles after each failed sign-in.
//! [`Slots`] caps what one key has alive at once, such as a client's open
//! holds.
//!
//! Neither ever fails a request because Redis is unavailable: each falls back
//! to state kept by the instance itself, so limits are enforced per instance
//! until Redis answers again.

mod backend;
mod limiter;
mod lockout;
mod slots;

pub use limiter::{Decision, Limit, LimiterSettings, RateLimiter};
pub use lockout::{Lockout, LockoutSettings};
pub use slots::{Claim, Slots, SlotsSettings, Taken};
