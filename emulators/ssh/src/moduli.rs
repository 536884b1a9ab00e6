//! The groups for Diffie-Hellman group exchange (RFC 4419), as sshd picks
//! them: from the moduli file (`/etc/ssh/moduli`, which Debian's
//! openssh-server ships), a random group among those of the best size for
//! the request, and sshd's fixed fallback groups when the file is missing or
//! has none that fit. A decky answering every request with the same fixed
//! prime where the real sshd of its distro draws from the file would be a
//! tell to anyone who asks twice.

use std::path::Path;

use rsa::BigUint;

use crate::kex::DhGroup;

/// Where sshd reads its moduli (the persona key `moduli` names another file).
pub const DEFAULT_PATH: &str = "/etc/ssh/moduli";

/// The usable groups of a moduli file, in file order.
#[derive(Debug, Default, Clone)]
pub struct Moduli {
    groups: Vec<(usize, DhGroup)>,
}

impl Moduli {
    /// The file's usable groups.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses moduli(5) lines ("time type tests tries size generator modulus"),
    /// keeping what sshd's parse_prime keeps: safe primes (type 2) that passed
    /// tests other than "composite", after at least one trial, whose modulus
    /// has the stated size (+1) in bits and a generator other than 0 or 1.
    pub fn parse(text: &str) -> Self {
        let groups = text.lines().filter_map(parse_line).collect();
        Self { groups }
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// sshd's answer to a group-exchange request: `None` (sshd closes the
    /// connection) when the numbers as sent are out of order or `max` is
    /// under 2048 (kexgexs.c), or when they are once clamped to 2048..=8192
    /// (its monitor's mm_answer_moduli); else (dh.c's choose_dh), of the
    /// groups within `min..=max`, the size that is the smallest above `n`
    /// (or the largest, if none is above), and one of that size picked by
    /// `pick(count)` (a uniform index below `count`); sshd's fallback group
    /// for `max` if the file has none.
    pub fn choose(&self, min: u32, n: u32, max: u32, pick: impl FnOnce(usize) -> usize) -> Option<DhGroup> {
        if max < min || n < min || max < n || max < 2048 {
            return None;
        }
        let (min, n, max) = (min.max(2048), n.clamp(2048, 8192), max.min(8192));
        if max < min || n < min || max < n {
            return None;
        }
        let (min, n, max) = (min as usize, n as usize, max as usize);
        let mut best = 0;
        let mut count = 0;
        for &(bits, _) in &self.groups {
            if bits < min || bits > max {
                continue;
            }
            if (bits > n && bits < best) || (bits > best && best < n) {
                best = bits;
                count = 0;
            }
            if bits == best {
                count += 1;
            }
        }
        if count == 0 {
            return Some(DhGroup::fallback(max as u32));
        }
        let which = pick(count).min(count - 1);
        self.groups
            .iter()
            .filter(|(bits, _)| *bits == best)
            .nth(which)
            .map(|(_, group)| group.clone())
    }
}

fn parse_line(line: &str) -> Option<(usize, DhGroup)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let _time = fields.next()?;
    let kind: u32 = fields.next()?.parse().ok()?;
    let tests: u32 = fields.next()?.parse().ok()?;
    let tries: u32 = fields.next()?.parse().ok()?;
    let size: usize = fields.next()?.parse().ok()?;
    let g = BigUint::parse_bytes(fields.next()?.as_bytes(), 16)?;
    let p = BigUint::parse_bytes(fields.next()?.as_bytes(), 16)?;
    // moduli(5): type 2 is a safe prime; test bit 0x01 marks a composite.
    const SAFE: u32 = 2;
    const COMPOSITE: u32 = 0x01;
    if kind != SAFE || tests & COMPOSITE != 0 || tests & !COMPOSITE == 0 || tries == 0 {
        return None;
    }
    let bits = size + 1;
    let one = BigUint::from(1u32);
    if p.bits() != bits || g <= one {
        return None;
    }
    Some((bits, DhGroup { p, g }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moduli file of the RFC 3526 primes (2048, 4096 and 8192 bits, each
    /// twice under different generators) and lines sshd skips.
    fn file() -> String {
        let mut text = String::from("#    $OpenBSD: moduli,v 1.1 $\n\n");
        for bits in [2048, 4096, 8192] {
            let hex = crate::modp::prime_hex(bits).expect("a fixed group");
            for g in [2, 5] {
                text.push_str(&format!("20230101000000 2 6 100 {} {g} {hex}\n", bits - 1));
            }
            // Not safe, composite, untested, wrong size, generator 1.
            text.push_str(&format!("20230101000000 4 6 100 {} 2 {hex}\n", bits - 1));
            text.push_str(&format!("20230101000000 2 7 100 {} 2 {hex}\n", bits - 1));
            text.push_str(&format!("20230101000000 2 0 100 {} 2 {hex}\n", bits - 1));
            text.push_str(&format!("20230101000000 2 6 100 {bits} 2 {hex}\n"));
            text.push_str(&format!("20230101000000 2 6 100 {} 1 {hex}\n", bits - 1));
        }
        text.push_str("garbage\n20230101000000 2 6\n");
        text
    }

    #[test]
    fn parses_what_sshd_keeps() {
        let moduli = Moduli::parse(&file());
        assert_eq!(moduli.len(), 6);
        let sizes: Vec<usize> = moduli.groups.iter().map(|(bits, _)| *bits).collect();
        assert_eq!(sizes, [2048, 2048, 4096, 4096, 8192, 8192]);
    }

    #[test]
    fn chooses_as_sshd_does() {
        let moduli = Moduli::parse(&file());
        let bits = |min, n, max| moduli.choose(min, n, max, |_| 0).map(|g| g.p.bits());
        // The smallest size at or above n, within the bounds.
        assert_eq!(bits(2048, 2048, 8192), Some(2048));
        assert_eq!(bits(2048, 3072, 8192), Some(4096));
        assert_eq!(bits(2048, 8192, 8192), Some(8192));
        // None above n: the largest within the bounds.
        assert_eq!(bits(2048, 4096, 6000), Some(4096));
        assert_eq!(bits(2048, 8192, 7000), None, "n above max");
        // Checked as sent, then clamped to 2048..=8192 and checked again.
        assert_eq!(bits(2048, 1024, 8192), None, "n below min as sent");
        assert_eq!(bits(4096, 2048, 8192), None);
        assert_eq!(bits(1024, 1024, 1536), None, "max under 2048");
        assert_eq!(bits(1024, 1024, 2048), Some(2048));
        assert_eq!(bits(2048, 9000, 8192), None, "n above max as sent");
        assert_eq!(bits(9000, 9000, 9000), None, "min above 8192 once clamped");
        assert_eq!(bits(2048, 9000, 9000), Some(8192));
        // Every group of the chosen size can come out.
        let gens: Vec<BigUint> = (0..2)
            .map(|i| {
                let g = moduli.choose(2048, 2048, 8192, |count| {
                    assert_eq!(count, 2);
                    i
                });
                g.expect("a group").g
            })
            .collect();
        assert_eq!(gens, [BigUint::from(2u32), BigUint::from(5u32)]);
    }

    #[test]
    fn without_a_file_the_fallback_groups() {
        assert!(Moduli::load(Path::new("/nonexistent/moduli")).is_err());
        let moduli = Moduli::default();
        let g = moduli.choose(2048, 8192, 8192, |_| unreachable!()).expect("group 18");
        assert_eq!(g.p, DhGroup::fixed(8192).expect("known").p);
    }
}
