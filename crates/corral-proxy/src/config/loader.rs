//! The layered [`Loader`]: the defaults, then a TOML file, `CORRAL_*` environment
//! variables and command-line flags, each over the ones before; the options' old names
//! ([`RENAMED`]); and what a load gives ([`Loaded`]).

use std::path::Path;

use clap::{ArgAction, Args};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::error::{ConfigError, Warning};
use super::options::Config;

/// Options renamed to agree with the libraries: `(old, new)`. The old name still
/// works in the file, the environment and as a flag, with a [`Warning`]; giving both
/// in the same place is [`ConfigError::BothNames`].
pub const RENAMED: [(&str, &str); 4] = [
    ("memory", "max-bytes"),
    ("max-body", "max-body-bytes"),
    ("response-timeout", "fetch-timeout"),
    ("cache-status-header", "cache-status-headers"),
];

/// A configuration as loaded, with what deserves a warning.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration, checked.
    pub config: Config,
    /// Old names used, unknown `CORRAL_` variables: for the operator to see.
    pub warnings: Vec<Warning>,
}

/// Builds a [`Config`] from layers, each over the ones added before it and all over
/// the defaults: usually a file, then the environment, then the command line.
///
/// ```
/// use corral_proxy::Config;
///
/// let file: toml::Table = "max-bytes = \"1GiB\"\nmemory-typo = 1".parse().unwrap();
/// assert!(Config::loader().toml(file).load().is_err(), "unknown options are refused");
///
/// let loaded = Config::loader()
///     .toml("max-bytes = \"1GiB\"".parse().unwrap())
///     .env_vars([("CORRAL_MAX_BYTES", "2GiB")])
///     .load()
///     .unwrap();
/// assert_eq!(loaded.config.max_bytes.0, 2 << 30, "the environment is over the file");
/// ```
#[derive(Default)]
#[must_use = "a loader does nothing until `load` is called"]
pub struct Loader {
    layers: Vec<Layer>,
    warnings: Vec<Warning>,
    error: Option<ConfigError>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("warnings", &self.warnings)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// One source of options, for figment: its name and its options (new names only).
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

impl Loader {
    /// A TOML file.
    pub fn file(self, path: &Path) -> Self {
        let table = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })
            .and_then(|text| {
                text.parse::<toml::Table>()
                    .map_err(|source| ConfigError::Toml {
                        path: path.to_owned(),
                        source: Box::new(source),
                    })
            });
        match table {
            Ok(table) => self.table(table, format!("`{}`", path.display())),
            Err(error) => self.fail(error),
        }
    }

    /// Options as TOML already parsed (as a file would give them).
    pub fn toml(self, table: toml::Table) -> Self {
        self.table(table, "the TOML given".to_owned())
    }

    fn table(self, table: toml::Table, source: String) -> Self {
        match Value::serialize(&table) {
            Ok(Value::Dict(_, dict)) => {
                let metadata =
                    Metadata::named(source.clone()).interpolater(|_, keys| keys.join("."));
                self.layer(source, metadata, dict)
            }
            Ok(_) => unreachable!("a TOML table serializes as a dictionary"),
            Err(error) => self.fail(ConfigError::Value(Box::new(error))),
        }
    }

    /// The process's `CORRAL_*` environment variables (see [`env_vars`](Self::env_vars)).
    pub fn env(self) -> Self {
        self.env_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// `CORRAL_*` variables among `vars`: `CORRAL_MAX_BYTES` is `max-bytes`. A list
    /// is comma-separated (`CORRAL_ALLOW=a.example,10.0.0.0/8`) or a TOML array. A
    /// `CORRAL_` variable that names no option is ignored, with a
    /// [`Warning::UnknownVariable`]; other variables are ignored.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let options = options();
        let mut dict = Dict::new();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            let Some(key) = name.strip_prefix("CORRAL_") else {
                continue;
            };
            let key = key.to_ascii_lowercase().replace('_', "-");
            let old = RENAMED
                .iter()
                .find(|(old, _)| *old == key)
                .map(|(_, new)| *new);
            let Some(option) = options
                .iter()
                .find(|option| option.name == key || Some(option.name.as_str()) == old)
            else {
                self.warnings.push(Warning::UnknownVariable {
                    name: name.to_owned(),
                });
                continue;
            };
            let value = match option.list {
                true => list(value),
                false => Value::from(value.to_owned()),
            };
            dict.insert(key, value);
        }
        let metadata = Metadata::named("the environment").interpolater(|_, keys| {
            format!(
                "CORRAL_{}",
                keys.join("_").to_ascii_uppercase().replace('-', "_")
            )
        });
        self.layer("the environment".to_owned(), metadata, dict)
    }

    /// Options from command-line flags (new names only), and the warnings for the old
    /// names that were used.
    pub(crate) fn flags(mut self, dict: Dict, warnings: Vec<Warning>) -> Self {
        self.warnings.extend(warnings);
        let metadata = Metadata::named("the command line")
            .interpolater(|_, keys| format!("--{}", keys.join(".")));
        self.layer("the command line".to_owned(), metadata, dict)
    }

    /// Adds a layer, its old names replaced by new ones.
    fn layer(mut self, source: String, metadata: Metadata, mut dict: Dict) -> Self {
        for (old, new) in RENAMED {
            let Some(value) = dict.remove(old) else {
                continue;
            };
            if dict.contains_key(new) {
                return self.fail(ConfigError::BothNames {
                    old,
                    new,
                    place: source,
                });
            }
            self.warnings.push(Warning::Renamed {
                old,
                new,
                place: source.clone(),
            });
            dict.insert(new.to_owned(), value);
        }
        self.layers.push(Layer { metadata, dict });
        self
    }

    fn fail(mut self, error: ConfigError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// The configuration, checked.
    pub fn load(self) -> Result<Loaded, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let defaults = figment::providers::Serialized::defaults(Config::default());
        let figment = self
            .layers
            .into_iter()
            .fold(Figment::from(defaults), Figment::merge);
        let config: Config = figment
            .extract_lossy()
            .map_err(|error| ConfigError::Value(Box::new(error)))?;
        config.check()?;
        Ok(Loaded {
            config,
            warnings: self.warnings,
        })
    }
}

