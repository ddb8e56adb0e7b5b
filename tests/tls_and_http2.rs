//! Edge protocols from real clients: HTTPS listeners (certificates by SNI, minimum version,
//! `Secure` cookies, `X-Forwarded-Proto`), HTTP/2 over TLS and h2c with affinity intact, the
//! redirect to HTTPS, TLS to backends, and hostile TLS input. Certificates are generated at test
//! time.

mod common;
use common::tls::{
    https_client, https_client_builder, peer_certificate, tls12_only_handshake, tls_connect,
    TestCert, TlsBackend,
};
use common::*;
use std::net::SocketAddr;

/// A proxy with a plain listener (`listen`, optionally h2c) and a TLS listener serving `certs`
/// (`tls_extra` appended to its `tls:` block), one pool of `backends` with keyed cookies.
struct EdgeProxy {
    proxy: Proxy,
    tls_addr: SocketAddr,
}

async fn edge_proxy(
    backends: &[&TestBackend],
    certs: impl FnOnce(&std::path::Path) -> Vec<TestCert>,
    tls_extra: &str,
    plain_extra: &str,
) -> (EdgeProxy, Vec<TestCert>) {
    let (listen, tls_port) = (Port::new(), Port::new());
    let tls_addr = tls_port.addr();
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    let mut made = Vec::new();
    let listen_addr = listen.addr();
    let proxy = Proxy::start_full(
        |dir| {
            made = certs(dir);
            let certificates: Vec<String> = made.iter().map(|c| c.yaml()).collect();
            format!(
                "{keys}sticky:\n  listeners:\n    - {{ addr: \"{listen_addr}\"{plain_extra} }}\n    - addr: \"{tls_addr}\"\n      tls:\n        certificates: [{certs}]\n{tls_extra}  pools:\n    - name: web\n      backends: [{list}]\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef }}\n",
                keys = pingora_keys(dir),
                certs = certificates.join(", "),
                list = list.join(", "),
            )
        },
        vec![listen, tls_port],
    )
    .await;
    (EdgeProxy { proxy, tls_addr }, made)
}

fn one_cert(dir: &std::path::Path) -> Vec<TestCert> {
    vec![TestCert::generate(dir, "app", &["app.test"])]
}

