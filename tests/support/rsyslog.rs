//! A real rsyslog (Debian's `rsyslogd`) listening on loopback for UDP
//! (RFC 5426), TCP with octet counting (RFC 6587) and TLS (RFC 5425) with
//! mandatory client certificates, parsing structured data with
//! `mmpstrucdata` and writing every message it accepted as one JSON line.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;

/// The name rsyslog requires of our client certificate.
pub(crate) const CLIENT_NAME: &str = "decnet-sensor";

/// Whether rsyslogd is installed; under `CI=true` it must be.
pub(crate) fn available() -> bool {
    let found = Command::new("rsyslogd")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "CI installs rsyslog; rsyslogd was not found"
        );
        eprintln!("skipped: rsyslogd is not installed (apt install rsyslog rsyslog-gnutls)");
    }
    found
}

pub(crate) struct Rsyslog {
    dir: tempfile::TempDir,
    pub(crate) udp: u16,
    pub(crate) tcp: u16,
    pub(crate) tls: u16,
    child: Option<Child>,
}

/// A CA, rsyslog's server certificate, and our client certificate, as PEM files.
pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

impl Rsyslog {
    pub(crate) fn start() -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        make_pki(dir.path());
        let mut r = Rsyslog {
            dir,
            udp: free_udp_port(),
            tcp: free_tcp_port(),
            tls: free_tcp_port(),
            child: None,
        };
        r.write_config();
        r.spawn();
        r
    }

    pub(crate) fn pki(&self) -> Pki {
        Pki {
            ca: self.dir.path().join("ca.pem"),
            client_cert: self.dir.path().join("client.pem"),
            client_key: self.dir.path().join("client.key"),
        }
    }

    /// A second CA's client certificate, which rsyslog must refuse.
    pub(crate) fn stranger_pki(&self) -> Pki {
        let dir = self.dir.path().join("stranger");
        std::fs::create_dir_all(&dir).unwrap();
        make_pki(&dir);
        Pki {
            ca: self.dir.path().join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let config = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="256k" net.enableDNS="off"
       defaultNetstreamDriverCAFile="{d}/ca.pem"
       defaultNetstreamDriverCertFile="{d}/server.pem"
       defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imudp")
module(load="imptcp")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"
       streamDriver.authMode="x509/name" permittedPeer=["{CLIENT_NAME}"])
module(load="mmpstrucdata")
template(name="j" type="string" string="{{\"input\":\"%inputname%\",\"pri\":%pri%,\"host\":\"%hostname:::json%\",\"app\":\"%app-name:::json%\",\"msgid\":\"%msgid:::json%\",\"time\":\"%timereported:::date-rfc3339,json%\",\"sd\":%$!rfc5424-sd%,\"msg\":\"%msg:::json%\"}}\n")
ruleset(name="in") {{
  action(type="mmpstrucdata")
  action(type="omfile" file="{d}/received.jsonl" template="j")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="in")
input(type="imptcp" address="127.0.0.1" port="{tcp}" ruleset="in")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="in")
"#,
            udp = self.udp,
            tcp = self.tcp,
            tls = self.tls,
        );
        std::fs::write(self.dir.path().join("rsyslog.conf"), config).unwrap();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("rsyslogd.out"))
            .unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(self.dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.path().join("rsyslogd.pid"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.tcp)).is_err()
            || TcpStream::connect(("127.0.0.1", self.tls)).is_err()
        {
            assert!(Instant::now() < deadline, "rsyslogd did not start:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd (SIGTERM, as an operator or systemd would).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.out")).unwrap_or_default()
    }

    /// Every message rsyslog accepted so far, as it parsed it.
    pub(crate) fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("rsyslog wrote `{l}`: {e}")))
            .collect()
    }

    /// Waits until `done` holds for what was received, or fails after `timeout`.
    pub(crate) fn wait_until(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslog received {} messages, not what was expected; its output:\n{}",
                got.len(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The messages that came in on one input (`imudp`, `imptcp`, `imtcp`).
pub(crate) fn on_input<'a>(messages: &'a [Value], input: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["input"] == input).collect()
}

fn make_pki(dir: &Path) {
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "DECNET test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, san) in [("server", "127.0.0.1"), ("client", CLIENT_NAME)] {
        let mut params = CertificateParams::new(vec![san.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, san);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
