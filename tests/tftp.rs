//! TFTP with the real tftp-hpa client: requests are refused the way a locked-down
//! tftpd refuses them, from a fresh transfer port, and each one is logged.

use crate::support::{Lab, can_run, stderr, stdout};

#[test]
fn tftp_requests_are_refused_and_logged() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "tftp,ssh"]);
    let ip = lab.status()["deckies"][0]["ip"].as_str().unwrap().to_string();

    let get = lab.attack(&["tftp", &ip, "-c", "get", "router-config.cfg"]);
    let said = format!("{}{}", stdout(&get), stderr(&get));
    assert!(said.contains("Error code 1: File not found"), "{said}");
    let put_file = lab.write("loot.txt", "exfiltrated\n");
    let put = lab.attack(&[
        "tftp",
        &ip,
        "-m",
        "binary",
        "-c",
        "put",
        put_file.to_str().unwrap(),
        "upload.bin",
    ]);
    let said = format!("{}{}", stdout(&put), stderr(&put));
    assert!(said.contains("Error code 2: Access violation"), "{said}");

    let rrq = lab.wait_for_event(|e| e["service"] == "tftp" && e["fields"]["op"] == "RRQ");
    assert_eq!(rrq["kind"], "request");
    assert_eq!(rrq["fields"]["filename"], "router-config.cfg");
    assert_eq!(rrq["fields"]["mode"], "netascii");
    assert_eq!(rrq["src_ip"], lab.attacker.as_str());
    let wrq = lab.wait_for_event(|e| e["service"] == "tftp" && e["fields"]["op"] == "WRQ");
    assert_eq!(wrq["fields"]["filename"], "upload.bin");
    assert_eq!(wrq["fields"]["mode"], "octet");
}

/// A datagram that does not decode gets no answer (and is logged); an
/// unknown opcode gets TFTP's own error.
#[test]
fn undecodable_datagrams_get_no_answer() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "tftp"]);
    let ip = lab.status()["deckies"][0]["ip"].as_str().unwrap().to_string();
    let ask = |payload: &str| {
        let script = format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.settimeout(1.5)\n\
             s.sendto({payload},('{ip}',69))\n\
             try:\n\
             \x20   print(s.recvfrom(1500)[0].hex())\n\
             except socket.timeout:\n\
             \x20   print('silence')\n"
        );
        let out = lab.attack(&["python3", "-c", &script]);
        assert!(out.status.success(), "{}", lab.explain(&out));
        stdout(&out).trim().to_string()
    };
    // A read request whose filename never ends.
    assert_eq!(ask("b'\\x00\\x01no-terminator'"), "silence");
    lab.wait_for_event(|e| e["service"] == "tftp" && e["kind"] == "unknown_opcode" && e["fields"]["error"].is_string());
    // Opcode 9: "Illegal TFTP operation" (error 4).
    let answer = ask("b'\\x00\\x09abc'");
    assert!(answer.starts_with("00050004"), "{answer}");
}
