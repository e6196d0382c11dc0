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

/// The driver. A no-op unless `RAY_CLUSTER_DRIVER` is set.
#[test]
fn driver_main() {
    if std::env::var(MODE).is_err() {
        return;
    }
    ray::init(ray::Config::default()).expect("joins the cluster");
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
    fn create() -> Netns {
        let pid = std::process::id();
        let net = 20 + pid % 200;
        let n = Netns {
            name: format!("rrs{pid}"),
            host_if: format!("rrh{pid}"),
            host_ip: format!("10.213.{net}.1"),
            ns_ip: format!("10.213.{net}.2"),
        };
        n.remove();
        let ns_if = format!("rrn{pid}");
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
    assert_eq!(
        ray_net::token::effective_uid(),
        0,
        "this test creates network namespaces and must run as root (CI does)"
    );
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
