//! Where entries are kept: the bounded memory tier in every process.

pub(crate) mod memory;
