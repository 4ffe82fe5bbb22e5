//! The production profile's guard on subscriber endpoints: no subscription may be used to
//! reach inside the stack. A host is refused when it names one of the stack's services
//! (or any name without a dot, which only a private resolver answers), or when it is, or
//! resolves to, an address in loopback, RFC 1918, link-local, CGNAT, unique-local or
//! another non-public range. The API checks at creation; the delivering workers check
//! again at every delivery ([`check_url`]), since a name can resolve elsewhere later (DNS
//! rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Host names of the stack's own services.
pub const SERVICE_NAMES: &[&str] = &[
    "logic",
    "worker",
    "postgres",
    "redis",
    "rabbitmq",
    "autoscaler",
    "presentation",
    "localhost",
];

/// Why an endpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("{0} names a service of the private tier")]
    ServiceName(String),
    #[error("{0} is a private, loopback or link-local address")]
    PrivateAddress(IpAddr),
    #[error("{host} resolves to {address}, a private, loopback or link-local address")]
    ResolvesPrivate { host: String, address: IpAddr },
    #[error("{0} does not resolve")]
    Unresolvable(String),
    #[error("{0}")]
    BadUrl(String),
}

fn v4_private(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // CGNAT 100.64.0.0/10
        || (a == 100 && (64..=127).contains(&b))
        // IETF protocol assignments 192.0.0.0/24, benchmarking 198.18.0.0/15, reserved 240/4
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..=19).contains(&b))
        || a >= 240
}

fn v6_private(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_private(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // unique-local fc00::/7
        || (first & 0xfe00) == 0xfc00
        // link-local fe80::/10
        || (first & 0xffc0) == 0xfe80
        // site-local (deprecated) fec0::/10
        || (first & 0xffc0) == 0xfec0
        // documentation 2001:db8::/32
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // NAT64 64:ff9b::/96 carries an IPv4 address
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// Whether an address is outside the public internet (the private tier lives there).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_private(v4),
        IpAddr::V6(v6) => v6_private(v6),
    }
}

/// The checks that need no DNS: a service name, a name without a dot, a private IP
/// literal (IPv6 literals may come in brackets).
pub fn check_host(host: &str) -> Result<(), Forbidden> {
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if is_private(ip) {
            Err(Forbidden::PrivateAddress(ip))
        } else {
            Ok(())
        };
    }
    let first = bare.split('.').next().unwrap_or_default();
    if !bare.contains('.')
        || SERVICE_NAMES.contains(&first)
        || bare.ends_with(".localhost")
        || bare.ends_with(".internal")
        || bare.ends_with(".local")
    {
        return Err(Forbidden::ServiceName(host.to_owned()));
    }
    Ok(())
}

/// [`check_host`], then every address the name resolves to (`port` for the lookup).
pub async fn check_host_resolved(host: &str, port: u16) -> Result<(), Forbidden> {
    check_host(host)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let addresses = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|_| Forbidden::Unresolvable(host.to_owned()))?;
    let mut any = false;
    for address in addresses {
        any = true;
        if is_private(address.ip()) {
            return Err(Forbidden::ResolvesPrivate {
                host: host.to_owned(),
                address: address.ip(),
            });
        }
    }
    if any {
        Ok(())
    } else {
        Err(Forbidden::Unresolvable(host.to_owned()))
    }
}

/// The whole check of an http/https endpoint, for the API at creation and the workers at
/// each delivery.
pub async fn check_url(url: &str) -> Result<(), Forbidden> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Forbidden::BadUrl(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| Forbidden::BadUrl(format!("{url} has no host")))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    check_host_resolved(host, port).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused() {
        for host in [
            "10.1.2.3",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "[::1]",
            "::1",
            "fd00::1",
            "[fe80::1]",
            "::ffff:10.0.0.1",
        ] {
            assert!(check_host(host).is_err(), "{host}");
        }
        for host in ["93.184.216.34", "2606:4700::1111", "example.com"] {
            assert!(check_host(host).is_ok(), "{host}");
        }
    }

    #[test]
    fn service_names_and_dotless_names_are_refused() {
        for host in [
            "postgres",
            "rabbitmq",
            "logic",
            "localhost",
            "LOCALHOST.",
            "intranet",
            "redis.strata-private",
            "a.localhost",
            "metadata.google.internal",
        ] {
            assert!(check_host(host).is_err(), "{host}");
        }
    }
}
