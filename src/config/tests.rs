//! Tests for parsing and validation: keys and defaults, strict parsing with line numbers,
//! types, validation rules, and no panics on hostile text.

use super::*;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

fn parse(text: &str) -> Config {
    Config::from_yaml(text).unwrap_or_else(|e| panic!("{e}\n--- text ---\n{text}"))
}

fn yaml_err(text: &str) -> YamlError {
    match Config::from_yaml(text) {
        Err(ConfigError::Yaml(e)) => e,
        other => panic!("expected a YAML error for {text:?}, got {other:?}"),
    }
}

/// Every key, each set to something other than its default.
const EVERY_KEY: &str = r#"
exit-on-error: false
skip-sync: true
strict-verify: true
exec:
  - cmd: "migrate -up"
    if-candidate: true
  - cmd: app -addr :8080
data:
  dir: /data/litefs
  compress: false
  retention: 1h
  retention-monitor-interval: 30s
fuse:
  dir: /mnt/litefs
  allow-other: true
  debug: true
  posix-locks: false
  transport: devfuse
http:
  addr: 127.0.0.1:30303
  snapshot-timeout: 2m
  native-stream: false
proxy:
  addr: ":8080"
  target: localhost:8081
  db: app.db
  max-lag: 3s
  debug: true
  passthrough: ["/static/*", "*.png"]
  always-forward:
    - /admin/*
  primary-redirect-timeout: 2s
  read-timeout: 1s
  read-header-timeout: 2s
  write-timeout: 3s
  idle-timeout: 4s
lease:
  type: consul
  hostname: node-a
  advertise-url: http://node-a:20202
  candidate: false
  promote: true
  reconnect-delay: 250ms
  demote-delay: 1m
  databases: [app.db, other.db]
  consul:
    url: http://:token@consul:8500/prefix
    key: litefs/primary
    ttl: 15s
    lock-delay: 2s
backup:
  type: file
  path: /backups
  url: https://example.invalid
  cluster: prod
  auth-token: secret
log:
  format: json
  timestamp: true
  debug: true
tracing:
  enabled: false
  path: /var/log/litefs.trace
  max-size: 10
  max-count: 3
  compress: false
"#;

#[test]
fn every_key_parses() {
    let want = Config {
        exit_on_error: false,
        skip_sync: true,
        strict_verify: true,
        exec: vec![
            ExecConfig {
                cmd: "migrate -up".into(),
                if_candidate: true,
            },
            ExecConfig {
                cmd: "app -addr :8080".into(),
                if_candidate: false,
            },
        ],
        data: DataConfig {
            dir: "/data/litefs".into(),
            compress: false,
            retention: 60 * MINUTE,
            retention_monitor_interval: 30 * SECOND,
        },
        fuse: FuseConfig {
            dir: "/mnt/litefs".into(),
            allow_other: true,
            debug: true,
            posix_locks: false,
            transport: FuseTransport::DevFuse,
        },
        http: HttpConfig {
            addr: "127.0.0.1:30303".into(),
            snapshot_timeout: 2 * MINUTE,
            native_stream: false,
        },
        proxy: ProxyConfig {
            addr: ":8080".into(),
            target: "localhost:8081".into(),
            db: "app.db".into(),
            max_lag: 3 * SECOND,
            debug: true,
            passthrough: vec!["/static/*".into(), "*.png".into()],
            always_forward: vec!["/admin/*".into()],
            primary_redirect_timeout: 2 * SECOND,
            read_timeout: SECOND,
            read_header_timeout: 2 * SECOND,
            write_timeout: 3 * SECOND,
            idle_timeout: 4 * SECOND,
        },
        lease: LeaseConfig {
            kind: "consul".into(),
            hostname: "node-a".into(),
            advertise_url: "http://node-a:20202".into(),
            candidate: false,
            promote: true,
            reconnect_delay: Duration::from_millis(250),
            demote_delay: MINUTE,
            databases: vec!["app.db".into(), "other.db".into()],
            consul: ConsulConfig {
                url: "http://:token@consul:8500/prefix".into(),
                key: "litefs/primary".into(),
                ttl: 15 * SECOND,
                lock_delay: 2 * SECOND,
            },
        },
        backup: BackupConfig {
            kind: "file".into(),
            path: "/backups".into(),
            url: "https://example.invalid".into(),
            cluster: "prod".into(),
            auth_token: "secret".into(),
        },
        log: LogConfig {
            format: "json".into(),
            timestamp: true,
            debug: true,
        },
        tracing: TracingConfig {
            enabled: false,
            path: "/var/log/litefs.trace".into(),
            max_size_mb: 10,
            max_count: 3,
            compress: false,
        },
    };
    let got = parse(EVERY_KEY);
    assert_eq!(got, want);
    got.validate().unwrap();
    // Every field differs from its default, so no key was silently ignored.
    assert_ne!(format!("{:?}", Config::default()), format!("{want:?}"));
}

#[test]
fn defaults_from_minimal_document() {
    let c = parse("lease: {type: static}\n");
    c.validate().unwrap();
    assert!(c.exit_on_error);
    assert!(!c.skip_sync);
    assert!(!c.strict_verify);
    assert!(c.exec.is_empty());
    assert_eq!(c.data.dir, Path::new("/var/lib/litefs"));
    assert!(c.data.compress);
    assert_eq!(c.data.retention, 10 * MINUTE);
    assert_eq!(c.data.retention_monitor_interval, MINUTE);
    assert_eq!(c.fuse.dir, Path::new("/litefs"));
    assert!(!c.fuse.allow_other);
    assert!(!c.fuse.debug);
    assert_eq!(c.http.addr, ":20202");
    assert_eq!(c.http.snapshot_timeout, Duration::ZERO);
    assert!(c.http.native_stream);
    assert_eq!(c.proxy.addr, "");
    assert_eq!(c.proxy.target, "");
    assert_eq!(c.proxy.db, "");
    assert_eq!(c.proxy.max_lag, 10 * SECOND);
    assert!(!c.proxy.debug);
    assert!(c.proxy.passthrough.is_empty());
    assert!(c.proxy.always_forward.is_empty());
    assert_eq!(c.proxy.primary_redirect_timeout, 5 * SECOND);
    assert_eq!(c.proxy.read_timeout, Duration::ZERO);
    assert_eq!(c.proxy.read_header_timeout, 10 * SECOND);
    assert_eq!(c.proxy.write_timeout, Duration::ZERO);
    assert_eq!(c.proxy.idle_timeout, 30 * SECOND);
    assert_eq!(c.lease.kind, "static");
    assert_eq!(c.lease.hostname, "");
    assert_eq!(c.lease.advertise_url, "");
    assert!(c.lease.candidate);
    assert!(!c.lease.promote);
    assert_eq!(c.lease.reconnect_delay, SECOND);
    assert_eq!(c.lease.demote_delay, 10 * SECOND);
    assert!(c.lease.databases.is_empty());
    assert_eq!(c.lease.consul.url, "");
    assert_eq!(c.lease.consul.key, "");
    assert_eq!(c.lease.consul.ttl, 10 * SECOND);
    assert_eq!(c.lease.consul.lock_delay, SECOND);
    assert_eq!(c.backup, BackupConfig::default());
    assert_eq!(c.backup.kind, "");
    assert_eq!(c.log.format, "text");
    assert!(!c.log.timestamp);
    assert!(!c.log.debug);
    assert!(c.tracing.enabled);
    assert_eq!(c.tracing.path, Path::new(""));
    assert_eq!(c.tracing.max_size_mb, 64);
    assert_eq!(c.tracing.max_count, 8);
    assert!(c.tracing.compress);
}

#[test]
fn empty_and_null_documents_are_all_defaults() {
    for text in ["", "\n", "# only a comment\n", "~\n", "null\n", "---\n"] {
        assert_eq!(parse(text), Config::default(), "{text:?}");
    }
}

#[test]
fn null_values_keep_defaults() {
    // What `key: ${UNSET}` becomes after expansion; yaml.v3 keeps the default too.
    let c =
        parse("data:\n  dir:\n  compress:\n  retention:\nfuse:\nexec:\nlease:\n  candidate: ~\n");
    assert_eq!(c, Config::default());
}

#[test]
fn unknown_keys_name_the_key_and_line() {
    let table: &[(&str, usize, &str)] = &[
        ("bar: 1\n", 1, "unknown field `bar`"),
        (
            "lease:\n  type: static\nbogus: true\n",
            3,
            "unknown field `bogus`",
        ),
        (
            "data:\n  dir: /x\n  bar: 1\n",
            3,
            "data: unknown field `bar`",
        ),
        (
            "fuse:\n  dir: /x\n\n\n  mountpoint: /y\n",
            5,
            "fuse: unknown field `mountpoint`",
        ),
        (
            "lease:\n  type: consul\n  consul:\n    url: u\n    token: t\n",
            5,
            "lease.consul: unknown field `token`",
        ),
        (
            "exec:\n  - cmd: a\n  - cmd: b\n    when: x\n",
            4,
            "exec[1]: unknown field `when`",
        ),
        (
            "proxy: {addr: ':1', tagret: x}\n",
            1,
            "proxy: unknown field `tagret`",
        ),
        // Go's Delay/FullSyncInterval are not YAML keys there either.
        ("backup:\n  delay: 1s\n", 2, "backup: unknown field `delay`"),
    ];
    for &(text, line, needle) in table {
        let err = yaml_err(text);
        assert_eq!(err.line, Some(line), "{text:?}: {err}");
        assert!(err.message.contains(needle), "{text:?}: {err}");
        // The expected keys are listed, so the fix is obvious.
        assert!(err.message.contains("expected"), "{err}");
        let shown = ConfigError::Yaml(err).to_string();
        assert!(
            shown.starts_with(&format!("yaml: line {line}: ")),
            "{shown}"
        );
    }
}

#[test]
fn wrong_types_are_clear() {
    let table: &[(&str, usize, &str)] = &[
        ("data: [1]\n", 1, "data: invalid type: sequence"),
        (
            "data:\n  compress: maybe\n",
            2,
            "data.compress: invalid value: string \"maybe\"",
        ),
        (
            "fuse:\n  debug: 1\n",
            2,
            "fuse.debug: invalid type: integer `1`, expected a boolean",
        ),
        (
            "tracing:\n  max-size: -1\n",
            2,
            "tracing.max-size: invalid type: integer `-1`",
        ),
        (
            "tracing:\n  max-count: lots\n",
            2,
            "tracing.max-count: invalid type: string \"lots\"",
        ),
        (
            "proxy:\n  passthrough: /x\n",
            2,
            "proxy.passthrough: invalid type: string \"/x\"",
        ),
        (
            "exec: 5\n",
            1,
            "exec: invalid type: integer `5`, expected a command string",
        ),
        ("exec: {cmd: x}\n", 1, "exec: invalid type: map"),
        (
            "data:\n  retention: 10x\n",
            2,
            r#"data.retention: time: unknown unit "x" in duration "10x""#,
        ),
        (
            "data:\n  retention: 10\n",
            2,
            r#"data.retention: time: missing unit in duration "10""#,
        ),
        (
            "lease:\n  demote-delay: 1.5\n",
            2,
            "lease.demote-delay: invalid type: floating point",
        ),
        (
            "lease:\n  demote-delay: true\n",
            2,
            "lease.demote-delay: invalid type: boolean",
        ),
        (
            "lease:\n  reconnect-delay: -1s\n",
            2,
            r#"lease.reconnect-delay: invalid duration "-1s": must not be negative"#,
        ),
        (
            "lease:\n  consul:\n    ttl: -10s\n",
            3,
            r#"lease.consul.ttl: invalid duration "-10s": must not be negative"#,
        ),
        (
            "hello\n",
            1,
            "invalid type: string \"hello\", expected a mapping of config sections",
        ),
        ("data: {dir: /x\n", 2, ""),
        ("a: 1\na: 2\n", 1, ""),
    ];
    for &(text, line, needle) in table {
        let err = yaml_err(text);
        assert!(err.message.contains(needle), "{text:?}: got {err}");
        assert_eq!(err.line, Some(line), "{text:?}: {err}");
    }
}

#[test]
fn scalars_are_read_leniently_like_yaml_v3() {
    // yaml.v3 reads any scalar into a string field as its text.
    let c = parse("lease:\n  hostname: true\n  consul:\n    key: 123\n");
    assert_eq!(c.lease.hostname, "true");
    assert_eq!(c.lease.consul.key, "123");
    // YAML 1.1 booleans, accepted by yaml.v3 for typed bools; quoted forms too.
    for (word, want) in [
        ("yes", true),
        ("On", true),
        ("y", true),
        ("\"true\"", true),
        ("TRUE", true),
    ]
    .into_iter()
    .chain([
        ("no", false),
        ("OFF", false),
        ("N", false),
        ("'false'", false),
        ("False", false),
    ]) {
        assert_eq!(
            parse(&format!("fuse: {{debug: {word}}}\n")).fuse.debug,
            want,
            "{word}"
        );
    }
    // A bare zero is a duration (Go requires a string; harmless to accept).
    assert_eq!(
        parse("data: {retention: 0}\n").data.retention,
        Duration::ZERO
    );
    assert_eq!(
        parse("data: {retention: \"0\"}\n").data.retention,
        Duration::ZERO
    );
}

#[test]
fn negative_timeouts_mean_none_and_consul_zero_means_default() {
    let c = parse("proxy:\n  max-lag: -1s\n  read-timeout: -5s\n  idle-timeout: -1ns\n");
    assert_eq!(c.proxy.max_lag, Duration::ZERO);
    assert_eq!(c.proxy.read_timeout, Duration::ZERO);
    assert_eq!(c.proxy.idle_timeout, Duration::ZERO);
    let c = parse("lease:\n  consul:\n    ttl: 0s\n    lock-delay: 0\n");
    assert_eq!(c.lease.consul.ttl, DEFAULT_CONSUL_TTL);
    assert_eq!(c.lease.consul.lock_delay, DEFAULT_CONSUL_LOCK_DELAY);
    assert_eq!(
        parse("data: {retention-monitor-interval: 0s}")
            .data
            .retention_monitor_interval,
        Duration::ZERO
    );
    assert_eq!(
        parse("lease: {reconnect-delay: 1.5h}")
            .lease
            .reconnect_delay,
        90 * MINUTE
    );
}

#[test]
fn exec_forms() {
    assert_eq!(
        parse("exec: \"run me\"\n").exec,
        vec![ExecConfig {
            cmd: "run me".into(),
            if_candidate: false
        }]
    );
    assert_eq!(parse("exec: run me\n").exec[0].cmd, "run me");
    assert!(parse("exec:\n").exec.is_empty());
    assert!(parse("exec: []\n").exec.is_empty());
    let multi =
        parse("exec:\n  - cmd: \"run me\"\n    if-candidate: true\n\n  - cmd: \"run me too\"\n");
    assert_eq!(
        multi.exec,
        vec![
            ExecConfig {
                cmd: "run me".into(),
                if_candidate: true
            },
            ExecConfig {
                cmd: "run me too".into(),
                if_candidate: false
            },
        ]
    );
    // A block scalar keeps its text; quoting rules are the shell-words splitter's business.
    assert_eq!(
        parse("exec: >-\n  sh -c\n  'echo hi'\n").exec[0].cmd,
        "sh -c 'echo hi'"
    );
}

fn valid() -> Config {
    parse("lease: {type: static}\n")
}

#[test]
fn validation_rules() {
    type Edit = fn(&mut Config);
    let table: &[(Edit, &str)] = &[
        (
            |c| c.fuse.dir = PathBuf::new(),
            "fuse directory required: set fuse.dir",
        ),
        (
            |c| c.data.dir = PathBuf::new(),
            "data directory required: set data.dir",
        ),
        (
            |c| c.data.dir = "/litefs/".into(),
            "fuse directory and data directory cannot be the same path: fuse.dir and data.dir are both \"/litefs\"",
        ),
        (
            |c| c.lease.kind = String::new(),
            "invalid lease type, must be either 'consul' or 'static', got: ''",
        ),
        (
            |c| c.lease.kind = "etcd".into(),
            "invalid lease type, must be either 'consul' or 'static', got: 'etcd'",
        ),
        (
            |c| c.lease.kind = "Static".into(),
            "invalid lease type, must be either 'consul' or 'static', got: 'Static'",
        ),
        (
            |c| c.lease.databases = vec!["a.db".into()],
            "cannot specify a database replication filter on candidate nodes: lease.databases needs lease.candidate: false",
        ),
        (
            |c| c.lease.kind = "consul".into(),
            "must specify a consul key: lease.consul.key is required when lease.type is 'consul'",
        ),
        (
            |c| c.lease.candidate = false,
            "must specify the primary's API URL: lease.advertise-url is required when lease.type is 'static' and lease.candidate is false",
        ),
        (
            |c| c.backup.kind = "s3".into(),
            "invalid backup client type: \"s3\": backup.type must be \"\", \"file\" or \"litefs-cloud\"",
        ),
        (
            |c| c.backup.kind = "file".into(),
            "backup directory required: backup.path must be set when backup.type is 'file'",
        ),
        (
            |c| c.log.format = "JSON".into(),
            "invalid log format: \"JSON\": log.format must be \"text\" or \"json\"",
        ),
        (
            |c| c.proxy.target = "localhost:8081".into(),
            "proxy bind address required: set proxy.addr (proxy.target is set)",
        ),
        (
            |c| {
                c.proxy.target = "localhost:8081".into();
                c.proxy.addr = ":8080".into();
            },
            "proxy database name required: set proxy.db (proxy.target is set)",
        ),
        (
            |c| {
                c.exec = vec![
                    ExecConfig {
                        cmd: "a".into(),
                        if_candidate: false,
                    },
                    ExecConfig {
                        cmd: "  ".into(),
                        if_candidate: true,
                    },
                ]
            },
            "exec[1]: cmd is empty",
        ),
    ];
    for (edit, message) in table {
        let mut c = valid();
        edit(&mut c);
        let err = c.validate().expect_err(message);
        assert_eq!(err.to_string(), *message);
    }
}

#[test]
fn validation_accepts_good_variants() {
    let good: &[fn(&mut Config)] = &[
        |c| {
            c.lease.kind = "consul".into();
            c.lease.consul.key = "k".into(); // url may be empty: the client's default agent
        },
        |c| {
            c.lease.candidate = false;
            c.lease.advertise_url = "http://primary:20202".into();
            c.lease.databases = vec!["a.db".into()];
        },
        |c| c.backup.kind = "litefs-cloud".into(),
        |c| {
            c.backup.kind = "file".into();
            c.backup.path = "/b".into();
        },
        |c| c.log.format = "json".into(),
        |c| c.data.dir = "/litefs/data".into(),
    ];
    for edit in good {
        let mut c = valid();
        edit(&mut c);
        c.validate().unwrap();
    }
    assert_eq!(LeaseType::parse("consul"), Some(LeaseType::Consul));
    assert_eq!(
        BackupType::parse("litefs-cloud"),
        Some(BackupType::LitefsCloud)
    );
    assert_eq!(BackupType::parse(""), None);
}

pub(super) fn sample_env(name: &str) -> Option<String> {
    match name {
        "LITEFS_MOUNT_DIR" => Some("/tmp/litefs-test/mnt".into()),
        "LITEFS_DATA_DIR" => Some("/tmp/litefs-test/data".into()),
        "HOSTNAME" => Some("node-1".into()),
        "FLY_REGION" => Some("ord".into()),
        "PRIMARY_REGION" => Some("ord".into()),
        _ => None,
    }
}

/// xorshift64: deterministic pseudo-random numbers for the no-panic tests.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn random_printable_text_never_panics() {
    let mut seed = 0x1234_5678_9abc_def1;
    for _ in 0..3_000 {
        let len = (next(&mut seed) % 200) as usize;
        let text: String = (0..len)
            .map(|_| match next(&mut seed) % 20 {
                0 => '\n',
                1 => ' ',
                _ => char::from(b' ' + (next(&mut seed) % 95) as u8),
            })
            .collect();
        let expanded = expand_env(&text, sample_env);
        if let Ok(c) = Config::from_yaml(&expanded) {
            let _ = c.validate();
        }
    }
}

#[test]
fn mutated_valid_documents_never_panic() {
    // Byte-level mutations of a full document reach deep into the section parsers.
    let base = EVERY_KEY.as_bytes();
    let mut seed = 0x0dd_b1a5_e5ca_1ab1;
    for _ in 0..3_000 {
        let mut bytes = base.to_vec();
        for _ in 0..1 + next(&mut seed) % 4 {
            let at = (next(&mut seed) % bytes.len() as u64) as usize;
            let byte = b"-: \n\"'{}[]$0a1.#&*!|>"[(next(&mut seed) % 21) as usize];
            match next(&mut seed) % 3 {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(c) = Config::from_yaml(&text) {
            let _ = c.validate();
        }
    }
}
