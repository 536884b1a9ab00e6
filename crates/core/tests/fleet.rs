//! Fleet planning against the real persona catalogue: every rule of the fleet
//! model (distros, archetypes, OS families, amount, sub-sections, custom
//! services, IP and MAC allocation) and every error path.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

use std::net::Ipv4Addr;

use decnet_core::catalogue::Port;
use decnet_core::fleet::{self, CliFleet, FleetRequest, FleetSpec, PlanOptions, SeedSource};
use decnet_core::host::{DefaultRoute, HostFacts, HostInterface};
use decnet_core::persona::{Credential, PersonaValue};
use decnet_core::seed::FleetSeed;
use decnet_core::{Catalogue, ConfigError, ini};

fn catalogue() -> Catalogue {
    Catalogue::embedded().expect("the embedded catalogue loads")
}

fn plan_with(text: Option<&str>, cli: CliFleet, host: &HostFacts) -> Result<FleetSpec, ConfigError> {
    let cat = catalogue();
    let doc = text.map(|t| ini::parse(t, "t.ini")).transpose()?;
    let request = FleetRequest::build(&cli, doc.as_ref(), &cat)?;
    fleet::plan(&request, &cat, host, &PlanOptions::default())
}

fn plan_ini(text: &str) -> Result<FleetSpec, ConfigError> {
    plan_with(Some(text), CliFleet::default(), &HostFacts::default())
}

fn cli(n: u32) -> CliFleet {
    CliFleet {
        deckies: Some(n),
        subnet: Some("10.0.0.0/24".into()),
        ..CliFleet::default()
    }
}

fn err_ini(text: &str) -> String {
    plan_ini(text).expect_err("must be refused").to_string()
}

const NET: &str = "[general]\nnet = 10.0.0.0/24\ngw = 10.0.0.1\n";

#[test]
fn cli_deckies_cycle_all_distros_round_robin() {
    let spec = plan_with(
        None,
        CliFleet {
            services: Some("ssh".into()),
            ..cli(11)
        },
        &HostFacts::default(),
    )
    .unwrap();
    let cat = catalogue();
    let order: Vec<&str> = cat.distros().iter().map(|d| d.slug.as_str()).collect();
    assert_eq!(
        order,
        [
            "debian", "ubuntu22", "ubuntu20", "rocky9", "centos7", "alpine", "fedora", "kali", "arch"
        ]
    );
    let got: Vec<&str> = spec.deckies.iter().map(|d| d.distro.as_str()).collect();
    assert_eq!(&got[..9], &order[..]);
    assert_eq!(&got[9..], &order[..2]);
    let names: Vec<&str> = spec.deckies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(&names[..3], ["decky-01", "decky-02", "decky-03"]);
}

#[test]
fn distro_flag_cycles_and_ini_distro_wins() {
    let flags = CliFleet {
        services: Some("ssh".into()),
        distro: Some("debian,rocky9".into()),
        ..cli(3)
    };
    let spec = plan_with(None, flags, &HostFacts::default()).unwrap();
    let got: Vec<&str> = spec.deckies.iter().map(|d| d.distro.as_str()).collect();
    assert_eq!(got, ["debian", "rocky9", "debian"]);

    let text = format!("{NET}[a]\nservices = ssh\ndistro = alpine\n[b]\nservices = ssh\n");
    let flags = CliFleet {
        distro: Some("kali".into()),
        ..CliFleet::default()
    };
    let spec = plan_with(Some(&text), flags, &HostFacts::default()).unwrap();
    assert_eq!(spec.decky("a").unwrap().distro, "alpine");
    assert_eq!(spec.decky("b").unwrap().distro, "kali");
}

