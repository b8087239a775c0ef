//! The pure half of `shipit tls`: what a certificate says, whether a renewal is due, which
//! stored ACME account to use. No I/O: every input is text read from the hosts.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The issuer's common name of the self-signed stand-in `shipit provision` installs so that
/// nginx can start before the first certificate is issued.
pub const PLACEHOLDER_ISSUER: &str = "shipit placeholder";

const DAY: i64 = 86_400;

/// What a certificate says, read from its PEM (the first certificate of a chain) or DER.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertFacts {
    /// Its DNS names (subject alternative names, else the subject's common name).
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
    pub issuer: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub sha256: String,
    /// shipit's self-signed stand-in, not a CA's certificate.
    pub placeholder: bool,
}

impl CertFacts {
    pub fn from_pem(pem: &[u8]) -> Result<CertFacts, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "the first PEM block is a `{}`, not a certificate",
                block.label
            ));
        }
        CertFacts::from_der(&block.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<CertFacts, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut names: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_owned),
            );
        }
        let issuer_cn = cert
            .issuer()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(CertFacts {
            names,
            not_after: cert.validity().not_after.timestamp(),
            issuer: if issuer_cn.is_empty() {
                cert.issuer().to_string()
            } else {
                issuer_cn.clone()
            },
            sha256: hex::encode(sha2::Sha256::digest(der)),
            placeholder: issuer_cn.starts_with(PLACEHOLDER_ISSUER),
        })
    }

    /// Whole days until it expires (negative once it has).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(DAY)
    }

    /// Whether one of its names is `domain` (or a wildcard one level above it).
    pub fn covers(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            n == domain
                || n.strip_prefix("*.").is_some_and(|parent| {
                    domain
                        .split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == parent)
                })
        })
    }

    /// The first 16 hex digits of the fingerprint, enough to tell certificates apart.
    pub fn short_sha256(&self) -> &str {
        self.sha256.get(..16).unwrap_or(&self.sha256)
    }
}

/// What shipit writes beside a certificate it installs: where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// The ACME directory that issued it.
    pub directory: String,
    pub names: Vec<String>,
    /// Unix seconds.
    pub issued_at: i64,
}

/// One host's certificate as read: the file's facts (or why it could not be read) and the
/// record of its issuance.
#[derive(Clone, Debug)]
pub struct HostCert {
    pub host: String,
    /// `Ok(None)`: no certificate file.
    pub cert: Result<Option<CertFacts>, String>,
    pub issued: Option<Issued>,
}

/// Why a certificate is obtained now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Forced,
    Missing {
        host: String,
    },
    Unreadable {
        host: String,
        why: String,
    },
    Placeholder {
        host: String,
    },
    OtherNames {
        host: String,
        names: Vec<String>,
    },
    OtherCa {
        host: String,
        directory: Option<String>,
    },
    Differ {
        fingerprints: Vec<(String, String)>,
    },
    Expiring {
        days: i64,
        renew_before_days: i64,
    },
}

impl Reason {
    /// Whether the certificate in place is a real one that is only getting old (`shipit
    /// provision` leaves those to `shipit tls renew`, and warns).
    pub fn is_expiry(&self) -> bool {
        matches!(self, Reason::Expiring { .. })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => f.write_str("`--force` was given"),
            Reason::Missing { host } => write!(f, "`{host}` has no certificate yet"),
            Reason::Unreadable { host, why } => {
                write!(f, "the certificate on `{host}` cannot be read ({why})")
            }
            Reason::Placeholder { host } => write!(
                f,
                "`{host}` serves the temporary self-signed certificate `shipit provision` put there"
            ),
            Reason::OtherNames { host, names } => write!(
                f,
                "the certificate on `{host}` is for {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Reason::OtherCa { host, directory } => match directory {
                Some(d) => write!(f, "the certificate on `{host}` came from `{d}`"),
                None => write!(f, "the certificate on `{host}` was not issued by shipit"),
            },
            Reason::Differ { fingerprints } => write!(
                f,
                "the hosts hold different certificates ({})",
                fingerprints
                    .iter()
                    .map(|(h, s)| format!("`{h}`: sha256 {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Reason::Expiring {
                days,
                renew_before_days,
            } if *days < 0 => write!(
                f,
                "it expired {} days ago (renewal is due within {renew_before_days} days of expiry)",
                -days
            ),
            Reason::Expiring {
                days,
                renew_before_days,
            } => write!(
                f,
                "it expires in {days} days (renewal is due within {renew_before_days})"
            ),
        }
    }
}

/// Whether to obtain a certificate now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Renew(Reason),
    /// Some hosts hold a good certificate (for the domain, from the configured CA, more than
    /// the renewal margin left) and others do not (a host added, rebuilt, left out of the last
    /// renewal or given another certificate by hand): the good one is copied to the others.
    /// Nothing is asked of the CA, whose duplicate-certificate limits a new order would spend.
    Copy {
        /// The first host (in configuration order) holding it.
        from: String,
        cert: CertFacts,
        /// The hosts that do not hold it, in configuration order.
        to: Vec<String>,
        /// Why the fleet is not current (the first host's reason, as for a renewal).
        reason: Reason,
        due_at: i64,
    },
    /// Every host holds the same certificate, for the domain, from the configured CA, with
    /// more than the renewal margin left.
    Current {
        cert: CertFacts,
        due_at: i64,
    },
}

