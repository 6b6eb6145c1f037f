//! The `litefs.yml` configuration file (spec §8.9): typed sections with Go LiteFS's keys and
//! defaults, strict parsing, Go durations, environment expansion, search order, validation.
//!
//! Pure except [`Config::load`], the thin wrapper that reads the real file system and process
//! environment. The steps, each usable alone:
//! 1. [`read_config_text`]: the explicit path, or the first of [`search_paths`] that exists.
//! 2. [`expand_env`]: `$VAR`, `${VAR}`, `${VAR == 'x'}`, ... on the raw text (unless disabled).
//! 3. [`Config::from_yaml`]: strict YAML, unknown keys are errors with their line number.
//! 4. [`Config::validate`]: required keys, allowed values, cross-key rules.
//!
//! YAML is read with `serde_norway` (a maintained fork of `serde_yaml` 0.9): with
//! `deny_unknown_fields` it reports the key path and the line and column of the bad key.
//!
//! Go compatibility notes (Go uses `gopkg.in/yaml.v3` with `KnownFields(true)`):
//! - A key present with an empty (null) value keeps its default, as yaml.v3 does; this matters
//!   for lines such as `hostname: ${HOSTNAME}` with the variable unset.
//! - Booleans also accept yaml.v3's YAML 1.1 words (`yes`/`no`/`on`/`off`/`y`/`n`).
//! - Durations are Go strings (`10s`); a bare `0` is accepted too (yaml.v3 rejects any integer).
//! - Negative durations: the proxy timeouts and `proxy.max-lag`, where Go treats any value
//!   <= 0 as "none", read as zero; every other duration key rejects a negative value at parse
//!   time, with the key and line in the message.

mod duration;
mod expand;
mod section;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_load;

pub use duration::{DurationError, GoDuration};
pub use expand::expand_env;
pub use section::{
    BackupConfig, Config, ConsulConfig, DataConfig, ExecConfig, FuseConfig, FuseTransport,
    HttpConfig, LeaseConfig, LogConfig, ProxyConfig, TracingConfig,
};

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `data.dir` default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/litefs";
/// `fuse.dir` default.
pub const DEFAULT_FUSE_DIR: &str = "/litefs";
/// `http.addr` default: all interfaces, port 20202.
pub const DEFAULT_HTTP_ADDR: &str = ":20202";
/// `data.retention` default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(10 * 60);
/// `data.retention-monitor-interval` default.
pub const DEFAULT_RETENTION_MONITOR_INTERVAL: Duration = Duration::from_secs(60);
/// `lease.reconnect-delay` default.
pub const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// `lease.demote-delay` default.
pub const DEFAULT_DEMOTE_DELAY: Duration = Duration::from_secs(10);
/// `lease.consul.ttl` default (also Consul's own minimum session TTL).
pub const DEFAULT_CONSUL_TTL: Duration = Duration::from_secs(10);
/// `lease.consul.lock-delay` default.
pub const DEFAULT_CONSUL_LOCK_DELAY: Duration = Duration::from_secs(1);
/// `proxy.max-lag` default.
pub const DEFAULT_PROXY_MAX_LAG: Duration = Duration::from_secs(10);
/// `proxy.primary-redirect-timeout` default.
pub const DEFAULT_PROXY_PRIMARY_REDIRECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `proxy.read-header-timeout` default.
pub const DEFAULT_PROXY_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `proxy.idle-timeout` default.
pub const DEFAULT_PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `tracing.max-size` default, in megabytes.
pub const DEFAULT_TRACING_MAX_SIZE_MB: u64 = 64;
/// `tracing.max-count` default.
pub const DEFAULT_TRACING_MAX_COUNT: u32 = 8;
/// The file name searched for in each directory.
pub const CONFIG_FILE_NAME: &str = "litefs.yml";

/// Why a config could not be found, read, parsed or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file not found (searched: {})", display_paths(.searched))]
    NotFound { searched: Vec<PathBuf> },
    #[error("cannot read config file at {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Yaml(YamlError),
    #[error("cannot unmarshal config file at {}: {source}", .path.display())]
    Unmarshal { path: PathBuf, source: YamlError },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// A YAML syntax, type or unknown-key error, with the position of the offending node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("yaml: {}{message}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct YamlError {
    /// The parser's message, e.g. ``data: unknown field `bar`, expected one of ...``.
    pub message: String,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl From<serde_norway::Error> for YamlError {
    fn from(err: serde_norway::Error) -> YamlError {
        let mut message = err.to_string();
        let location = err.location();
        if let Some(loc) = &location {
            // The position is kept in fields and shown first (Go style), not as a suffix.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
        }
        YamlError {
            message,
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
        }
    }
}