/// A list from the environment: a TOML array, or comma-separated.
fn list(text: &str) -> Value {
    let array = text
        .trim_start()
        .starts_with('[')
        .then(|| format!("list = {text}").parse::<toml::Table>().ok())
        .flatten()
        .and_then(|mut table| table.remove("list"))
        .and_then(|array| Value::serialize(array).ok());
    array.unwrap_or_else(|| {
        Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
    })
}

/// An option as the flags know it.
pub(crate) struct OptionName {
    /// Its name (`max-bytes`).
    pub(crate) name: String,
    /// Whether it takes a list.
    list: bool,
}

/// Every option, as the flags derived from [`Config`] name them.
pub(crate) fn options() -> Vec<OptionName> {
    Config::augment_args(clap::Command::new("corral"))
        .get_arguments()
        .filter_map(|arg| {
            Some(OptionName {
                name: arg.get_long()?.to_owned(),
                list: matches!(arg.get_action(), ArgAction::Append),
            })
        })
        .collect()
}

impl Config {
    /// Starts loading a configuration from layers; see [`Loader`].
    pub fn loader() -> Loader {
        Loader::default()
    }

    /// The defaults with `table` (as a file would give it) on top, checked; old names
    /// are logged as warnings.
    pub fn from_toml(table: toml::Table) -> Result<Config, ConfigError> {
        let loaded = Config::loader().toml(table).load()?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        Ok(loaded.config)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::byte_size::ByteSize;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(table(text))
    }

    #[test]
    fn every_option_has_one_name_in_the_file_the_environment_and_the_flags() {
        let all_set = Config {
            upstream: Some("http://origin.example".into()),
            redis_url: Some("redis://127.0.0.1".into()),
            disk: Some("/var/cache/corral".into()),
            early_refresh: Some(1.0),
            upstream_ca_file: Some("ca.pem".into()),
            via: Some("edge-1".into()),
            admin_token: Some("0123456789abcdef".into()),
            peer_self: Some("http://127.0.0.1:8080".into()),
            peer_secret: Some("s3cret".into()),
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            tls_listen: Some("127.0.0.1:8443".parse().unwrap()),
            ..Config::default()
        };
        let mut in_file: Vec<String> = table(&all_set.to_toml()).keys().cloned().collect();
        let mut flags: Vec<String> = options().into_iter().map(|o| o.name).collect();
        in_file.sort();
        flags.sort();
        assert_eq!(in_file, flags);
        for (old, new) in RENAMED {
            assert!(flags.iter().any(|f| f == new), "{new}");
            assert!(!flags.iter().any(|f| f == old), "{old}");
        }
    }