#[test]
fn random_distros_are_seeded_and_stay_in_the_archetype() {
    let flags = |seed: &str| CliFleet {
        archetype: Some("file-server".into()),
        randomize_distros: true,
        seed: Some(seed.into()),
        ..cli(30)
    };
    let a = plan_with(None, flags("one"), &HostFacts::default()).unwrap();
    let b = plan_with(None, flags("one"), &HostFacts::default()).unwrap();
    let c = plan_with(None, flags("two"), &HostFacts::default()).unwrap();
    let distros = |s: &FleetSpec| s.deckies.iter().map(|d| d.distro.clone()).collect::<Vec<_>>();
    assert_eq!(distros(&a), distros(&b));
    assert_ne!(distros(&a), distros(&c));
    for d in distros(&a) {
        assert!(["debian", "ubuntu22", "rocky9"].contains(&d.as_str()), "{d}");
    }
    // Random, not round-robin: some neighbours repeat over 30 picks from 3.
    let all = distros(&a);
    assert!(all.windows(2).any(|w| w[0] == w[1]));

    let free = CliFleet {
        services: Some("ssh".into()),
        randomize_distros: true,
        ..cli(40)
    };
    let spec = plan_with(None, free, &HostFacts::default()).unwrap();
    let distinct: std::collections::BTreeSet<_> = spec.deckies.iter().map(|d| d.distro.clone()).collect();
    assert!(distinct.len() >= 6, "40 random picks over 9 distros gave {distinct:?}");
}

#[test]
fn archetype_sets_services_family_distros_and_vendor() {
    let spec = plan_ini(&format!("{NET}[p]\narchetype = printer\namount = 2\n")).unwrap();
    let p1 = spec.decky("p-01").unwrap();
    let services: Vec<&str> = p1.services.iter().map(|s| s.slug.as_str()).collect();
    assert_eq!(services, ["snmp", "ftp"]);
    assert_eq!(p1.os_family, "embedded");
    assert_eq!(p1.distro, "alpine");
    assert_eq!(spec.decky("p-02").unwrap().distro, "debian");
    // HP OUI, and a JetDirect-style name from the MAC's last three bytes.
    let hp = catalogue().vendor("hp").unwrap().ouis.clone();
    assert!(hp.iter().any(|o| o[..] == p1.mac.0[..3]), "{}", p1.mac);
    let tail: String = p1.mac.0[3..].iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(p1.hostname, format!("NPI{tail}"));
    // The archetype's persona defaults.
    let snmp = &p1.services[0].persona;
    assert!(snmp["sys_descr"].display().contains("JETDIRECT"));
}

#[test]
fn os_family_priority_explicit_then_archetype_then_linux() {
    let text = format!(
        "{NET}[a]\narchetype = windows-workstation\nnmap_os = bsd\n[b]\narchetype = windows-server\n[c]\nservices = ssh\n[d]\nservices = ssh\nnmap-os = CISCO\n"
    );
    let spec = plan_ini(&text).unwrap();
    assert_eq!(spec.decky("a").unwrap().os_family, "bsd");
    assert_eq!(spec.decky("b").unwrap().os_family, "windows_server");
    assert_eq!(spec.decky("c").unwrap().os_family, "linux");
    assert_eq!(spec.decky("d").unwrap().os_family, "cisco");
    // Windows deckies get Windows names.
    assert!(spec.decky("b").unwrap().hostname.starts_with("WIN-"));
}

#[test]
fn amount_expands_and_subsections_propagate_with_exact_override() {
    let text = format!(
        "{NET}[web]\nservices = ssh, http\namount = 3\n\n[web.ssh]\nssh_version = OpenSSH_8.4p1\nusers = root:a\n\n[web-02.ssh]\nusers = root:b\n"
    );
    let spec = plan_ini(&text).unwrap();
    let names: Vec<&str> = spec.deckies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["web-01", "web-02", "web-03"]);
    let ssh = |n: &str| spec.decky(n).unwrap().services[0].persona.clone();
    let root = |p: &str| {
        PersonaValue::Credentials(vec![Credential {
            username: "root".into(),
            password: p.into(),
        }])
    };
    assert_eq!(
        ssh("web-01")["ssh_version"],
        PersonaValue::String("OpenSSH_8.4p1".into())
    );
    assert_eq!(ssh("web-01")["users"], root("a"));
    assert_eq!(ssh("web-02")["users"], root("b"));
    assert_eq!(
        ssh("web-02")["ssh_version"],
        PersonaValue::String("OpenSSH_8.4p1".into())
    );
    assert_eq!(ssh("web-03")["users"], root("a"));
}

