//! Typed configuration, layered as defaults -> TOML file -> `NETLEDGER_*` environment ->
//! command-line flags. Unknown keys in the file and unknown `NETLEDGER_*` variables are
//! refused with the list of known ones. Secrets are wrapped so they never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A value that must never appear in logs or debug output.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// PostgreSQL URL of the schema owner (runs migrations). May carry a password.
    pub database_url: Secret,
    /// Password of the `netledger_app` role (none with trust or peer auth).
    pub app_db_password: Option<Secret>,
    /// Password of the `netledger_system` role.
    pub system_db_password: Option<Secret>,
    /// NATS server URL.
    pub nats_url: String,
    /// HTTP listen address of the API.
    pub listen: SocketAddr,
    /// Where local state lives (generated dev keys, git repositories).
    pub data_dir: PathBuf,
    /// Production mode: refuses generated keys and default secrets.
    pub production: bool,
    /// Audit checkpoints.
    pub audit: AuditConfig,
    /// The NATS outbox relay.
    pub relay: RelayConfig,
}

/// Audit checkpoint settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// File holding the hex ed25519 signing key; generated under `data_dir` outside production.
    pub signing_key_file: Option<PathBuf>,
    /// Identifier recorded with each checkpoint (for key rotation).
    pub key_id: String,
    /// How often new events are covered by a checkpoint.
    #[serde(with = "humantime_serde_compat")]
    pub checkpoint_interval: Duration,
}

/// Relay settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// JetStream stream for events (subjects `<subject_prefix>.<tenant>.<category>.<type>`).
    pub stream: String,
    /// First subject token.
    pub subject_prefix: String,
    /// JetStream stream for published audit checkpoints.
    pub checkpoint_stream: String,
    /// Events read and published per round.
    pub batch: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: Secret::new("postgres://postgres@127.0.0.1:5432/netledger"),
            app_db_password: None,
            system_db_password: None,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".netledger"),
            production: false,
            audit: AuditConfig::default(),
            relay: RelayConfig::default(),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            key_id: "dev-1".to_owned(),
            checkpoint_interval: Duration::from_secs(30),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            stream: "NETLEDGER_EVENTS".to_owned(),
            subject_prefix: "netledger".to_owned(),
            checkpoint_stream: "NETLEDGER_CHECKPOINTS".to_owned(),
            batch: 1_000,
        }
    }
}

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// IO error.
        source: std::io::Error,
    },
    /// The file is not valid (syntax, unknown key, wrong type).
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// What the parser said, with the key and line.
        message: String,
    },
    /// An environment variable is unknown or has a bad value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// Variable name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// The `NETLEDGER_*` variables and the keys they set.
const ENV: &[(&str, Setter)] = &[
    ("NETLEDGER_DATABASE_URL", |c, v| {
        c.database_url = Secret::new(v);
        Ok(())
    }),
    ("NETLEDGER_APP_DB_PASSWORD", |c, v| {
        c.app_db_password = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_SYSTEM_DB_PASSWORD", |c, v| {
        c.system_db_password = Some(Secret::new(v));
        Ok(())
    }),
    ("NETLEDGER_NATS_URL", |c, v| {
        c.nats_url = v.to_owned();
        Ok(())
    }),
    ("NETLEDGER_LISTEN", |c, v| {
        c.listen = v
            .parse()
            .map_err(|e| format!("not a socket address like 127.0.0.1:8080: {e}"))?;
        Ok(())
    }),
    ("NETLEDGER_DATA_DIR", |c, v| {
        c.data_dir = PathBuf::from(v);
        Ok(())
    }),
    ("NETLEDGER_PRODUCTION", |c, v| {
        c.production = parse_bool(v)?;
        Ok(())
    }),
    ("NETLEDGER_AUDIT_SIGNING_KEY_FILE", |c, v| {
        c.audit.signing_key_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("NETLEDGER_AUDIT_KEY_ID", |c, v| {
        c.audit.key_id = v.to_owned();
        Ok(())
    }),
    ("NETLEDGER_AUDIT_CHECKPOINT_INTERVAL", |c, v| {
        c.audit.checkpoint_interval =
            humantime::parse_duration(v).map_err(|e| format!("{e} (e.g. 30s, 5m)"))?;
        Ok(())
    }),
    ("NETLEDGER_RELAY_STREAM", |c, v| {
        c.relay.stream = v.to_owned();
        Ok(())
    }),
];

/// Variables that belong to other parts of the platform or to the launcher, not to `Config`.
const ENV_ALLOWED_ELSEWHERE: &[&str] = &[
    "NETLEDGER_CONFIG",
    "NETLEDGER_LOG",
    "NETLEDGER_BOOTSTRAP_ADMIN_EMAIL",
    "NETLEDGER_BOOTSTRAP_ADMIN_PASSWORD",
];

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("`{other}` is not a boolean (use true or false)")),
    }
}

impl Config {
    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Builds the configuration: defaults, then `file` if given, then the `env` pairs
    /// (normally `std::env::vars()`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text, path)?
            }
            None => Self::default(),
        };
        for (name, value) in env {
            if !name.starts_with("NETLEDGER_") || ENV_ALLOWED_ELSEWHERE.contains(&name.as_str()) {
                continue;
            }
            let Some((_, set)) = ENV.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = ENV
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(ENV_ALLOWED_ELSEWHERE.iter().copied())
                    .collect();
                return Err(ConfigError::Env {
                    name,
                    message: format!("unknown variable; known ones are {}", known.join(", ")),
                });
            };
            set(&mut config, &value).map_err(|message| ConfigError::Env { name, message })?;
        }
        Ok(config)
    }
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e} (e.g. 30s, 5m)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compose/netledger.example.toml");
        let config = Config::load(Some(&path), Vec::new()).unwrap();
        assert_eq!(config.relay.stream, "NETLEDGER_EVENTS");
        assert_eq!(config.audit.checkpoint_interval, Duration::from_secs(30));
    }

    #[test]
    fn unknown_keys_and_variables_are_refused() {
        let err = Config::from_toml("listne = \"1.2.3.4:5\"", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        let err =
            Config::load(None, vec![("NETLEDGER_LISTNE".to_owned(), "x".to_owned())]).unwrap_err();
        assert!(err.to_string().contains("NETLEDGER_LISTEN"), "{err}");
        let err = Config::load(
            None,
            vec![("NETLEDGER_LISTEN".to_owned(), "nope".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("socket address"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_secrets_do_not_print() {
        let config = Config::load(
            None,
            vec![
                (
                    "NETLEDGER_DATABASE_URL".to_owned(),
                    "postgres://u:hunter2@db/x".to_owned(),
                ),
                ("PATH".to_owned(), "/bin".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(config.database_url.expose(), "postgres://u:hunter2@db/x");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