#[tokio::test]
async fn https_requests_get_a_secure_cookie_and_the_backend_sees_https() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let (edge, certs) = edge_proxy(&[&b1, &b2], one_cert, "", "").await;
    let https = https_client(&[&certs[0]], &[("app.test", edge.tls_addr)]);
    let url = format!("https://app.test:{}/", edge.tls_addr.port());

    let first = into_reply(https.get(&url).send().await.unwrap()).await;
    assert_eq!(first.status, 200);
    let line = first
        .set_cookies()
        .into_iter()
        .find(|l| l.starts_with("ARRAffinity="))
        .expect("cookie issued over HTTPS");
    assert!(line.contains("Secure"), "{line}");
    assert_eq!(first.header("x-echo-forwarded-proto").unwrap(), "https");

    // The same session over HTTPS stays put.
    let value = first.cookie("ARRAffinity").unwrap();
    for _ in 0..10 {
        let reply = into_reply(
            https
                .get(&url)
                .header("Cookie", format!("ARRAffinity={value}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.backend(), first.backend());
    }

    // The plain listener of the same proxy: no Secure, X-Forwarded-Proto http.
    let plain = get(&client(), &edge.proxy.url("/"), None).await;
    let line = plain
        .set_cookies()
        .into_iter()
        .find(|l| l.starts_with("ARRAffinity="))
        .unwrap();
    assert!(!line.contains("Secure"), "{line}");
    assert_eq!(plain.header("x-echo-forwarded-proto").unwrap(), "http");
}

#[tokio::test]
async fn an_http2_client_over_tls_is_pinned_like_an_http1_client() {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let (edge, certs) = edge_proxy(&refs, one_cert, "", "").await;
    let resolve = [("app.test", edge.tls_addr)];
    let h1 = https_client_builder(&[&certs[0]], &resolve)
        .http1_only()
        .build()
        .unwrap();
    let h2 = https_client(&[&certs[0]], &resolve);
    let url = format!("https://app.test:{}/", edge.tls_addr.port());

    // A session started over HTTP/1.1 ...
    let first = h1.get(&url).send().await.unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_11);
    let first = into_reply(first).await;
    let value = first.cookie("ARRAffinity").unwrap();
    // ... continues over HTTP/2 (ALPN h2) on the same backend, however often the others come up.
    for _ in 0..12 {
        let response = h2
            .get(&url)
            .header("Cookie", format!("ARRAffinity={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let reply = into_reply(response).await;
        assert_eq!(reply.backend(), first.backend());
        assert!(reply.cookie("ARRAffinity").is_none());
    }
    // New HTTP/2 sessions are balanced and get a cookie each.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let reply = into_reply(h2.get(&url).send().await.unwrap()).await;
        assert!(reply.cookie("ARRAffinity").is_some());
        seen.insert(reply.backend().to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test]
async fn an_h2c_listener_pins_prior_knowledge_clients_and_reads_split_cookie_headers() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let (edge, _) = edge_proxy(&[&b1, &b2], one_cert, "", ", h2c: true").await;
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let value = cookie_for(&client(), &edge.proxy, "/", "iis2").await;
    for _ in 0..8 {
        // As HTTP/2 clients do: one `cookie` field per cookie, ours in the middle.
        let response = h2c
            .get(edge.proxy.url("/"))
            .header("Cookie", "a=1")
            .header("Cookie", format!("ARRAffinity={value}"))
            .header("Cookie", "b=2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let reply = into_reply(response).await;
        assert_eq!(reply.backend(), "iis2");
        // The HTTP/1.1 backend gets one Cookie header, without the proxy's cookie.
        assert_eq!(reply.header("x-echo-cookie").unwrap(), "a=1; b=2");
    }
    // HTTP/1.1 still works on the same h2c listener.
    assert_eq!(get(&client(), &edge.proxy.url("/"), None).await.status, 200);
}

#[tokio::test]
async fn sni_chooses_the_certificate_and_strict_sni_refuses_unknown_names() {
    let b1 = TestBackend::start("iis1").await;
    let two_certs = |dir: &std::path::Path| {
        vec![
            TestCert::generate(dir, "a", &["a.test"]),
            TestCert::generate(dir, "b", &["b.test", "*.b.test"]),
        ]
    };
    let (edge, certs) = edge_proxy(&[&b1], two_certs, "", "").await;
    let port = edge.tls_addr.port();
    let names = [
        ("a.test", edge.tls_addr),
        ("b.test", edge.tls_addr),
        ("x.b.test", edge.tls_addr),
        ("c.test", edge.tls_addr),
    ];
    // A client that trusts only b's certificate reaches b.test and *.b.test, not a.test.
    let trusts_b = https_client(&[&certs[1]], &names);
    for host in ["b.test", "x.b.test"] {
        let reply = trusts_b
            .get(format!("https://{host}:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{host}");
    }
    assert!(trusts_b
        .get(format!("https://a.test:{port}/"))
        .send()
        .await
        .is_err());
    // Without strict_sni an unknown name gets the default (first) certificate.
    let trusts_a = https_client(&[&certs[0]], &names);
    assert!(trusts_a
        .get(format!("https://a.test:{port}/"))
        .send()
        .await
        .is_ok());
    let any_cert = https_client_builder(&[], &names)
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let unknown = any_cert
        .get(format!("https://c.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        peer_certificate(&unknown).unwrap(),
        certs[0].cert_der,
        "the first certificate is the default"
    );

    // strict_sni: the unknown name's handshake is refused, the known names still work.
    let b1 = TestBackend::start("iis1").await;
    let (strict, certs) = edge_proxy(&[&b1], two_certs, "        strict_sni: true\n", "").await;
    let port = strict.tls_addr.port();
    let names = [("b.test", strict.tls_addr), ("c.test", strict.tls_addr)];
    let any_cert = https_client_builder(&[], &names)
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    assert!(any_cert
        .get(format!("https://c.test:{port}/"))
        .send()
        .await
        .is_err());
    let trusts_b = https_client(&[&certs[1]], &names);
    let reply = trusts_b
        .get(format!("https://b.test:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    // No SNI at all (an IP address in the URL): refused too, as HAProxy's strict-sni does.
    assert!(any_cert
        .get(format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn min_version_tls13_refuses_connections_that_negotiate_tls12() {
    let b1 = TestBackend::start("iis1").await;
    let (edge, certs) = edge_proxy(&[&b1], one_cert, "        min_version: TLSv1.3\n", "").await;
    let resolve = [("app.test", edge.tls_addr)];
    let url = format!("https://app.test:{}/", edge.tls_addr.port());
    let tls12_only = https_client_builder(&[&certs[0]], &resolve)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    // A client that offers only TLS 1.2 suites is refused in the handshake.
    let refused = tls12_only_handshake(edge.tls_addr, "app.test", &certs[0]).await;
    assert!(refused.is_err(), "{refused:?}");
    // rustls capped at 1.2 still offers its TLS 1.3 suites, so its handshake completes and the
    // proxy refuses the request itself; nothing reaches a backend.
    let response = tls12_only.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 426);
    assert_eq!(response.text().await.unwrap(), "426 TLS 1.3 required\n");
    assert_eq!(b1.hits(), 0);
    let modern = https_client(&[&certs[0]], &resolve);
    assert_eq!(modern.get(&url).send().await.unwrap().status(), 200);

    // The default (TLSv1.2) lets the TLS 1.2 client in.
    let (edge12, certs12) = edge_proxy(&[&b1], one_cert, "", "").await;
    let tls12_only = https_client_builder(&[&certs12[0]], &[("app.test", edge12.tls_addr)])
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let url = format!("https://app.test:{}/", edge12.tls_addr.port());
    assert_eq!(tls12_only.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(
        tls12_only_handshake(edge12.tls_addr, "app.test", &certs12[0]).await,
        Ok(())
    );
}

#[tokio::test]
async fn hostile_tls_input_is_closed_cleanly_and_other_clients_are_unaffected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b1 = TestBackend::start("iis1").await;
    let (edge, certs) = edge_proxy(&[&b1], one_cert, "", "").await;

    // Plain HTTP to the TLS port: no HTTP answer leaks out, the connection ends.
    let answer = raw_request(edge.tls_addr, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert!(!answer.contains("hello"), "{answer:?}");
    assert!(!answer.contains(&b1.addr.to_string()), "{answer:?}");

    // A truncated ClientHello, then silence from the client: the proxy does not crash and the
    // next clients are served.
    let mut truncated = tokio::net::TcpStream::connect(edge.tls_addr).await.unwrap();
    truncated
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .await
        .unwrap();
    // A ClientHello cut short and closed at once.
    let mut cut = tokio::net::TcpStream::connect(edge.tls_addr).await.unwrap();
    cut.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01])
        .await
        .unwrap();
    drop(cut);
    // Garbage that is not TLS at all.
    let mut garbage = tokio::net::TcpStream::connect(edge.tls_addr).await.unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), garbage.read(&mut buf))
        .await
        .expect("garbage is answered (alert or close), not left hanging");
    if let Ok(n) = read {
        assert!(
            n == 0 || buf[0] == 0x15,
            "an alert or a close: {:?}",
            &buf[..n]
        );
    }

    let https = https_client(&[&certs[0]], &[("app.test", edge.tls_addr)]);
    let url = format!("https://app.test:{}/", edge.tls_addr.port());
    for _ in 0..5 {
        assert_eq!(https.get(&url).send().await.unwrap().status(), 200);
    }
    assert_eq!(get(&client(), &edge.proxy.url("/"), None).await.status, 200);
    drop(truncated);
}

#[tokio::test]
async fn a_plain_listener_can_redirect_every_request_to_https() {
    let b1 = TestBackend::start("iis1").await;
    let (edge, _) = edge_proxy(
        &[&b1],
        one_cert,
        "",
        ", redirect_to_https: { port: 8443, status: 308 }",
    )
    .await;
    let response = client()
        .get(edge.proxy.url("/cart?item=7"))
        .header("Host", "shop.test:80")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://shop.test:8443/cart?item=7"
    );
    assert_eq!(b1.hits(), 0, "nothing reached the backend");
    // A Host that is not a host name cannot steer the redirect.
    let bad = raw_request(
        edge.proxy.addr,
        b"GET / HTTP/1.1\r\nHost: evil.test/x@y\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&bad), 400, "{bad}");

    // Behind a trusted TLS terminator that says the client spoke HTTPS: served, not redirected
    // again (which would loop).
    let b2 = TestBackend::start("iis2").await;
    let behind = Proxy::start(&format!(
        "sticky:\n  listeners:\n    - {{ addr: \"{{listen}}\", redirect_to_https: {{ port: 443 }} }}\n  trusted_proxies: [127.0.0.1/32]\n  pools:\n    - name: web\n      backends: [{}]\n",
        b2.yaml()
    ))
    .await;
    let plain = get(&client(), &behind.url("/x"), None).await;
    assert_eq!(plain.status, 301);
    let forwarded = client()
        .get(behind.url("/x"))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
}

#[tokio::test]
async fn a_pool_with_tls_reaches_https_backends_and_refuses_unverified_ones() {
    let dir = tempfile::tempdir().unwrap();
    let backend_cert = TestCert::generate(dir.path(), "backend", &["backend.test"]);
    let other_ca = TestCert::generate(dir.path(), "other", &["backend.test"]);
    let backend = TlsBackend::start("secure1", &backend_cert).await;
    let pool = |name: &str, ca: &TestCert, extra: &str| {
        format!(
            "    - name: {name}\n      backends: [{{ name: {name}1, addr: \"{}\" }}]\n      tls: {{ sni: backend.test, ca_file: \"{}\"{extra} }}\n      affinity: {{ cookie: {{ secret: test-secret-0123456789abcdef }} }}\n",
            backend.addr,
            ca.cert_file.display()
        )
    };
    let yaml = format!(
        "sticky:\n  listeners:\n    - {{ addr: \"{{listen}}\" }}\n  routes:\n    - {{ match: {{ path_prefix: /good }}, pool: good }}\n    - {{ match: {{ path_prefix: /wrong-ca }}, pool: wrongca }}\n    - {{ match: {{ path_prefix: /no-verify }}, pool: noverify }}\n  pools:\n{}{}{}",
        pool("good", &backend_cert, ""),
        pool("wrongca", &other_ca, ""),
        pool("noverify", &other_ca, ", verify: false"),
    );
    let proxy = Proxy::start(&yaml).await;
    let client = client();
    let good = get(&client, &proxy.url("/good"), None).await;
    assert_eq!(good.status, 200);
    assert_eq!(good.backend(), "secure1");
    let wrong = get(&client, &proxy.url("/wrong-ca"), None).await;
    // A failed handshake counts as a failed connect: no backend could be reached.
    assert_eq!(wrong.status, 503, "an unverifiable backend is not used");
    assert!(!wrong.body.contains(&backend.addr.to_string()));
    let unverified = get(&client, &proxy.url("/no-verify"), None).await;
    assert_eq!(
        unverified.status, 200,
        "verify: false trusts any certificate"
    );
}

#[tokio::test]
async fn tls_config_errors_name_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = |listener: &str| {
        let path = dir.path().join("bad.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nsticky:\n  listeners:\n    - {listener}\n  pools:\n    - name: web\n      backends: [{{ name: a, addr: \"127.0.0.1:9001\" }}]\n"
            ),
        )
        .unwrap();
        run_binary(&["-t", "-c", path.to_str().unwrap()], &[])
    };
    let missing = dir.path().join("nowhere.crt");
    let (code, _, err) = conf(&format!(
        "{{ addr: \"127.0.0.1:6443\", tls: {{ certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}] }} }}",
        missing.display(),
        missing.display()
    ));
    assert_ne!(code, 0);
    assert!(
        err.contains("sticky.listeners[0].tls.certificates[0].cert_file")
            && err.contains("nowhere.crt"),
        "{err}"
    );

    let cert = TestCert::generate(dir.path(), "x", &["x.test"]);
    let other = TestCert::generate(dir.path(), "y", &["y.test"]);
    let (code, _, err) = conf(&format!(
        "{{ addr: \"127.0.0.1:6443\", tls: {{ certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}] }} }}",
        cert.cert_file.display(),
        other.key_file.display()
    ));
    assert_ne!(code, 0);
    assert!(
        err.contains("sticky.listeners[0].tls.certificates[0].key_file")
            && err.contains("does not fit"),
        "{err}"
    );

    let not_pem = dir.path().join("junk.crt");
    std::fs::write(&not_pem, "this is not PEM\n").unwrap();
    let (code, _, err) = conf(&format!(
        "{{ addr: \"127.0.0.1:6443\", tls: {{ certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}] }} }}",
        not_pem.display(),
        cert.key_file.display()
    ));
    assert_ne!(code, 0);
    assert!(
        err.contains("sticky.listeners[0].tls.certificates[0]") && err.contains("junk.crt"),
        "{err}"
    );
}

#[tokio::test]
async fn hash_keys_and_learned_sessions_work_for_http2_clients_as_for_http1_ones() {
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let list: Vec<String> = backends.iter().map(|b| b.yaml()).collect();
    let yaml = format!(
        "sticky:\n  listeners:\n    - {{ addr: \"{{listen}}\", h2c: true }}\n  routes:\n    - {{ match: {{ path_prefix: /sdk }}, pool: sdk }}\n    - {{ match: {{ path_prefix: / }}, pool: app }}\n  pools:\n    - name: sdk\n      backends: [{list}]\n      affinity: {{ hash: {{ sources: [{{ type: cookie, name: CUserID }}] }} }}\n    - name: app\n      backends: [{list}]\n      affinity: {{ learn: {{ presets: [j2ee] }} }}\n",
        list = list.join(", ")
    );
    let proxy = Proxy::start_on(&yaml, Port::new()).await;
    let h1 = client();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    // The same CUserID lands on the same backend over HTTP/1.1 and HTTP/2, in a split header.
    for user in ["1001", "1002", "1003", "1004"] {
        let one = get(
            &h1,
            &proxy.url("/sdk/api"),
            Some(&format!("CUserID={user}")),
        )
        .await;
        for _ in 0..3 {
            let response = h2
                .get(proxy.url("/sdk/api"))
                .header("Cookie", "theme=dark")
                .header("Cookie", format!("CUserID={user}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.version(), reqwest::Version::HTTP_2);
            assert_eq!(
                into_reply(response).await.backend(),
                one.backend(),
                "{user}"
            );
        }
    }
    // A JSESSIONID learned from an HTTP/2 login pins later HTTP/2 and HTTP/1.1 requests.
    let login = into_reply(h2.get(proxy.url("/login")).send().await.unwrap()).await;
    let id = login
        .cookie("JSESSIONID")
        .expect("the backend's session cookie");
    for _ in 0..6 {
        let over_h2 = h2
            .get(proxy.url("/cart"))
            .header("Cookie", "a=b")
            .header("Cookie", format!("JSESSIONID={id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(into_reply(over_h2).await.backend(), login.backend());
        let over_h1 = get(&h1, &proxy.url("/cart"), Some(&format!("JSESSIONID={id}"))).await;
        assert_eq!(over_h1.backend(), login.backend());
    }
}

#[tokio::test]
async fn https_reported_by_a_trusted_proxy_counts_as_https_and_anyone_elses_claim_is_ignored() {
    let b1 = TestBackend::start("iis1").await;
    let yaml = |trusted: &str| {
        format!(
            "sticky:\n  listeners:\n    - addr: \"{{listen}}\"\n{trusted}  pools:\n    - name: web\n      backends: [{}]\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef }}\n",
            b1.yaml()
        )
    };
    let ask = |proxy: &Proxy| {
        let url = proxy.url("/");
        async move {
            into_reply(
                client()
                    .get(url)
                    .header("X-Forwarded-Proto", "https")
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // Behind a TLS-terminating balancer we trust (loopback here).
    let behind = Proxy::start(&yaml("  trusted_proxies: [127.0.0.1/32]\n")).await;
    let reply = ask(&behind).await;
    assert_eq!(reply.header("x-echo-forwarded-proto").unwrap(), "https");
    let line = reply.set_cookies().join("\n");
    assert!(line.contains("Secure"), "{line}");
    // Nobody trusted: the client's claim is replaced, and the cookie is not Secure.
    let exposed = Proxy::start(&yaml("")).await;
    let reply = ask(&exposed).await;
    assert_eq!(reply.header("x-echo-forwarded-proto").unwrap(), "http");
    let line = reply.set_cookies().join("\n");
    assert!(!line.contains("Secure"), "{line}");
}

#[tokio::test]
async fn a_secure_websocket_follows_the_session_cookie_like_plain_requests() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let backends = TestBackend::start_each(["iis1", "iis2", "iis3"]).await;
    let refs: Vec<&TestBackend> = backends.iter().collect();
    let (edge, certs) = edge_proxy(&refs, one_cert, "", "").await;
    let https = https_client(&[&certs[0]], &[("app.test", edge.tls_addr)]);
    let url = format!("https://app.test:{}/", edge.tls_addr.port());
    let first = into_reply(https.get(&url).send().await.unwrap()).await;
    let value = first.cookie("ARRAffinity").unwrap();
    // Three wss:// connections with the cookie, each opened once: none may be cut.
    for _ in 0..3 {
        let tls = tls_connect(edge.tls_addr, "app.test", &certs[0]).await;
        let mut request = format!("wss://app.test:{}/ws", edge.tls_addr.port())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Cookie", format!("ARRAffinity={value}").parse().unwrap());
        let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(
            response.headers()["x-servername"].to_str().unwrap(),
            first.backend()
        );
        ws.send(Message::Text("over tls".into())).await.unwrap();
        let reply = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .unwrap();
        match reply {
            Some(Ok(Message::Text(text))) => {
                assert_eq!(text, format!("{}: over tls", first.backend()))
            }
            other => panic!("the secure WebSocket did not echo: {other:?}"),
        }
    }
}
