//! The command line: `corral serve` and `corral check-config`, with one flag per
//! option, derived from [`Config`]'s fields (so named as in the file) with its default
//! shown; a flag given is over the file and the environment.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use figment::value::Value;

use crate::config::{self, Config, ConfigError, Loaded, RENAMED, Warning};

/// corral: a caching HTTP proxy that keeps the thundering herd in.
///
/// Parse it with [`Cli::parse_args`] or [`Cli::try_parse_args`], which fill in the
/// flags' defaults and note which flags were given.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `corral`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (a forward proxy on 127.0.0.1:8080 unless told otherwise).
    Serve(Options),
    /// Check a configuration and print the effective one (defaults filled in).
    CheckConfig(Options),
}

/// The options: a file, and a flag for each option of [`Config`] that is over the file
/// and the `CORRAL_*` environment.
#[derive(Debug, Args)]
pub struct Options {
    /// A TOML configuration file (see corral.example.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The flags, defaults filled in.
    #[command(flatten)]
    flags: Config,
    /// The names of the options given as flags.
    #[arg(skip)]
    given: Vec<String>,
    /// Old names used as flags.
    #[arg(skip)]
    renamed: Vec<Warning>,
}

impl Cli {
    /// The command line, each option's flag showing its default (from
    /// [`Config::default`]) and accepting its old name (see [`RENAMED`]).
    pub fn command() -> clap::Command {
        let defaults = defaults();
        <Cli as CommandFactory>::command().mut_subcommands(|sub| {
            sub.mut_args(|arg| {
                let Some(long) = arg.get_long().map(str::to_owned) else {
                    return arg;
                };
                let arg = match defaults.iter().find(|(name, _)| *name == long) {
                    Some((_, value)) => arg.default_value(value.clone()).required(false),
                    None => arg,
                };
                match RENAMED.iter().find(|(_, new)| *new == long) {
                    Some((old, _)) => arg.alias(*old),
                    None => arg,
                }
            })
        })
    }

    /// The process's command line; exits with a message (and code 2) if it does not
    /// parse.
    pub fn parse_args() -> Cli {
        Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|error| error.exit())
    }

    /// `args` (the program's name first) as a command line.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Cli::command().try_get_matches_from(&args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let options = match &mut cli.command {
            Command::Serve(options) | Command::CheckConfig(options) => options,
        };
        if let Some((_, sub)) = matches.subcommand() {
            options.given = config::options()
                .into_iter()
                .map(|option| option.name)
                .filter(|name| {
                    let id = name.replace('-', "_");
                    sub.value_source(&id) == Some(ValueSource::CommandLine)
                })
                .collect();
        }
        options.renamed = RENAMED
            .iter()
            .filter(|(old, _)| {
                let flag = format!("--{old}");
                args.iter().filter_map(|arg| arg.to_str()).any(|arg| {
                    arg == flag || arg.strip_prefix(&flag).is_some_and(|v| v.starts_with('='))
                })
            })
            .map(|&(old, new)| Warning::Renamed {
                old,
                new,
                place: "the command line".to_owned(),
            })
            .collect();
        Ok(cli)
    }
}

impl Options {
    /// The configuration: the defaults, the file (if any), the `CORRAL_*` environment
    /// and the flags given, each over the ones before; checked.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut loader = Config::loader();
        if let Some(path) = &self.config {
            loader = loader.file(path);
        }
        let mut flags = match Value::serialize(&self.flags) {
            Ok(Value::Dict(_, dict)) => dict,
            Ok(_) => unreachable!("a Config serializes as a dictionary"),
            Err(error) => return Err(ConfigError::Value(Box::new(error))),
        };
        flags.retain(|name, _| self.given.contains(name));
        loader.env().flags(flags, self.renamed.clone()).load()
    }
}

/// Each option's default as a flag's value; none for lists and unset options.
fn defaults() -> Vec<(String, String)> {
    let table = toml::Table::try_from(Config::default()).unwrap_or_default();
    table
        .into_iter()
        .filter_map(|(name, value)| {
            let value = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return None,
            };
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        let cli = Cli::try_parse_args(["corral", "serve"].iter().chain(args)).unwrap();
        let Command::Serve(options) = cli.command else {
            panic!()
        };
        options
    }

    #[test]
    fn flags_have_the_files_names_and_win_over_it() {
        let dir = std::env::temp_dir().join(format!("corral-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("corral.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nmax-bytes = \"64MiB\"\naccess-log = true\n",
        )
        .unwrap();
        let config = options(&[
            "--config",
            file.to_str().unwrap(),
            "--max-bytes",
            "1GiB",
            "--access-log",
            "false",
            "--allow",
            "a.example",
            "--allow",
            "10.0.0.0/8",
        ])
        .load()
        .unwrap()
        .config;
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000", "from the file");
        assert_eq!(config.max_bytes.0, 1 << 30, "the flag wins");
        assert!(!config.access_log);
        assert_eq!(config.allow, ["a.example", "10.0.0.0/8"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_flag_left_out_leaves_the_file_alone() {
        let options = options(&["--listen", "127.0.0.1:7001"]);
        assert_eq!(options.given, ["listen"]);
    }

    #[test]
    fn an_old_flag_still_works_and_warns_and_with_the_new_one_is_refused() {
        let loaded = options(&["--memory", "1GiB", "--response-timeout=5s"])
            .load()
            .unwrap();
        assert_eq!(loaded.config.max_bytes.0, 1 << 30);
        assert_eq!(loaded.config.fetch_timeout.as_secs(), 5);
        let renamed: Vec<_> = loaded
            .warnings
            .iter()
            .filter_map(|w| match w {
                Warning::Renamed { old, new, .. } => Some((*old, *new)),
                Warning::UnknownVariable { .. } => None,
            })
            .collect();
        assert_eq!(
            renamed,
            [
                ("memory", "max-bytes"),
                ("response-timeout", "fetch-timeout")
            ]
        );
        let both =
            Cli::try_parse_args(["corral", "serve", "--memory", "1GiB", "--max-bytes", "2GiB"])
                .unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn the_help_shows_the_defaults_of_the_libraries() {
        let help = Cli::command()
            .find_subcommand_mut("serve")
            .unwrap()
            .render_help()
            .to_string();
        assert!(help.contains("[default: 256MiB]"), "{help}");
        assert!(help.contains("--fetch-timeout"), "{help}");
        assert!(!help.contains("--memory"), "{help}");
    }
}
