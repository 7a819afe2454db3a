//! The proxy's configuration: every option is one field of [`Config`], with the same
//! name in the TOML file (`max-bytes`), in the environment (`CORRAL_MAX_BYTES`) and on
//! the command line (`--max-bytes`), and its default (taken from the libraries'
//! `DEFAULT_*` constants where they have one) in the field's `#[default]` attribute.
//! Durations are humane (`30s`, `5m`) and sizes carry units (`256MiB`).
//!
//! Layers, lowest first: the defaults, a TOML file, `CORRAL_*` environment variables,
//! command-line flags ([`Loader`]). A few options were renamed to agree with the
//! libraries; their old names ([`RENAMED`]) still work, with a [`Warning`].
//!
//! One file per concept, under `config/`:
//!
//! - `options.rs`: [`Config`], its defaults and its checks, with [`HostMode`],
//!   [`LogFormat`], [`TlsCertificate`] and [`Origin`]; the options a reload cannot
//!   change ([`RESTART_ONLY`]);
//! - `byte_size.rs`: [`ByteSize`], a number of bytes with a unit, and [`ByteSizeError`];
//! - `error.rs`: [`ConfigError`], the limits it names ([`MIN_ADMIN_TOKEN`],
//!   [`MIN_HEADER_BYTES`], [`MIN_PEER_SECRET`], [`MAX_CONNECTIONS`], [`MAX_WAIT`]), and
//!   [`Warning`];
//! - `loader.rs`: the layered [`Loader`], the old names ([`RENAMED`]) and what a load
//!   gives ([`Loaded`]).

mod byte_size;
mod error;
mod loader;
mod options;

pub use byte_size::{ByteSize, ByteSizeError};
pub use error::{
    ConfigError, MAX_CONNECTIONS, MAX_WAIT, MIN_ADMIN_TOKEN, MIN_HEADER_BYTES, MIN_PEER_SECRET,
    Warning,
};
pub(crate) use loader::options;
pub use loader::{Loaded, Loader, RENAMED};
pub use options::{Config, HostMode, LogFormat, Origin, RESTART_ONLY, TlsCertificate};
