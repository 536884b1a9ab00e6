//! Per-namespace sysctls. `/proc/sys/net` shows the namespace of the thread
//! that opens it, so these run on a thread that has entered the decky.

use std::path::PathBuf;

use crate::NetError;

/// Writes `net.ipv4.x = v` pairs in the calling thread's namespace.
pub fn apply<'a>(sysctls: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), NetError> {
    for (key, value) in sysctls {
        let path = path_of(key)?;
        std::fs::write(&path, value).map_err(|e| NetError::io(format!("set {key} = {value}"), e))?;
    }
    Ok(())
}

/// Makes the host's neighbour (ARP and NDP) tables big enough for `deckies`.
/// The tables are shared by every namespace and their limits exist only in
/// the host's, so a large fleet overflows the defaults (1024 entries): each
/// decky resolves its peers and each peer the decky. Only ever raises.
/// Returns the sysctls it changed. Runs in the host's namespace.
pub fn size_neighbour_tables(deckies: usize) -> Result<Vec<(String, String)>, NetError> {
    let wanted = [("gc_thresh2", 4 * deckies + 512), ("gc_thresh3", 8 * deckies + 1024)];
    let mut changed = Vec::new();
    for family in ["ipv4", "ipv6"] {
        for (name, value) in wanted {
            let key = format!("net.{family}.neigh.default.{name}");
            let current: usize = read(&key)?.parse().unwrap_or(0);
            if current < value {
                apply([(key.as_str(), value.to_string().as_str())])?;
                changed.push((key, value.to_string()));
            }
        }
    }
    Ok(changed)
}

/// Reads one sysctl in the calling thread's namespace.
pub fn read(key: &str) -> Result<String, NetError> {
    let path = path_of(key)?;
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| NetError::io(format!("read {key}"), e))
}

fn path_of(key: &str) -> Result<PathBuf, NetError> {
    let valid = key.starts_with("net.")
        && key
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if !valid {
        return Err(NetError::io(
            format!("sysctl `{key}`"),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a net.* sysctl"),
        ));
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_paths() {
        assert_eq!(
            path_of("net.ipv4.ip_default_ttl").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_default_ttl")
        );
        assert!(path_of("kernel.hostname").is_err());
        assert!(path_of("net.ipv4/../../x").is_err());
        assert!(path_of("net..x").is_err());
    }
}
