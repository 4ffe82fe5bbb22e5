//! The delivery-time guard of the production profile: an HTTP delivery never reaches an
//! address inside the stack. The API refuses such endpoints when a subscription is
//! created, but a name can resolve elsewhere later (DNS rebinding), so the worker checks
//! again where it connects: the HTTP client resolves names through [`GuardedResolver`],
//! which refuses a name with any forbidden address, and IP literals are checked before
//! the request ([`check_host`]). Redirects are not followed, so a redirect cannot lead
//! inside either.

use std::net::SocketAddr;

use data::net_guard;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Refuses a URL's host when it names a service of the stack or is an IP literal in a
/// private range (names are checked again by the resolver, on every address).
pub fn check_host(url: &reqwest::Url) -> Result<(), String> {
    net_guard::check_host(url.host_str().unwrap_or_default())
        .map_err(|forbidden| format!("endpoint forbidden: {forbidden}"))
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
            if let Some(bad) = addrs.iter().find(|a| net_guard::is_private(a.ip())) {
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
    fn literals_and_service_names_are_refused_public_hosts_are_not() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(check_host(&url("http://127.0.0.1:8080/")).is_err());
        assert!(check_host(&url("http://[::1]/")).is_err());
        assert!(check_host(&url("http://rabbitmq:15672/")).is_err());
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