/// A config that parsed but breaks a rule. Each message names the key, the value and what is
/// allowed; the leading words match Go LiteFS where Go has the same check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("fuse directory required: set fuse.dir")]
    FuseDirRequired,
    #[error("data directory required: set data.dir")]
    DataDirRequired,
    #[error(
        "fuse directory and data directory cannot be the same path: fuse.dir and data.dir are both {0:?}"
    )]
    SameDir(PathBuf),
    #[error("invalid lease type, must be either 'consul' or 'static', got: '{0}'")]
    LeaseType(String),
    #[error(
        "cannot specify a database replication filter on candidate nodes: lease.databases needs lease.candidate: false"
    )]
    DatabaseFilterOnCandidate,
    #[error("must specify a consul key: lease.consul.key is required when lease.type is 'consul'")]
    ConsulKeyRequired,
    #[error(
        "must specify the primary's API URL: lease.advertise-url is required when lease.type is 'static' and lease.candidate is false"
    )]
    StaticReplicaAdvertiseUrl,
    #[error(
        "invalid backup client type: {0:?}: backup.type must be \"\", \"file\" or \"litefs-cloud\""
    )]
    BackupType(String),
    #[error("backup directory required: backup.path must be set when backup.type is 'file'")]
    BackupPathRequired,
    #[error("invalid log format: {0:?}: log.format must be \"text\" or \"json\"")]
    LogFormat(String),
    #[error("proxy bind address required: set proxy.addr (proxy.target is set)")]
    ProxyAddrRequired,
    #[error("proxy database name required: set proxy.db (proxy.target is set)")]
    ProxyDbRequired,
    #[error("exec[{index}]: cmd is empty")]
    EmptyExec { index: usize },
}

/// Looks up an environment variable; `None` when undefined.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `lease.type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseType {
    Consul,
    Static,
}

impl LeaseType {
    pub fn parse(s: &str) -> Option<LeaseType> {
        match s {
            "consul" => Some(LeaseType::Consul),
            "static" => Some(LeaseType::Static),
            _ => None,
        }
    }
}

/// `backup.type` values other than `""` (no backup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupType {
    File,
    LitefsCloud,
}

impl BackupType {
    /// `None` for anything else, including `""` (which means no backup).
    pub fn parse(s: &str) -> Option<BackupType> {
        match s {
            "file" => Some(BackupType::File),
            "litefs-cloud" => Some(BackupType::LitefsCloud),
            _ => None,
        }
    }
}

