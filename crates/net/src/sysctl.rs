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