#[test]
fn persona_defaults_come_from_distro_family_and_facts() {
    let text =
        format!("{NET}[lin]\nservices = ssh, smb\ndistro = rocky9\n[win]\nservices = ssh, smb\nnmap_os = windows\n");
    let spec = plan_ini(&text).unwrap();
    let cat = catalogue();
    let lin = spec.decky("lin").unwrap();
    let rocky = cat.distro("rocky9").unwrap();
    assert_eq!(
        lin.services[0].persona["kernel_version"].display(),
        rocky.kernel.release
    );
    let rocky_ssh = &rocky.service_defaults["ssh"]["ssh_version"];
    assert_eq!(
        format!("{rocky_ssh:?}"),
        format!(
            "{:?}",
            decnet_core::catalogue::DefaultRule::Value(lin.services[0].persona["ssh_version"].clone())
        )
    );
    let win = spec.decky("win").unwrap();
    assert_eq!(
        win.services[0].persona["ssh_version"].display(),
        "OpenSSH_for_Windows_8.1"
    );
    assert_eq!(win.services[1].persona["os_version"].display(), "Windows 10 Pro 19045");
    // server_name defaults to the NetBIOS form of the hostname.
    assert_eq!(
        win.services[1].persona["server_name"].display(),
        win.hostname.to_uppercase()
    );
}

#[test]
fn decky_level_persona_keys_apply_to_matching_services() {
    // The seed README puts `os_version` in the decky section itself.
    let text = format!(
        "{NET}[fs]\nservices = smb, ftp\nos_version = Windows Server 2019\n[x]\nservices = ftp\nos_version = Windows Server 2019\n"
    );
    let spec = plan_ini(&text).unwrap();
    assert_eq!(
        spec.decky("fs").unwrap().services[0].persona["os_version"].display(),
        "Windows Server 2019"
    );
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.contains("[x] os_version: unknown key, ignored")),
        "{:?}",
        spec.warnings
    );
    assert!(!spec.warnings.iter().any(|w| w.contains("[fs]")), "{:?}", spec.warnings);
}

#[test]
fn custom_services_run_where_named() {
    let text = format!(
        "{NET}[custom-myapp]\nbinary = my-image:latest\nexec = /usr/bin/myapp -p 9999\nports = 9999, 5353/udp\n\n[box]\nservices = ssh, myapp\n\n[box.myapp]\nBANNER = hello world\n"
    );
    let spec = plan_ini(&text).unwrap();
    let app = &spec.decky("box").unwrap().services[1];
    assert_eq!(app.slug, "myapp");
    assert_eq!(app.ports, vec![Port::tcp(9999), "5353/udp".parse().unwrap()]);
    let custom = app.custom.as_ref().unwrap();
    assert_eq!(custom.image, "my-image:latest");
    assert_eq!(custom.exec, ["/usr/bin/myapp", "-p", "9999"]);
    assert_eq!(app.persona["banner"].display(), "hello world");
}

