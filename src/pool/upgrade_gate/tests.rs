//! Unit tests of the upgrade gate: the hold (reads held until the second flush, released by the
//! safety timeout), the connector (timeouts, socket options, the fd) and the gated peer.

use super::*;
use futures_util::FutureExt;
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::http::v1::client::HttpSession;
use pingora_core::upstreams::peer::Peer;
use pingora_http::RequestHeader;
use std::io::Write;

#[test]
fn reads_pass_until_the_gate_is_armed_and_flushes_before_arming_do_not_count() {
    let mut hold = Hold::default();
    assert!(!hold.holds_reads(false));
    // The TLS handshake flushes before the gate is armed.
    assert!(!hold.flushed(false));
    assert!(!hold.flushed(false));
    assert!(hold.holds_reads(true));
    assert!(!hold.flushed(true), "the request header");
    assert!(hold.holds_reads(true));
    assert!(hold.flushed(true), "the end of the body releases reads");
    assert!(!hold.holds_reads(true));
    assert!(!hold.flushed(true), "released once");
    assert!(!hold.holds_reads(true));
}

#[test]
fn a_released_hold_lets_reads_pass_for_good() {
    let mut hold = Hold::default();
    hold.release();
    assert!(!hold.holds_reads(true));
    assert!(!hold.flushed(true));
    assert!(!hold.holds_reads(true));
}

#[test]
fn each_upgrade_peer_has_its_own_reuse_hash_and_is_not_kept_in_the_pool() {
    let mut plain = HttpPeer::new("127.0.0.1:9001", false, String::new());
    plain.options.connection_timeout = Some(Duration::from_millis(700));
    let (mut a, mut b) = (plain.clone(), plain.clone());
    let _ = gate_peer(&mut a);
    let _ = gate_peer(&mut b);
    assert_ne!(a.reuse_hash(), plain.reuse_hash());
    assert_ne!(a.reuse_hash(), b.reuse_hash());
    assert_eq!(a.options.idle_timeout, Some(Duration::ZERO));
    let connector = format!("{:?}", a.options.custom_l4);
    assert!(connector.contains("700ms"), "{connector}");
    assert!(plain.options.custom_l4.is_none());
}

#[tokio::test]
async fn a_connect_that_does_not_complete_in_time_is_a_connect_timeout() {
    let never = std::future::pending::<Result<()>>();
    let e = within(Some(Duration::from_millis(10)), never)
        .await
        .unwrap_err();
    assert_eq!(e.etype(), &ErrorType::ConnectTimedout);
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error_that_names_no_gate() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut peer = HttpPeer::new(addr, false, String::new());
    let gate = gate_peer(&mut peer);
    let e = TransportConnector::new(None)
        .new_stream(&peer)
        .await
        .unwrap_err();
    assert_eq!(e.etype(), &ErrorType::ConnectRefused);
    assert_eq!(gate.fd(), None);
}

/// A gated connection through Pingora's connector, and the backend's end of it.
async fn connect_gated(
    hold_at_most: Duration,
    configure: impl FnOnce(&mut HttpPeer),
) -> (
    pingora_core::protocols::Stream,
    Arc<Gate>,
    std::net::TcpStream,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = HttpPeer::new(listener.local_addr().unwrap(), false, String::new());
    configure(&mut peer);
    let _ = gate_peer(&mut peer);
    // The same connector with a gate of the test's patience.
    let gate = Arc::new(Gate::new(hold_at_most));
    peer.options.custom_l4 = Some(Arc::new(GatedConnector {
        gate: gate.clone(),
        connect_timeout: Some(Duration::from_secs(5)),
    }));
    let stream = TransportConnector::new(None)
        .new_stream(&peer)
        .await
        .unwrap();
    let (backend, _) = listener.accept().unwrap();
    (stream, gate, backend)
}

/// Wait until `fd` has bytes to read (without reading them).
async fn until_readable(fd: RawFd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut byte = 0u8;
        // SAFETY: `fd` is an open socket of the caller's; one byte is peeked into `byte`.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the backend's bytes never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn socket_option(fd: RawFd, level: i32, name: i32) -> i32 {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket; `value` and `len` are valid for the call.
    let rc =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    assert_eq!(rc, 0);
    value
}

#[tokio::test]
async fn pingoras_connector_sets_nodelay_and_keepalive_on_the_gated_socket_and_we_know_its_fd() {
    let (_stream, gate, _backend) = connect_gated(HOLD_AT_MOST, |peer| {
        peer.options.tcp_keepalive = Some(TcpKeepalive {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            count: 3,
            user_timeout: Duration::ZERO,
        });
    })
    .await;
    let fd = gate.fd().expect("the connector records the socket");
    assert_eq!(socket_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY), 1);
    assert_eq!(socket_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
    assert_eq!(socket_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 30);
}

#[tokio::test]
async fn the_answer_to_an_upgrade_is_read_only_after_pingora_has_sent_the_request_and_its_end() {
    let (stream, gate, mut backend) = connect_gated(Duration::from_secs(3600), |_| {}).await;
    let mut session = HttpSession::new(stream);
    gate.arm();
    let mut request = RequestHeader::build("GET", b"/ws", None).unwrap();
    request.insert_header("Host", "backend").unwrap();
    request.insert_header("Upgrade", "websocket").unwrap();
    request.insert_header("Connection", "Upgrade").unwrap();
    session
        .write_request_header(Box::new(request))
        .await
        .unwrap();
    // The backend answers at once; its 101 is in our socket.
    backend
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    until_readable(gate.fd().unwrap()).await;
    assert!(
        session.read_response_task().now_or_never().is_none(),
        "held while the end of the request has not been sent"
    );
    // Pingora's relay takes the end of the (empty) body: `finish_body` flushes.
    session.finish_body().await.unwrap();
    let task = tokio::time::timeout(Duration::from_secs(10), session.read_response_task())
        .await
        .expect("released by the end of the request")
        .unwrap();
    assert!(
        matches!(task, pingora_core::protocols::http::HttpTask::Header(ref h, _) if h.status == 101)
    );
    assert!(session.was_upgraded());
}

#[tokio::test]
async fn held_reads_pass_anyway_once_the_hold_lasted_its_longest() {
    let (stream, gate, mut backend) = connect_gated(Duration::from_millis(20), |_| {}).await;
    let mut session = HttpSession::new(stream);
    gate.arm();
    backend
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    // No flush at all: the request's end never came.
    let task = tokio::time::timeout(Duration::from_secs(10), session.read_response_task())
        .await
        .expect("released after its longest hold")
        .unwrap();
    assert!(
        matches!(task, pingora_core::protocols::http::HttpTask::Header(ref h, _) if h.status == 200)
    );
}

#[tokio::test]
async fn an_unarmed_gate_holds_nothing() {
    let (stream, _gate, mut backend) = connect_gated(Duration::from_secs(3600), |_| {}).await;
    let mut session = HttpSession::new(stream);
    backend
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .unwrap();
    let task = tokio::time::timeout(Duration::from_secs(10), session.read_response_task())
        .await
        .expect("read at once")
        .unwrap();
    assert!(
        matches!(task, pingora_core::protocols::http::HttpTask::Header(ref h, _) if h.status == 204)
    );
}
