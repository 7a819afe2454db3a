//! Where entries are kept: the bounded memory tier in every process, and (with the
//! `redis` feature) a Redis tier shared by many servers.

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
