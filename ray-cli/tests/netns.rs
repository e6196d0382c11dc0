//! A node in its own network namespace reaches the head by its address on a veth pair (a
//! private subnet of this test's own), not through a shared loopback. Needs root and `ip`
//! (iproute2), as in CI; everything is removed afterwards, also when the test fails. A driver
//! then runs work in the namespace and moves a large object across the veth pair.

mod common;

use std::process::Command;

use common::*;

/// A large value made by the node in the namespace: it stays there.
#[ray::remote(resources(netns = 1))]
fn make_in_the_namespace(len: usize) -> Vec<u8> {
    vec![9u8; len]
}

/// Reads it on the head: node to node, across the veth pair.
#[ray::remote(resources(host = 1))]
fn sum_on_the_head(v: Vec<u8>) -> u64 {
    v.iter().map(|b| *b as u64).sum()
}

/// Drops a marker named after its node's daemon, then waits (up to two minutes) for `go`.
#[ray::remote(resources(spare = 1), max_retries = 2)]
fn square_when_told(x: u64, dir: String) -> (u64, u32) {
    let daemon = my_daemon();
    std::fs::write(format!("{dir}/task-{daemon}"), b"").expect("the marker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::path::Path::new(&format!("{dir}/go")).exists()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (x * x, daemon)
}

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    ray::init(ray::Config::default()).expect("joins the cluster");
    if mode == "reset" {
        reset_driver(&std::env::var("PARTITION_DIR").expect("PARTITION_DIR"));
        ray::shutdown();
        return;
    }
    if mode == "partition" {
        let dir = std::env::var("PARTITION_DIR").expect("PARTITION_DIR");
        let (value, daemon) = ray::get(&square_when_told::remote(12, dir)).unwrap();
        println!("TASK {value} ON {daemon}");
        ray::shutdown();
        println!("PARTITION DRIVER OK");
        return;
    }
    let len = 16usize << 20;
    let made = make_in_the_namespace::remote(len);
    let sum = ray::get(&sum_on_the_head::remote(&made)).unwrap();
    assert_eq!(sum, 9 * len as u64, "read bit-exact on the head");
    let here = ray::get_slice(&made).unwrap();
    assert!(
        here.len() == len && here.iter().all(|b| *b == 9),
        "and here"
    );
    ray::shutdown();
    println!("NETNS DRIVER OK");
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("running `ip` (install iproute2)")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with one end of a veth pair; the other end stays here. Dropping it deletes
/// both (deleting one end of a veth pair deletes the other).
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    /// A namespace of this test (tests of this binary run at once: each gets its own names
    /// and subnet).
    fn create() -> Netns {
        assert_eq!(
            ray_net::token::effective_uid(),
            0,
            "this test creates network namespaces and must run as root (CI does)"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id() % 1_000_000;
        let net = 20 + (pid * 7 + k * 61) % 230;
        let n = Netns {
            name: format!("rrs{pid}x{k}"),
            host_if: format!("rrh{pid}x{k}"),
            host_ip: format!("10.213.{net}.1"),
            ns_ip: format!("10.213.{net}.2"),
        };
        n.remove();
        let ns_if = format!("rrn{pid}x{k}");
        ip_ok(&["netns", "add", &n.name]);
        ip_ok(&[
            "link", "add", &n.host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip_ok(&["link", "set", &ns_if, "netns", &n.name]);
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/24", n.host_ip),
            "dev",
            &n.host_if,
        ]);
        ip_ok(&["link", "set", &n.host_if, "up"]);
        ip_ok(&[
            "-n",
            &n.name,
            "addr",
            "add",
            &format!("{}/24", n.ns_ip),
            "dev",
            &ns_if,
        ]);
        ip_ok(&["-n", &n.name, "link", "set", &ns_if, "up"]);
        ip_ok(&["-n", &n.name, "link", "set", "lo", "up"]);
        n
    }

    /// A head on the host's end of the link (1 CPU, no GPU) whose lease lasts `ttl` seconds.
    fn start_head(&self, dir: &NodeDir, ttl: &str) -> Head {
        let args = [
            "--node-ip",
            &self.host_ip,
            "--num-cpus",
            "1",
            "--num-gpus",
            "0",
            "--lease-ttl",
            ttl,
        ];
        Head::start(dir, &args)
    }

    fn exec(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.name]
    }

    fn remove(&self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

#[test]
fn a_node_in_another_network_namespace_joins_by_address() {
    // Declared first so it is dropped last: the nodes stop before the network goes.
    let net = Netns::create();
    let head_dir = NodeDir::new("ns-head");
    let node_dir = NodeDir::new("ns-node");
    let head = Head::start(
        &head_dir,
        &[
            "--node-ip",
            &net.host_ip,
            "--num-cpus",
            "1",
            "--num-gpus",
            "0",
            "--resources",
            "host=1",
            "--lease-ttl",
            "3",
        ],
    );
    assert!(
        head.address.starts_with(&format!("{}:", net.host_ip)),
        "{}",
        head.address
    );
    let token = head_dir.token();
    let wrap = net.exec();
    // Inside the namespace the head's address is only reachable over the veth pair.
    join(
        &head,
        &node_dir,
        &token,
        &[
            "--num-cpus",
            "3",
            "--num-gpus",
            "0",
            "--resources",
            "netns=1",
        ],
        &wrap,
    );

    let report = status(&head.address, &head_dir.path, &token, &[]);
    let all = nodes(&report);
    assert_eq!(all.len(), 2, "{report:#}");
    let joined = all.iter().find(|n| n["is_head"] == false).unwrap();
    let address = joined["address"].as_str().unwrap();
    assert!(address.starts_with(&format!("{}:", net.ns_ip)), "{address}");
    assert_eq!(joined["resources_total"]["netns"], 1.0);
    assert_eq!(joined["alive"], true);
    // From inside the namespace too, verifying the head's certificate (issued for its
    // --node-ip) with the CA the node received when it joined.
    let inside = status(&head.address, &node_dir.path, &token, &wrap);
    assert_eq!(nodes(&inside).len(), 2);
    // And the head reaches the node's own listener across the veth pair.
    let via_node = status(address, &head_dir.path, &token, &[]);
    assert_eq!(nodes(&via_node).len(), 2);

    // A driver on this side: a 16 MiB value made in the namespace, read on the head (which
    // pulls it from the node's address across the veth pair) and in the driver.
    let out = driver("netns", &head.address, &token);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("NETNS DRIVER OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = wait_for("the head's pull counted", || {
        let report = status(&head.address, &head_dir.path, &token, &[]);
        let head_node = nodes(&report)
            .into_iter()
            .find(|n| n["is_head"] == true)
            .unwrap();
        let pulled = head_node["activity"]["bytes_pulled"].as_u64().unwrap_or(0);
        (pulled >= 16 << 20).then_some(pulled)
    });
    assert!(pulled >= 16 << 20, "the head pulled {pulled}");

    let node_pid = node_dir.pid("ray-rs.pid").unwrap();
    assert!(
        ray_rs(&["stop", "--temp-dir", node_dir.arg()], None, &[])
            .status
            .success()
    );
    assert!(!alive(node_pid));
    assert!(
        ray_rs(&["stop", "--temp-dir", head_dir.arg()], None, &[])
            .status
            .success()
    );
}

fn nft(net: &Netns, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.name, "nft"])
        .args(args)
        .output()
        .expect("running `nft` (install nftables: scripts/install-cluster-deps.sh)");
    assert!(
        out.status.success(),
        "nft {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The node in `net` is cut off: every packet in or out of the namespace, but its loopback's,
/// is dropped.
fn partition(net: &Netns) {
    nft(net, &["add", "table", "inet", "rrpart"]);
    for (chain, hook, iface) in [("in", "input", "iifname"), ("out", "output", "oifname")] {
        nft(
            net,
            &[
                "add",
                "chain",
                "inet",
                "rrpart",
                chain,
                &format!("{{ type filter hook {hook} priority 0; policy accept; }}"),
            ],
        );
        nft(
            net,
            &[
                "add", "rule", "inet", "rrpart", chain, iface, "!=", "lo", "drop",
            ],
        );
    }
}

fn heal(net: &Netns) {
    nft(net, &["delete", "table", "inet", "rrpart"]);
}

fn node_entry(
    address: &str,
    head_dir: &NodeDir,
    token: &str,
    dir: &NodeDir,
) -> Option<serde_json::Value> {
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path.join("node.json")).ok()?).ok()?;
    let id = file["node_id"].as_u64()?;
    nodes(&status(address, &head_dir.path, token, &[]))
        .into_iter()
        .find(|n| n["node_id"].as_u64() == Some(id))
}

