//! The config sections. Each is declared once through `section!`, which generates the public
//! struct with Go LiteFS's defaults and a private "raw" twin where every key is optional and
//! unknown keys are errors. A raw value is laid over the defaults key by key, so a key that is
//! absent or null keeps its default (yaml.v3 behaves the same way).

use super::duration::GoDuration;
use super::*;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;

macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident via $raw:ident expecting $expecting:literal {
            $(
                $(#[$fmeta:meta])*
                $key:literal => $field:ident: $ty:ty = $default:expr, as $rawty:ty;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, expecting = $expecting)]
        pub(super) struct $raw {
            $( #[serde(rename = $key, default)] $field: Option<$rawty>, )*
        }

        impl From<$raw> for $name {
            fn from(raw: $raw) -> Self {
                let mut out = Self::default();
                $( if let Some(value) = raw.$field { out.$field = value.into(); } )*
                out
            }
        }
    };
}

section! {
    /// The whole `litefs.yml`.
    pub struct Config via RawConfig expecting "a mapping of config sections" {
        /// Exit the process when startup fails; `false` keeps it running for debugging.
        /// Default: true.
        "exit-on-error" => exit_on_error: bool = true, as YamlBool;
        /// Start the proxy and `exec` without waiting to become primary or to sync.
        /// Default: false.
        "skip-sync" => skip_sync: bool = false, as YamlBool;
        /// Recompute the full database checksum after every commit (testing). Default: false.
        "strict-verify" => strict_verify: bool = false, as YamlBool;
        /// Commands to run once ready (spec §8.7): all but the last synchronously, the last
        /// supervised. YAML: one command string, or a list of `{cmd, if-candidate}`.
        /// Default: none.
        "exec" => exec: Vec<ExecConfig> = Vec::new(), as ExecList;
        "data" => data: DataConfig = DataConfig::default(), as RawData;
        "fuse" => fuse: FuseConfig = FuseConfig::default(), as RawFuse;
        "http" => http: HttpConfig = HttpConfig::default(), as RawHttp;
        "proxy" => proxy: ProxyConfig = ProxyConfig::default(), as RawProxy;
        "lease" => lease: LeaseConfig = LeaseConfig::default(), as RawLease;
        "backup" => backup: BackupConfig = BackupConfig::default(), as RawBackup;
        "log" => log: LogConfig = LogConfig::default(), as RawLog;
        "tracing" => tracing: TracingConfig = TracingConfig::default(), as RawTracing;
    }
}

section! {
    /// One `exec` entry.
    pub struct ExecConfig via RawExec expecting "an exec entry: a mapping of cmd, if-candidate" {
        /// The command line, split with shell-words rules when run. Required (non-empty).
        "cmd" => cmd: String = String::new(), as String;
        /// Run only on candidate nodes. Default: false.
        "if-candidate" => if_candidate: bool = false, as YamlBool;
    }
}

section! {
    /// `data`: where databases and LTX files live, and how long LTX files are kept.
    pub struct DataConfig via RawData expecting "the data section: a mapping" {
        /// Data directory. Default: `/var/lib/litefs`. Required; must differ from `fuse.dir`.
        "dir" => dir: PathBuf = PathBuf::from(DEFAULT_DATA_DIR), as PathBuf;
        /// LZ4-compress LTX files. Default: true.
        "compress" => compress: bool = true, as YamlBool;
        /// How long LTX files are kept. Default: 10m. Minimum: 0.
        "retention" => retention: Duration = DEFAULT_RETENTION, as NonNegativeDuration;
        /// How often retention is enforced; 0 disables the loop. Default: 1m. Minimum: 0.
        "retention-monitor-interval" => retention_monitor_interval: Duration =
            DEFAULT_RETENTION_MONITOR_INTERVAL, as NonNegativeDuration;
    }
}

