//! Who the client is: the TCP peer, unless the peer is a trusted proxy, in which case the
//! forwarding headers it sent are believed (NGINX `set_real_ip_from` + `real_ip_recursive`).
//!
//! `X-Forwarded-For` is read right to left, skipping trusted proxies; the first address that is
//! not trusted is the client. Without `X-Forwarded-For`, the last `for=` of `Forwarded` is used
//! the same way. Anything unparsable stops the walk: the last good address wins.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Is `ip` one of the trusted proxies?
pub fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// The client's IP address as the proxy should see it.
///
/// IPv4 clients of a dual-stack (`[::]`) listener arrive as `::ffff:a.b.c.d`; every address is
/// made canonical first, so they are seen (and matched, masked, forwarded) as IPv4.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(&peer, trusted) {
        return peer;
    }
    let mut client = peer;
    let xff: Vec<&[u8]> = headers
        .get_all(crate::headers::X_FORWARDED_FOR)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let hops: Vec<Option<IpAddr>> = if !xff.is_empty() {
        xff.iter()
            .flat_map(|v| v.split(|b| *b == b','))
            .map(parse_ip)
            .collect()
    } else {
        headers
            .get_all("forwarded")
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(forwarded_for)
            .collect()
    };
    for hop in hops.into_iter().rev() {
        let Some(ip) = hop else { break };
        client = ip;
        if !is_trusted(&ip, trusted) {
            break;
        }
    }
    client
}

fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(text)
        .ok()?
        .trim()
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The `for=` parameter of one `Forwarded` element: `for=192.0.2.1`, `for="[2001:db8::1]:443"`.
fn forwarded_for(element: &[u8]) -> Option<Option<IpAddr>> {
    let pair = element.split(|b| *b == b';').find(|p| {
        let p = p.trim_ascii();
        p.len() > 4 && p[..4].eq_ignore_ascii_case(b"for=")
    })?;
    let value = pair.trim_ascii()[4..].trim_ascii();
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    let host = if let Some(rest) = value.strip_prefix(b"[") {
        rest.split(|b| *b == b']').next().unwrap_or_default()
    } else {
        // IPv4 with an optional port.
        value.split(|b| *b == b':').next().unwrap_or_default()
    };
    Some(parse_ip(host))
}

/// The address with everything past `prefix` bits zeroed (NGINX `ip_hash` keys on the /24).
pub fn masked(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpNet::new(IpAddr::V4(v4), ipv4_prefix.min(32))
            .map(|n| n.network())
            .unwrap_or(ip),
        IpAddr::V6(v6) => IpNet::new(IpAddr::V6(v6), ipv6_prefix.min(128))
            .map(|n| n.network())
            .unwrap_or(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            resolve(ip("9.9.9.9"), &h, &nets(&["10.0.0.0/8"])),
            ip("9.9.9.9")
        );
        assert_eq!(resolve(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_hands_over_to_the_rightmost_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.1.1.1")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(resolve(ip("10.0.0.1"), &split, &trusted), ip("1.2.3.4"));
        let garbage = headers(&[("x-forwarded-for", "nonsense, 1.2.3.4")]);
        assert_eq!(resolve(ip("10.0.0.1"), &garbage, &trusted), ip("1.2.3.4"));
        let all_garbage = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &all_garbage, &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_is_used_when_there_is_no_x_forwarded_for() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            "for=1.2.3.4;proto=https, for=\"[2001:db8::1]:443\"",
        )]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
        let v4 = headers(&[("forwarded", "For=\"1.2.3.4:80\"")]);
        assert_eq!(resolve(ip("10.0.0.1"), &v4, &trusted), ip("1.2.3.4"));
    }

    #[test]
    fn ipv4_mapped_peers_and_hops_are_seen_as_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "::ffff:1.2.3.4")]);
        assert_eq!(resolve(ip("::ffff:10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
        assert_eq!(resolve(ip("::ffff:9.9.9.9"), &h, &trusted), ip("9.9.9.9"));
    }

    #[test]
    fn masking_keeps_the_prefix_only() {
        assert_eq!(masked(ip("192.168.7.99"), 24, 128), ip("192.168.7.0"));
        assert_eq!(masked(ip("192.168.7.99"), 32, 128), ip("192.168.7.99"));
        assert_eq!(
            masked(ip("2001:db8:1:2:3:4:5:6"), 32, 64),
            ip("2001:db8:1:2::")
        );
    }
}
