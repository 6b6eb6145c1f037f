//! Partition test (issue 5): the primary runs in a network namespace of its own, joined to
//! the test's by a veth pair; nftables drops every packet into that namespace for 5 s while
//! the primary keeps committing, then the rule is removed. Both replicas must converge to the
//! primary's position and image. Bounded: 200 + 200 + 100 transactions, 60 s of waiting.

mod common;

use common::cluster::{CATCH_UP_WAIT_MAX, Node, NodeConfig, image};
use std::process::Command;
use std::time::{Duration, Instant};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
const PARTITION: Duration = Duration::from_secs(5);

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with one end of a veth pair at `10.201.N.1`, the other end in the
/// test's namespace at `10.201.N.2`; removed (with the pair and its nftables rules) on drop.
struct Netns {
    name: String,
    primary_ip: String,
}

impl Netns {
    fn new() -> Netns {
        let pid = std::process::id();
        let name = format!("lfst-{pid}");
        let net = pid % 200 + 20;
        let (inner, outer) = (format!("lfsa{pid}"), format!("lfsb{pid}"));
        let ns = Netns {
            name: name.clone(),
            primary_ip: format!("10.201.{net}.1"),
        };
        run("ip", &["netns", "add", &name]);
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ],
        );
        run("ip", &["link", "set", &inner, "netns", &name]);
        run(
            "ip",
            &["addr", "add", &format!("10.201.{net}.2/24"), "dev", &outer],
        );
        run("ip", &["link", "set", &outer, "up"]);
        ns.exec(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", ns.primary_ip),
                "dev",
                &inner,
            ],
        );
        ns.exec("ip", &["link", "set", &inner, "up"]);
        ns.exec("ip", &["link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, program: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Drops every packet entering or leaving the namespace.
    fn partition(&self) {
        self.exec("nft", &["add", "table", "inet", "lfst"]);
        for hook in ["input", "output"] {
            let chain = format!(
                "add chain inet lfst {hook} {{ type filter hook {hook} priority 0; policy drop; }}"
            );
            self.exec("nft", &[&chain]);
        }
    }

    fn heal(&self) {
        self.exec("nft", &["delete", "table", "inet", "lfst"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end (and so the pair) and its rules.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn commit(node: &Node, count: usize) {
    let out = Command::new("python3")
        .arg(format!("{CLIENTS}/commits.py"))
        .arg(node.path("db"))
        .arg("wal")
        .arg(count.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn replicas_converge_after_a_five_second_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let ns = Netns::new();
    let mut pc = NodeConfig::primary(&tmp.path().join("p"));
    pc.host = ns.primary_ip.clone();
    pc.primary_host = ns.primary_ip.clone();
    pc.netns = Some(ns.name.clone());
    let primary = Node::start(pc);
    let replicas: Vec<Node> = ["r1", "r2"]
        .iter()
        .map(|n| {
            let mut c = NodeConfig::replica(&tmp.path().join(n), primary.config.port);
            c.primary_host = ns.primary_ip.clone();
            Node::start(c)
        })
        .collect();
    commit(&primary, 200);
    let before = primary.pos("db").unwrap();
    for r in &replicas {
        r.wait_pos("db", before, CATCH_UP_WAIT_MAX);
    }
    ns.partition();
    let cut = Instant::now();
    commit(&primary, 200);
    let during = primary.pos("db").unwrap();
    std::thread::sleep(PARTITION.saturating_sub(cut.elapsed()));
    for r in &replicas {
        assert_eq!(
            r.pos("db"),
            Some(before),
            "a replica moved during the partition\n{}\nprimary:\n{}",
            r.log(),
            primary.log()
        );
    }
    ns.heal();
    let healed = Instant::now();
    commit(&primary, 100);
    let after = primary.pos("db").unwrap();
    assert_eq!(after.txid.0, during.txid.0 + 100);
    for r in &replicas {
        r.wait_pos("db", after, CATCH_UP_WAIT_MAX);
        assert!(
            image(r, "db") == image(&primary, "db"),
            "{}: image differs",
            r.url()
        );
    }
    eprintln!(
        "partition {:?}: replicas went {before} → {after} ({} transactions during the partition), converged {:.2} s after healing",
        PARTITION,
        during.txid.0 - before.txid.0,
        healed.elapsed().as_secs_f64()
    );
}