#[test]
fn a_node_cut_off_by_a_partition_is_declared_dead_and_rejoins_when_it_heals() {
    let net = Netns::create();
    let head_dir = NodeDir::new("part-head");
    let b_dir = NodeDir::new("part-b");
    let a_dir = NodeDir::new("part-a");
    let head = net.start_head(&head_dir, "2");
    let token = head_dir.token();
    join(
        &head,
        &b_dir,
        &token,
        &spare_node("1", &["--lease-ttl", "2"]),
        &net.exec(),
    );
    let work = head_dir.path.with_extension("work");
    std::fs::create_dir_all(&work).unwrap();
    // The task can run only on B (in the namespace) for now.
    let driver = spawn_driver(
        "partition",
        &head.address,
        &token,
        &[("PARTITION_DIR", &work)],
    );
    let b_daemon = b_dir.pid("ray-rs.pid").unwrap();
    wait_for("the task running on B", || {
        work.join(format!("task-{b_daemon}")).exists().then_some(())
    });
    let b_workers: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .is_ok_and(|s| s.contains(&format!("PPid:\t{b_daemon}\n")))
        })
        .collect();
    assert!(!b_workers.is_empty(), "the task's worker runs on B");
    // A joins on this side: the only other node with `spare`.
    let mut a_args = vec!["--node-ip", &net.host_ip];
    a_args.extend_from_slice(&spare_node("1", &["--lease-ttl", "2"]));
    join(&head, &a_dir, &token, &a_args, &[]);
    let a_daemon = a_dir.pid("ray-rs.pid").unwrap();

    partition(&net);
    let cut = std::time::Instant::now();
    wait_for("B declared dead", || {
        node_entry(&head.address, &head_dir, &token, &b_dir)
            .is_some_and(|n| n["alive"] == false)
            .then_some(())
    });
    let detected = cut.elapsed();
    // B's worker may finish now too: its result cannot be used.
    std::fs::write(work.join("go"), b"").unwrap();
    let out = driver.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(
        out.status.success() && text.contains("PARTITION DRIVER OK"),
        "{text}"
    );
    assert!(text.contains(&format!("TASK 144 ON {a_daemon}")), "{text}");
    assert_eq!(text.matches("TASK ").count(), 1, "one result: {text}");

    heal(&net);
    let rejoined = wait_for("B rejoined as incarnation 2", || {
        node_entry(&head.address, &head_dir, &token, &b_dir)
            .filter(|n| n["alive"] == true && n["incarnation"] == 2)
            .map(|_| cut.elapsed())
    });
    assert!(
        alive(b_daemon),
        "B's daemon executed itself again (same pid)"
    );
    wait_for("B's old workers gone", || {
        b_workers.iter().all(|w| !alive(*w)).then_some(())
    });
    println!(
        "FIGURES partition, lease TTL 2 s: declared dead {:.1} s after the drop rule; rejoined \
         as incarnation 2 {:.1} s after it",
        detected.as_secs_f64(),
        rejoined.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&work);
    for dir in [&a_dir, &b_dir, &head_dir] {
        let _ = ray_rs(&["stop", "--temp-dir", dir.arg()], None, &[]);
    }
}

