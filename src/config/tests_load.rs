//! Tests for finding and loading the config file: search order and `load_with` over a fake
//! file system and environment, `load` over a real temporary file, the shipped sample.

use super::tests::sample_env;
use super::*;
use std::collections::HashMap;

/// A fake file system: path -> contents, or an error kind.
struct FakeFs(HashMap<PathBuf, Result<String, io::ErrorKind>>);

impl FakeFs {
    fn new(entries: &[(&str, Result<&str, io::ErrorKind>)]) -> FakeFs {
        FakeFs(
            entries
                .iter()
                .map(|(p, r)| (PathBuf::from(p), r.map(str::to_string)))
                .collect(),
        )
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        match self.0.get(path) {
            Some(Ok(text)) => Ok(text.clone()),
            Some(Err(kind)) => Err(io::Error::from(*kind)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
}

#[test]
fn search_paths_order() {
    assert_eq!(
        search_paths(Path::new("/srv/app"), Some(Path::new("/home/me"))),
        [
            PathBuf::from("/srv/app/litefs.yml"),
            PathBuf::from("/home/me/litefs.yml"),
            PathBuf::from("/etc/litefs.yml"),
        ]
    );
    assert_eq!(
        search_paths(Path::new("/"), None),
        [
            PathBuf::from("/litefs.yml"),
            PathBuf::from("/etc/litefs.yml")
        ]
    );
    assert_eq!(search_paths(Path::new("/"), Some(Path::new(""))).len(), 2);
}

#[test]
fn search_order_with_fake_fs() {
    let candidates = search_paths(Path::new("/cwd"), Some(Path::new("/home/u")));
    let read_from = |fs: &FakeFs, explicit: Option<&str>| {
        read_config_text(explicit.map(Path::new), &candidates, |p| fs.read(p))
    };

    // First existing candidate wins.
    let fs = FakeFs::new(&[
        ("/home/u/litefs.yml", Ok("home")),
        ("/etc/litefs.yml", Ok("etc")),
    ]);
    let (text, path) = read_from(&fs, None).unwrap();
    assert_eq!(
        (text.as_str(), path.as_path()),
        ("home", Path::new("/home/u/litefs.yml"))
    );

    let fs = FakeFs::new(&[
        ("/cwd/litefs.yml", Ok("cwd")),
        ("/etc/litefs.yml", Ok("etc")),
    ]);
    assert_eq!(read_from(&fs, None).unwrap().0, "cwd");

    let fs = FakeFs::new(&[("/etc/litefs.yml", Ok("etc"))]);
    assert_eq!(
        read_from(&fs, None).unwrap().1,
        Path::new("/etc/litefs.yml")
    );

    // A candidate that exists but cannot be read stops the search, as in Go.
    let fs = FakeFs::new(&[
        ("/cwd/litefs.yml", Err(io::ErrorKind::PermissionDenied)),
        ("/etc/litefs.yml", Ok("etc")),
    ]);
    let err = read_from(&fs, None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read config file at /cwd/litefs.yml: "),
        "{err}"
    );

    // Nothing found.
    let err = read_from(&FakeFs::new(&[]), None).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        "config file not found (searched: /cwd/litefs.yml, /home/u/litefs.yml, /etc/litefs.yml)"
    );

    // An explicit path disables the search, even when a candidate exists.
    let fs = FakeFs::new(&[("/cwd/litefs.yml", Ok("cwd")), ("/opt/x.yml", Ok("x"))]);
    assert_eq!(
        read_from(&fs, Some("/opt/x.yml")).unwrap(),
        ("x".into(), "/opt/x.yml".into())
    );
    let err = read_from(&fs, Some("/opt/missing.yml")).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
    assert!(
        err.to_string()
            .starts_with("cannot read config file at /opt/missing.yml: ")
    );
}

#[test]
fn load_expands_env_only_when_asked() {
    let text = "fuse:\n  dir: /mnt/${HOSTNAME}\nlease:\n  type: static\n  candidate: ${FLY_REGION == PRIMARY_REGION}\n  hostname: $UNSET\n";
    let fs = FakeFs::new(&[("/etc/litefs.yml", Ok(text))]);
    let candidates = [PathBuf::from("/etc/litefs.yml")];
    let (c, path) =
        Config::load_with(None, &candidates, |p| fs.read(p), Some(&sample_env)).unwrap();
    assert_eq!(path, Path::new("/etc/litefs.yml"));
    assert_eq!(c.fuse.dir, Path::new("/mnt/node-1"));
    assert!(c.lease.candidate);
    assert_eq!(c.lease.hostname, "");

    // Without expansion the text is taken literally (and `${...}` is then not a boolean).
    let err = Config::load_with(None, &candidates, |p| fs.read(p), None).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot unmarshal config file at /etc/litefs.yml: yaml: line 5: lease.candidate: invalid value"),
        "{err}"
    );

    // Validation runs last and its errors pass through unchanged.
    let fs = FakeFs::new(&[("/c.yml", Ok("lease: {type: raft}\n"))]);
    let err = Config::load_with(Some(Path::new("/c.yml")), &[], |p| fs.read(p), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid lease type, must be either 'consul' or 'static', got: 'raft'"
    );
}

#[test]
fn sample_config_parses_and_validates() {
    let text = include_str!("../../scripts/litefs.sample.yml");
    let (c, _) = Config::load_with(
        Some(Path::new("litefs.sample.yml")),
        &[],
        |_| Ok(text.to_string()),
        Some(&sample_env),
    )
    .unwrap();
    assert_eq!(c.fuse.dir, Path::new("/tmp/litefs-test/mnt"));
    assert_eq!(c.data.dir, Path::new("/tmp/litefs-test/data"));
    assert!(!c.exit_on_error);
    assert_eq!(c.lease.kind, "static");
    assert_eq!(c.http.addr, "127.0.0.1:20202");
}

#[test]
fn load_reads_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litefs.yml");
    std::fs::write(
        &path,
        "lease:\n  type: static\n  hostname: \"${ __LITEFS_TEST_UNSET__ }\"\n",
    )
    .unwrap();
    let (c, from) = Config::load(Some(&path), true).unwrap();
    assert_eq!(from, path);
    assert_eq!(c.lease.hostname, "");
    let (c, _) = Config::load(Some(&path), false).unwrap();
    assert_eq!(c.lease.hostname, "${ __LITEFS_TEST_UNSET__ }");
    let err = Config::load(Some(&dir.path().join("nope.yml")), true).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}