impl Config {
    /// Parses YAML text (already env-expanded, if wanted) over the defaults. Does not
    /// validate: see [`Config::validate`].
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let raw: Option<section::RawConfig> =
            serde_norway::from_str(text).map_err(|e| ConfigError::Yaml(e.into()))?;
        let mut config = raw.map(Config::from).unwrap_or_default();
        // Go passes these to the Consul leaser only when > 0, so 0 means "the default".
        let consul = &mut config.lease.consul;
        if consul.ttl.is_zero() {
            consul.ttl = DEFAULT_CONSUL_TTL;
        }
        if consul.lock_delay.is_zero() {
            consul.lock_delay = DEFAULT_CONSUL_LOCK_DELAY;
        }
        Ok(config)
    }

    /// Checks required keys, allowed values and cross-key rules; returns the first problem,
    /// in the order Go LiteFS checks them (its mount-time checks come after its `Validate`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.fuse.dir.as_os_str().is_empty() {
            return Err(ValidationError::FuseDirRequired);
        }
        if self.data.dir.as_os_str().is_empty() {
            return Err(ValidationError::DataDirRequired);
        }
        // Path equality ignores trailing and repeated slashes, which Go's string compare
        // would miss ("/litefs/" vs "/litefs").
        if self.fuse.dir == self.data.dir {
            return Err(ValidationError::SameDir(self.fuse.dir.clone()));
        }
        let Some(lease_type) = LeaseType::parse(&self.lease.kind) else {
            return Err(ValidationError::LeaseType(self.lease.kind.clone()));
        };
        if self.lease.candidate && !self.lease.databases.is_empty() {
            return Err(ValidationError::DatabaseFilterOnCandidate);
        }
        match lease_type {
            LeaseType::Consul if self.lease.consul.key.is_empty() => {
                return Err(ValidationError::ConsulKeyRequired);
            }
            // A static replica streams from this URL; without it, it would retry forever.
            LeaseType::Static if !self.lease.candidate && self.lease.advertise_url.is_empty() => {
                return Err(ValidationError::StaticReplicaAdvertiseUrl);
            }
            _ => {}
        }
        let backup_type = BackupType::parse(&self.backup.kind);
        if backup_type.is_none() && !self.backup.kind.is_empty() {
            return Err(ValidationError::BackupType(self.backup.kind.clone()));
        }
        if backup_type == Some(BackupType::File) && self.backup.path.as_os_str().is_empty() {
            return Err(ValidationError::BackupPathRequired);
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ValidationError::LogFormat(self.log.format.clone()));
        }
        if !self.proxy.target.is_empty() {
            if self.proxy.addr.is_empty() {
                return Err(ValidationError::ProxyAddrRequired);
            }
            if self.proxy.db.is_empty() {
                return Err(ValidationError::ProxyDbRequired);
            }
        }
        // Go would index past the end of an empty argument list here.
        if let Some(index) = self.exec.iter().position(|e| e.cmd.trim().is_empty()) {
            return Err(ValidationError::EmptyExec { index });
        }
        Ok(())
    }

    /// Find, read, expand (when `env` is given), parse and validate. Pure: the file system is
    /// `read` and the environment is `env`. Returns the config and the path it came from.
    pub fn load_with(
        explicit: Option<&Path>,
        candidates: &[PathBuf],
        read: impl FnMut(&Path) -> io::Result<String>,
        env: Option<EnvLookup<'_>>,
    ) -> Result<(Config, PathBuf), ConfigError> {
        let (text, path) = read_config_text(explicit, candidates, read)?;
        let text = match env {
            Some(lookup) => expand_env(&text, lookup),
            None => text,
        };
        let config = Config::from_yaml(&text).map_err(|err| match err {
            ConfigError::Yaml(source) => ConfigError::Unmarshal {
                path: path.clone(),
                source,
            },
            other => other,
        })?;
        config.validate()?;
        Ok((config, path))
    }

    /// [`Config::load_with`] over the real file system and process environment: `path` if
    /// given, else `./litefs.yml`, `~/litefs.yml`, `/etc/litefs.yml`.
    pub fn load(path: Option<&Path>, expand_env: bool) -> Result<(Config, PathBuf), ConfigError> {
        let candidates = match path {
            Some(_) => Vec::new(),
            None => {
                let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
                    path: PathBuf::from(CONFIG_FILE_NAME),
                    source,
                })?;
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
                search_paths(&cwd, home.as_deref().map(Path::new))
            }
        };
        let lookup = |name: &str| -> Option<String> {
            // Go LiteFS sets HOSTNAME before loading so `$HOSTNAME` works even when the shell
            // did not export it (spec §8.6 step 1).
            std::env::var(name).ok().or_else(|| {
                (name == "HOSTNAME")
                    .then(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                    .flatten()
                    .map(|h| h.trim().to_string())
            })
        };
        let env: Option<EnvLookup<'_>> = if expand_env { Some(&lookup) } else { None };
        Config::load_with(path, &candidates, |p| std::fs::read_to_string(p), env)
    }
}

/// The search order when no path is given: `<cwd>/litefs.yml`, `<home>/litefs.yml` (when a
/// home directory is known), `/etc/litefs.yml`.
pub fn search_paths(cwd: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = vec![cwd.join(CONFIG_FILE_NAME)];
    if let Some(home) = home.filter(|h| !h.as_os_str().is_empty()) {
        paths.push(home.join(CONFIG_FILE_NAME));
    }
    paths.push(Path::new("/etc").join(CONFIG_FILE_NAME));
    paths
}

/// Reads the config text. An explicit path is the only one tried, and any error is reported;
/// otherwise candidates are tried in order, skipping those that do not exist (any other read
/// error stops the search, as in Go). Returns the text and the path it came from.
pub fn read_config_text(
    explicit: Option<&Path>,
    candidates: &[PathBuf],
    mut read: impl FnMut(&Path) -> io::Result<String>,
) -> Result<(String, PathBuf), ConfigError> {
    if let Some(path) = explicit {
        return read(path)
            .map(|text| (text, path.to_path_buf()))
            .map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
    }
    for path in candidates {
        match read(path) {
            Ok(text) => return Ok((text, path.clone())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    Err(ConfigError::NotFound {
        searched: candidates.to_vec(),
    })
}

fn display_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}