section! {
    /// `fuse`: the mount.
    pub struct FuseConfig via RawFuse expecting "the fuse section: a mapping" {
        /// Mount point. Default: `/litefs`. Required.
        "dir" => dir: PathBuf = PathBuf::from(DEFAULT_FUSE_DIR), as PathBuf;
        /// Mount with `allow_other`. Default: false.
        "allow-other" => allow_other: bool = false, as YamlBool;
        /// Log every FUSE operation. Default: false.
        "debug" => debug: bool = false, as YamlBool;
        /// litefs-rs only: `true` negotiates FUSE_POSIX_LOCKS so the daemon decides SQLite's
        /// locks, as LiteFS does (every lock is a request; `/debug/vars` shows them). `false`
        /// keeps them in the kernel, which arbitrates them between processes as on any file
        /// system: a read transaction costs no request (reads_warm ~80 % of raw instead of
        /// ~15 %, docs/ARCHITECTURE.md §7.5), and LiteFS's own locks (replica apply, import,
        /// snapshots) are taken through the mount as OFD locks. Default: false.
        "posix-locks" => posix_locks: bool = false, as YamlBool;
        /// litefs-rs only: how requests reach the daemon. `auto` uses FUSE-over-io_uring when
        /// the kernel offers it (≥ 6.14 with `/sys/module/fuse/parameters/enable_uring` = Y)
        /// and `/dev/fuse` otherwise; `uring` refuses to mount without it; `devfuse` never
        /// uses it. Default: auto.
        "transport" => transport: FuseTransport = FuseTransport::Auto, as FuseTransport;
    }
}

/// `fuse.transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", expecting = "one of auto, uring, devfuse")]
pub enum FuseTransport {
    Auto,
    Uring,
    DevFuse,
}

section! {
    /// `http`: the node API server.
    pub struct HttpConfig via RawHttp expecting "the http section: a mapping" {
        /// Bind address. Default: `:20202`.
        "addr" => addr: String = DEFAULT_HTTP_ADDR.to_string(), as String;
        /// Longest time to stream one snapshot; 0 means `data.retention`. Default: 0.
        /// Minimum: 0.
        "snapshot-timeout" => snapshot_timeout: Duration = Duration::ZERO, as NonNegativeDuration;
        /// litefs-rs only: a replica first tries the native stream (LTX payloads sent with
        /// `sendfile`), falling back to HTTP/2 when the primary is Go LiteFS. Default: true.
        "native-stream" => native_stream: bool = true, as YamlBool;
    }
}

section! {
    /// `proxy`: the built-in HTTP proxy (spec §6); enabled when `target` is set.
    pub struct ProxyConfig via RawProxy expecting "the proxy section: a mapping" {
        /// Proxy bind address. Required when `target` is set.
        "addr" => addr: String = String::new(), as String;
        /// Application `host:port`; empty disables the proxy. Default: empty.
        "target" => target: String = String::new(), as String;
        /// Database whose TXID is tracked. Required when `target` is set.
        "db" => db: String = String::new(), as String;
        /// Health check fails above this replication lag; 0 disables. Default: 10s.
        /// Negative reads as 0 (Go treats <= 0 as off).
        "max-lag" => max_lag: Duration = DEFAULT_PROXY_MAX_LAG, as ZeroIfNegative;
        /// Log each routing decision. Default: false.
        "debug" => debug: bool = false, as YamlBool;
        /// Path wildcard patterns proxied as-is. Default: none.
        "passthrough" => passthrough: Vec<String> = Vec::new(), as Vec<String>;
        /// Path wildcard patterns whose GET/HEAD take the write path. Default: none.
        "always-forward" => always_forward: Vec<String> = Vec::new(), as Vec<String>;
        /// How long a write waits to learn the primary. Default: 5s. Minimum: 0.
        "primary-redirect-timeout" => primary_redirect_timeout: Duration =
            DEFAULT_PROXY_PRIMARY_REDIRECT_TIMEOUT, as NonNegativeDuration;
        /// Server read timeout; 0 means none. Default: 0. Negative reads as 0.
        "read-timeout" => read_timeout: Duration = Duration::ZERO, as ZeroIfNegative;
        /// Server read-header timeout; 0 means none. Default: 10s. Negative reads as 0.
        "read-header-timeout" => read_header_timeout: Duration =
            DEFAULT_PROXY_READ_HEADER_TIMEOUT, as ZeroIfNegative;
        /// Server write timeout; 0 means none. Default: 0. Negative reads as 0.
        "write-timeout" => write_timeout: Duration = Duration::ZERO, as ZeroIfNegative;
        /// Server keep-alive idle timeout; 0 means none. Default: 30s. Negative reads as 0.
        "idle-timeout" => idle_timeout: Duration = DEFAULT_PROXY_IDLE_TIMEOUT, as ZeroIfNegative;
    }
}

