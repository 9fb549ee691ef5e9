//! Where a partner's endpoint may point: not at us, nor at anything only we can reach (SSRF).
//! Outside dev mode: `https` to public addresses only. In dev mode, also `http` and `https` to
//! loopback (a receiver on the developer's machine). Private, link-local (the cloud metadata
//! service), shared, multicast and unspecified addresses are refused in every mode. Names are
//! resolved when the endpoint is saved and again before each delivery, which then connects to
//! the address checked (so a name that changes its answer cannot rebind to a private one).

use std::net::{IpAddr, SocketAddr};

use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("must be an absolute https URL")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("its host does not resolve")]
    Unresolved,
    #[error("points at {0}, which is not a public address")]
    NotPublic(IpAddr),
}

/// The URL, parsed and checked, with the address to connect to.
pub async fn check(url: &str, dev_mode: bool) -> Result<(Url, SocketAddr), AddressError> {
    let url = Url::parse(url.trim()).map_err(|_| AddressError::NotHttps)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AddressError::Credentials);
    }
    let https = url.scheme() == "https";
    let plain_allowed = dev_mode && url.scheme() == "http";
    if !(https || plain_allowed) {
        return Err(AddressError::NotHttps);
    }
    let host = url.host_str().ok_or(AddressError::NotHttps)?.trim_matches(['[', ']']).to_string();
    let port = url.port_or_known_default().ok_or(AddressError::NotHttps)?;
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| AddressError::Unresolved)?
            .collect(),
    };
    let first = *addresses.first().ok_or(AddressError::Unresolved)?;
    // Every address the name has must pass: a client may connect to any of them.
    for address in &addresses {
        let ip = address.ip();
        let allowed = is_public(ip) || (dev_mode && ip.is_loopback());
        if !allowed {
            return Err(AddressError::NotPublic(ip));
        }
    }
    if !https && !first.ip().is_loopback() {
        return Err(AddressError::NotHttps);
    }
    Ok((url, first))
}

/// Globally routable unicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_public_https_outside_dev_mode() {
        for refused in [
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/hook",
            "https://192.168.1.10/hook",
            "https://100.64.0.1/hook",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://0.0.0.0/hook",
            "https://user:pass@93.184.215.14/hook",
            "ftp://93.184.215.14/hook",
            "not a url",
        ] {
            assert!(check(refused, false).await.is_err(), "{refused}");
        }
        assert!(check("https://93.184.215.14:8443/hook", false).await.is_ok());
    }

    #[tokio::test]
    async fn dev_mode_adds_loopback_and_nothing_else() {
        assert!(check("http://127.0.0.1:9999/hook", true).await.is_ok());
        assert!(check("https://[::1]/hook", true).await.is_ok());
        for refused in ["http://169.254.169.254/", "http://10.0.0.1/", "http://93.184.215.14/"] {
            assert!(check(refused, true).await.is_err(), "{refused}");
        }
    }
}
