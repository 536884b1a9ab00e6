//! Hostile bytes against the SFTP server and the legacy scp protocol, after
//! a valid INIT (so requests, extensions included, are reached): nothing may
//! panic, and the server's buffered bytes stay within their bound.
#![no_main]

use std::collections::BTreeMap;

use decnet_emu_ssh::scp::Scp;
use decnet_emu_ssh::sftp::{Attrs, Backend, Disk, SftpServer};
use decnet_shell::fs::FsError;
use libfuzzer_sys::fuzz_target;

/// A flat in-memory tree: `/`, `/tmp` and the files written.
#[derive(Default)]
struct Files(BTreeMap<String, Vec<u8>>);

impl Backend for Files {
    fn cwd(&self) -> String {
        "/tmp".into()
    }
    fn realpath(&self, path: &str) -> Result<String, FsError> {
        Ok(path.to_string())
    }
    fn stat(&self, path: &str, _: bool) -> Result<Attrs, FsError> {
        let (size, mode) = match path {
            "/" | "/tmp" => (4096, 0o040755),
            _ => (self.0.get(path).ok_or(FsError::NotFound)?.len() as u64, 0o100644),
        };
        Ok(Attrs {
            size,
            uid: 0,
            gid: 0,
            mode,
            mtime: 0,
        })
    }
    fn readlink(&self, _: &str) -> Result<String, FsError> {
        Err(FsError::NotFound)
    }
    fn list(&self, path: &str) -> Result<Vec<(String, Attrs)>, FsError> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let names = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(str::to_string);
        Ok(names
            .map(|n| {
                let a = self.stat(&format!("{prefix}{n}"), true).unwrap_or(Attrs {
                    size: 0,
                    uid: 0,
                    gid: 0,
                    mode: 0o100644,
                    mtime: 0,
                });
                (n, a)
            })
            .collect())
    }
    fn read(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
        self.0.get(path).cloned().ok_or(FsError::NotFound)
    }
    fn may_write(&self, _: &str) -> Result<(), FsError> {
        Ok(())
    }
    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), FsError> {
        if self.0.len() < 64 {
            self.0.insert(path.to_string(), data.to_vec());
        }
        Ok(())
    }
    fn mkdir(&mut self, _: &str) -> Result<(), FsError> {
        Ok(())
    }
    fn rmdir(&mut self, _: &str) -> Result<(), FsError> {
        Err(FsError::NotEmpty)
    }
    fn remove(&mut self, path: &str) -> Result<(), FsError> {
        self.0.remove(path).map(|_| ()).ok_or(FsError::NotFound)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        let data = self.0.remove(from).ok_or(FsError::NotFound)?;
        self.0.insert(to.to_string(), data);
        Ok(())
    }
    fn user_name(&self, uid: u32) -> String {
        uid.to_string()
    }
    fn group_name(&self, gid: u32) -> String {
        gid.to_string()
    }
    fn symlink(&mut self, _: &str, _: &str) -> Result<(), FsError> {
        Ok(())
    }
    fn home_of(&self, user: &str) -> Option<String> {
        (user == "root").then(|| "/root".into())
    }
    fn disk(&self) -> Disk {
        Disk {
            total_kb: 1 << 20,
            used_kb: 1 << 19,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut files = Files::default();
    files.0.insert("/tmp/f".into(), b"file".to_vec());
    let cut = usize::from(mode).min(data.len());
    if mode & 1 == 0 {
        let extensions = [
            "posix-rename@openssh.com",
            "statvfs@openssh.com",
            "fstatvfs@openssh.com",
            "hardlink@openssh.com",
            "fsync@openssh.com",
            "lsetstat@openssh.com",
            "limits@openssh.com",
            "expand-path@openssh.com",
            "copy-data",
            "home-directory",
            "users-groups-by-id@openssh.com",
        ]
        .iter()
        .map(|n| (n.to_string(), "1".to_string()))
        .collect();
        let mut server = SftpServer::new(extensions);
        server.feed(&mut files, 0, &[0, 0, 0, 5, 1, 0, 0, 0, 3]);
        server.feed(&mut files, 0, &data[..cut]);
        server.feed(&mut files, 0, &data[cut..]);
    } else {
        let line = if mode & 2 == 0 {
            "scp -r -t /tmp"
        } else {
            "scp -r -p -f /tmp"
        };
        let mut scp = Scp::parse(line).expect("an scp run");
        scp.feed(&mut files, &data[..cut]);
        scp.feed(&mut files, &data[cut..]);
        scp.eof();
    }
});
