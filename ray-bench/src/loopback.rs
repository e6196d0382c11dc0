//! The limits under the cluster transfer figures (`ray-bench --loopback`): one TCP connection
//! on 127.0.0.1, plain and with TLS 1.3 as the cluster's connections have it (ray-net's
//! `server_config` / `client_config`, ring, a self-signed certificate made here with rcgen).
//!
//! Each round, a client thread writes `bytes` in 1 MiB writes and the server thread reads them
//! all and answers one byte; the rate is `bytes` over the client's time from its first write to
//! that answer (the TLS handshake is done before the clock starts). Plain blocking sockets and
//! rustls' blocking `StreamOwned`, one thread on each side, so on 2 cores the two ends share the
//! machine with nothing else.

use crate::Bench;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const WRITE: usize = 1 << 20;

/// Reads exactly `bytes` bytes from `r`, then writes one byte back.
fn sink(mut s: impl Read + Write, bytes: u64) {
    let mut buf = vec![0u8; WRITE];
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).expect("reading on the server");
        assert!(n > 0, "the client closed early");
        got += n as u64;
    }
    s.write_all(b"k").expect("the answer");
    s.flush().expect("flushing the answer");
}

/// Writes `bytes` bytes to `s` and waits for the one-byte answer; returns the seconds taken.
fn source(mut s: impl Read + Write, bytes: u64) -> f64 {
    let buf = vec![0x5au8; WRITE];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(WRITE as u64) as usize;
        s.write_all(&buf[..n]).expect("writing on the client");
        sent += n as u64;
    }
    s.flush().expect("flushing the client");
    let mut k = [0u8; 1];
    s.read_exact(&mut k).expect("the server's answer");
    start.elapsed().as_secs_f64()
}

/// One round over a fresh connection; `tls` carries the server and client configurations.
fn round(
    bytes: u64,
    tls: Option<&(
        std::sync::Arc<rustls::ServerConfig>,
        std::sync::Arc<rustls::ClientConfig>,
    )>,
) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("the listener's address");
    let server_tls = tls.map(|(s, _)| s.clone());
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_nodelay(true).ok();
        match server_tls {
            None => sink(tcp, bytes),
            Some(cfg) => {
                let conn = ServerConnection::new(cfg).expect("a TLS server connection");
                sink(StreamOwned::new(conn, tcp), bytes)
            }
        }
    });
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).ok();
    let secs = match tls {
        None => source(tcp, bytes),
        Some((_, cfg)) => {
            let name = ServerName::try_from("127.0.0.1").expect("a server name");
            let mut conn = ClientConnection::new(cfg.clone(), name).expect("a TLS client");
            let mut tcp = tcp;
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).expect("the TLS handshake");
            }
            source(StreamOwned::new(conn, tcp), bytes)
        }
    };
    server.join().expect("the server thread");
    secs
}

/// Measures plain TCP and TLS over loopback and records both in GB/s (10^9 bytes).
pub fn run(bench: &mut Bench, quick: bool) {
    let key = rcgen::KeyPair::generate().expect("a key pair");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("certificate parameters")
        .self_signed(&key)
        .expect("a self-signed certificate");
    let identity =
        ray_net::TlsIdentity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .expect("the identity");
    let server = ray_net::server_config(&identity).expect("the server configuration");
    let client =
        ray_net::client_config(Some(cert.pem().as_bytes()), None).expect("the client config");
    let tls = (server, client);

    let (warmup, rounds) = if quick { (1, 3) } else { (1, 5) };
    for (name, bytes, tls) in [
        ("loopback TCP one connection", 4u64 << 30, None),
        ("loopback TLS 1.3 one connection", 2u64 << 30, Some(&tls)),
    ] {
        if !bench.wanted(name) {
            continue;
        }
        for _ in 0..warmup {
            round(bytes / 4, tls);
        }
        let stats: Vec<f64> = (0..rounds)
            .map(|_| bytes as f64 / round(bytes, tls) / 1e9)
            .collect();
        let mean = stats.iter().sum::<f64>() / stats.len() as f64;
        let std = (stats.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / stats.len() as f64)
            .sqrt();
        println!("{name} GB/s {mean:.3} +- {std:.3}");
        bench.results.push((name.to_string(), mean, std));
    }
}