    #[test]
    fn an_old_name_still_works_and_warns() {
        let loaded = Config::loader()
            .toml(table(
                "memory = \"1GiB\"\nmax-body = \"1MiB\"\nresponse-timeout = \"5s\"\n\
                 cache-status-header = false",
            ))
            .load()
            .unwrap();
        let c = &loaded.config;
        assert_eq!(c.max_bytes, ByteSize(1 << 30));
        assert_eq!(c.max_body_bytes, ByteSize(1 << 20));
        assert_eq!(c.fetch_timeout, Duration::from_secs(5));
        assert!(!c.cache_status_headers);
        assert_eq!(loaded.warnings.len(), 4, "{:?}", loaded.warnings);
        assert_eq!(
            loaded.warnings[0].to_string(),
            "`memory` (in the TOML given) is deprecated: it is now `max-bytes`"
        );
        let printed = c.to_toml();
        assert!(printed.contains("max-bytes = \"1GiB\""), "{printed}");
        assert!(!printed.contains("memory"), "{printed}");
    }

    #[test]
    fn an_old_and_a_new_name_in_one_place_are_refused_and_across_places_the_later_wins() {
        let err = load("memory = \"1GiB\"\nmax-bytes = \"2GiB\"").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::BothNames {
                    old: "memory",
                    new: "max-bytes",
                    ..
                }
            ),
            "{err}"
        );
        let err = Config::loader()
            .env_vars([
                ("CORRAL_RESPONSE_TIMEOUT", "5s"),
                ("CORRAL_FETCH_TIMEOUT", "6s"),
            ])
            .load()
            .unwrap_err();
        assert!(err.to_string().contains("the environment"), "{err}");
        let loaded = Config::loader()
            .toml(table("max-bytes = \"2GiB\""))
            .env_vars([("CORRAL_MEMORY", "1GiB")])
            .load()
            .unwrap();
        assert_eq!(loaded.config.max_bytes, ByteSize(1 << 30));
        assert_eq!(
            loaded.warnings,
            [Warning::Renamed {
                old: "memory",
                new: "max-bytes",
                place: "the environment".into()
            }]
        );
    }

    #[test]
    fn the_environment_is_over_the_file_and_names_options_in_capitals() {
        let loaded = Config::loader()
            .toml(table(
                "max-bytes = \"2GiB\"\naccess-log = true\nvia = \"from-file\"",
            ))
            .env_vars([
                ("CORRAL_MAX_BYTES", "1GiB"),
                ("CORRAL_ACCESS_LOG", "false"),
                ("CORRAL_MAX_CONNECTIONS", "7"),
                ("CORRAL_PEER_SECRET", "1234567890123456"),
                ("CORRAL_ALLOW", "a.example, 10.0.0.0/8"),
                ("CORRAL_TRUSTED_PROXIES", "[\"192.0.2.1\"]"),
                ("CORRAL_MEMORY_LIMIT", "1"),
                ("HOME", "/root"),
            ])
            .load()
            .unwrap();
        let c = &loaded.config;
        assert_eq!(c.max_bytes, ByteSize(1 << 30));
        assert!(!c.access_log);
        assert_eq!(c.max_connections, 7);
        assert_eq!(
            c.peer_secret.as_deref(),
            Some("1234567890123456"),
            "digits stay text"
        );
        assert_eq!(c.allow, ["a.example", "10.0.0.0/8"]);
        assert_eq!(c.trusted_proxies, ["192.0.2.1"]);
        assert_eq!(c.via.as_deref(), Some("from-file"));
        assert_eq!(
            loaded.warnings,
            [Warning::UnknownVariable {
                name: "CORRAL_MEMORY_LIMIT".into()
            }]
        );
        let err = Config::loader()
            .env_vars([("CORRAL_MAX_BYTES", "lots")])
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lots") && err.contains("CORRAL_MAX_BYTES"),
            "{err}"
        );
    }
}
