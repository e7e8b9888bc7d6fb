//! Validation of every value that ends up in a command run on a node.
//!
//! Commands are argv vectors and are quoted when a remote shell needs one
//! string, so validation is a second line of defence: a value that is not a
//! node name, an address or a version never reaches a node at all.

use std::net::IpAddr;

/// A Kubernetes node name: a DNS-1123 subdomain (kubernetes
/// apimachinery `pkg/util/validation/validation.go` IsDNS1123Subdomain).
pub fn node_name(name: &str) -> Result<&str, String> {
    if is_dns1123_subdomain(name) {
        Ok(name)
    } else {
        Err(format!(
            "{name:?} is not a valid node name (lowercase letters, digits, '-' and '.', at most 253 characters)"
        ))
    }
}

/// A node address for a remote-shell template: an IP address or a DNS name.
pub fn address(addr: &str) -> Result<&str, String> {
    if addr.parse::<IpAddr>().is_ok() || is_dns1123_subdomain(&addr.to_ascii_lowercase()) {
        Ok(addr)
    } else {
        Err(format!(
            "{addr:?} is not an IP address or a host name; refusing to place it in a command"
        ))
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["node01", "worker-1.example.com", "a"] {
            assert!(node_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Node01",
            "-a",
            "a-",
            "a..b",
            "a b",
            "a;reboot",
            "$(id)",
            "a/b",
            &"x".repeat(254),
        ] {
            assert!(node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        for ok in ["10.0.0.7", "fd00::1", "node01.lan", "Node01.LAN"] {
            assert!(address(ok).is_ok(), "{ok}");
        }
        for bad in ["", "10.0.0.7;id", "a b", "`id`", "-oProxyCommand=x"] {
            assert!(address(bad).is_err(), "{bad}");
        }
    }
}
