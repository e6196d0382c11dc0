//! The etcd client and the membership layer against a real etcd (started with the same code
//! the head uses: TLS with client certificates from a cluster CA made for the test).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ray_cli::etcd::{Etcd, WatchEvent};
use ray_cli::etcd_server::EtcdServer;
use ray_cli::membership::{self, Membership, NodeEvent, NodeRecord};
use ray_cli::pki::{ClusterCa, TlsFiles};

use common::{NodeDir, WAIT, require_etcd};

struct Fixture {
    _dir: NodeDir,
    server: EtcdServer,
    etcd: Etcd,
    tls: Arc<rustls::ClientConfig>,
}

fn etcd() -> Fixture {
    require_etcd();
    let dir = NodeDir::new("etcd-api");
    let node_dir = ray_cli::tempdir::NodeDir::new(&dir.path);
    ray_cli::tempdir::ensure_private_dir(&dir.path).unwrap();
    ray_cli::tempdir::ensure_private_dir(&node_dir.logs()).unwrap();
    let ca = ClusterCa::generate("test").unwrap();
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let id = ca.issue_local(&[local], "test node").unwrap();
    let files = TlsFiles::under(&dir.path);
    files
        .write(ca.cert_pem(), &id.cert_pem, &id.key_pem)
        .unwrap();
    let identity = ray_net::TlsIdentity::from_files(&files.cert, &files.key).unwrap();
    let tls = ray_net::client_config(Some(ca.cert_pem().as_bytes()), Some(&identity)).unwrap();
    let (server, etcd) = EtcdServer::start(&node_dir, local, &files, tls.clone(), WAIT).unwrap();
    Fixture {
        _dir: dir,
        server,
        etcd,
        tls,
    }
}

fn recv(w: &ray_cli::etcd::Watcher) -> WatchEvent {
    w.events.recv_timeout(WAIT).expect("a watch event")
}

