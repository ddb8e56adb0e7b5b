//! A backend cannot overwrite the proxy's affinity cookie. Its `Set-Cookie` for any of the
//! listener's affinity cookie names (main or SameSite=None twin, of every route on the
//! listener) is removed before the proxy appends its own; the backend's other cookies pass.
//! Each removal is counted in `sticky_backend_cookie_overwrites_total{pool, backend}`, and
//! logged at `warn` once per backend.

mod common;
use common::raw_backend::{response, RawBackend};
use common::*;

/// A backend that answers `hello <name>` with these `Set-Cookie` lines.
async fn setting(name: &'static str, cookies: &'static [&'static str]) -> RawBackend {
    RawBackend::start(name, move |_| {
        let headers: Vec<String> = cookies.iter().map(|c| format!("Set-Cookie: {c}")).collect();
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        response("200 OK", &headers, &format!("hello {name}\n"))
    })
    .await
}

/// The `Cookie` header a browser holds after `reply`: `jar` with the reply's cookies set.
fn browser_keeps(jar: &str, reply: &Reply) -> String {
    let mut pairs: Vec<(String, String)> = jar
        .split("; ")
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for line in reply.set_cookies() {
        let pair = line.split(';').next().unwrap_or_default();
        if let Some((n, v)) = pair.split_once('=') {
            let (n, v) = (n.trim().to_string(), v.trim().to_string());
            match pairs.iter_mut().find(|(name, _)| *name == n) {
                Some(existing) => existing.1 = v,
                None => pairs.push((n, v)),
            }
        }
    }
    let pairs: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.join("; ")
}

#[tokio::test]
async fn a_backend_setting_the_affinity_cookie_on_a_pinned_session_does_not_move_the_session() {
    let (b1, b2) = (
        TestBackend::start("iis1").await,
        TestBackend::start("iis2").await,
    );
    let proxy = Proxy::start(&one_pool(&[&b1, &b2], KEYED_AFFINITY)).await;
    let client = client();
    let mut jar = format!(
        "ARRAffinity={}",
        cookie_for(&client, &proxy, "/", "iis1").await
    );
    // The demo backend sends `Set-Cookie: ARRAffinity=evil; Path=/` on this path.
    let hostile = get(
        &client,
        &proxy.url("/header/Set-Cookie/ARRAffinity=evil;_Path=/"),
        Some(&jar),
    )
    .await;
    assert_eq!(hostile.status, 200);
    assert_eq!(hostile.backend(), "iis1");
    assert_eq!(
        hostile.set_cookies(),
        Vec::<String>::new(),
        "the backend's affinity cookie does not reach the client"
    );
    jar = browser_keeps(&jar, &hostile);
    for _ in 0..4 {
        let reply = get(&client, &proxy.url("/"), Some(&jar)).await;
        assert_eq!(reply.backend(), "iis1", "the session stays pinned");
        assert!(reply.set_cookies().is_empty(), "{:?}", reply.set_cookies());
    }
    assert_eq!(proxy.outcome_of("/").as_deref(), Some("sticky"));
}

#[tokio::test]
async fn a_new_session_gets_only_the_proxys_affinity_cookies_while_the_backends_others_pass() {
    let app = setting(
        "app",
        &[
            "ARRAffinity=evil; Path=/",
            "JSESSIONID=abc; Path=/; HttpOnly",
            " ARRAffinity = spaced; Path=/",
            "ARRAffinitySameSite=evil; Path=/; Secure; SameSite=None",
            "arraffinity=another-name; Path=/",
            "ARRAffinityX=another-name-too",
        ],
    )
    .await;
    let section = format!(
        "sticky:\n  admin: {{ addr: \"{{admin}}\" }}\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: web\n      backends: [{}]\n      affinity:\n        cookie: {{ secret: test-secret-0123456789abcdef, same_site_none_twin: ARRAffinitySameSite }}\n",
        app.yaml()
    );
    let proxy = Proxy::start(&section).await;
    let client = client();
    for _ in 0..2 {
        let reply = get(&client, &proxy.url("/"), None).await;
        assert_eq!(reply.status, 200);
        let names: Vec<String> = reply
            .set_cookies()
            .iter()
            .map(|l| l.split('=').next().unwrap().trim().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "JSESSIONID",
                "arraffinity",
                "ARRAffinityX",
                "ARRAffinity",
                "ARRAffinitySameSite"
            ],
            "{:?}",
            reply.set_cookies()
        );
        for ours in ["ARRAffinity", "ARRAffinitySameSite"] {
            let value = reply.cookie(ours).unwrap();
            assert_eq!(value.len(), 64, "the proxy's own value: {value}");
        }
    }
    let metrics = get(&client, &proxy.admin_url("/metrics"), None).await.body;
    assert!(
        metrics.contains("sticky_backend_cookie_overwrites_total{backend=\"app\",pool=\"web\"} 6"),
        "three removed per response:\n{metrics}"
    );
    let log = proxy.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("backend app of pool web"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per backend:\n{log}");
    assert!(
        warnings[0].contains("\"ARRAffinity\""),
        "it names the cookie: {}",
        warnings[0]
    );
    assert!(!warnings[0].contains("evil"), "{}", warnings[0]);
}

#[tokio::test]
async fn every_affinity_cookie_of_the_listener_is_protected_on_every_route_and_pool() {
    let cookies: &[&str] = &["CartAffinity=evil", "TenantAffinity=evil", "keep=1"];
    let (web, api) = (
        setting("web1", cookies).await,
        setting("api1", cookies).await,
    );
    let section = format!(
        "sticky:\n  admin: {{ addr: \"{{admin}}\" }}\n  listeners:\n    - addr: \"{{listen}}\"\n  pools:\n    - name: web\n      backends: [{}]\n    - name: api\n      backends: [{}]\n  classes:\n    cart:\n      cookie: {{ name: CartAffinity, secret: test-secret-0123456789abcdef }}\n    tenant:\n      cookie: {{ name: TenantAffinity, secret: test-secret-0123456789abcdef, indirect: false }}\n  routes:\n    - {{ match: {{ path_prefix: /cart }}, pool: web, class: cart }}\n    - {{ match: {{ path_prefix: /tenant }}, pool: web, class: tenant }}\n    - {{ match: {{ path_prefix: /static }}, pool: web, class: none }}\n    - {{ match: {{ path_prefix: /api }}, pool: api }}\n",
        web.yaml(),
        api.yaml()
    );
    let proxy = Proxy::start(&section).await;
    let client = client();
    for (path, expected) in [
        ("/cart/1", vec!["keep=1", "CartAffinity="]),
        ("/tenant/1", vec!["keep=1", "TenantAffinity="]),
        ("/static/1", vec!["keep=1"]),
        ("/api/1", vec!["keep=1"]),
    ] {
        let reply = get(&client, &proxy.url(path), None).await;
        assert_eq!(reply.status, 200, "{path}");
        let lines = reply.set_cookies();
        assert_eq!(lines.len(), expected.len(), "{path}: {lines:?}");
        for (line, start) in lines.iter().zip(&expected) {
            assert!(line.starts_with(start), "{path}: {lines:?}");
            assert!(!line.contains("evil"), "{path}: {lines:?}");
        }
    }
    let metrics = get(&client, &proxy.admin_url("/metrics"), None).await.body;
    for expected in [
        "sticky_backend_cookie_overwrites_total{backend=\"web1\",pool=\"web\"} 6",
        "sticky_backend_cookie_overwrites_total{backend=\"api1\",pool=\"api\"} 2",
    ] {
        assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
    }
}
