//! Real clusters on this machine: the `ray-rs` binary, a real etcd (started by the head),
//! TLS and token handshakes over TCP on 127.0.0.1.

mod common;

use common::*;

#[test]
fn three_nodes_join_a_wrong_token_is_refused_a_killed_node_dies_and_stop_ends_everything() {
    let head_dir = NodeDir::new("head");
    let mut head = Head::start(
        &head_dir,
        &[
            "--node-ip",
            "127.0.0.1",
            "--num-cpus",
            "2",
            "--num-gpus",
            "0",
            "--resources",
            "ssd=1",
            "--lease-ttl",
            "2",
        ],
    );
    let token = head_dir.token();
    let meta = std::fs::metadata(head_dir.path.join("auth_token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(
        !head.said(&token),
        "the token must not appear in the head's output"
    );

    let a = NodeDir::new("a");
    let b = NodeDir::new("b");
    join(
        &head,
        &a,
        &token,
        &[
            "--num-cpus",
            "4",
            "--num-gpus",
            "1",
            "--resources",
            "zone_a=1,mem=2.5",
            "--lease-ttl",
            "2",
        ],
        &[],
    );
    join(
        &head,
        &b,
        &token,
        &[
            "--num-cpus",
            "8",
            "--num-gpus",
            "0",
            "--resources",
            "zone_b=1",
            "--lease-ttl",
            "2",
        ],
        &[],
    );

    let report = status(&head.address, &head_dir.path, &token, &[]);
    let first = nodes(&report);
    assert_eq!(first.len(), 3, "{report:#}");
    assert!(first.iter().all(|n| n["alive"] == true), "{report:#}");
    let ids: Vec<u64> = first
        .iter()
        .map(|n| n["node_id"].as_u64().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique);
    let head_node = first.iter().find(|n| n["is_head"] == true).unwrap();
    assert_eq!(head_node["address"], head.address.as_str());
    assert_eq!(head_node["resources_total"]["CPU"], 2.0);
    assert_eq!(head_node["resources_total"]["ssd"], 1.0);
    assert!(head_node["resources_total"].get("GPU").is_none());
    let with = |res: &str| {
        first
            .iter()
            .find(|n| n["resources_total"].get(res).is_some())
            .unwrap()
            .clone()
    };
    let node_a = with("zone_a");
    assert_eq!(node_a["resources_total"]["CPU"], 4.0);
    assert_eq!(node_a["resources_total"]["GPU"], 1.0);
    assert_eq!(node_a["resources_total"]["mem"], 2.5);
    assert_eq!(node_a["resources_used"]["CPU"], 0.0);
    let node_b = with("zone_b");
    assert_eq!(node_b["resources_total"]["CPU"], 8.0);
    // Any node answers status, verifying the node's certificate with the CA it received.
    let from_a = status(node_a["address"].as_str().unwrap(), &a.path, &token, &[]);
    assert_eq!(nodes_len(&from_a), 3);

    // A wrong token is refused, saying so on both sides, and nothing joins.
    let wrong = "00".repeat(32);
    let c = NodeDir::new("c");
    let out = ray_rs(
        &[
            "start",
            "--address",
            &head.address,
            "--port",
            "0",
            "--temp-dir",
            c.arg(),
        ],
        Some(&wrong),
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong cluster token"), "{stderr}");
    assert!(!stderr.contains(&wrong) && !stderr.contains(&token));
    wait_for("the head to report the refusal", || {
        head.said("wrong cluster token").then_some(())
    });
    let out = ray_rs(
        &["status", "--address", &head.address, "--temp-dir", c.arg()],
        Some(&wrong),
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong cluster token"));
    assert_eq!(
        nodes_len(&status(&head.address, &head_dir.path, &token, &[])),
        3
    );

    // SIGKILL node b: it is declared dead once its lease (2 s) expires.
    let b_pid = b.pid("ray-rs.pid").unwrap();
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(b_pid, libc::SIGKILL) }, 0);
    let b_id = node_b["node_id"].clone();
    let report = wait_for("node b to be dead", || {
        let r = status(&head.address, &head_dir.path, &token, &[]);
        let dead = nodes(&r)
            .iter()
            .any(|n| n["node_id"] == b_id && n["alive"] == false);
        dead.then_some(r)
    });
    assert_eq!(
        nodes(&report).iter().filter(|n| n["alive"] == true).count(),
        2
    );

    // stop ends every process: the daemons and the head's etcd.
    let etcd_pid = head_dir.pid("etcd.pid").unwrap();
    let a_pid = a.pid("ray-rs.pid").unwrap();
    let head_pid = head.child.id() as i32;
    assert!(alive(etcd_pid) && alive(a_pid) && alive(head_pid));
    assert!(
        ray_rs(&["stop", "--temp-dir", a.arg()], None, &[])
            .status
            .success()
    );
    assert!(!alive(a_pid));
    let report = wait_for("node a to leave", || {
        let r = status(&head.address, &head_dir.path, &token, &[]);
        (nodes(&r).iter().filter(|n| n["alive"] == true).count() == 1).then_some(r)
    });
    assert_eq!(
        nodes(&report).iter().find(|n| n["alive"] == true).unwrap()["is_head"],
        true
    );
    let out = ray_rs(&["stop", "--temp-dir", head_dir.arg()], None, &[]);
    assert!(out.status.success());
    assert!(head.wait_exit(), "the head did not exit");
    assert!(!alive(etcd_pid), "etcd survived stop");
    assert!(!alive(head_pid));
    assert!(!head_dir.path.join("ray-rs.pid").exists());
}

fn nodes_len(report: &serde_json::Value) -> usize {
    nodes(report).len()
}

#[test]
fn etcd_outlives_a_sigkilled_head_until_ray_rs_stop() {
    let dir = NodeDir::new("headloss-etcd");
    let mut head = Head::start(&dir, &["--node-ip", "127.0.0.1", "--num-cpus", "1"]);
    let etcd_pid = dir.pid("etcd.pid").unwrap();
    assert!(alive(etcd_pid));
    head.child.kill().unwrap();
    head.child.wait().unwrap();
    // The cluster's membership is not lost with the head's daemon (issue 11: the head is only
    // the first node plus etcd's location).
    assert!(alive(etcd_pid), "etcd goes on without the head's daemon");
    let out = ray_rs(&["stop", "--temp-dir", dir.arg()], None, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("ray-rs stop to end etcd", || {
        (!alive(etcd_pid)).then_some(())
    });
}

#[test]
fn input_errors_are_clear() {
    let dir = NodeDir::new("args");
    let out = ray_rs(
        &[
            "start",
            "--head",
            "--resources",
            "a=1,b=x",
            "--temp-dir",
            dir.arg(),
        ],
        None,
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`b=x`") && stderr.contains("name=amount"),
        "{stderr}"
    );
    let out = ray_rs(
        &["start", "--address", "nohost", "--temp-dir", dir.arg()],
        None,
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"));
    let out = ray_rs(&["start", "--temp-dir", dir.arg()], None, &[]);
    assert!(!out.status.success());
    let out = ray_rs(
        &["start", "--address", "127.0.0.1:1", "--temp-dir", dir.arg()],
        None,
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RAY_RS_AUTH_TOKEN"), "{stderr}");
    let out = ray_rs(
        &["start", "--address", "127.0.0.1:1", "--temp-dir", dir.arg()],
        Some("abc"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("expected 64 hexadecimal characters") && !stderr.contains("abc"),
        "{stderr}"
    );
    // No etcd on PATH: the error says how to install it.
    let out = std::process::Command::new(bin())
        .args([
            "start",
            "--head",
            "--block",
            "--port",
            "0",
            "--temp-dir",
            dir.arg(),
        ])
        .env("PATH", "/nonexistent")
        .env_remove("RAY_RS_AUTH_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apt-get install etcd-server"), "{stderr}");
    let out = ray_rs(&["stop", "--temp-dir", dir.arg()], None, &[]);
    assert!(out.status.success());
}

#[test]
fn a_node_joining_while_etcd_is_stopped_waits_and_joins_when_it_returns() {
    let head_dir = NodeDir::new("join-outage-head");
    let head = Head::start(
        &head_dir,
        &["--num-cpus", "1", "--num-gpus", "0", "--lease-ttl", "30"],
    );
    let token = head_dir.token();
    // The head is up and serving (status answers) before etcd stops.
    assert_eq!(
        nodes_len(&status(&head.address, &head_dir.path, &token, &[])),
        1
    );
    let etcd = head_dir.pid("etcd.pid").expect("the head's etcd");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(etcd, libc::SIGSTOP) };
    let b = NodeDir::new("join-outage-b");
    let (address, b_arg) = (head.address.clone(), b.arg().to_string());
    let joining = std::thread::spawn(move || {
        let args = [
            "start",
            "--address",
            &address,
            "--port",
            "0",
            "--temp-dir",
            &b_arg,
            "--num-cpus",
            "1",
        ];
        ray_rs(&args, Some(&token), &[])
    });
    // The outage outlasts the etcd client's 10 s timeout, so the join sees etcd fail and
    // waits (the duration is the fault injected, not a wait for anything).
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert!(!joining.is_finished(), "the join waits for etcd");
    // SAFETY: as above.
    unsafe { libc::kill(etcd, libc::SIGCONT) };
    let out = joining.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = head_dir.token();
    let report = status(&head.address, &head_dir.path, &token, &[]);
    assert_eq!(nodes_len(&report), 2, "{report:#}");
    let log: String = std::fs::read_dir(b.path.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        log.contains("waiting for etcd"),
        "the node said it waited: {log}"
    );
}

/// A stranger (no token) who opens connections and says nothing does not block the node's
/// listener: a connection past the 64 handshakes under way ends the oldest of them, so a
/// client's request still gets through (before, they queued behind the silent ones, 5 s each,
/// and `status` timed out in its handshake).
#[test]
fn connections_that_say_nothing_do_not_block_the_nodes_listener() {
    let dir = NodeDir::new("silent-strangers");
    let head = Head::start(&dir, &["--node-ip", "127.0.0.1", "--num-cpus", "1"]);
    let silent: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&head.address).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let report = status(&head.address, &dir.path, &dir.token(), &[]);
    assert_eq!(nodes_len(&report), 1);
    eprintln!(
        "status answered in {:?} with {} silent connections open",
        started.elapsed(),
        silent.len()
    );
    drop(silent);
}

#[test]
fn a_direct_session_with_a_ticket_its_home_node_never_sent_is_refused() {
    let head_dir = NodeDir::new("ticket-head");
    let head = Head::start(&head_dir, &["--num-cpus", "1", "--num-gpus", "0"]);
    let token = head_dir.token();
    let a_dir = NodeDir::new("ticket-a");
    join(
        &head,
        &a_dir,
        &token,
        &["--num-cpus", "1", "--num-gpus", "0"],
        &[],
    );
    let report = wait_for("two live nodes", || {
        let report = status(&head.address, &head_dir.path, &token, &[]);
        (nodes_len(&report) == 2).then_some(report)
    });
    let cluster_id = report["cluster_id"].as_str().unwrap().to_string();
    let all = nodes(&report);
    let a = all.iter().find(|n| n["is_head"] == false).expect("A");
    let a_addr: std::net::SocketAddr = a["address"].as_str().unwrap().parse().unwrap();
    let head_node = all.iter().find(|n| n["is_head"] == true).expect("the head");
    let head_id = head_node["node_id"].as_u64().unwrap() as u32;
    let ca = std::fs::read(ray_cli::pki::TlsFiles::under(&head_dir.path).ca).unwrap();
    let tls = ray_net::client_config(Some(&ca), None).unwrap();
    let auth = ray_net::AuthToken::from_env_or_file(&head_dir.path.join("auth_token")).unwrap();
    let handshake = ray_net::HandshakeConfig::new(auth, None, ray_net::Role::Driver, "forger");
    // Anyone with the cluster token can reach A as a driver; a direct session there also
    // takes a ticket the named home node (the head) sent A for that driver and actor.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(async {
        let mut conn = ray_net::connect(a_addr, tls, &handshake).await.unwrap();
        ray_core::__node::direct_hello(&mut conn.stream, &cluster_id, head_id, [9; 32])
            .await
            .unwrap()
    });
    let why = answer.expect_err("refused");
    assert!(why.contains("no valid ticket"), "{why}");
    assert!(!why.contains("9, 9"), "the ticket is not repeated: {why}");
    let _ = ray_rs(&["stop", "--temp-dir", a_dir.arg()], None, &[]);
    let _ = ray_rs(&["stop", "--temp-dir", head_dir.arg()], None, &[]);
}
