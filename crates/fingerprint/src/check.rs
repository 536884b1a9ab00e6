//! `decnet fingerprint check`: what nmap -O should say about a decky, the
//! nmap command that asks it, what nmap's XML report says, and the verdict.
//! Running nmap (inside the lab's attacker namespace) is the caller's part.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

/// nmap's XML report is a few kilobytes per host; anything far larger is
/// not nmap's.
const MAX_REPORT: usize = 16 << 20;

/// What a personality promises about nmap's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    pub display_name: String,
    /// Substrings one of which nmap's `OS details:` must contain.
    pub names: Vec<String>,
    /// Exact: nmap must name it (else best effort, reported but never failed).
    pub exact: bool,
}

/// The ports nmap's OS detection is given: one open TCP port (when the
/// decky has one), one closed TCP port and one closed UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ProbePorts {
    pub open_tcp: Option<u16>,
    pub closed_tcp: u16,
    pub closed_udp: u16,
}

impl ProbePorts {
    /// Picks the ports for a decky listening on `tcp` and `udp`.
    pub fn choose(tcp: &[u16], udp: &[u16]) -> Self {
        let closed = |used: &[u16], first: u16| (first..=u16::MAX).chain(1..first).find(|p| !used.contains(p));
        let open_tcp = tcp.iter().copied().min();
        Self {
            open_tcp,
            // Next to the open port, as a scanner would pick one.
            closed_tcp: closed(tcp, open_tcp.map_or(81, |p| p.saturating_add(1).max(1))).unwrap_or(1),
            closed_udp: closed(udp, 9).unwrap_or(1),
        }
    }

    /// nmap's argument list (after `nmap`) against `targets`.
    pub fn nmap_args(&self, targets: &[Ipv4Addr]) -> Vec<String> {
        let tcp = match self.open_tcp {
            Some(open) => format!("T:{open},{}", self.closed_tcp),
            None => format!("T:{}", self.closed_tcp),
        };
        let mut args: Vec<String> = ["-n", "-O", "-Pn", "-sS", "-sU", "--max-os-tries", "1", "-oX", "-", "-p"]
            .into_iter()
            .map(String::from)
            .collect();
        args.push(format!("{tcp},U:{}", self.closed_udp));
        args.extend(targets.iter().map(Ipv4Addr::to_string));
        args
    }
}

/// What one nmap run said about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// nmap's `OS details:` line (its perfect matches), if it printed one.
    pub details: Option<String>,
    /// nmap's `Running:` line (the classes of its perfect matches).
    pub running: Option<String>,
    /// "Aggressive OS guesses": the matches below 100%, with their accuracy.
    pub guesses: Vec<Guess>,
    /// Whether the open TCP port answered as open.
    pub open_port_answered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guess {
    pub name: String,
    pub accuracy: u8,
}

impl Observation {
    /// Whether this is the single, exact answer `expected` asks for.
    pub fn names(&self, expected: &Expected) -> bool {
        self.guesses.is_empty()
            && self
                .details
                .as_deref()
                .is_some_and(|d| expected.names.iter().any(|n| d.contains(n.as_str())))
    }

