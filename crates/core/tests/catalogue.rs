//! The persona catalogue as shipped: every file in `personas/` loads, and the
//! data says what the seed documents promise.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

use std::collections::BTreeSet;
use std::path::Path;

use decnet_core::Catalogue;
use decnet_core::seed::FleetSeed;

fn on_disk() -> Catalogue {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../personas");
    Catalogue::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn disk_and_embedded_catalogues_agree() {
    let disk = on_disk();
    let embedded = Catalogue::embedded().unwrap();
    let slugs = |c: &Catalogue| {
        (
            c.services().map(|s| s.slug.clone()).collect::<Vec<_>>(),
            c.distros().iter().map(|d| d.slug.clone()).collect::<Vec<_>>(),
            c.archetypes().iter().map(|a| a.slug.clone()).collect::<Vec<_>>(),
            c.families().map(|f| f.slug.clone()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(slugs(&disk), slugs(&embedded));
}

#[test]
fn the_seed_services_plus_https_smtp_relay_and_dns() {
    let cat = on_disk();
    let slugs: BTreeSet<&str> = cat.services().map(|s| s.slug.as_str()).collect();
    let want = [
        "ssh",
        "http",
        "ftp",
        "tftp",
        "smb",
        "rdp",
        "telnet",
        "vnc",
        "smtp",
        "imap",
        "pop3",
        "ldap",
        "llmnr",
        "mysql",
        "postgres",
        "mssql",
        "mongodb",
        "redis",
        "elasticsearch",
        "mqtt",
        "snmp",
        "sip",
        "k8s",
        "docker_api",
        "conpot",
        "https",
        "smtp_relay",
        "dns",
    ];
    assert_eq!(slugs, want.into_iter().collect());
    let ports = |slug: &str| {
        cat.service(slug)
            .unwrap()
            .ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ports("snmp"), ["161/udp"]);
    assert_eq!(ports("tftp"), ["69/udp"]);
    assert_eq!(ports("sip"), ["5060/udp", "5060/tcp", "5061/tcp+tls"]);
    assert_eq!(ports("llmnr"), ["5355/udp", "5353/udp"]);
    // The TLS variants are served, not only declared.
    for (slug, port) in [
        ("http", "443/tcp+tls"),
        ("imap", "993/tcp+tls"),
        ("pop3", "995/tcp+tls"),
        ("ldap", "636/tcp+tls"),
        ("docker_api", "2376/tcp+tls"),
        ("k8s", "6443/tcp+tls"),
    ] {
        assert!(ports(slug).contains(&port.to_string()), "{slug} lacks {port}");
    }
}

#[test]
fn every_readme_persona_key_is_accepted() {
    let cat = on_disk();
    let readme: &[(&str, &[&str])] = &[
        ("ssh", &["ssh_version", "kernel_version", "users"]),
        ("http", &["server_header", "response_code", "fake_app"]),
        ("smtp", &["smtp_banner", "smtp_mta"]),
        ("smb", &["workgroup", "server_name", "os_version"]),
        ("rdp", &["os_version", "build"]),
        ("mysql", &["mysql_version", "mysql_banner"]),
        ("redis", &["redis_version"]),
        ("postgres", &["pg_version"]),
        ("mongodb", &["mongo_version"]),
        ("elasticsearch", &["es_version", "cluster_name"]),
        ("ldap", &["base_dn", "domain"]),
        ("snmp", &["snmp_community", "sys_descr", "snmp_archetype"]),
        ("mqtt", &["mqtt_version"]),
        ("sip", &["sip_server", "sip_domain"]),
        ("k8s", &["k8s_version"]),
        ("docker_api", &["docker_version"]),
        ("vnc", &["vnc_version"]),
        ("mssql", &["mssql_version"]),
        // The original's own keys (inventory §2.1).
        ("ssh", &["password", "user", "user_password", "hostname"]),
        ("telnet", &["password", "user", "user_password", "hostname"]),
        (
            "https",
            &[
                "tls_cn",
                "tls_cert",
                "tls_key",
                "http_versions",
                "extra_headers",
                "custom_body",
                "files",
            ],
        ),
        ("smtp", &["banner", "mta"]),
        (
            "smtp_relay",
            &[
                "upstream_host",
                "upstream_port",
                "upstream_user",
                "upstream_pass",
                "upstream_sender",
                "probe_limit",
            ],
        ),
        ("imap", &["email_seed"]),
        ("pop3", &["email_seed"]),
        ("rdp", &["nla"]),
        ("mysql", &["version"]),
        ("redis", &["version", "os_string"]),
        (
            "dns",
            &[
                "zone_mode",
                "domain",
                "bind_version",
                "nsid",
                "extra_records",
                "real_recursive",
                "upstream",
                "forward_budget",
                "forward_window",
                "state_path",
            ],
        ),
    ];
    for (slug, keys) in readme {
        let service = cat.service(slug).unwrap();
        for key in *keys {
            assert!(service.key(key).is_some(), "{slug} does not accept {key}");
        }
    }
}

#[test]
fn archetypes_match_the_seed_table() {
    let cat = on_disk();
    let want: &[(&str, &[&str], &str)] = &[
        ("deaddeck", &["ssh"], "linux"),
        ("windows-workstation", &["smb", "rdp"], "windows"),
        ("windows-server", &["smb", "rdp", "ldap"], "windows_server"),
        ("domain-controller", &["ldap", "smb", "rdp", "llmnr"], "windows_server"),
        ("linux-server", &["ssh", "http"], "linux"),
        ("web-server", &["http", "ftp"], "linux"),
        ("database-server", &["mysql", "postgres", "redis"], "linux"),
        ("mail-server", &["smtp", "pop3", "imap"], "linux"),
        ("file-server", &["smb", "ftp", "ssh"], "linux"),
        ("printer", &["snmp", "ftp"], "embedded"),
        ("iot-device", &["mqtt", "snmp", "telnet"], "embedded"),
        ("industrial-control", &["conpot", "snmp"], "embedded"),
        ("voip-server", &["sip"], "linux"),
        ("monitoring-node", &["snmp", "ssh"], "linux"),
        ("devops-host", &["docker_api", "ssh", "k8s"], "linux"),
    ];
    assert_eq!(cat.archetypes().len(), want.len());
    for (slug, services, family) in want {
        let a = cat.archetype(slug).unwrap_or_else(|| panic!("no archetype {slug}"));
        assert_eq!(&a.services, services, "{slug}");
        assert_eq!(&a.os_family, family, "{slug}");
    }
}

#[test]
fn os_families_carry_the_original_sysctl_table() {
    let cat = on_disk();
    // Inventory §4.3: ttl, syn_retries, timestamps, window_scaling, sack, ecn,
    // no_pmtu_disc, fin_timeout, icmp_ratelimit, icmp_ratemask.
    let table: &[(&str, [i64; 10])] = &[
        ("linux", [64, 6, 1, 1, 1, 2, 0, 60, 1000, 6168]),
        ("windows", [128, 2, 1, 1, 1, 0, 0, 30, 0, 0]),
        ("windows_server", [128, 2, 1, 1, 1, 1, 0, 30, 0, 0]),
        ("bsd", [64, 6, 1, 1, 1, 0, 0, 60, 250, 6168]),
        ("embedded", [255, 3, 0, 0, 0, 0, 1, 15, 0, 0]),
        ("cisco", [255, 2, 0, 0, 0, 0, 1, 15, 0, 0]),
    ];
    let keys = [
        "ip_default_ttl",
        "tcp_syn_retries",
        "tcp_timestamps",
        "tcp_window_scaling",
        "tcp_sack",
        "tcp_ecn",
        "ip_no_pmtu_disc",
        "tcp_fin_timeout",
        "icmp_ratelimit",
        "icmp_ratemask",
    ];
    for (slug, values) in table {
        let f = cat.family(slug).unwrap();
        for (key, value) in keys.iter().zip(values) {
            assert_eq!(f.sysctls[&format!("net.ipv4.{key}")], value.to_string(), "{slug} {key}");
        }
        assert_eq!(i64::from(f.ttl), values[0]);
        // No decky speaks IPv6 (nothing of it may give a decky away).
        for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
            assert_eq!(f.sysctls.get(key).map(String::as_str), Some("1"), "{slug} {key}");
        }
    }
}

#[test]
fn distros_have_coherent_userland_facts() {
    let cat = on_disk();
    for d in cat.distros() {
        assert!(d.os_release_field("ID").is_some(), "{}", d.slug);
        let uname = d.uname_a("host1");
        assert!(uname.starts_with("Linux host1 "), "{uname}");
        assert!(uname.contains(&d.kernel.release), "{uname}");
        assert!(
            d.proc_version()
                .starts_with(&format!("Linux version {} (", d.kernel.release)),
            "{}",
            d.slug
        );
        assert!(
            d.service_defaults["ssh"].contains_key("ssh_version"),
            "{} has no OpenSSH default",
            d.slug
        );
    }
}

#[test]
fn hostname_styles_give_valid_distinct_names() {
    let cat = on_disk();
    let styles: BTreeSet<String> = cat
        .distros()
        .iter()
        .map(|d| d.hostname_style.clone())
        .chain(cat.families().filter_map(|f| f.hostname_style.clone()))
        .chain(cat.archetypes().iter().filter_map(|a| a.hostname_style.clone()))
        .collect();
    for name in styles {
        let style = cat.hostname_style(&name).unwrap();
        let mut rng = FleetSeed::placeholder().rng_for(&name);
        let names: BTreeSet<String> = (0..50)
            .map(|_| style.generate(&mut rng, &[0x3c, 0xd9, 0x2b, 1, 2, 3]))
            .collect();
        for n in &names {
            assert!(
                n.len() <= 253 && n.split('.').all(|l| !l.is_empty() && l.len() <= 63),
                "{name}: {n}"
            );
        }
        if !style.pattern.contains("{MAC") {
            assert!(names.len() > 5, "{name} gives too few distinct names: {names:?}");
        }
    }
}

/// nmap's own OUI database must name the vendor we claim, or a scan shows
/// another vendor than the persona's story.
#[test]
fn vendor_ouis_are_what_nmap_calls_them() {
    let path = Path::new("/usr/share/nmap/nmap-mac-prefixes");
    let Ok(db) = std::fs::read_to_string(path) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install nmap (for {})",
            path.display()
        );
        eprintln!("skipped: {} not installed", path.display());
        return;
    };
    let cat = on_disk();
    for vendor in cat.vendors() {
        let first_word = vendor.name.split_whitespace().next().unwrap().to_lowercase();
        for oui in &vendor.ouis {
            let prefix = format!("{:02X}{:02X}{:02X}", oui[0], oui[1], oui[2]);
            let line = db
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{prefix} ({}) is not in nmap's database", vendor.name));
            assert!(
                line.to_lowercase().contains(&first_word),
                "{prefix}: we say {}, nmap says {line}",
                vendor.name
            );
        }
    }
}
