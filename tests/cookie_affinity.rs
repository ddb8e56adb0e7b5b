//! Cookie-insertion affinity, the ARR way, from a real client through the real proxy binary.

mod common;
use common::*;
use sha2::{Digest, Sha256};

async fn two_backends() -> (TestBackend, TestBackend) {
    (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    )
}

#[tokio::test]
async fn first_response_sets_arraffinity_and_requests_carrying_it_stay_on_that_backend() {
    let (b1, b2) = two_backends().await;
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();

    let first = get(&client, &proxy.url("/"), None).await;
    assert_eq!(first.status, 200);
    let value = first
        .cookie("ARRAffinity")
        .expect("ARRAffinity cookie issued");
    let pinned = first.backend().to_string();
    for _ in 0..20 {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={value}")),
        )
        .await;
        assert_eq!(reply.backend(), pinned);
        assert!(
            reply.cookie("ARRAffinity").is_none(),
            "a pinned session gets no new cookie"
        );
    }
}

#[tokio::test]
async fn requests_without_a_cookie_alternate_between_backends() {
    let (b1, b2) = two_backends().await;
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let reply = get(&client, &proxy.url("/"), None).await;
        assert!(
            reply.cookie("ARRAffinity").is_some(),
            "each new session gets a cookie"
        );
        seen.push(reply.backend().to_string());
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "round robin alternates: {seen:?}");
    }
}

#[tokio::test]
async fn each_backend_gets_its_own_value_and_no_value_shows_a_name_or_address() {
    let (b1, b2) = two_backends().await;
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let mut values = std::collections::HashMap::new();
    for _ in 0..4 {
        let reply = get(&client, &proxy.url("/"), None).await;
        let value = reply.cookie("ARRAffinity").unwrap();
        assert_eq!(value.len(), 64);
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
        // Neither the names nor the addresses, as text or hex-encoded (a value is 64 hex
        // digits, so a bare port number could show up in one by chance: its hex-encoded
        // address could not).
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        for shown in ["iis1", "iis2", &b1.addr.to_string(), &b2.addr.to_string()] {
            assert!(!value.contains(shown), "{value} leaks {shown}");
            assert!(!value.contains(&hex(shown)), "{value} leaks {shown} in hex");
        }
        values.insert(reply.backend().to_string(), value);
    }
    assert_eq!(values.len(), 2);
    assert_ne!(values["iis1"], values["iis2"]);
}

#[tokio::test]
async fn arr_format_issues_the_sha256_of_the_utf16_backend_name_that_arr_users_know() {
    let (b1, b2) = two_backends().await;
    let section = one_pool(
        &[&b1, &b2],
        "      affinity:\n        cookie:\n          format: arr\n",
    );
    let proxy = Proxy::start(&section).await;
    let reply = get(&client(), &proxy.url("/"), None).await;
    let utf16: Vec<u8> = reply
        .backend()
        .to_lowercase()
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let expected = hex::encode(Sha256::digest(&utf16));
    assert_eq!(reply.cookie("ARRAffinity").unwrap(), expected);
}

#[tokio::test]
async fn two_proxies_with_the_same_config_issue_and_accept_the_same_values() {
    let (b1, b2) = two_backends().await;
    let section = one_pool(&[&b1, &b2], KEYED_AFFINITY);
    let (a, b) = (Proxy::start(&section).await, Proxy::start(&section).await);
    let client = client();
    let from_a = get(&client, &a.url("/"), None).await;
    let value = from_a.cookie("ARRAffinity").unwrap();
    for _ in 0..5 {
        let on_b = get(&client, &b.url("/"), Some(&format!("ARRAffinity={value}"))).await;
        assert_eq!(on_b.backend(), from_a.backend());
        assert!(on_b.cookie("ARRAffinity").is_none());
    }
    // The same backend gets the same value from either instance.
    let mut from_b = get(&client, &b.url("/"), None).await;
    if from_b.backend() != from_a.backend() {
        from_b = get(&client, &b.url("/"), None).await;
    }
    assert_eq!(from_b.backend(), from_a.backend());
    assert_eq!(from_b.cookie("ARRAffinity").unwrap(), value);
}

#[tokio::test]
async fn cookie_attributes_follow_the_config_and_the_twin_cookie_is_accepted_like_the_main_one() {
    let (b1, b2) = two_backends().await;
    let affinity = "      affinity:\n        cookie:\n          name: AppAffinity\n          secret: test-secret-0123456789abcdef\n          path: /app\n          domain: example.test\n          secure: true\n          same_site: strict\n          max_age_seconds: 600\n          same_site_none_twin: AppAffinitySameSite\n";
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], affinity)).await;
    let client = client();
    let reply = get(&client, &proxy.url("/"), None).await;
    let lines = reply.set_cookies();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let main = lines
        .iter()
        .find(|l| l.starts_with("AppAffinity="))
        .unwrap();
    for attr in [
        "Path=/app",
        "Domain=example.test",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=600",
    ] {
        assert!(main.contains(attr), "{main} lacks {attr}");
    }
    let twin = lines
        .iter()
        .find(|l| l.starts_with("AppAffinitySameSite="))
        .unwrap();
    assert!(
        twin.contains("SameSite=None") && twin.contains("Secure"),
        "{twin}"
    );
    assert_eq!(
        reply.cookie("AppAffinity"),
        reply.cookie("AppAffinitySameSite")
    );

    let twin_value = reply.cookie("AppAffinitySameSite").unwrap();
    for _ in 0..6 {
        let again = get(
            &client,
            &proxy.url("/"),
            Some(&format!("AppAffinitySameSite={twin_value}")),
        )
        .await;
        assert_eq!(again.backend(), reply.backend());
        assert!(again.set_cookies().is_empty());
    }
}