/// Decide from what every host holds. The first host (in configuration order) with a reason
/// gives it, so the message names a host an operator can look at. When hosts disagree and
/// some hold a good certificate, that one is copied to the rest: the one most hosts hold,
/// then the one that lasts longest, then the first host's.
pub fn decide(
    domain: &str,
    directory: &str,
    hosts: &[HostCert],
    now: i64,
    renew_before: Duration,
    force: bool,
) -> Decision {
    if force {
        return Decision::Renew(Reason::Forced);
    }
    let margin = i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX);
    let due = |c: &CertFacts| c.not_after.saturating_sub(margin);
    let judged: Vec<Result<&CertFacts, Reason>> =
        hosts.iter().map(|h| judge(h, domain, directory)).collect();
    let held: Vec<(&str, &CertFacts)> = hosts
        .iter()
        .zip(&judged)
        .filter_map(|(h, j)| j.as_ref().ok().map(|c| (h.host.as_str(), *c)))
        .collect();
    let reason = match judged.iter().find_map(|j| j.as_ref().err()) {
        Some(reason) => reason.clone(),
        None => {
            let Some((_, first)) = held.first() else {
                return Decision::Renew(Reason::Missing {
                    host: "every host".into(),
                });
            };
            if held.iter().all(|(_, c)| c.sha256 == first.sha256) {
                if now >= due(first) {
                    return Decision::Renew(Reason::Expiring {
                        days: first.days_left(now),
                        renew_before_days: margin / DAY,
                    });
                }
                return Decision::Current {
                    cert: (*first).clone(),
                    due_at: due(first),
                };
            }
            Reason::Differ {
                fingerprints: held
                    .iter()
                    .map(|(h, c)| ((*h).to_owned(), c.short_sha256().to_owned()))
                    .collect(),
            }
        }
    };
    // The good certificates that are not due, by how many hosts hold each; held is in
    // configuration order and only a better one replaces the choice, so `from` is the first
    // host holding it.
    let mut best: Option<(usize, &str, &CertFacts)> = None;
    for (host, c) in held.iter().filter(|(_, c)| now < due(c)) {
        let count = held.iter().filter(|(_, o)| o.sha256 == c.sha256).count();
        let better =
            best.is_none_or(|(n, _, b)| count > n || (count == n && c.not_after > b.not_after));
        if better {
            best = Some((count, host, c));
        }
    }
    let Some((_, from, cert)) = best else {
        return Decision::Renew(reason);
    };
    let to = hosts
        .iter()
        .filter(|h| {
            !held
                .iter()
                .any(|(o, c)| *o == h.host && c.sha256 == cert.sha256)
        })
        .map(|h| h.host.clone())
        .collect();
    Decision::Copy {
        from: from.to_owned(),
        cert: cert.clone(),
        to,
        reason,
        due_at: due(cert),
    }
}

/// A host's certificate when it is one for `domain` from the CA at `directory`; else why not.
fn judge<'a>(h: &'a HostCert, domain: &str, directory: &str) -> Result<&'a CertFacts, Reason> {
    let host = h.host.clone();
    let cert = match &h.cert {
        Ok(Some(c)) => c,
        Ok(None) => return Err(Reason::Missing { host }),
        Err(why) => {
            return Err(Reason::Unreadable {
                host,
                why: why.clone(),
            });
        }
    };
    if cert.placeholder {
        return Err(Reason::Placeholder { host });
    }
    if !cert.covers(domain) {
        return Err(Reason::OtherNames {
            host,
            names: cert.names.clone(),
        });
    }
    match &h.issued {
        Some(i) if i.directory == directory => Ok(cert),
        other => Err(Reason::OtherCa {
            host,
            directory: other.as_ref().map(|i| i.directory.clone()),
        }),
    }
}