#[test]
fn ips_skip_network_gateway_host_and_explicit_addresses() {
    let host = HostFacts {
        interfaces: vec![HostInterface {
            name: "eth9".into(),
            addrs: vec!["10.0.0.3/24".parse().unwrap()],
        }],
        default_route: Some(DefaultRoute {
            interface: "eth9".into(),
            gateway: "10.0.0.1".parse().unwrap(),
        }),
    };
    let text = "[fixed]\nip = 10.0.0.4\nservices = ssh\n[pool]\nservices = ssh\namount = 3\n";
    let spec = plan_with(Some(text), CliFleet::default(), &host).unwrap();
    // Subnet, gateway and interface detected from the host's default route.
    assert_eq!(spec.subnet.to_string(), "10.0.0.0/24");
    assert_eq!(spec.gateway, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(spec.interface.as_deref(), Some("eth9"));
    let ips: Vec<String> = spec.deckies.iter().map(|d| d.ip.to_string()).collect();
    assert_eq!(ips, ["10.0.0.4", "10.0.0.2", "10.0.0.5", "10.0.0.6"]);

    let start = CliFleet {
        ip_start: Some("10.0.0.100".into()),
        ..CliFleet::default()
    };
    let spec = plan_with(Some(text), start, &host).unwrap();
    assert_eq!(spec.decky("pool-01").unwrap().ip, Ipv4Addr::new(10, 0, 0, 100));
}

#[test]
fn macs_are_unique_deterministic_and_local_without_a_vendor() {
    let flags = CliFleet {
        services: Some("ssh".into()),
        seed: Some("s".into()),
        ..cli(200)
    };
    let a = plan_with(None, flags.clone(), &HostFacts::default()).unwrap();
    let b = plan_with(None, flags, &HostFacts::default()).unwrap();
    assert_eq!(a, b);
    let macs: std::collections::BTreeSet<_> = a.deckies.iter().map(|d| d.mac).collect();
    assert_eq!(macs.len(), 200);
    assert!(a.deckies.iter().all(|d| d.mac.is_locally_administered()));
    let hostnames: std::collections::BTreeSet<_> = a.deckies.iter().map(|d| d.hostname.to_lowercase()).collect();
    assert_eq!(hostnames.len(), 200);
}

#[test]
fn seeds_come_from_flag_installation_or_placeholder() {
    let cat = catalogue();
    let request = FleetRequest::build(
        &CliFleet {
            services: Some("ssh".into()),
            ..cli(2)
        },
        None,
        &cat,
    )
    .unwrap();
    let host = HostFacts::default();
    let placeholder = fleet::plan(&request, &cat, &host, &PlanOptions::default()).unwrap();
    assert_eq!(placeholder.seed_source, SeedSource::Placeholder);
    let install = PlanOptions {
        installation_seed: Some(FleetSeed::from_passphrase("site")),
        ..PlanOptions::default()
    };
    let installed = fleet::plan(&request, &cat, &host, &install).unwrap();
    assert_eq!(installed.seed_source, SeedSource::Installation);
    assert_ne!(installed.deckies[0].mac, placeholder.deckies[0].mac);
    assert_ne!(installed.deckies[0].seed, placeholder.deckies[0].seed);
    assert_eq!(
        installed.deckies[0].seed,
        FleetSeed::from_passphrase("site").decky("decky-01")
    );
}

#[test]
fn port_clashes_drop_the_later_port_with_a_warning() {
    let spec = plan_ini(&format!("{NET}[h]\nservices = http, conpot\n")).unwrap();
    let conpot = &spec.decky("h").unwrap().services[1];
    assert!(!conpot.ports.iter().any(|p| p.number == 80));
    assert!(conpot.ports.iter().any(|p| p.number == 502));
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.contains("80/tcp of conpot is already served by http"))
    );
    let e = err_ini(&format!("{NET}[h]\nservices = http, https\n"));
    assert!(e.contains("every port of https is already served"), "{e}");
}

#[test]
fn random_services_for_ini_deckies_without_any() {
    let spec = plan_ini(&format!("{NET}[r]\nnmap_os = linux\n")).unwrap();
    let n = spec.decky("r").unwrap().services.len();
    assert!((1..=3).contains(&n));
    assert!(spec.warnings.iter().any(|w| w.contains("random services")));
}

#[test]
fn randomize_services_never_clash() {
    let flags = CliFleet {
        randomize_services: true,
        ..cli(100)
    };
    let spec = plan_with(None, flags, &HostFacts::default()).unwrap();
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
    assert!(spec.deckies.iter().all(|d| (1..=3).contains(&d.services.len())));
    assert!(
        !spec
            .deckies
            .iter()
            .any(|d| d.services.iter().any(|s| s.slug == "smtp_relay"))
    );
}