section! {
    /// `lease`: how the primary is chosen (spec §7).
    pub struct LeaseConfig via RawLease expecting "the lease section: a mapping" {
        /// `consul` or `static` (YAML key `type`). Required.
        "type" => kind: String = String::new(), as String;
        /// This node's name, used by other nodes and `fly-replay`. Default: the OS hostname
        /// (consul), decided at mount time.
        "hostname" => hostname: String = String::new(), as String;
        /// This node's API URL (static: the primary's). Default: `http://<hostname>:<port>`
        /// (consul), decided at mount time.
        "advertise-url" => advertise_url: String = String::new(), as String;
        /// May become primary; with a static lease, *is* the primary. Default: true.
        "candidate" => candidate: bool = true, as YamlBool;
        /// Ask to become primary once synced. Default: false.
        "promote" => promote: bool = false, as YamlBool;
        /// Pause before retrying the lease or the stream. Default: 1s. Minimum: 0.
        "reconnect-delay" => reconnect_delay: Duration = DEFAULT_RECONNECT_DELAY,
            as NonNegativeDuration;
        /// Pause after a manual demotion. Default: 10s. Minimum: 0.
        "demote-delay" => demote_delay: Duration = DEFAULT_DEMOTE_DELAY, as NonNegativeDuration;
        /// Databases a replica subscribes to; only on non-candidates. Default: all.
        "databases" => databases: Vec<String> = Vec::new(), as Vec<String>;
        "consul" => consul: ConsulConfig = ConsulConfig::default(), as RawConsul;
    }
}

section! {
    /// `lease.consul` (spec §7.4).
    pub struct ConsulConfig via RawConsul expecting "the lease.consul section: a mapping" {
        /// Consul API URL; may carry a token (`http://:TOKEN@host:8500`) and a key prefix
        /// (URL path). Default: empty, the Consul client's default (local agent).
        "url" => url: String = String::new(), as String;
        /// Lock key, unique per cluster. Required with `lease.type: consul`.
        "key" => key: String = String::new(), as String;
        /// Session TTL. Default: 10s (also for 0). Consul servers reject less than 10s by
        /// default.
        "ttl" => ttl: Duration = DEFAULT_CONSUL_TTL, as NonNegativeDuration;
        /// Session lock delay. Default: 1s (also for 0).
        "lock-delay" => lock_delay: Duration = DEFAULT_CONSUL_LOCK_DELAY, as NonNegativeDuration;
    }
}

section! {
    /// `backup`: LiteFS Cloud or a directory (spec §8.2).
    pub struct BackupConfig via RawBackup expecting "the backup section: a mapping" {
        /// `""` (none), `file` or `litefs-cloud` (YAML key `type`). Default: none.
        "type" => kind: String = String::new(), as String;
        /// Backup directory (`file`). Required with `type: file`.
        "path" => path: PathBuf = PathBuf::new(), as PathBuf;
        /// Endpoint (`litefs-cloud`). Default: `https://litefs.fly.io`, applied at mount time.
        "url" => url: String = String::new(), as String;
        /// Cluster name (`litefs-cloud`), usually implied by the token.
        "cluster" => cluster: String = String::new(), as String;
        /// `Authorization` value (`litefs-cloud`). Default: `$LITEFS_CLOUD_TOKEN` at mount time.
        "auth-token" => auth_token: String = String::new(), as String;
    }
}

section! {
    /// `log`: the structured log on stderr.
    pub struct LogConfig via RawLog expecting "the log section: a mapping" {
        /// `text` or `json`. Default: `text`.
        "format" => format: String = "text".to_string(), as String;
        /// Include timestamps. Default: false.
        "timestamp" => timestamp: bool = false, as YamlBool;
        /// Debug level. Default: false.
        "debug" => debug: bool = false, as YamlBool;
    }
}

