//! Protocol-aware checks of what simulated users received: delivery (loss, duplicates,
//! order) and relogin eviction.

pub mod delivery;
pub mod eviction;
