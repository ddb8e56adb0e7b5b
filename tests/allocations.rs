//! The returning-session decision (find and verify the affinity cookie, check the backend,
//! decide) makes no heap allocation: a counting allocator around the system one, per thread,
//! over the same calls as the criterion benchmark `cookie/decision: returning session`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use sticky_proxy::affinity::decision::{decide, Mechanisms};
use sticky_proxy::affinity::persistence::Affinity;
use sticky_proxy::config::load_str;
use sticky_proxy::pool::Pool;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by this thread while `f` runs.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

#[test]
fn the_returning_session_decision_allocates_nothing() {
    let yaml = "sticky:\n  listeners: [{ addr: \"127.0.0.1:6188\" }]\n  pools:\n    - name: web\n      backends: [{ name: app0, addr: \"127.0.0.1:10000\" }, { name: app1, addr: \"127.0.0.1:10001\" }, { name: app2, addr: \"127.0.0.1:10002\" }]\n      affinity:\n        cookie: { secret: test-secret-0123456789abcdef }\n";
    let config = load_str(yaml).unwrap();
    let pool = Pool::new(&config.pools[0], None).0;
    let section = config.pools[0].affinity.as_ref().unwrap();
    let affinity = Affinity::new(
        section,
        None,
        &pool,
        &sticky_proxy::extension::Extensions::default(),
    );
    let cookie = affinity.cookie.as_ref().unwrap();
    let value = sticky_proxy::affinity::cookie::value_text(&cookie.config.format, "web", "app1");
    let header = format!("_ga=GA1.2.3; theme=dark; ARRAffinity={value}; CUserID=42");
    let returning = || {
        let pin = cookie.pinned(std::iter::once(header.as_bytes()));
        let slots = pool.slots();
        decide(
            pin,
            Mechanisms {
                cookie: true,
                tables: false,
                keeps_sessions: false,
            },
            &[],
            |i| slots[i].is_usable(),
            |_| None,
            |failed| pool.select_new(&slots, failed),
        )
    };
    // Once before counting: anything lazily set up on first use is not per request.
    assert_eq!(returning().backend(), Some(1));

    let (count, decision) = allocations_in(returning);
    assert_eq!(decision.backend(), Some(1), "the cookie pins app1");
    assert_eq!(
        count, 0,
        "heap allocations in one returning-session decision"
    );

    // The counter does see allocations (so the zero above is a measurement).
    let (count, _) = allocations_in(|| std::hint::black_box(vec![0u8; 64]));
    assert_eq!(count, 1);
}

#[test]
fn with_cookie_lifetimes_the_returning_session_decision_still_allocates_nothing() {
    use sticky_proxy::affinity::lifetime::{unix_now, DatedIds, Dates};
    let secret = "test-secret-0123456789abcdef";
    let yaml = format!("sticky:\n  listeners: [{{ addr: \"127.0.0.1:6188\" }}]\n  pools:\n    - name: web\n      backends: [{{ name: app0, addr: \"127.0.0.1:10000\" }}, {{ name: app1, addr: \"127.0.0.1:10001\" }}, {{ name: app2, addr: \"127.0.0.1:10002\" }}]\n      affinity:\n        cookie: {{ secret: {secret}, max_idle_seconds: 3600, max_life_seconds: 86400 }}\n");
    let config = load_str(&yaml).unwrap();
    let pool = Pool::new(&config.pools[0], None).0;
    let section = config.pools[0].affinity.as_ref().unwrap();
    let affinity = Affinity::new(
        section,
        None,
        &pool,
        &sticky_proxy::extension::Extensions::default(),
    );
    let cookie = affinity.cookie.as_ref().unwrap();
    let ids = DatedIds::new(secret.as_bytes(), "web", ["app0", "app1", "app2"]);
    let value = ids
        .codec
        .encode(ids.id(1).unwrap(), Dates::new_at(unix_now()));
    let value = std::str::from_utf8(&value).unwrap();
    let header = format!("_ga=GA1.2.3; theme=dark; ARRAffinity={value}; CUserID=42");
    let returning = || {
        // Read (parse, HMAC, clock, lifetime rules), then decide.
        let read = cookie.read(std::iter::once(header.as_bytes()));
        let slots = pool.slots();
        let decision = decide(
            read.pin(),
            Mechanisms {
                cookie: true,
                tables: false,
                keeps_sessions: false,
            },
            &[],
            |i| slots[i].is_usable(),
            |_| None,
            |failed| pool.select_new(&slots, failed),
        );
        (read, decision)
    };
    assert_eq!(returning().1.backend(), Some(1));

    let (count, (read, decision)) = allocations_in(returning);
    assert_eq!(decision.backend(), Some(1), "the dated cookie pins app1");
    assert!(
        matches!(
            read,
            sticky_proxy::affinity::CookieRead::Backend { index: 1, .. }
        ),
        "{read:?}"
    );
    assert_eq!(
        count, 0,
        "heap allocations in one returning-session decision with lifetimes"
    );
}

#[test]
fn looking_for_the_proxys_cookie_names_in_a_responses_set_cookie_lines_allocates_nothing() {
    use sticky_proxy::affinity::cookie::setting_any;
    let mut headers = http::HeaderMap::new();
    for line in [
        "JSESSIONID=3F2A9C; Path=/; HttpOnly",
        "theme=dark; Max-Age=31536000",
        "arraffinity=another-cookie",
    ] {
        headers.append(http::header::SET_COOKIE, line.parse().unwrap());
    }
    let names: Vec<Box<[u8]>> = vec![b"ARRAffinity"[..].into(), b"ARRAffinitySameSite"[..].into()];
    let scan = |headers: &http::HeaderMap| {
        let lines = headers.get_all(http::header::SET_COOKIE).iter();
        setting_any(lines.map(|v| v.as_bytes()), &names)
    };
    let (count, found) = allocations_in(|| scan(&headers));
    assert_eq!(found, None);
    assert_eq!(count, 0, "heap allocations in a scan that finds nothing");
    // (And the scan does find a backend's line for the proxy's cookie.)
    headers.append(http::header::SET_COOKIE, "ARRAffinity=x".parse().unwrap());
    assert_eq!(scan(&headers), Some((1, &b"ARRAffinity"[..])));
}