#[test]
fn error_paths_name_file_line_section_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[d]\nservices = shh\n",
            "t.ini:5: [d] services: unknown service `shh`; did you mean `ssh`?",
        ),
        (
            "[d]\narchetype = printr\n",
            "t.ini:5: [d] archetype: unknown archetype `printr`; did you mean `printer`?",
        ),
        (
            "[d]\nservices = ssh\nnmap_os = windoze\n",
            "t.ini:6: [d] nmap_os: unknown OS family `windoze`; did you mean `windows`?",
        ),
        (
            "[d]\nservices = ssh\ndistro = debain\n",
            "t.ini:6: [d] distro: unknown distro `debain`; did you mean `debian`?",
        ),
        (
            "[d]\nip = 10.0.1.5\nservices = ssh\n",
            "t.ini:5: [d] ip: 10.0.1.5 is outside the subnet 10.0.0.0/24",
        ),
        (
            "[d]\nip = 10.0.0.1\nservices = ssh\n",
            "t.ini:5: [d] ip: 10.0.0.1 is the gateway",
        ),
        (
            "[d]\nip = 10.0.0.255\nservices = ssh\n",
            "t.ini:5: [d] ip: 10.0.0.255 is the broadcast address of 10.0.0.0/24",
        ),
        (
            "[a]\nip = 10.0.0.9\nservices = ssh\n[b]\nip = 10.0.0.9\nservices = ssh\n",
            "t.ini:8: [b] ip: 10.0.0.9 is already used by [a] on line 5",
        ),
        (
            "[d]\nip = 10.0.0.9\namount = 2\nservices = ssh\n",
            "t.ini:5: [d] ip: cannot be combined with `amount = 2` (each decky needs its own IP)",
        ),
        (
            "[d]\namount = 0\nservices = ssh\n",
            "t.ini:5: [d] amount: `0` is not a number between 1 and 16384",
        ),
        (
            "[w]\namount = 2\nservices = ssh\n[w-01]\nservices = ssh\n",
            "t.ini:7: [w-01] decky `w-01` is defined twice (from [w] on line 4)",
        ),
        (
            "[d]\nservices = ssh\n[e.ssh]\nusers = a:b\n",
            "t.ini:6: [e.ssh] no decky or group named `e` for these ssh settings",
        ),
        (
            "[d]\nservices = ssh\n[d.ssh]\nssh_verison = x\n",
            "t.ini:7: [d.ssh] ssh_verison: not a persona key of ssh; did you mean `ssh_version`?",
        ),
        (
            "[d]\nservices = http\n[d.http]\nresponse_code = 999\n",
            "t.ini:7: [d.http] response_code: 999 is outside 100..599",
        ),
        (
            "[d]\nservices = ssh\n[d.shh]\nusers = a:b\n",
            "t.ini:6: [d.shh] `shh` is not a service, so this is not a persona section (decky names cannot contain `.`); did you mean `ssh`?",
        ),
        (
            "[custom-ssh]\nbinary = x\nports = 1\n",
            "t.ini:4: [custom-ssh] `ssh` is a built-in service; give the custom service another name",
        ),
        (
            "[custom-x]\nports = 1\n",
            "t.ini:4: [custom-x] missing `binary =` (the OCI image to run)",
        ),
        (
            "[custom-x]\nbinary = i\nports = 1/sctp\n",
            "t.ini:6: [custom-x] ports: `/sctp` is not a transport (tcp, udp, tcp+tls)",
        ),
        (
            "[bad name]\nservices = ssh\n",
            "t.ini:4: [bad name] `bad name` is not a valid decky name",
        ),
    ];
    for (body, want) in cases {
        let got = err_ini(&format!("{NET}{body}"));
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
    // General-section errors.
    assert_eq!(
        err_ini("[general]\nnet = 10.0.0.0/8x\n"),
        "t.ini:2: [general] net: `10.0.0.0/8x` is not an IPv4 subnet in CIDR form, e.g. 192.168.1.0/24"
    );
    assert_eq!(
        err_ini("[general]\nnet = 10.0.0.0/24\ngw = 10.9.0.1\n[d]\nservices=ssh\n"),
        "t.ini:3: [general] gw: 10.9.0.1 is not a host address of the subnet 10.0.0.0/24"
    );
    let no_net = err_ini("[d]\nservices = ssh\n");
    assert!(no_net.starts_with("t.ini: cannot tell which subnet"), "{no_net}");
    assert!(no_net.contains("--subnet"));
}

#[test]
fn running_out_of_addresses_is_an_error() {
    let e = err_ini("[general]\nnet = 10.0.0.0/29\n[d]\nservices = ssh\namount = 6\n").to_string();
    assert!(
        e.contains("no free address left in 10.0.0.0/29 for `d-06` (6 deckies, 6 usable addresses"),
        "{e}"
    );
}