section! {
    /// `tracing`: the rolling on-disk trace log.
    pub struct TracingConfig via RawTracing expecting "the tracing section: a mapping" {
        /// Write the trace log when `path` is set. Default: true.
        "enabled" => enabled: bool = true, as YamlBool;
        /// Trace log file; empty means none. Default: empty.
        "path" => path: PathBuf = PathBuf::new(), as PathBuf;
        /// Roll the file at this size, in megabytes. Default: 64.
        "max-size" => max_size_mb: u64 = DEFAULT_TRACING_MAX_SIZE_MB, as u64;
        /// Rolled files kept. Default: 8.
        "max-count" => max_count: u32 = DEFAULT_TRACING_MAX_COUNT, as u32;
        /// Gzip rolled files. Default: true.
        "compress" => compress: bool = true, as YamlBool;
    }
}

/// A boolean: YAML `true`/`false` in any case, plus yaml.v3's YAML 1.1 words for typed bools.
pub(super) struct YamlBool(bool);

impl From<YamlBool> for bool {
    fn from(v: YamlBool) -> bool {
        v.0
    }
}

impl<'de> Deserialize<'de> for YamlBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = YamlBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean (true/false)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<YamlBool, E> {
                Ok(YamlBool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<YamlBool, E> {
                match v {
                    "true" | "True" | "TRUE" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On"
                    | "ON" => Ok(YamlBool(true)),
                    "false" | "False" | "FALSE" | "n" | "N" | "no" | "No" | "NO" | "off"
                    | "Off" | "OFF" => Ok(YamlBool(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// What a negative value means for a duration key.
#[derive(Clone, Copy)]
enum Negative {
    /// Nonsensical for the key: an error naming the key and line.
    Reject,
    /// Go treats any value <= 0 as "none": read as zero.
    Zero,
}

/// Reads a Go duration string (a bare integer 0 is accepted as zero). The sign check runs
/// inside the visitor so the YAML error carries this key's path and line.
fn deserialize_go_duration<'de, D: Deserializer<'de>>(
    d: D,
    negative: Negative,
) -> Result<Duration, D::Error> {
    struct V(Negative);
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"10s\", \"1m30s\" or \"500ms\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            let value = GoDuration::parse(v).map_err(E::custom)?;
            match (value.to_std(), self.0) {
                (Some(std), _) => Ok(std),
                (None, Negative::Zero) => Ok(Duration::ZERO),
                (None, Negative::Reject) => Err(E::custom(format!(
                    "invalid duration {v:?}: must not be negative (minimum 0)"
                ))),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            match v {
                0 => Ok(Duration::ZERO),
                _ => self.visit_str(&v.to_string()),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            match v {
                0 => Ok(Duration::ZERO),
                _ => self.visit_str(&v.to_string()),
            }
        }
    }
    d.deserialize_any(V(negative))
}

/// A duration key where a negative value makes no sense: rejected.
pub(super) struct NonNegativeDuration(Duration);

impl From<NonNegativeDuration> for Duration {
    fn from(v: NonNegativeDuration) -> Duration {
        v.0
    }
}

impl<'de> Deserialize<'de> for NonNegativeDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_go_duration(d, Negative::Reject).map(NonNegativeDuration)
    }
}

/// A timeout or threshold where Go treats any value <= 0 as "none": negative reads as zero.
pub(super) struct ZeroIfNegative(Duration);

impl From<ZeroIfNegative> for Duration {
    fn from(v: ZeroIfNegative) -> Duration {
        v.0
    }
}

impl<'de> Deserialize<'de> for ZeroIfNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_go_duration(d, Negative::Zero).map(ZeroIfNegative)
    }
}

/// `exec`: one command string, or a list of `{cmd, if-candidate}` mappings.
pub(super) struct ExecList(Vec<ExecConfig>);

impl From<ExecList> for Vec<ExecConfig> {
    fn from(v: ExecList) -> Vec<ExecConfig> {
        v.0
    }
}

impl<'de> Deserialize<'de> for ExecList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExecList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command string or a list of {cmd, if-candidate} mappings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExecList, E> {
                Ok(ExecList(vec![ExecConfig {
                    cmd: v.to_string(),
                    if_candidate: false,
                }]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExecList, A::Error> {
                let mut entries = Vec::new();
                while let Some(raw) = seq.next_element::<RawExec>()? {
                    entries.push(ExecConfig::from(raw));
                }
                Ok(ExecList(entries))
            }
        }
        d.deserialize_any(V)
    }
}
