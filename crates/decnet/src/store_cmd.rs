//! `decnet logs`, `decnet attackers`, `decnet creds`: terminal views over the
//! event store, and `logs --follow` over the bus.
//!
//! Everything shown comes from attackers: control characters are made
//! visible before anything reaches the terminal, so a hostile value cannot
//! move the cursor, recolour or retitle the analyst's terminal.

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use decnet_bus::{BusClient, Delivery, topic};
use decnet_events::{Event, Kind};
use decnet_store::{CredentialFilter, EventFilter, Store};

use crate::BadInput;
use crate::cli::{AttackersArgs, CredsArgs, Global, LogsArgs};
use crate::engine_cmd::client_runtime;
use crate::output::Table;

pub(crate) fn logs(global: &Global, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let config = global.engine_config()?;
    let filter = EventFilter {
        decky: args.decky.clone(),
        service: args.service.clone(),
        kind: args
            .kind
            .as_deref()
            .map(|k| Kind::from_str(k).map_err(|e| BadInput(format!("--kind: {e}"))))
            .transpose()?,
        src_ip: args.src.as_deref().map(parse_ip).transpose()?,
        since: args.since.as_deref().map(parse_since).transpose()?,
        after: None,
        limit: Some(args.limit),
    };
    client_runtime()?.block_on(async {
        // Subscribe before reading the history, so nothing falls in between.
        let mut bus = match args.follow {
            true => {
                let mut client = BusClient::connect(config.bus_socket_path()).await?;
                client.subscribe(&pattern(&filter)).await?;
                Some(client)
            }
            false => None,
        };
        let store = open(global).await?;
        let history = store.events(&filter).await?;
        store.close().await;
        let mut out = io::stdout().lock();
        let mut shown: HashSet<uuid::Uuid> = HashSet::with_capacity(history.len());
        for event in &history {
            print_event(&mut out, event, args.json)?;
            shown.insert(event.id);
        }
        out.flush()?;
        let Some(bus) = &mut bus else {
            return anyhow::Ok(ExitCode::SUCCESS);
        };
        loop {
            match bus.next().await? {
                None => {
                    eprintln!("decnet: the engine closed the bus (stopped?)");
                    return Ok(ExitCode::FAILURE);
                }
                Some(Delivery::Lagged { missed }) => {
                    eprintln!("decnet: {missed} events not shown (the terminal fell behind); they are in the store");
                }
                Some(Delivery::Message(message)) => {
                    let Ok(event) = serde_json::from_value::<Event>(message.payload.clone()) else {
                        continue;
                    };
                    if shown.remove(&event.id) || !matches(&filter, &event) {
                        continue;
                    }
                    print_event(&mut out, &event, args.json)?;
                    out.flush()?;
                }
            }
        }
    })
}