#[test]
fn cli_errors_name_the_flag() {
    let e = plan_with(None, cli(2), &HostFacts::default()).unwrap_err().to_string();
    assert!(e.contains("no services for the deckies"), "{e}");
    assert!(e.contains("--randomize-services"), "{e}");
    let e = plan_with(
        None,
        CliFleet {
            services: Some("ssh,telnett".into()),
            ..cli(1)
        },
        &HostFacts::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "command line: --services: unknown service `telnett`; did you mean `telnet`?"
    );
    let e = plan_with(
        None,
        CliFleet {
            services: Some("ssh".into()),
            ..cli(0)
        },
        &HostFacts::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "command line: --deckies: must be between 1 and 16384");
    let e = plan_with(None, CliFleet::default(), &HostFacts::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("command line: nothing to deploy"), "{e}");
}

#[test]
fn flags_override_the_general_section() {
    let text = "[general]\nnet = 10.0.0.0/24\ninterface = eth7\nlog_target = 10.0.0.200:514\n[d]\nservices = ssh\n";
    let flags = CliFleet {
        subnet: Some("172.20.0.0/16".into()),
        interface: Some("veth3".into()),
        log_target: Some("tls://siem:6514".into()),
        log_tls_ca: Some("/etc/decnet/ca.pem".into()),
        ..CliFleet::default()
    };
    let spec = plan_with(Some(text), flags, &HostFacts::default()).unwrap();
    assert_eq!(spec.subnet.to_string(), "172.20.0.0/16");
    assert_eq!(spec.interface.as_deref(), Some("veth3"));
    let target = spec.log_target.unwrap();
    assert_eq!(target.to_string(), "tls://siem:6514");
    assert_eq!(target.tls.unwrap().ca, std::path::Path::new("/etc/decnet/ca.pem"));
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.contains("--interface: interface `veth3` does not exist on this host"))
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn section() -> impl Strategy<Value = String> {
        let services = prop::sample::subsequence(
            vec!["ssh", "http", "smb", "redis", "snmp", "telnet", "dns", "ftp"],
            0..4,
        );
        let archetype = prop::option::of(prop::sample::select(vec![
            "printer",
            "linux-server",
            "windows-server",
            "iot-device",
        ]));
        let os = prop::option::of(prop::sample::select(vec![
            "linux", "windows", "bsd", "cisco", "embedded",
        ]));
        (1u32..4, services, archetype, os).prop_map(|(amount, services, archetype, os)| {
            let mut s = format!("amount = {amount}\n");
            if !services.is_empty() {
                s += &format!("services = {}\n", services.join(", "));
            }
            if let Some(a) = archetype {
                s += &format!("archetype = {a}\n");
            }
            if let Some(o) = os {
                s += &format!("nmap_os = {o}\n");
            }
            s
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Arbitrary text never panics the loader or the planner.
        #[test]
        fn arbitrary_input_never_panics(text in "\\PC{0,400}") {
            let cat = catalogue();
            if let Ok(doc) = ini::parse(&text, "p.ini")
                && let Ok(req) = FleetRequest::build(&CliFleet::default(), Some(&doc), &cat)
            {
                let _ = fleet::plan(&req, &cat, &HostFacts::default(), &PlanOptions::default());
            }
        }

        /// INI-shaped text with real keys and junk values never panics either.
        #[test]
        fn ini_shaped_input_never_panics(
            lines in prop::collection::vec(
                prop::sample::select(vec![
                    "[general]", "[d]", "[d.ssh]", "[g]", "[g.http]", "[custom-x]", "[x.y.z]",
                    "net = 10.0.0.0/24", "net = 1.2.3.4/31", "gw = 10.0.0.1", "ip = 10.0.0.7", "amount = 3",
                    "amount = 99999", "services = ssh, http", "services = x", "archetype = printer",
                    "nmap_os = windows", "distro = arch,kali", "users = root:toor", "users = nocolon",
                    "binary = img", "ports = 80, 53/udp", "ports = 0", "hostname = a..b", "   continued",
                ]),
                0..25,
            )
        ) {
            let text = lines.join("\n");
            let cat = catalogue();
            if let Ok(doc) = ini::parse(&text, "p.ini")
                && let Ok(req) = FleetRequest::build(&CliFleet::default(), Some(&doc), &cat)
            {
                let _ = fleet::plan(&req, &cat, &HostFacts::default(), &PlanOptions::default());
            }
        }

        /// The same file always gives the same plan.
        #[test]
        fn planning_is_deterministic(sections in prop::collection::vec(section(), 1..6)) {
            let mut text = String::from("[general]\nnet = 10.1.0.0/16\n");
            for (i, s) in sections.iter().enumerate() {
                text += &format!("[grp{i}]\n{s}");
            }
            let first = plan_ini(&text);
            let second = plan_ini(&text);
            prop_assert_eq!(first, second);
        }
    }
}

#[test]
fn plaintext_syslog_over_a_network_must_be_asked_for() {
    let ini = |general: &str| format!("[general]\nnet = 10.0.0.0/24\n{general}\n[d]\nservices = ssh\n");
    let plan = |general: &str, flags: CliFleet| plan_with(Some(&ini(general)), flags, &HostFacts::default()).unwrap();
    // The seed's plain `ip:port` is UDP in clear text: planned (the original's
    // files load unchanged) with a warning naming the key, and marked refused.
    let spec = plan("log_target = 10.0.0.200:514", CliFleet::default());
    let refusal = spec.log_target.as_ref().unwrap().plaintext_refusal().unwrap();
    assert!(refusal.contains("--insecure-syslog"), "{refusal}");
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.starts_with("t.ini:3: [general] log_target:") && w.contains("a deploy will refuse it")),
        "{:?}",
        spec.warnings
    );
    let spec = plan(
        "",
        CliFleet {
            log_target: Some("tcp://siem:514".into()),
            ..CliFleet::default()
        },
    );
    assert!(spec.log_target.unwrap().plaintext_refusal().is_some());
    // Allowed when asked for, by flag or key, and always to this host.
    for (general, flags) in [
        (
            "log_target = 10.0.0.200:514",
            CliFleet {
                insecure_syslog: true,
                ..CliFleet::default()
            },
        ),
        (
            "log_target = 10.0.0.200:514\ninsecure_syslog = yes",
            CliFleet::default(),
        ),
        ("log_target = 127.0.0.1:514", CliFleet::default()),
        ("log_target = tcp://localhost:514", CliFleet::default()),
    ] {
        let spec = plan(general, flags);
        assert!(spec.warnings.is_empty(), "{general}: {:?}", spec.warnings);
        assert_eq!(spec.log_target.unwrap().plaintext_refusal(), None, "{general}");
    }
    let e = plan_with(
        Some(&ini("log_target = 10.0.0.200:514\ninsecure_syslog = maybe")),
        CliFleet::default(),
        &HostFacts::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("insecure_syslog: `maybe` is not a boolean"), "{e}");
}

