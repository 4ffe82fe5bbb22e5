//! The delivery-time guard of the production profile: an HTTP delivery never reaches an
//! address inside the stack. The API refuses such endpoints when a subscription is
//! created, but a name can resolve elsewhere later (DNS rebinding), so the worker checks
//! again where it connects: the HTTP client resolves names through [`GuardedResolver`],
//! which refuses a name with any forbidden address, and IP literals are checked before
//! the request ([`check_host`]). Redirects are not followed, so a redirect cannot lead
//! inside either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is inside some private network: loopback, RFC 1918, link-local,
/// CGNAT (100.64/10), unspecified, broadcast, IPv6 unique-local and link-local, and IPv4
/// addresses mapped into IPv6 that are any of these.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        // 0.0.0.0/8 ("this network") and CGNAT 100.64.0.0/10.
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Deprecated site-local fec0::/10.
        || (first & 0xffc0) == 0xfec0
}

/// Refuses a URL's host when it is an IP literal in a forbidden range (names are checked
/// by the resolver).
pub fn check_host(url: &reqwest::Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_forbidden(ip) {
        Err(format!("endpoint forbidden: {ip} is a private address"))
    } else {
        Ok(())
    }
}

/// The HTTP client's resolver under the production profile: the system's resolution,
/// refused when any address it gives is forbidden.
#[derive(Debug, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                return Err(format!(
                    "endpoint forbidden: {host} resolves to the private address {}",
                    bad.ip()
                )
                .into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_forbidden_public_ones_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860::8888"] {
            assert!(!is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(check_host(&url("http://127.0.0.1:8080/")).is_err());
        assert!(check_host(&url("http://[::1]/")).is_err());
        assert!(check_host(&url("https://93.184.216.34/")).is_ok());
        assert!(check_host(&url("https://example.com/")).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_private_addresses() {
        let name: Name = "localhost".parse().expect("name");
        let err = GuardedResolver.resolve(name).await.err().expect("refused");
        assert!(err.to_string().contains("endpoint forbidden"), "{err}");
    }
}
