//! The limits under the cluster transfer figures (`ray-bench --loopback`): one TCP connection
//! on 127.0.0.1, plain and with TLS 1.3 as the cluster's connections have it (ray-net's
//! `server_config` / `client_config`, ring, a self-signed certificate made here with rcgen).
//!
//! Round trips: the floor under a synchronous call between two processes. A client thread
//! writes a 64-byte message and waits for the server thread's 64-byte answer, one at a time,
//! over one connection (plain and TLS, as above): a call from one process to another and back
//! costs at least one such round trip (two thread wake-ups), whatever the design. Printed as
//! round trips per second, comparable with the sync call rates, and the median in µs.
//!
//! Each round, a client thread writes `bytes` in 1 MiB writes and the server thread reads them
//! all and answers one byte; the rate is `bytes` over the client's time from its first write to
//! that answer (the TLS handshake is done before the clock starts). Plain blocking sockets and
//! rustls' blocking `StreamOwned`, one thread on each side, so on 2 cores the two ends share the
//! machine with nothing else.

use crate::{Bench, mean_std};
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

/// The size of a round trip's message and its answer.
const PING: usize = 64;

/// Answers each 64-byte message with one of its own until the client closes.
fn echo(mut s: impl Read + Write) {
    let mut buf = [0u8; PING];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).and_then(|_| s.flush()).is_err() {
            return;
        }
    }
}

/// Times `calls` round trips one at a time; returns each one's seconds.
fn ping(mut s: impl Read + Write, calls: usize) -> Vec<f64> {
    let msg = [0x5au8; PING];
    let mut back = [0u8; PING];
    (0..calls)
        .map(|_| {
            let start = Instant::now();
            s.write_all(&msg).expect("writing on the client");
            s.flush().expect("flushing the client");
            s.read_exact(&mut back).expect("the server's answer");
            start.elapsed().as_secs_f64()
        })
        .collect()
}

type Tls = (
    std::sync::Arc<rustls::ServerConfig>,
    std::sync::Arc<rustls::ClientConfig>,
);

/// A stream both read and written.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Opens a fresh connection (with TLS when `tls` carries the server and client configurations),
/// runs `serve` on the server thread's end and `measure` on this thread's, and returns what
/// `measure` did once both ends are done.
fn connected<R>(
    tls: Option<&Tls>,
    serve: impl FnOnce(&mut dyn ReadWrite) + Send + 'static,
    measure: impl FnOnce(&mut dyn ReadWrite) -> R,
) -> R {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("the listener's address");
    let server_tls = tls.map(|(s, _)| s.clone());
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().expect("accept");
        tcp.set_nodelay(true).ok();
        match server_tls {
            None => serve(&mut tcp),
            Some(cfg) => {
                let conn = ServerConnection::new(cfg).expect("a TLS server connection");
                serve(&mut StreamOwned::new(conn, tcp))
            }
        }
    });
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).ok();
    // Each end is closed before the server is joined: an echoing server waits for it.
    let measured = match tls {
        None => {
            let measured = measure(&mut tcp);
            drop(tcp);
            measured
        }
        Some((_, cfg)) => {
            let name = ServerName::try_from("127.0.0.1").expect("a server name");
            let mut conn = ClientConnection::new(cfg.clone(), name).expect("a TLS client");
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).expect("the TLS handshake");
            }
            let mut s = StreamOwned::new(conn, tcp);
            let measured = measure(&mut s);
            s.conn.send_close_notify();
            let _ = s.flush();
            measured
        }
    };
    server.join().expect("the server thread");
    measured
}

/// One stream of `bytes` over a fresh connection; its seconds.
fn stream_round(bytes: u64, tls: Option<&Tls>) -> f64 {
    connected(tls, move |s| sink(s, bytes), |s| source(s, bytes))
}

/// `calls` round trips over a fresh connection; each one's seconds.
fn ping_round(calls: usize, tls: Option<&Tls>) -> Vec<f64> {
    connected(tls, |s| echo(s), |s| ping(s, calls))
}

/// Measures plain TCP and TLS over loopback: bandwidth in GB/s (10^9 bytes), then 64-byte round
/// trips per second.
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
    let tls: Tls = (server, client);

    let (warmup, rounds) = if quick { (1, 3) } else { (1, 5) };
    for (name, bytes, tls) in [
        ("loopback TCP one connection", 4u64 << 30, None),
        ("loopback TLS 1.3 one connection", 2u64 << 30, Some(&tls)),
    ] {
        if !bench.wanted(name) {
            continue;
        }
        for _ in 0..warmup {
            stream_round(bytes / 4, tls);
        }
        let stats: Vec<f64> = (0..rounds)
            .map(|_| bytes as f64 / stream_round(bytes, tls) / 1e9)
            .collect();
        let (mean, std) = mean_std(&stats);
        println!("{name} GB/s {mean:.3} +- {std:.3}");
        bench.results.push((name.to_string(), mean, std));
    }

    let calls = if quick { 5_000 } else { 20_000 };
    for (name, tls) in [
        ("loopback TCP round trips (64 B, one at a time)", None),
        (
            "loopback TLS 1.3 round trips (64 B, one at a time)",
            Some(&tls),
        ),
    ] {
        if !bench.wanted(name) {
            continue;
        }
        ping_round(calls / 10, tls);
        let mut all = Vec::new();
        let stats: Vec<f64> = (0..rounds)
            .map(|_| {
                let secs = ping_round(calls, tls);
                let rate = secs.len() as f64 / secs.iter().sum::<f64>();
                all.extend(secs);
                rate
            })
            .collect();
        all.sort_by(f64::total_cmp);
        let (mean, std) = mean_std(&stats);
        let p50 = all.get(all.len() / 2).copied().unwrap_or(0.0) * 1e6;
        println!("{name} per second {mean:.2} +- {std:.2} (p50 {p50:.0} µs)");
        bench.results.push((name.to_string(), mean, std));
    }
}