#[tokio::test]
async fn session_cookie_by_default_httponly_path_root_no_max_age() {
    let b1 = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&b1], KEYED_AFFINITY)).await;
    let reply = get(&client(), &proxy.url("/"), None).await;
    let line = &reply.set_cookies()[0];
    assert!(
        line.contains("HttpOnly") && line.contains("Path=/"),
        "{line}"
    );
    for absent in ["Max-Age", "Expires", "Secure", "Domain"] {
        assert!(!line.contains(absent), "{line} has {absent}");
    }
}

#[tokio::test]
async fn the_backends_own_set_cookie_headers_are_kept_beside_the_affinity_cookie() {
    let b1 = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&b1], KEYED_AFFINITY)).await;
    let reply = get(&client(), &proxy.url("/login"), None).await;
    let lines = reply.set_cookies();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("JSESSIONID=iis1-") && l.contains("Path=/")));
    assert!(reply.cookie("ARRAffinity").is_some());
}

#[tokio::test]
async fn the_affinity_cookie_is_not_forwarded_to_the_backend_but_other_cookies_are() {
    let b1 = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&b1], KEYED_AFFINITY)).await;
    let client = client();
    let value = get(&client, &proxy.url("/"), None)
        .await
        .cookie("ARRAffinity")
        .unwrap();
    let reply = get(
        &client,
        &proxy.url("/"),
        Some(&format!("a=1; ARRAffinity={value}; CUserID=42")),
    )
    .await;
    assert_eq!(
        reply.header("x-echo-cookie").as_deref(),
        Some("a=1; CUserID=42")
    );
    let only_ours = get(
        &client,
        &proxy.url("/"),
        Some(&format!("ARRAffinity={value}")),
    )
    .await;
    assert_eq!(
        only_ours.header("x-echo-cookie"),
        None,
        "an emptied Cookie header is dropped"
    );
}

#[tokio::test]
async fn with_indirect_off_the_backend_sees_the_affinity_cookie() {
    let b1 = TestBackend::start("iis1").await;
    let affinity = "      affinity:\n        cookie:\n          secret: test-secret-0123456789abcdef\n          indirect: false\n";
    let proxy = Proxy::start(&one_pool(&[&b1], affinity)).await;
    let client = client();
    let value = get(&client, &proxy.url("/"), None)
        .await
        .cookie("ARRAffinity")
        .unwrap();
    let reply = get(
        &client,
        &proxy.url("/"),
        Some(&format!("a=1; ARRAffinity={value}")),
    )
    .await;
    assert_eq!(
        reply.header("x-echo-cookie"),
        Some(format!("a=1; ARRAffinity={value}"))
    );
}

#[tokio::test]
async fn a_response_that_inserts_the_cookie_is_marked_private_unless_the_backend_already_forbids_shared_caching(
) {
    let b1 = TestBackend::start("iis1").await;
    let proxy = Proxy::start(&one_pool(&[&b1], KEYED_AFFINITY)).await;
    let client = client();
    let plain = get(&client, &proxy.url("/"), None).await;
    assert_eq!(plain.header("cache-control").as_deref(), Some("private"));
    let public = get(
        &client,
        &proxy.url("/cache-control/public,_max-age=60"),
        None,
    )
    .await;
    assert_eq!(
        public.header("cache-control").as_deref(),
        Some("max-age=60, private")
    );
    let no_store = get(&client, &proxy.url("/cache-control/no-store"), None).await;
    assert_eq!(
        no_store.header("cache-control").as_deref(),
        Some("no-store")
    );

    // A pinned session gets no cookie, so its caching headers are the backend's own.
    let value = plain.cookie("ARRAffinity").unwrap();
    let pinned = get(
        &client,
        &proxy.url("/cache-control/public"),
        Some(&format!("ARRAffinity={value}")),
    )
    .await;
    assert_eq!(pinned.header("cache-control").as_deref(), Some("public"));
}

#[tokio::test]
async fn with_nocache_off_caching_headers_are_left_alone() {
    let b1 = TestBackend::start("iis1").await;
    let affinity = "      affinity:\n        cookie:\n          secret: test-secret-0123456789abcdef\n          nocache: false\n";
    let proxy = Proxy::start(&one_pool(&[&b1], affinity)).await;
    let reply = get(&client(), &proxy.url("/cache-control/public"), None).await;
    assert!(reply.cookie("ARRAffinity").is_some());
    assert_eq!(reply.header("cache-control").as_deref(), Some("public"));
}

