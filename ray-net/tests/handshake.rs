//! Real TCP on 127.0.0.1, real TLS with a CA generated per test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ray_net::{
    AuthToken, HANDSHAKE_MAX_FRAME, HandshakeConfig, NetError, PROTOCOL_VERSION, Refusal, Role,
    TlsIdentity, accept, client_config, connect, read_frame, server_config, write_frame,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

struct Pki {
    ca_pem: String,
    server: TlsIdentity,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ray-net test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: TlsIdentity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap(),
    }
}

fn cfg(token: &AuthToken, cluster: Option<&str>, role: Role) -> HandshakeConfig {
    HandshakeConfig::new(token.clone(), cluster.map(str::to_string), role, "test")
}

/// Starts a server accepting one connection; returns its address and the accept result.
async fn serve_one(
    pki: &Pki,
    config: HandshakeConfig,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<Result<ray_net::Connection, NetError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = server_config(&pki.server).unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, tls, &config).await
    });
    (addr, task)
}

#[tokio::test]
async fn good_token_is_accepted_with_and_without_the_ca() {
    let pki = pki();
    let token = AuthToken::generate().unwrap();
    for with_ca in [true, false] {
        let (addr, server) = serve_one(&pki, cfg(&token, Some("c1"), Role::Node)).await;
        let ca = with_ca.then_some(pki.ca_pem.as_bytes());
        let tls = client_config(ca, None).unwrap();
        let mut client = connect(addr, tls, &cfg(&token, None, Role::Driver))
            .await
            .unwrap();
        assert_eq!(client.peer.cluster_id.as_deref(), Some("c1"));
        assert_eq!(client.peer.role, Role::Node);
        assert_eq!(client.peer.protocol_version, PROTOCOL_VERSION);
        let mut server = server.await.unwrap().unwrap();
        assert_eq!(server.peer.role, Role::Driver);
        assert_eq!(server.peer.cluster_id, None);
        client.send(b"ping").await.unwrap();
        assert_eq!(server.recv(16).await.unwrap(), b"ping");
        server.send(b"pong").await.unwrap();
        assert_eq!(client.recv(16).await.unwrap(), b"pong");
    }
}

#[tokio::test]
async fn wrong_token_is_refused_on_both_sides() {
    let pki = pki();
    let (addr, server) = serve_one(
        &pki,
        cfg(&AuthToken::generate().unwrap(), Some("c1"), Role::Node),
    )
    .await;
    let tls = client_config(None, None).unwrap();
    let wrong = AuthToken::generate().unwrap();
    let err = connect(addr, tls, &cfg(&wrong, None, Role::Driver))
        .await
        .unwrap_err();
    assert_eq!(err.refusal(), Some(&Refusal::WrongToken), "{err}");
    assert!(matches!(err, NetError::RefusedByPeer { .. }));
    assert!(err.to_string().contains("wrong cluster token"), "{err}");
    assert!(!err.to_string().contains(&wrong.expose_text()));
    let server_err = server.await.unwrap().unwrap_err();
    assert!(matches!(
        server_err,
        NetError::RefusedPeer {
            reason: Refusal::WrongToken,
            ..
        }
    ));
    assert!(
        server_err.to_string().contains("wrong cluster token"),
        "{server_err}"
    );
}

