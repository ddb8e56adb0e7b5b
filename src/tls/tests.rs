//! Unit tests of certificate choice by SNI, TLS 1.3 detection, ALPN and file loading.

use super::load::{ca_file as load_ca_file, certificate as load_certificate, self_signed};
use super::*;
use crate::config::CertificateConfig;

fn listener(strict_sni: bool) -> ListenerTls {
    let a = self_signed("a", &["a.example".into(), "*.wild.example".into()]).unwrap();
    let b = self_signed("b", &["b.example".into()]).unwrap();
    ListenerTls {
        certificates: vec![a, b],
        min_version: MinVersion::Tls12,
        alpn: ALPN::H2H1,
        strict_sni,
    }
}

#[test]
fn sni_picks_the_certificate_that_names_the_host() {
    let tls = listener(false);
    let b = tls.certificate_for(Some("B.Example.")).unwrap();
    assert_eq!(b.names, ["b.example"]);
    let wild = tls.certificate_for(Some("x.wild.example")).unwrap();
    assert_eq!(wild.names[0], "a.example");
}

#[test]
fn unknown_or_missing_sni_gets_the_default_unless_strict() {
    let tls = listener(false);
    assert_eq!(
        tls.certificate_for(Some("nope.example")).unwrap().names[0],
        "a.example"
    );
    assert_eq!(tls.certificate_for(None).unwrap().names[0], "a.example");
    let strict = listener(true);
    assert!(strict.certificate_for(Some("nope.example")).is_none());
    assert!(strict.certificate_for(None).is_none());
    assert!(strict.certificate_for(Some("b.example")).is_some());
}

#[test]
fn an_exact_name_beats_a_wildcard_listed_before_it() {
    let wild = self_signed("w", &["*.example.com".into()]).unwrap();
    let api = self_signed("a", &["api.example.com".into()]).unwrap();
    let tls = ListenerTls {
        certificates: vec![wild, api],
        min_version: MinVersion::Tls12,
        alpn: ALPN::H2H1,
        strict_sni: false,
    };
    assert_eq!(
        tls.certificate_for(Some("api.example.com")).unwrap().names,
        ["api.example.com"]
    );
    assert_eq!(
        tls.certificate_for(Some("www.example.com")).unwrap().names,
        ["*.example.com"]
    );
}

#[test]
fn wildcards_match_exactly_one_label() {
    assert!(name_matches("*.example.com", "a.example.com"));
    assert!(!name_matches("*.example.com", "a.b.example.com"));
    assert!(!name_matches("*.example.com", "example.com"));
    assert!(!name_matches("*.example.com", ".example.com"));
    assert!(name_matches("example.com", "example.com"));
}

#[test]
fn tls13_is_recognised_by_its_cipher_suites() {
    assert!(offers_tls13([0xc02f, 0x1301]));
    assert!(!offers_tls13([0xc02f, 0xc030, 0x009e]));
    assert!(is_tls13("TLSv1_3") && !is_tls13("TLSv1_2"));
}

#[test]
fn alpn_lists_map_to_pingora_settings() {
    use AlpnProtocol::*;
    assert_eq!(alpn_for(&[H2, Http11]), Some(ALPN::H2H1));
    assert_eq!(alpn_for(&[Http11]), Some(ALPN::H1));
    assert_eq!(alpn_for(&[H2]), Some(ALPN::H2));
    assert_eq!(alpn_for(&[]), None);
}

#[test]
fn certificate_files_are_checked_and_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["svc.test".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["other.test".into()]).unwrap();
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("k.pem");
    let wrong_key = dir.path().join("w.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    std::fs::write(&wrong_key, other.key_pair.serialize_pem()).unwrap();
    let load = |c: &std::path::Path, k: &std::path::Path| {
        load_certificate(
            "f",
            &CertificateConfig {
                cert_file: c.to_str().unwrap().to_string(),
                key_file: k.to_str().unwrap().to_string(),
                server_names: Vec::new(),
            },
        )
    };
    assert_eq!(load(&cert, &key).unwrap().names, ["svc.test"]);

    let missing = dir.path().join("missing.pem");
    let err = load(&missing, &key).err().unwrap().to_string();
    assert!(
        err.starts_with("f.cert_file:") && err.contains("missing.pem"),
        "{err}"
    );

    let err = load(&cert, &wrong_key).err().unwrap().to_string();
    assert!(
        err.starts_with("f.key_file:") && err.contains("does not fit"),
        "{err}"
    );
}

#[test]
fn ca_files_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, generated.cert.pem()).unwrap();
    assert_eq!(load_ca_file("ca", ca.to_str().unwrap()).unwrap().len(), 1);
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing here").unwrap();
    let err = load_ca_file("p.ca_file", empty.to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("p.ca_file:"), "{err}");
}