pub(crate) fn attackers(global: &Global, args: &AttackersArgs) -> anyhow::Result<ExitCode> {
    let attackers = client_runtime()?.block_on(async {
        let store = open(global).await?;
        let rows = store.attackers(args.limit).await?;
        store.close().await;
        anyhow::Ok(rows)
    })?;
    if args.json {
        crate::output::print_json(&attackers)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec![
        "SOURCE",
        "FIRST SEEN",
        "LAST SEEN",
        "EVENTS",
        "SESSIONS",
        "CREDS",
        "SERVICES",
        "DECKIES",
    ]);
    for a in &attackers {
        table.row(vec![
            a.ip.to_string(),
            time(a.first_seen),
            time(a.last_seen),
            a.events.to_string(),
            a.sessions.to_string(),
            a.credentials.to_string(),
            visible(&a.services.join(","), 60),
            visible(&a.deckies.join(","), 60),
        ]);
    }
    table.print(&mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn creds(global: &Global, args: &CredsArgs) -> anyhow::Result<ExitCode> {
    let filter = CredentialFilter {
        decky: args.decky.clone(),
        service: args.service.clone(),
        src_ip: args.src.as_deref().map(parse_ip).transpose()?,
        limit: Some(args.limit),
    };
    let creds = client_runtime()?.block_on(async {
        let store = open(global).await?;
        let rows = store.credentials(&filter).await?;
        store.close().await;
        anyhow::Ok(rows)
    })?;
    let mut out = io::stdout().lock();
    if args.hashcat {
        // Ready for `hashcat -m MODE`; one kind per run, so the mode is the caller's filter.
        for c in creds.iter().filter(|c| c.hashcat.is_some()) {
            writeln!(out, "{}", visible(c.hashcat.as_deref().unwrap_or_default(), usize::MAX))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        drop(out);
        crate::output::print_json(&creds)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec![
        "SOURCE",
        "DECKY",
        "SERVICE",
        "KIND",
        "PRINCIPAL",
        "SECRET",
        "ATTEMPTS",
        "LAST SEEN",
        "OUTCOME",
    ]);
    for c in &creds {
        table.row(vec![
            c.src_ip.to_string(),
            visible(&c.decky, 32),
            visible(&c.service, 16),
            c.credential.secret_kind.as_str().to_string(),
            visible(c.credential.principal.as_deref().unwrap_or("-"), 32),
            visible(&c.secret_printable, 48),
            c.attempts.to_string(),
            time(c.last_seen),
            c.credential
                .outcome
                .map(|o| format!("{o:?}").to_lowercase())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    table.print(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

async fn open(global: &Global) -> anyhow::Result<Store> {
    let path = global.state_dir.join("decnet.db");
    Store::open_sqlite_read_only(&path)
        .await
        .with_context(|| format!("reading the event store {}", path.display()))
}

/// The bus pattern for a filter: `event.{decky}.{service}.{kind}` with `*` for
/// what is not filtered (source and time are checked per event).
fn pattern(filter: &EventFilter) -> String {
    let part = |value: Option<&str>| value.map_or_else(|| "*".to_string(), |v| topic::token(v).into_owned());
    format!(
        "event.{}.{}.{}",
        part(filter.decky.as_deref()),
        part(filter.service.as_deref()),
        part(filter.kind.map(Kind::as_str))
    )
}

fn matches(filter: &EventFilter, event: &Event) -> bool {
    filter.decky.as_ref().is_none_or(|d| *d == event.decky)
        && filter.service.as_ref().is_none_or(|s| *s == event.service)
        && filter.kind.is_none_or(|k| k == event.kind)
        && filter.src_ip.is_none_or(|ip| ip == event.src_ip)
        && filter.since.is_none_or(|t| event.time >= t)
}

fn print_event(out: &mut impl Write, event: &Event, json: bool) -> io::Result<()> {
    if json {
        // JSON escapes control characters itself.
        serde_json::to_writer(&mut *out, event)?;
        return writeln!(out);
    }
    let mut details: Vec<String> = event
        .fields
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if let Some(c) = &event.credential {
        details.push(format!(
            "{}:{}:{}",
            c.secret_kind.as_str(),
            c.principal.as_deref().unwrap_or(""),
            c.secret_printable()
        ));
    }
    if let Some(m) = &event.message {
        details.push(m.clone());
    }
    writeln!(
        out,
        "{}  {:<14} {:<10} {:<18} {:<21} {}",
        time(event.time),
        visible(&event.decky, 14),
        visible(&event.service, 10),
        event.kind.as_str(),
        format!("{}:{}", event.src_ip, event.src_port),
        visible(&details.join(" "), 200)
    )
}

/// UTC, to the second.
fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `text` with control characters shown as escapes, cut to `max` characters.
fn visible(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_ip(text: &str) -> Result<IpAddr, BadInput> {
    text.parse()
        .map_err(|_| BadInput(format!("--src: `{text}` is not an IP address")))
}

/// An RFC 3339 time, or a duration back from now (`15m`, `2h`, `7d`).
fn parse_since(text: &str) -> Result<SystemTime, BadInput> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    let ago: Duration = humantime::parse_duration(text).map_err(|_| {
        BadInput(format!(
            "--since: `{text}` is neither a time (2026-11-23T10:00:00Z) nor a duration (15m, 2h, 7d)"
        ))
    })?;
    #[allow(clippy::disallowed_methods)]
    Ok(SystemTime::now() - ago)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_cannot_reach_the_terminal_raw() {
        assert_eq!(visible("ok\x1b]0;pwned\x07\n", 100), "ok\\u{1b}]0;pwned\\u{7}\\n");
        assert_eq!(visible("abcdef", 3), "abc…");
    }

    #[test]
    fn follow_patterns_use_wildcards_for_what_is_not_filtered() {
        let filter = EventFilter {
            service: Some("ssh".into()),
            kind: Some(Kind::AuthAttempt),
            ..EventFilter::default()
        };
        assert_eq!(pattern(&filter), "event.*.ssh.auth_attempt");
        assert_eq!(pattern(&EventFilter::default()), "event.*.*.*");
    }

    #[test]
    fn since_takes_times_and_durations() {
        assert!(parse_since("2026-11-23T10:00:00Z").is_ok());
        assert!(parse_since("15m").is_ok());
        assert!(parse_since("yesterday").unwrap_err().0.contains("neither a time"));
    }
}