/// The ACME account as kept on the hosts (mode 0600): the CA's directory, the contact it was
/// made with, and instant-acme's credentials (its id and private key).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredAccount {
    pub directory: String,
    pub email: String,
    pub credentials: serde_json::Value,
}

impl fmt::Debug for StoredAccount {
    /// The credentials hold the account's private key: never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccount")
            .field("directory", &self.directory)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Which account to use, and the hosts (by index) that must be given it.
#[derive(Debug)]
pub struct AccountChoice {
    /// `None`: no host has one for this directory; a new account is made.
    pub account: Option<StoredAccount>,
    pub write_to: Vec<usize>,
}

/// The first host's account for `directory` (in configuration order); every host whose file
/// differs from it (or is missing, or is for another CA) gets it.
pub fn choose_account(directory: &str, stored: &[Option<Vec<u8>>]) -> AccountChoice {
    let parsed: Vec<Option<StoredAccount>> = stored
        .iter()
        .map(|s| {
            s.as_deref()
                .and_then(|b| serde_json::from_slice::<StoredAccount>(b).ok())
                .filter(|a| a.directory == directory)
        })
        .collect();
    let Some((chosen_at, account)) = parsed
        .iter()
        .enumerate()
        .find_map(|(i, a)| a.clone().map(|a| (i, a)))
    else {
        return AccountChoice {
            account: None,
            write_to: (0..stored.len()).collect(),
        };
    };
    let write_to = (0..stored.len())
        .filter(|i| stored.get(*i) != stored.get(chosen_at))
        .collect();
    AccountChoice {
        account: Some(account),
        write_to,
    }
}

/// An HTTP-01 token as RFC 8555 defines it (base64url), safe as a file name.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One certificate the CA issued for the site, as recorded on each host the moment it arrived
/// (before it was installed anywhere): what counts against the CA's duplicate-certificate limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ordered {
    pub directory: String,
    pub names: Vec<String>,
}

/// One host's record of issued certificates, as read: the host, its clock when it answered, and
/// each certificate with the time it arrived by that clock.
pub type HostOrders = (String, Option<i64>, Vec<(i64, Ordered)>);

/// One host's record of issued certificates: its clock when it answered and each line's time
/// (by the same clock) and record. Lines that are not `SECONDS JSON` are skipped.
pub fn parse_orders(text: &str) -> (Option<i64>, Vec<(i64, Ordered)>) {
    let mut clock = None;
    let mut orders = Vec::new();
    for line in text.lines() {
        let Some((first, rest)) = line.split_once(' ') else {
            continue;
        };
        if first == "clock" {
            clock = rest.trim().parse().ok();
        } else if let (Ok(at), Ok(o)) = (first.parse(), serde_json::from_str(rest)) {
            orders.push((at, o));
        }
    }
    (clock, orders)
}