#[test]
fn tls_syslog_needs_its_files_and_only_tls_takes_them() {
    let ini = |general: &str| format!("[general]\nnet = 10.0.0.0/24\n{general}\n[d]\nservices = ssh\n");
    let plan = |general: &str| plan_with(Some(&ini(general)), CliFleet::default(), &HostFacts::default());
    let e = plan("log_target = tls://siem:6514").unwrap_err().to_string();
    assert!(e.contains("log_target: a tls:// log target needs the CA"), "{e}");
    let e = plan("log_target = tls://siem:6514\nlog_tls_ca = ca.pem\nlog_tls_cert = me.pem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs its key"), "{e}");
    let e = plan("log_target = udp://127.0.0.1:514\nlog_tls_ca = ca.pem")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.ini:4: [general] log_tls_ca: TLS files given but the log target"),
        "{e}"
    );
    let e = plan("log_tls_ca = ca.pem").unwrap_err().to_string();
    assert!(e.contains("no log target"), "{e}");
    // Paths in an INI file are relative to the file.
    let spec =
        plan("log_target = tls://siem:6514\nlog_tls_ca = ca.pem\nlog_tls_cert = me.pem\nlog_tls_key = /k/me.key")
            .unwrap();
    let tls = spec.log_target.unwrap().tls.unwrap();
    assert!(tls.ca.is_absolute() && tls.ca.ends_with("ca.pem"), "{tls:?}");
    assert_eq!(tls.key.unwrap(), std::path::Path::new("/k/me.key"));
}