#[ray::remote(resources(spare = 0.5))]
struct Tally {
    n: u64,
}

#[ray::remote]
impl Tally {
    fn new() -> Self {
        Tally { n: 0 }
    }
    fn add(&mut self, x: u64) -> u64 {
        self.n += x;
        self.n
    }
}

#[ray::remote(resources(spare = 0.5))]
fn cube(x: u64) -> u64 {
    x * x * x
}

/// Calls the actor and runs tasks on the namespace's node without pause, checking every
/// answer, until told the connections were reset and then some more.
fn reset_driver(dir: &str) {
    let tally = Tally::remote();
    let mut n = 0u64;
    let mut after = 0;
    while after < 30 {
        n += 1;
        assert_eq!(
            ray::get(&tally.add(1)).unwrap(),
            n,
            "the actor's state, call {n}"
        );
        assert_eq!(ray::get(&cube::remote(n)).unwrap(), n * n * n);
        std::fs::write(format!("{dir}/progress.new"), n.to_string()).unwrap();
        std::fs::rename(format!("{dir}/progress.new"), format!("{dir}/progress")).unwrap();
        if std::path::Path::new(&format!("{dir}/healed")).exists() {
            after += 1;
        }
    }
    println!("RESET CALLS {n}");
}

#[test]
fn a_reset_connection_only_makes_a_node_suspect_and_nothing_is_lost() {
    let net = Netns::create();
    let head_dir = NodeDir::new("reset-head");
    let b_dir = NodeDir::new("reset-b");
    let head = net.start_head(&head_dir, "10");
    let token = head_dir.token();
    join(
        &head,
        &b_dir,
        &token,
        &spare_node("2", &["--lease-ttl", "10"]),
        &net.exec(),
    );
    let work = head_dir.path.with_extension("work");
    std::fs::create_dir_all(&work).unwrap();
    let driver = spawn_driver("reset", &head.address, &token, &[("PARTITION_DIR", &work)]);
    let progress = || -> u64 {
        std::fs::read_to_string(work.join("progress"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_for("calls going on", || (progress() > 20).then_some(()));
    // Every TCP packet in or out of the namespace is answered with a reset: the sessions'
    // connections break (and new ones are refused) for a second and a half, far under the
    // 10 s lease. The duration is the fault injected, not a wait for anything.
    nft(&net, &["add", "table", "inet", "rrreset"]);
    for (chain, hook) in [("in", "input"), ("out", "output")] {
        nft(
            &net,
            &[
                "add",
                "chain",
                "inet",
                "rrreset",
                chain,
                &format!("{{ type filter hook {hook} priority 0; policy accept; }}"),
            ],
        );
        nft(
            &net,
            &[
                "add", "rule", "inet", "rrreset", chain, "iifname", "!=", "lo", "meta", "l4proto",
                "tcp", "reject", "with", "tcp", "reset",
            ]
            .map(|a| {
                if chain == "out" && a == "iifname" {
                    "oifname"
                } else {
                    a
                }
            }),
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nft(&net, &["delete", "table", "inet", "rrreset"]);
    std::fs::write(work.join("healed"), b"").unwrap();
    let out = driver.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(
        out.status.success() && text.contains("RESET CALLS"),
        "{text}"
    );
    // The driver calls the actor directly on the namespace's node: that connection broke
    // too, and the call in flight on it was handed to the head, which sent it again over its
    // own session (resumed), so no call failed.
    assert!(
        text.contains("a direct session to an actor's node ended"),
        "the direct session broke under the calls: {text}"
    );
    assert!(
        head.said("is suspect until"),
        "a session broke under the calls (else the test proved nothing)"
    );
    assert!(head.said("was made again"), "and was made again");
    assert!(
        !head.said("retrying") && !head.said("restarting") && !head.said("is gone"),
        "nothing was handled as lost"
    );
    let b = node_entry(&head.address, &head_dir, &token, &b_dir).expect("B in status");
    assert_eq!(
        (b["alive"].clone(), b["incarnation"].clone()),
        (true.into(), 1.into())
    );
    let _ = std::fs::remove_dir_all(&work);
    for dir in [&b_dir, &head_dir] {
        let _ = ray_rs(&["stop", "--temp-dir", dir.arg()], None, &[]);
    }
}