/// The most recent certificate issued for the same names from the same CA less than a day ago
/// by some host's clock: `(host, seconds ago)`. Each host's record is judged by its own clock,
/// so a wrong clock on the deploying machine changes nothing.
pub fn issued_today<'a>(want: &Ordered, hosts: &'a [HostOrders]) -> Option<(&'a str, i64)> {
    let same = |o: &Ordered| {
        o.directory == want.directory && {
            let mut a = o.names.clone();
            let mut b = want.names.clone();
            a.sort();
            b.sort();
            a == b
        }
    };
    hosts
        .iter()
        .filter_map(|(host, clock, orders)| {
            let clock = (*clock)?;
            orders
                .iter()
                .filter(|(at, o)| same(o) && (0..DAY).contains(&(clock - at)))
                .map(|(at, _)| (host.as_str(), clock - at))
                .min_by_key(|(_, ago)| *ago)
        })
        .min_by_key(|(_, ago)| *ago)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_certificate_per_name_set_a_day_by_each_hosts_clock() {
        let want = Ordered {
            directory: "https://ca/dir".into(),
            names: vec!["www.a.test".into(), "a.test".into()],
        };
        let line = |at: i64, dir: &str, names: &str| {
            format!("{at} {{\"directory\":\"{dir}\",\"names\":{names}}}")
        };
        let text = format!(
            "clock 1000000\n{}\ngarbage line\n{}\n",
            line(900_000, "https://ca/dir", r#"["a.test","www.a.test"]"#),
            line(990_000, "https://other/dir", r#"["a.test","www.a.test"]"#),
        );
        let (clock, orders) = parse_orders(&text);
        assert_eq!(clock, Some(1_000_000));
        assert_eq!(orders.len(), 2);
        // 100,000 s ago: more than a day, free to order.
        let hosts = vec![("h1".to_owned(), clock, orders.clone())];
        assert_eq!(issued_today(&want, &hosts), None);
        // Another host, whose clock says an hour ago (names in another order): refused, naming it.
        let (c2, o2) = parse_orders(&format!(
            "clock 500\n{}\n",
            line(-3100, "https://ca/dir", r#"["www.a.test","a.test"]"#)
        ));
        let hosts = vec![("h1".to_owned(), clock, orders), ("h2".to_owned(), c2, o2)];
        assert_eq!(issued_today(&want, &hosts), Some(("h2", 3600)));
        // Another CA, other names, a time in the host's future, or no clock: not the same order.
        let other = Ordered {
            names: vec!["b.test".into()],
            ..want.clone()
        };
        assert_eq!(issued_today(&other, &hosts), None);
        let (_, future) = parse_orders(&line(
            2_000_000,
            "https://ca/dir",
            r#"["a.test","www.a.test"]"#,
        ));
        assert_eq!(
            issued_today(&want, &[("h3".to_owned(), Some(1_000_000), future.clone())]),
            None
        );
        assert_eq!(
            issued_today(&want, &[("h3".to_owned(), None, future)]),
            None
        );
    }

    const NOW: i64 = 1_800_000_000;
    const DIR: &str = "https://acme.test/dir";

    fn facts(sha: &str, days: i64) -> CertFacts {
        CertFacts {
            names: vec!["app.example.com".into()],
            not_after: NOW + days * DAY,
            issuer: "Test CA".into(),
            sha256: sha.into(),
            placeholder: false,
        }
    }

    fn host(name: &str, cert: Result<Option<CertFacts>, String>) -> HostCert {
        HostCert {
            host: name.into(),
            cert,
            issued: Some(Issued {
                directory: DIR.into(),
                names: vec!["app.example.com".into()],
                issued_at: NOW,
            }),
        }
    }

    fn decide_on(hosts: &[HostCert]) -> Decision {
        decide(
            "app.example.com",
            DIR,
            hosts,
            NOW,
            Duration::from_secs(30 * 86_400),
            false,
        )
    }

    #[test]
    fn current_when_every_host_holds_the_same_fresh_certificate() {
        let hosts = [
            host("a", Ok(Some(facts("aa", 60)))),
            host("b", Ok(Some(facts("aa", 60)))),
        ];
        match decide_on(&hosts) {
            Decision::Current { cert, due_at } => {
                assert_eq!(cert.sha256, "aa");
                assert_eq!(due_at, NOW + 30 * DAY);
            }
            other => panic!("{other:?}"),
        }
        // The margin is inclusive: 30 days left is due.
        let hosts = [host("a", Ok(Some(facts("aa", 30))))];
        assert_eq!(
            decide_on(&hosts),
            Decision::Renew(Reason::Expiring {
                days: 30,
                renew_before_days: 30
            })
        );
    }

    #[test]
    fn every_reason_names_the_first_host_that_has_it() {
        // Due, so that no host holds a certificate the others could be given.
        let fresh = || Ok(Some(facts("aa", 20)));
        let cases: Vec<(Vec<HostCert>, Reason)> = vec![
            (
                vec![host("a", fresh()), host("b", Ok(None))],
                Reason::Missing { host: "b".into() },
            ),
            (
                vec![host("a", Err("bad pem".into()))],
                Reason::Unreadable {
                    host: "a".into(),
                    why: "bad pem".into(),
                },
            ),
            (
                vec![host(
                    "a",
                    Ok(Some(CertFacts {
                        placeholder: true,
                        ..facts("aa", 365)
                    })),
                )],
                Reason::Placeholder { host: "a".into() },
            ),
            (
                vec![host(
                    "a",
                    Ok(Some(CertFacts {
                        names: vec!["other.example.com".into()],
                        ..facts("aa", 60)
                    })),
                )],
                Reason::OtherNames {
                    host: "a".into(),
                    names: vec!["other.example.com".into()],
                },
            ),
            (
                vec![
                    host("a", fresh()),
                    HostCert {
                        issued: None,
                        ..host("b", fresh())
                    },
                ],
                Reason::OtherCa {
                    host: "b".into(),
                    directory: None,
                },
            ),
            (
                vec![HostCert {
                    issued: Some(Issued {
                        directory: "https://staging.test/dir".into(),
                        names: vec![],
                        issued_at: NOW,
                    }),
                    ..host("a", fresh())
                }],
                Reason::OtherCa {
                    host: "a".into(),
                    directory: Some("https://staging.test/dir".into()),
                },
            ),
            (
                vec![host("a", fresh()), host("b", Ok(Some(facts("bb", 10))))],
                Reason::Differ {
                    fingerprints: vec![("a".into(), "aa".into()), ("b".into(), "bb".into())],
                },
            ),
            (
                vec![host("a", Ok(Some(facts("aa", -3))))],
                Reason::Expiring {
                    days: -3,
                    renew_before_days: 30,
                },
            ),
            (
                vec![],
                Reason::Missing {
                    host: "every host".into(),
                },
            ),
        ];
        for (hosts, want) in cases {
            assert_eq!(decide_on(&hosts), Decision::Renew(want.clone()));
            assert!(!want.to_string().is_empty());
        }
        // Forced wins over everything, even a fresh certificate.
        assert_eq!(
            decide(
                "app.example.com",
                DIR,
                &[host("a", Ok(Some(facts("aa", 80))))],
                NOW,
                Duration::from_secs(30 * 86_400),
                true
            ),
            Decision::Renew(Reason::Forced)
        );
    }

    #[test]
    fn a_good_certificate_some_hosts_hold_is_copied_to_the_others_instead_of_ordered() {
        let copy = |hosts: &[HostCert]| match decide_on(hosts) {
            Decision::Copy {
                from,
                cert,
                to,
                reason,
                due_at,
            } => {
                assert_eq!(due_at, cert.not_after - 30 * DAY);
                (from, cert.sha256, to, reason)
            }
            other => panic!("{other:?}"),
        };
        // A new or rebuilt host: nothing, or the stand-in `provision` put there.
        let (from, sha, to, reason) = copy(&[
            host("a", Ok(None)),
            host("b", Ok(Some(facts("aa", 60)))),
            host(
                "c",
                Ok(Some(CertFacts {
                    placeholder: true,
                    ..facts("pp", 365)
                })),
            ),
        ]);
        assert_eq!((from.as_str(), sha.as_str()), ("b", "aa"));
        assert_eq!(to, ["a", "c"]);
        assert_eq!(reason, Reason::Missing { host: "a".into() });
        // A host left out of the last renewal (still on the old, due one): the renewed one.
        let (from, sha, to, reason) = copy(&[
            host("a", Ok(Some(facts("old", 9)))),
            host("b", Ok(Some(facts("new", 90)))),
        ]);
        assert_eq!(
            (from.as_str(), sha.as_str(), to),
            ("b", "new", vec!["a".into()])
        );
        assert!(matches!(reason, Reason::Differ { .. }), "{reason:?}");
        // Two good ones: the one most hosts hold, even when the other lasts longer...
        let (_, sha, to, _) = copy(&[
            host("a", Ok(Some(facts("long", 89)))),
            host("b", Ok(Some(facts("many", 60)))),
            host("c", Ok(Some(facts("many", 60)))),
        ]);
        assert_eq!((sha.as_str(), to), ("many", vec!["a".into()]));
        // ...and between as many, the one that lasts longer.
        let (from, sha, _, _) = copy(&[
            host("a", Ok(Some(facts("short", 40)))),
            host("b", Ok(Some(facts("long", 80)))),
        ]);
        assert_eq!((from.as_str(), sha.as_str()), ("b", "long"));
        // A certificate from another CA, or for other names, is never the source.
        let (from, _, to, _) = copy(&[
            HostCert {
                issued: None,
                ..host("a", Ok(Some(facts("hand", 300))))
            },
            host("b", Ok(Some(facts("aa", 60)))),
        ]);
        assert_eq!((from.as_str(), to), ("b", vec!["a".into()]));
        // Forced: a new order whatever the hosts hold.
        assert_eq!(
            decide(
                "app.example.com",
                DIR,
                &[host("a", Ok(None)), host("b", Ok(Some(facts("aa", 60))))],
                NOW,
                Duration::from_secs(30 * 86_400),
                true
            ),
            Decision::Renew(Reason::Forced)
        );
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Reason::Expiring {
                days: 9,
                renew_before_days: 30
            }
            .to_string(),
            "it expires in 9 days (renewal is due within 30)"
        );
        assert_eq!(
            Reason::Expiring {
                days: -2,
                renew_before_days: 30
            }
            .to_string(),
            "it expired 2 days ago (renewal is due within 30 days of expiry)"
        );
        assert!(
            Reason::Expiring {
                days: 1,
                renew_before_days: 30
            }
            .is_expiry()
        );
        assert!(!Reason::Forced.is_expiry());
    }

    #[test]
    fn names_cover_exact_and_one_level_wildcards() {
        let c = CertFacts {
            names: vec!["*.example.com".into(), "Example.com".into()],
            ..facts("aa", 1)
        };
        assert!(c.covers("app.example.com"));
        assert!(c.covers("example.com"));
        assert!(c.covers("APP.example.com"));
        assert!(!c.covers("a.b.example.com"));
        assert!(!c.covers("example.org"));
        assert!(!c.covers(".example.com"));
    }

    #[test]
    fn certificates_are_read_from_pem_and_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["app.example.com".into()]).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "shipit placeholder for app.example.com",
        );
        let cert = params.self_signed(&key).unwrap();
        let facts = CertFacts::from_pem(cert.pem().as_bytes()).unwrap();
        assert_eq!(facts.names, ["app.example.com"]);
        assert!(facts.placeholder);
        assert_eq!(facts.sha256.len(), 64);
        assert_eq!(facts.short_sha256().len(), 16);
        assert_eq!(CertFacts::from_der(cert.der()).unwrap(), facts);
        // What is not a certificate says so.
        assert!(CertFacts::from_pem(b"hello").is_err());
        assert!(
            CertFacts::from_pem(key.serialize_pem().as_bytes())
                .unwrap_err()
                .contains("not a certificate")
        );
        assert!(CertFacts::from_der(b"\x30\x03\x02\x01\x00").is_err());
    }

    fn stored(directory: &str, id: &str) -> Option<Vec<u8>> {
        Some(
            serde_json::to_vec(&StoredAccount {
                directory: directory.into(),
                email: "ops@example.com".into(),
                credentials: serde_json::json!({ "id": id }),
            })
            .unwrap(),
        )
    }

    #[test]
    fn the_first_hosts_account_for_the_directory_is_used_and_given_to_the_others() {
        let choice = choose_account(DIR, &[None, stored(DIR, "1"), stored(DIR, "2")]);
        assert_eq!(choice.account.unwrap().credentials["id"], "1");
        assert_eq!(choice.write_to, [0, 2]);

        // Another CA's account, or a file that is not one, is replaced.
        let choice = choose_account(
            DIR,
            &[
                stored("https://other.test/dir", "9"),
                Some(b"{not json".to_vec()),
                stored(DIR, "3"),
            ],
        );
        assert_eq!(choice.account.unwrap().credentials["id"], "3");
        assert_eq!(choice.write_to, [0, 1]);

        let choice = choose_account(DIR, &[None, stored("https://other.test/dir", "9")]);
        assert!(choice.account.is_none());
        assert_eq!(choice.write_to, [0, 1]);

        let same = choose_account(DIR, &[stored(DIR, "1"), stored(DIR, "1")]);
        assert!(same.write_to.is_empty());
    }

    #[test]
    fn an_account_never_shows_its_key() {
        let account = StoredAccount {
            directory: DIR.into(),
            email: "ops@example.com".into(),
            credentials: serde_json::json!({ "key_pkcs8": "SECRET-KEY" }),
        };
        assert!(!format!("{account:?}").contains("SECRET-KEY"));
    }

    #[test]
    fn tokens_are_base64url_only() {
        assert!(is_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        for bad in ["", "../etc/passwd", "a/b", "a b", "a.b", &"x".repeat(257)] {
            assert!(!is_token(bad), "{bad}");
        }
    }
}