#[tokio::test]
async fn wrong_version_and_cluster_are_refused() {
    let pki = pki();
    let token = AuthToken::generate().unwrap();
    let (addr, server) = serve_one(&pki, cfg(&token, Some("c1"), Role::Node)).await;
    let mut client_cfg = cfg(&token, None, Role::Node);
    client_cfg.protocol_version = PROTOCOL_VERSION + 2;
    let err = connect(addr, client_config(None, None).unwrap(), &client_cfg)
        .await
        .unwrap_err();
    let expected = format!(
        "protocol version {}, expected {PROTOCOL_VERSION}",
        PROTOCOL_VERSION + 2
    );
    assert!(err.to_string().contains(&expected), "{err}");
    let server_err = server.await.unwrap().unwrap_err();
    assert!(server_err.to_string().contains(&expected), "{server_err}");

    let (addr, server) = serve_one(&pki, cfg(&token, Some("c1"), Role::Node)).await;
    // A cluster id with a line break: quoted and escaped, so it cannot forge a log line.
    let err = connect(
        addr,
        client_config(None, None).unwrap(),
        &cfg(&token, Some("c2\n[fake] accepted"), Role::Cli),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("different cluster id"), "{err}");
    let logged = server.await.unwrap().unwrap_err().to_string();
    assert!(logged.contains("different cluster id"), "{logged}");
    assert!(
        logged.contains(r#""c2\n[fake] accepted""#) && !logged.contains('\n'),
        "{logged}"
    );
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_by_tls() {
    let pki_a = pki();
    let pki_b = pki();
    let token = AuthToken::generate().unwrap();
    let (addr, _server) = serve_one(&pki_a, cfg(&token, Some("c1"), Role::Node)).await;
    let tls = client_config(Some(pki_b.ca_pem.as_bytes()), None).unwrap();
    let err = connect(addr, tls, &cfg(&token, None, Role::Node))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS handshake"), "{err}");
}

/// A raw TLS client that speaks no handshake, to play a hostile peer.
async fn raw_tls(addr: SocketAddr) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(client_config(None, None).unwrap())
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn oversize_pre_auth_frame_is_dropped_at_once() {
    let pki = pki();
    let token = AuthToken::generate().unwrap();
    let (addr, server) = serve_one(&pki, cfg(&token, Some("c1"), Role::Node)).await;
    let mut raw = raw_tls(addr).await;
    let start = Instant::now();
    raw.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    raw.flush().await.unwrap();
    let err = server.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            NetError::FrameTooLarge {
                len: 4_294_967_295,
                max: HANDSHAKE_MAX_FRAME
            }
        ),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn slow_pre_auth_peers_are_dropped_within_the_timeout() {
    let pki = pki();
    let token = AuthToken::generate().unwrap();
    let mut config = cfg(&token, Some("c1"), Role::Node);
    config.timeout = Duration::from_millis(800);
    // A peer that sends half a header after TLS, then nothing.
    let (addr, server) = serve_one(&pki, config.clone()).await;
    let mut raw = raw_tls(addr).await;
    let start = Instant::now();
    raw.write_all(&[10, 0]).await.unwrap();
    raw.flush().await.unwrap();
    let err = server.await.unwrap().unwrap_err();
    assert!(matches!(err, NetError::HandshakeTimeout { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // A peer that opens TCP and never starts TLS.
    let (addr, server) = serve_one(&pki, config).await;
    let _tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let err = server.await.unwrap().unwrap_err();
    assert!(matches!(err, NetError::HandshakeTimeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_4_gib_frame_announcement_does_not_allocate_it() {
    let pki = pki();
    let token = AuthToken::generate().unwrap();
    let (addr, server) = serve_one(&pki, cfg(&token, Some("c1"), Role::Node)).await;
    let mut client = connect(
        addr,
        client_config(None, None).unwrap(),
        &cfg(&token, None, Role::Driver),
    )
    .await
    .unwrap();
    let mut server = server.await.unwrap().unwrap();
    let before = rss_bytes();
    // Announce 4 GiB - 1 and send 1 MiB of it, then stall.
    client
        .stream
        .write_all(&u32::MAX.to_le_bytes())
        .await
        .unwrap();
    client.stream.write_all(&vec![0u8; 1 << 20]).await.unwrap();
    client.stream.flush().await.unwrap();
    let reader = tokio::spawn(async move { read_frame(&mut server.stream, usize::MAX).await });
    // Wait (on an event, not a fixed sleep) until the reader has consumed what was sent: the
    // client's socket send queue drains. Poll RSS meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut peak = rss_bytes();
    loop {
        peak = peak.max(rss_bytes());
        if reader.is_finished() || Instant::now() > deadline {
            break;
        }
        let queued = outq(client.stream.get_ref().0);
        if queued == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    peak = peak.max(rss_bytes());
    assert!(
        !reader.is_finished(),
        "the reader should still wait for the rest of the frame"
    );
    assert!(
        peak.saturating_sub(before) < 64 << 20,
        "RSS grew by {} MiB",
        (peak - before) >> 20
    );
    reader.abort();
    // The maximum is enforced on announcement after the handshake too.
    write_frame(&mut client.stream, &[]).await.unwrap();
}

/// Bytes in a TCP socket's send queue not yet acknowledged by the peer.
fn outq(stream: &tokio::net::TcpStream) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int to the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0);
    n
}

#[tokio::test]
async fn post_auth_frames_respect_the_maximum() {
    let pki = pki();
    let token = AuthToken::generate().unwrap();
    let (addr, server) = serve_one(&pki, cfg(&token, Some("c1"), Role::Node)).await;
    let mut client = connect(
        addr,
        client_config(Some(pki.ca_pem.as_bytes()), None).unwrap(),
        &cfg(&token, Some("c1"), Role::Node),
    )
    .await
    .unwrap();
    let mut server = server.await.unwrap().unwrap();
    client.send(&vec![1u8; 5000]).await.unwrap();
    let err = server.recv(4999).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::FrameTooLarge {
                len: 5000,
                max: 4999
            }
        ),
        "{err}"
    );
}

/// A driver's connection and the node's end of it, past the handshake.
async fn connected() -> (ray_net::Connection, ray_net::Connection) {
    let pki = pki();
    let token = AuthToken::generate().unwrap();
    let (addr, server) = serve_one(&pki, cfg(&token, Some("c1"), Role::Node)).await;
    let tls = client_config(Some(pki.ca_pem.as_bytes()), None).unwrap();
    let client = connect(addr, tls, &cfg(&token, None, Role::Driver))
        .await
        .unwrap();
    (client, server.await.unwrap().unwrap())
}

#[tokio::test]
async fn a_blocking_writer_fails_once_the_peer_reads_nothing_for_its_stall_limit() {
    // The server holds its end open and never reads.
    let (client, _server) = connected().await;
    let (_reader, mut writer) = ray_net::into_blocking(client.stream).unwrap();
    let limit = Duration::from_millis(500);
    writer.set_stall_limit(Some(limit)).unwrap();
    let start = Instant::now();
    // Far more than the two sockets' buffers hold.
    let err = std::io::Write::write_all(&mut writer, &vec![7u8; 256 << 20]).unwrap_err();
    let waited = start.elapsed();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        err.to_string()
            .contains("the peer accepted under 64 KiB in 0.5 s"),
        "{err}"
    );
    assert!(
        waited >= limit && waited < Duration::from_secs(60),
        "{waited:?}"
    );
    // The stream is cut inside a record: later writes fail at once, and closing does not block.
    let err = std::io::Write::write_all(&mut writer, b"more").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    let start = Instant::now();
    writer.close();
    assert!(start.elapsed() < limit, "{:?}", start.elapsed());
}

#[tokio::test]
async fn a_blocking_writer_within_its_stall_limit_delivers_everything_to_a_slow_reader() {
    let (client, server) = connected().await;
    // The server reads 1 MiB frames, pausing 100 ms before each: slower than the writer,
    // but never 2 s without reading.
    let reading = tokio::spawn(async move {
        let mut server = server;
        let mut total = 0usize;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match server.recv(2 << 20).await {
                Ok(frame) => total += frame.len(),
                Err(_) => return total,
            }
        }
    });
    let (_reader, mut writer) = ray_net::into_blocking(client.stream).unwrap();
    writer
        .set_stall_limit(Some(Duration::from_secs(2)))
        .unwrap();
    let written = tokio::task::spawn_blocking(move || {
        let frame = vec![3u8; 1 << 20];
        for _ in 0..32 {
            // The ray-net frame: a 4-byte little-endian length, then the bytes.
            let mut bytes = (frame.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&frame);
            std::io::Write::write_all(&mut writer, &bytes)?;
        }
        writer.close();
        std::io::Result::Ok(())
    })
    .await
    .unwrap();
    written.unwrap();
    assert_eq!(reading.await.unwrap(), 32 << 20);
}