    /// One line, as nmap's normal output would put it.
    pub fn summary(&self) -> String {
        match (&self.details, &self.guesses[..]) {
            (Some(d), _) => format!("OS details: {d}"),
            (None, []) => "no OS match".into(),
            (None, guesses) => {
                let shown: Vec<String> = guesses
                    .iter()
                    .take(3)
                    .map(|g| format!("{} ({}%)", g.name, g.accuracy))
                    .collect();
                let more = if guesses.len() > 3 {
                    format!(" +{} more", guesses.len() - 3)
                } else {
                    String::new()
                };
                format!("guesses: {}{more}", shown.join(", "))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("nmap's XML report is not XML: {0}")]
    Xml(String),
    #[error("nmap's XML report is {0} bytes, more than nmap writes")]
    TooLarge(usize),
    #[error("nmap's report has no <nmaprun> root (is this nmap's -oX output?)")]
    NotNmap,
}

/// Parses nmap's `-oX` report: each scanned IPv4 host and what OS
/// detection said about it. `open_tcp` is the port that should be open.
pub fn parse_report(xml: &str, open_tcp: Option<u16>) -> Result<BTreeMap<Ipv4Addr, Observation>, ReportError> {
    if xml.len() > MAX_REPORT {
        return Err(ReportError::TooLarge(xml.len()));
    }
    // nmap's report starts with `<!DOCTYPE nmaprun>` (no internal subset).
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options).map_err(|e| ReportError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if !root.has_tag_name("nmaprun") {
        return Err(ReportError::NotNmap);
    }
    let mut hosts = BTreeMap::new();
    for host in root.children().filter(|n| n.has_tag_name("host")) {
        let Some(ip) = host
            .children()
            .filter(|n| n.has_tag_name("address") && n.attribute("addrtype") == Some("ipv4"))
            .find_map(|n| n.attribute("addr")?.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        hosts.insert(ip, observe(host, open_tcp));
    }
    Ok(hosts)
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name(name))
}

fn observe(host: roxmltree::Node<'_, '_>, open_tcp: Option<u16>) -> Observation {
    let open_port_answered = open_tcp.is_some_and(|open| {
        child(host, "ports").is_some_and(|ports| {
            ports.children().any(|p| {
                p.has_tag_name("port")
                    && p.attribute("protocol") == Some("tcp")
                    && p.attribute("portid").and_then(|s| s.parse().ok()) == Some(open)
                    && child(p, "state").and_then(|s| s.attribute("state")) == Some("open")
            })
        })
    });
    let mut obs = Observation {
        open_port_answered,
        ..Observation::default()
    };
    let Some(os) = child(host, "os") else {
        return obs;
    };
    let mut perfect = Vec::new();
    // Running: vendor and family, each with its generations (`Linux 4.X|5.X`).
    let mut running: Vec<(String, Vec<String>)> = Vec::new();
    for m in os.children().filter(|n| n.has_tag_name("osmatch")) {
        let name = m.attribute("name").unwrap_or_default().to_string();
        let accuracy: u8 = m.attribute("accuracy").and_then(|a| a.parse().ok()).unwrap_or(0);
        if accuracy < 100 {
            obs.guesses.push(Guess { name, accuracy });
            continue;
        }
        perfect.push(name);
        for class in m.children().filter(|n| n.has_tag_name("osclass")) {
            let vendor = class.attribute("vendor").unwrap_or_default();
            let family = class.attribute("osfamily").unwrap_or_default();
            let label = if vendor == family || vendor.is_empty() {
                family.to_string()
            } else {
                format!("{vendor} {family}")
            };
            let generation = class.attribute("osgen").map(str::to_string);
            match running.iter_mut().find(|(l, _)| *l == label) {
                Some((_, gens)) => gens.extend(generation.filter(|g| !gens.contains(g))),
                None => running.push((label, generation.into_iter().collect())),
            }
        }
    }
    if !perfect.is_empty() {
        obs.details = Some(perfect.join(", "));
        let classes: Vec<String> = running
            .into_iter()
            .map(|(label, gens)| {
                if gens.is_empty() {
                    label
                } else {
                    format!("{label} {}", gens.join("|"))
                }
            })
            .collect();
        obs.running = (!classes.is_empty()).then(|| classes.join(", "));
    }
    obs
}

/// The verdict on one decky over every round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exact personality, named in every round.
    Match,
    /// Exact personality, not named in some round.
    Mismatch,
    /// Best-effort personality that nmap named anyway.
    BestEffortNamed,
    /// Best-effort personality, not (always) named: reported, not failed.
    BestEffort,
}

impl Verdict {
    pub fn judge(expected: &Expected, rounds: &[Observation]) -> Self {
        let all = !rounds.is_empty() && rounds.iter().all(|o| o.names(expected));
        match (expected.exact, all) {
            (true, true) => Self::Match,
            (true, false) => Self::Mismatch,
            (false, true) => Self::BestEffortNamed,
            (false, false) => Self::BestEffort,
        }
    }

