//! Typed settings: built-in defaults, then `config.toml`, then the
//! `AGENTHUB_LISTEN` / `AGENTHUB_DB` / `AGENTHUB_DATABASE_URL` environment
//! variables, then `--db`.
//!
//! Every key is optional. An unknown key or a value of the wrong type stops
//! start-up with a message that names the key, so a typo never silently falls
//! back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub sweeper: SweeperConfig,
    pub webhooks: WebhooksConfig,
}

/// `[webhooks]`: where outbound webhooks may go.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Deliver to loopback, link-local and private addresses too (off: a
    /// workspace admin could otherwise make the server call into the
    /// network it runs in). For endpoints on the server's own network.
    pub allow_private_targets: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server binds, `host:port`.
    pub listen: String,
    /// Origins allowed to call the API from a browser (besides the dashboard
    /// served by this binary). Empty: no cross-origin access.
    pub cors_allowed_origins: Vec<String>,
    /// How long a client gets to send a whole request body, counted from
    /// the end of its headers; a client that trickles it gets a 408.
    pub body_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A PostgreSQL database (`postgres://user@host/db`): when set, agenthub
    /// runs on it instead of the SQLite file, and `path` and `max_size_mb`
    /// are not used.
    pub url: Option<String>,
    /// SQLite file; created and migrated on first start.
    pub path: PathBuf,
    /// Read connections in the pool (writes go through the one writer, see `store`).
    pub pool_size: u32,
    /// How long a connection waits for a lock held by another process
    /// (e.g. `agenthub backup`) before giving up.
    pub busy_timeout_ms: u64,
    /// Largest size the database file may grow to, in MiB (0: no limit).
    /// Writes that would grow it further fail as "disk full" (507).
    pub max_size_mb: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SweeperConfig {
    pub interval_secs: u64,
    pub stale_after_secs: u64,
    pub offline_runtime_ttl_secs: u64,
    pub dispatch_timeout_secs: u64,
    pub running_timeout_secs: u64,
    /// How long the dispatched and running tasks of an offline runtime
    /// wait for its daemon to come back before they fail.
    pub reconnect_grace_secs: u64,
    /// How long a queued task waits for a runtime that stays offline.
    pub queued_ttl_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_string(),
            cors_allowed_origins: Vec::new(),
            body_timeout_secs: 30,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            path: PathBuf::from("agenthub.db"),
            pool_size: 8,
            busy_timeout_ms: 5000,
            max_size_mb: 0,
        }
    }
}

impl DatabaseConfig {
    /// The database for people and logs: the file, or the PostgreSQL URL
    /// with its password hidden.
    pub fn describe(&self) -> String {
        let Some(url) = &self.url else {
            return self.path.display().to_string();
        };
        // postgres://user:password@host/db: hide what follows the colon
        // of the user part
        match url.split_once("://").and_then(|(scheme, rest)| {
            let (userinfo, host) = rest.split_once('@')?;
            let (user, _) = userinfo.split_once(':')?;
            Some(format!("{scheme}://{user}:***@{host}"))
        }) {
            Some(shown) => shown,
            None => url.clone(),
        }
    }
}

impl Default for SweeperConfig {
    fn default() -> Self {
        SweeperConfig {
            interval_secs: 30,
            stale_after_secs: 45,
            offline_runtime_ttl_secs: 604_800,
            dispatch_timeout_secs: 300,
            running_timeout_secs: 9000,
            reconnect_grace_secs: 10_800,
            queued_ttl_secs: 7200,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Where the settings come from; `Overrides::from_env` reads the process
/// environment, tests build it by hand.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub db: Option<PathBuf>,
    /// `database.url`; an empty value clears one the file sets.
    pub database_url: Option<String>,
}

impl Overrides {
    pub fn from_env() -> Self {
        Overrides {
            listen: std::env::var("AGENTHUB_LISTEN").ok(),
            db: std::env::var_os("AGENTHUB_DB").map(PathBuf::from),
            database_url: std::env::var("AGENTHUB_DATABASE_URL").ok(),
        }
    }
}

impl Config {
    /// Loads `explicit` (which must exist) or `./config.toml` (if it exists),
    /// applies the overrides and validates the result.
    pub fn load(explicit: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match explicit {
            Some(path) => Config::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Config::from_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => Config::default(),
        };
        if let Some(listen) = &overrides.listen {
            config.server.listen = listen.clone();
        }
        if let Some(db) = &overrides.db {
            config.database.path = db.clone();
        }
        if let Some(url) = &overrides.database_url {
            config.database.url = Some(url.clone());
        }
        if config.database.url.as_deref().is_some_and(str::is_empty) {
            config.database.url = None;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text; the error names the offending key and line.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| e.to_string().trim_end().to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "server.listen",
                &format!("{:?} is not a host:port address", self.server.listen),
            );
        }
        if let Some(url) = &self.database.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return invalid(
                    "database.url",
                    "must be a PostgreSQL URL (postgres://user@host/database)",
                );
            }
        }
        if self.database.path.as_os_str().is_empty() {
            return invalid("database.path", "must not be empty");
        }
        if self.server.body_timeout_secs == 0 {
            return invalid("server.body_timeout_secs", "must be at least 1");
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        let sweeper = [
            ("sweeper.interval_secs", self.sweeper.interval_secs),
            ("sweeper.stale_after_secs", self.sweeper.stale_after_secs),
            (
                "sweeper.offline_runtime_ttl_secs",
                self.sweeper.offline_runtime_ttl_secs,
            ),
            (
                "sweeper.dispatch_timeout_secs",
                self.sweeper.dispatch_timeout_secs,
            ),
            (
                "sweeper.running_timeout_secs",
                self.sweeper.running_timeout_secs,
            ),
            (
                "sweeper.reconnect_grace_secs",
                self.sweeper.reconnect_grace_secs,
            ),
            ("sweeper.queued_ttl_secs", self.sweeper.queued_ttl_secs),
        ];
        for (key, value) in sweeper {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validate() has checked it; the fallback is never reached in practice
        self.server
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[database]\npoolsize = 3\n").unwrap_err();
        assert!(err.contains("poolsize"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::from_toml("[database]\npool_size = \"many\"\n").unwrap_err();
        assert!(err.contains("pool_size"), "{err}");
    }

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let mut config = DatabaseConfig::default();
        assert_eq!(config.describe(), "agenthub.db");
        config.url = Some("postgres://ops:s3cret@db.internal:5432/agenthub".into());
        assert_eq!(
            config.describe(),
            "postgres://ops:***@db.internal:5432/agenthub"
        );
        config.url = Some("postgres://ops@db.internal/agenthub".into());
        assert_eq!(config.describe(), "postgres://ops@db.internal/agenthub");
    }

    #[test]
    fn a_database_url_must_be_postgres() {
        let mut config = Config::default();
        config.database.url = Some("mysql://db/agenthub".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_rejected() {
        let mut config = Config::default();
        config.server.listen = "localhost".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("server.listen"), "{err}");
    }
}
