//! Checks the capabilities the network side needs, so that running without
//! root fails with one clear message instead of a first EPERM halfway through.

use crate::NetError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

/// Fails unless the process may create namespaces (CAP_SYS_ADMIN: unshare and
/// mount), links and addresses (CAP_NET_ADMIN) and send ARP probes (CAP_NET_RAW).
pub fn require_network_admin() -> Result<(), NetError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| NetError::io("read /proc/self/status", e))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    check(effective)
}

fn check(effective: u64) -> Result<(), NetError> {
    let needed = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ];
    let has = |cap: u32| effective & (1 << cap) != 0;
    let missing: Vec<&str> = needed.iter().filter(|(c, _)| !has(*c)).map(|(_, n)| *n).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let have: Vec<&str> = needed.iter().filter(|(c, _)| has(*c)).map(|(_, n)| *n).collect();
    Err(NetError::Privilege {
        missing: missing.join(" and "),
        have: if have.is_empty() {
            "none of them".into()
        } else {
            have.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        assert!(check(u64::MAX).is_ok());
        let e = check(0).unwrap_err().to_string();
        assert!(
            e.starts_with("decnet needs CAP_NET_ADMIN and CAP_SYS_ADMIN and CAP_NET_RAW"),
            "{e}"
        );
        assert!(e.contains("sudo"));
        let e = check(1 << CAP_NET_ADMIN).unwrap_err().to_string();
        assert!(e.contains("needs CAP_SYS_ADMIN and CAP_NET_RAW"), "{e}");
        assert!(e.contains("it has: CAP_NET_ADMIN"), "{e}");
    }
}