    pub fn failed(self) -> bool {
        self == Self::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> Expected {
        Expected {
            display_name: "Microsoft Windows 10".into(),
            names: vec!["Microsoft Windows 10".into()],
            exact: true,
        }
    }

    /// The shape of nmap 7.93's -oX report, trimmed to what the parser reads.
    const PERFECT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -O" version="7.93" xmloutputversion="1.05">
<host><status state="up" reason="user-set"/>
<address addr="10.213.0.2" addrtype="ipv4"/>
<address addr="02:00:00:00:00:02" addrtype="mac"/>
<ports><port protocol="tcp" portid="80"><state state="open" reason="syn-ack"/></port>
<port protocol="tcp" portid="81"><state state="closed" reason="reset"/></port></ports>
<os><portused state="open" proto="tcp" portid="80"/>
<osmatch name="Microsoft Windows 10 1507 - 1607" accuracy="100" line="81340">
<osclass type="general purpose" vendor="Microsoft" osfamily="Windows" osgen="10" accuracy="100"><cpe>cpe:/o:microsoft:windows_10</cpe></osclass>
</osmatch></os></host>
<host><address addr="10.213.0.3" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="80"><state state="filtered" reason="no-response"/></port></ports>
<os><osmatch name="Linux 5.0 - 5.4" accuracy="95"><osclass vendor="Linux" osfamily="Linux" osgen="5.X" accuracy="95"/></osmatch>
<osmatch name="Linux 4.15 - 5.6" accuracy="93"><osclass vendor="Linux" osfamily="Linux" osgen="4.X" accuracy="93"/></osmatch>
<osfingerprint fingerprint="OS:SCAN(V=7.93)"/></os></host>
</nmaprun>"#;

    #[test]
    fn a_perfect_match_is_os_details_and_running() {
        let hosts = parse_report(PERFECT, Some(80)).expect("parses");
        let win = &hosts[&Ipv4Addr::new(10, 213, 0, 2)];
        assert_eq!(win.details.as_deref(), Some("Microsoft Windows 10 1507 - 1607"));
        assert_eq!(win.running.as_deref(), Some("Microsoft Windows 10"));
        assert!(win.guesses.is_empty());
        assert!(win.open_port_answered);
        assert!(win.names(&windows()));
        assert_eq!(Verdict::judge(&windows(), std::slice::from_ref(win)), Verdict::Match);
    }

    #[test]
    fn guesses_are_no_match() {
        let hosts = parse_report(PERFECT, Some(80)).expect("parses");
        let linux = &hosts[&Ipv4Addr::new(10, 213, 0, 3)];
        assert_eq!(linux.details, None);
        assert_eq!(linux.running, None);
        assert_eq!(linux.guesses.len(), 2);
        assert_eq!(linux.guesses[0].accuracy, 95);
        assert!(!linux.open_port_answered);
        assert_eq!(
            linux.summary(),
            "guesses: Linux 5.0 - 5.4 (95%), Linux 4.15 - 5.6 (93%)"
        );
        let win = hosts[&Ipv4Addr::new(10, 213, 0, 2)].clone();
        assert_eq!(
            Verdict::judge(&windows(), &[win, linux.clone()]),
            Verdict::Mismatch,
            "one missed round fails an exact personality"
        );
        let best_effort = Expected {
            exact: false,
            ..windows()
        };
        assert_eq!(
            Verdict::judge(&best_effort, std::slice::from_ref(linux)),
            Verdict::BestEffort
        );
        assert!(!Verdict::BestEffort.failed());
    }

    #[test]
    fn a_perfect_match_of_another_os_does_not_name_it() {
        let xml = PERFECT.replace("Microsoft Windows 10 1507 - 1607", "Linux 4.15 - 5.6");
        let hosts = parse_report(&xml, Some(80)).expect("parses");
        assert!(!hosts[&Ipv4Addr::new(10, 213, 0, 2)].names(&windows()));
        assert_eq!(Verdict::judge(&windows(), &[]), Verdict::Mismatch);
    }

    #[test]
    fn hostile_reports_are_errors() {
        assert!(matches!(parse_report("<nmaprun", None), Err(ReportError::Xml(_))));
        assert!(matches!(parse_report("<html/>", None), Err(ReportError::NotNmap)));
        let huge = "x".repeat(MAX_REPORT + 1);
        assert!(matches!(parse_report(&huge, None), Err(ReportError::TooLarge(_))));
        // An entity bomb needs an internal subset, which a DOCTYPE without one lacks;
        // roxmltree also caps entity expansion.
        let bomb = r#"<!DOCTYPE nmaprun [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]><nmaprun><host><address addr="10.0.0.1" addrtype="ipv4"/><os><osmatch name="&f;&f;&f;&f;" accuracy="100"/></os></host></nmaprun>"#;
        if let Ok(hosts) = parse_report(bomb, None) {
            let name_len = hosts
                .values()
                .filter_map(|o| o.details.as_ref())
                .map(String::len)
                .sum::<usize>();
            assert!(name_len < 10_000_000);
        }
    }

    #[test]
    fn ports_avoid_the_deckys_own() {
        let p = ProbePorts::choose(&[80, 81, 443], &[9, 161]);
        assert_eq!(p.open_tcp, Some(80));
        assert_eq!(p.closed_tcp, 82);
        assert_eq!(p.closed_udp, 10);
        let none = ProbePorts::choose(&[], &[]);
        assert_eq!((none.open_tcp, none.closed_tcp, none.closed_udp), (None, 81, 9));
        let args = p.nmap_args(&[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]);
        let line = args.join(" ");
        assert!(line.contains("-p T:80,82,U:10 10.0.0.2 10.0.0.3"), "{line}");
        assert!(line.contains("-oX -"), "{line}");
        let top = ProbePorts::choose(&[u16::MAX], &[]);
        assert_eq!(top.closed_tcp, 1, "wraps around past 65535");
    }
}