#[test]
fn kv_compare_and_swap_counters_and_watch_with_reconnect() {
    let f = etcd();
    let e = &f.etcd;
    // A client without a certificate from the cluster CA is refused by etcd.
    let anonymous = ray_net::client_config(None, None).unwrap();
    let port = f.server.client_url.rsplit(':').next().unwrap();
    let no_cert = Etcd::new(&format!("https://127.0.0.1:{port}"), Some(anonymous)).unwrap();
    assert!(no_cert.get(b"x").is_err());

    assert!(e.create_if_absent(b"/t/job/1", b"a", 0).unwrap());
    assert!(!e.create_if_absent(b"/t/job/1", b"b", 0).unwrap());
    let kv = e.get(b"/t/job/1").unwrap().unwrap();
    assert_eq!(kv.value, b"a");
    assert!(
        !e.compare_and_swap(b"/t/job/1", kv.mod_revision + 100, b"c", 0)
            .unwrap()
    );
    assert!(
        e.compare_and_swap(b"/t/job/1", kv.mod_revision, b"c", 0)
            .unwrap()
    );
    assert_eq!(e.get(b"/t/job/1").unwrap().unwrap().value, b"c");
    assert_eq!(e.delete(b"/t/job/1").unwrap(), 1);
    assert!(e.get(b"/t/job/1").unwrap().is_none());

    // Counters are unique under contention.
    let ids = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (e, ids) = (e.clone(), ids.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let id = e.increment(b"/t/counter").unwrap();
                    ids.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let mut ids = ids.lock().unwrap().clone();
    ids.sort();
    assert_eq!(ids, (1..=40).collect::<Vec<u64>>());

    // Watch through a proxy whose connections the test cuts: the watcher reconnects and
    // resumes after the last revision it delivered, losing and repeating nothing.
    let proxy = Proxy::start(port.parse().unwrap());
    let via_proxy = Etcd::new(
        &format!("https://127.0.0.1:{}", proxy.port),
        Some(f.tls.clone()),
    )
    .unwrap();
    let (_, rev) = e.get_prefix(b"/t/w/").unwrap();
    let w = via_proxy.watch_prefix(b"/t/w/", rev + 1);
    e.put(b"/t/w/a", b"1", 0).unwrap();
    assert!(matches!(recv(&w), WatchEvent::Put(kv) if kv.key == b"/t/w/a" && kv.value == b"1"));
    proxy.cut();
    // Changes made while the watcher is disconnected arrive after it reconnects.
    e.put(b"/t/w/b", b"2", 0).unwrap();
    e.delete(b"/t/w/a").unwrap();
    e.put(b"/t/other", b"x", 0).unwrap();
    assert!(matches!(recv(&w), WatchEvent::Put(kv) if kv.key == b"/t/w/b"));
    assert!(matches!(recv(&w), WatchEvent::Delete { key, .. } if key == b"/t/w/a"));
    e.put(b"/t/w/c", b"3", 0).unwrap();
    assert!(matches!(recv(&w), WatchEvent::Put(kv) if kv.key == b"/t/w/c"));
    assert!(
        proxy.connections() >= 2,
        "the watcher should have reconnected"
    );
    w.stop();
    // From an old revision, history is replayed.
    let w = e.watch_prefix(b"/t/w/", rev + 1);
    assert!(matches!(recv(&w), WatchEvent::Put(kv) if kv.key == b"/t/w/a"));
}

#[test]
fn membership_lease_publisher_and_incarnations() {
    let f = etcd();
    let e = &f.etcd;
    let cluster = "c1";
    let id = membership::allocate_node_id(e, cluster).unwrap();
    assert_eq!(id, 1);
    assert_eq!(membership::allocate_node_id(e, cluster).unwrap(), 2);
    let total: BTreeMap<String, f64> = [("CPU".to_string(), 4.0)].into();
    let record = NodeRecord {
        node_id: id,
        address: "127.0.0.1:1".into(),
        is_head: false,
        resources_total: total.clone(),
        resources_available: total.clone(),
        incarnation: 1,
        start_time_ms: membership::now_ms(),
        pid: std::process::id(),
        activity: Default::default(),
    };
    let m =
        Membership::register(e.clone(), cluster, record.clone(), Duration::from_secs(2)).unwrap();
    let (nodes, rev) = membership::list_nodes(e, cluster).unwrap();
    assert_eq!(nodes, vec![record.clone()]);
    let w = membership::watch_nodes(e, cluster, rev + 1);

    // The lease is kept alive well past its TTL.
    let lease = m.lease_id();
    let kept_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < kept_until {
        assert!(e.lease_keep_alive(lease).is_ok());
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(membership::list_nodes(e, cluster).unwrap().0.len(), 1);
    }

    // Publishing 50 values at once writes at most a couple of times; the last value wins.
    let publisher = m.publisher();
    let started = Instant::now();
    for i in 0..50 {
        publisher.publish(
            [("CPU".to_string(), f64::from(i % 5))].into(),
            Default::default(),
        );
    }
    publisher.publish([("CPU".to_string(), 1.5)].into(), Default::default());
    let mut writes = 0;
    let last = loop {
        let ev = membership::node_event(cluster, recv_timeout(&w)).unwrap();
        if let NodeEvent::Up(n) = ev {
            writes += 1;
            if n.resources_available["CPU"] == 1.5 {
                break n;
            }
        }
    };
    assert!(writes <= 2, "{writes} writes for 51 updates");
    assert_eq!(last.resources_total, total);
    // A second burst is delayed to about a second after the previous write.
    publisher.publish([("CPU".to_string(), 0.5)].into(), Default::default());
    loop {
        if let Some(NodeEvent::Up(n)) = membership::node_event(cluster, recv_timeout(&w))
            && n.resources_available["CPU"] == 0.5
        {
            break;
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Losing the lease (as when the node is cut off past its TTL) deletes the record; the
    // keep-alive thread re-registers it as a new incarnation.
    e.lease_revoke(m.lease_id()).unwrap();
    let mut saw_down = false;
    loop {
        match membership::node_event(cluster, recv_timeout(&w)) {
            Some(NodeEvent::Down { node_id }) => {
                assert_eq!(node_id, id);
                saw_down = true;
            }
            Some(NodeEvent::Up(n)) if n.incarnation == 2 => break,
            _ => {}
        }
    }
    assert!(saw_down);
    assert_eq!(m.record().incarnation, 2);
    assert_ne!(m.lease_id(), lease);

    // Shutting down revokes the lease: the record goes at once.
    m.shutdown();
    loop {
        if let Some(NodeEvent::Down { .. }) = membership::node_event(cluster, recv_timeout(&w)) {
            break;
        }
    }
    assert!(membership::list_nodes(e, cluster).unwrap().0.is_empty());
}

fn recv_timeout(w: &ray_cli::etcd::Watcher) -> WatchEvent {
    w.events.recv_timeout(WAIT).expect("a watch event")
}

/// A TCP forwarder on 127.0.0.1 whose connections can be cut.
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<Mutex<usize>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (c, a) = (conns.clone(), accepted.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                *a.lock().unwrap() += 1;
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            port,
            conns,
            accepted,
        }
    }

    fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn connections(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}