#[tokio::test]
async fn unknown_forged_or_malformed_values_start_a_new_session_with_a_fresh_cookie() {
    let (b1, b2) = two_backends().await;
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let valid = get(&client, &proxy.url("/"), None)
        .await
        .cookie("ARRAffinity")
        .unwrap();
    let arr_of_iis1 = hex::encode(Sha256::digest(b"i\0i\0s\x001\0"));
    let mut wrong_mac = valid.clone().into_bytes();
    wrong_mac[0] = if wrong_mac[0] == b'a' { b'b' } else { b'a' };
    let forged = [
        "0".repeat(64),
        valid[..63].to_string(),
        format!("{valid}0"),
        String::from_utf8(wrong_mac).unwrap(),
        arr_of_iis1,
        "iis1".to_string(),
        "not hex at all but 64 characters long.........................".to_string(),
        String::new(),
    ];
    for value in forged {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={value}")),
        )
        .await;
        assert_eq!(reply.status, 200, "value {value:?}");
        let fresh = reply.cookie("ARRAffinity").expect("a fresh cookie");
        assert_ne!(fresh, value);
        let back = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={fresh}")),
        )
        .await;
        assert_eq!(back.backend(), reply.backend(), "the fresh cookie pins");
    }
}

#[tokio::test]
async fn a_cookie_for_a_backend_no_longer_configured_starts_a_new_session() {
    let (b1, b2) = two_backends().await;
    let before = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let mut reply = get(&client, &before.url("/"), None).await;
    if reply.backend() != "iis2" {
        reply = get(&client, &before.url("/"), None).await;
    }
    assert_eq!(reply.backend(), "iis2");
    let iis2_value = reply.cookie("ARRAffinity").unwrap();
    drop(before);

    let after = Proxy::start(&one_pool(&[&b1], KEYED_AFFINITY)).await;
    let reply = get(
        &client,
        &after.url("/"),
        Some(&format!("ARRAffinity={iis2_value}")),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend(), "iis1");
    assert!(reply.cookie("ARRAffinity").is_some());
}

#[tokio::test]
async fn the_opt_out_header_suppresses_the_cookie_and_never_reaches_the_client() {
    let (b1, b2) = two_backends().await;
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    for path in [
        "/disable-affinity",
        "/disable-affinity/deeper",
        "/opt-out/TRUE",
        "/opt-out/True",
    ] {
        let reply = get(&client, &proxy.url(path), None).await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.set_cookies().is_empty(),
            "{path}: {:?}",
            reply.set_cookies()
        );
        assert_eq!(reply.header("arr-disable-session-affinity"), None, "{path}");
        assert_eq!(reply.header("cache-control"), None, "{path}");
    }
    // Any other value is not an opt-out, and the header is removed all the same.
    let reply = get(&client, &proxy.url("/opt-out/false"), None).await;
    assert!(reply.cookie("ARRAffinity").is_some());
    assert_eq!(reply.header("arr-disable-session-affinity"), None);
}

#[tokio::test]
async fn the_opt_out_header_name_is_configurable() {
    let b1 = TestBackend::start("iis1").await;
    let affinity = "      affinity:\n        opt_out_header: X-No-Affinity\n        cookie:\n          secret: test-secret-0123456789abcdef\n";
    let proxy = Proxy::start(&one_pool(&[&b1], affinity)).await;
    let client = client();
    // The ARR header is now just another header: the cookie is issued.
    let arr = get(&client, &proxy.url("/disable-affinity"), None).await;
    assert!(arr.cookie("ARRAffinity").is_some());
    // The configured one is honoured and removed.
    let custom = get(&client, &proxy.url("/header/X-No-Affinity/true"), None).await;
    assert!(
        custom.set_cookies().is_empty(),
        "{:?}",
        custom.set_cookies()
    );
    assert_eq!(custom.header("x-no-affinity"), None);
}

#[tokio::test]
async fn with_affinity_disabled_no_cookie_is_issued_and_incoming_ones_are_ignored() {
    let (b1, b2) = two_backends().await;
    let enabled = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let value = get(&client, &enabled.url("/"), None)
        .await
        .cookie("ARRAffinity")
        .unwrap();
    drop(enabled);

    let affinity = "      affinity:\n        enabled: false\n        cookie:\n          secret: test-secret-0123456789abcdef\n";
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], affinity)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        let reply = get(
            &client,
            &proxy.url("/"),
            Some(&format!("ARRAffinity={value}")),
        )
        .await;
        assert!(reply.set_cookies().is_empty());
        seen.insert(reply.backend().to_string());
    }
    assert_eq!(
        seen.len(),
        2,
        "requests are balanced whatever the cookie says"
    );
    let opt_out = get(&client, &proxy.url("/disable-affinity"), None).await;
    assert_eq!(opt_out.header("arr-disable-session-affinity"), None);
}
