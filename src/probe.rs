//! HTTP checks of the app on a host: directly on a colour's loopback port, or through the
//! host's nginx, both reached through the SSH master connection (a local port forward), so
//! nothing but SSH needs to be open on the host.
//!
//! Owns: the tunnels, the HTTP client, what counts as healthy, and the health gate's backoff.
//! Must not: decide what to do about a failure (the deploy does).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use openssh::ForwardType;
use serde::Serialize;

use crate::error::Error;
use crate::ssh::Host;

/// The last answer of a health check, for messages.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub body: String,
    /// Which upstream nginx used (`X-Shipit-Upstream`), when asked through nginx.
    pub upstream: Option<String>,
    pub error: Option<String>,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.error, self.status) {
            (Some(e), _) => write!(f, "no answer: {e}"),
            (None, Some(s)) => write!(
                f,
                "HTTP {s}: {}",
                self.body.chars().take(300).collect::<String>().trim_end()
            ),
            (None, None) => write!(f, "no answer"),
        }
    }
}

impl Answer {
    /// What a response said: its status, its body, and which upstream nginx used.
    async fn of(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let upstream = resp
            .headers()
            .get("x-shipit-upstream")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status: Some(status),
            body,
            upstream,
            error: None,
        }
    }

    /// A request that got no answer, and why.
    fn failed(e: &reqwest::Error) -> Answer {
        Answer {
            status: None,
            body: String::new(),
            upstream: None,
            error: Some(error_chain(e)),
        }
    }

    /// One short line for progress: the status or the error, without the body.
    pub fn summary(&self) -> String {
        let text = match (&self.error, self.status) {
            (Some(e), _) => e.rsplit(": ").next().unwrap_or(e).to_owned(),
            (None, Some(s)) => format!("HTTP {s}"),
            (None, None) => "no answer".to_owned(),
        };
        text.chars().take(80).collect()
    }
}

/// What a healthy answer looks like.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    pub path: &'a str,
    pub json: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl Expect<'_> {
    /// 2xx, and every configured JSON field equal.
    pub fn healthy(&self, answer: &Answer) -> bool {
        let Some(status) = answer.status else {
            return false;
        };
        if !(200..300).contains(&status) {
            return false;
        }
        match self.json {
            None => true,
            Some(fields) => serde_json::from_str::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .is_some_and(|got| fields.iter().all(|(k, v)| got.get(k) == Some(v))),
        }
    }
}

/// A local port forwarded to `127.0.0.1:remote_port` on a host.
pub struct Tunnel {
    pub local: SocketAddr,
    pub remote_port: u16,
}

impl Tunnel {
    pub async fn open(host: &Host, remote_port: u16) -> Result<Tunnel, Error> {
        let mut last = String::new();
        for _ in 0..3 {
            // A free local port; the tiny race with another process is retried.
            let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| Error::Transport {
                    host: host.spec.to_string(),
                    command: "open a local port".into(),
                    message: e.to_string(),
                })?;
            let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, remote_port));
            match host
                .session()
                .request_port_forward(ForwardType::Local, local, remote)
                .await
            {
                Ok(()) => return Ok(Tunnel { local, remote_port }),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Error::Transport {
            host: host.spec.to_string(),
            command: format!("forward a local port to 127.0.0.1:{remote_port}"),
            message: last,
        })
    }
}

/// An HTTP client for checks: short timeouts, no proxy, and (for checks through nginx) a new
/// connection per request, so that every request meets nginx's current workers.
pub fn client(fresh_connections: bool) -> Result<reqwest::Client, Error> {
    let mut b = crate::tls::client_builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none());
    if fresh_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().map_err(|e| Error::Internal {
        context: "making the HTTP client".into(),
        source: e.into(),
    })
}

/// One GET; never fails, the answer says what happened.
pub async fn get(
    client: &reqwest::Client,
    tunnel: &Tunnel,
    path: &str,
    host_header: Option<&str>,
) -> Answer {
    get_within(client, tunnel, path, host_header, None).await
}

/// One GET with its own time limit.
pub async fn get_within(
    client: &reqwest::Client,
    tunnel: &Tunnel,
    path: &str,
    host_header: Option<&str>,
    limit: Option<Duration>,
) -> Answer {
    let url = format!("http://{}{path}", tunnel.local);
    let mut req = client.get(&url);
    if let Some(limit) = limit {
        req = req.timeout(limit);
    }
    if let Some(h) = host_header {
        req = req
            .header(reqwest::header::HOST, h)
            .header("X-Shipit-Verify", "1");
    }
    match req.send().await {
        Ok(resp) => Answer::of(resp).await,
        Err(e) => Answer::failed(&e),
    }
}

/// What an HTTPS request through a host's nginx saw: the answer, whether this machine trusts
/// the certificate served (and why not), and the certificate itself.
pub struct TlsAnswer {
    pub answer: Answer,
    /// `None` when trusted; else what the verifier said (unknown issuer, expired, ...).
    pub untrusted: Option<String>,
    /// The certificate the host served (DER), when the handshake got that far.
    pub certificate: Option<Vec<u8>>,
}

/// One GET over HTTPS through the tunnel to a host's 443, with `domain` as SNI and `Host`: as a
/// user's browser reaches the site. A certificate this machine does not trust is said, and the
/// request made again without checking it, so that the answer is still seen.
pub async fn get_over_tls(tunnel: &Tunnel, domain: &str, path: &str) -> TlsAnswer {
    let attempt = |check: bool| async move {
        let client = crate::tls::client_builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(domain, tunnel.local)
            .tls_info(true)
            .danger_accept_invalid_certs(!check)
            .build()?;
        client
            .get(format!("https://{domain}{path}"))
            .header("X-Shipit-Verify", "1")
            .send()
            .await
    };
    let (sent, untrusted) = match attempt(true).await {
        Err(e) if is_certificate_error(&e) => {
            let reason = error_chain(&e);
            let reason = reason.rsplit(": ").next().unwrap_or(&reason).to_owned();
            (attempt(false).await, Some(reason))
        }
        other => (other, None),
    };
    match sent {
        Ok(resp) => {
            let certificate = resp
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec));
            TlsAnswer {
                answer: Answer::of(resp).await,
                untrusted,
                certificate,
            }
        }
        Err(e) => TlsAnswer {
            answer: Answer::failed(&e),
            untrusted,
            certificate: None,
        },
    }
}

fn is_certificate_error(e: &reqwest::Error) -> bool {
    let text = error_chain(e).to_lowercase();
    text.contains("certificate") || text.contains("unknownissuer")
}

/// An error and its sources, one after the other (the reason is often in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

/// The backoff of the health gate: from 25 ms, growing by 1.3 to at most 250 ms between checks
/// (a new copy is usually healthy within a second: coarse steps would waste most of it).
pub fn gate_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(25))
        .with_max_delay(Duration::from_millis(250))
        .with_factor(1.3)
        .with_jitter()
        .without_max_times()
}

/// The time limit of the n-th health check: short at first, because a connection made while a
/// container's network comes up can hang for a TCP retransmit (1 s) when a fresh one would be
/// answered at once; longer later, so a slow health endpoint still passes.
pub fn attempt_limit(attempt: u32) -> Duration {
    match attempt {
        0..=4 => Duration::from_millis(200),
        5..=9 => Duration::from_millis(500),
        _ => Duration::from_secs(2),
    }
}

/// Poll until healthy or `deadline` passes; returns the time it took, or the last answer and
/// how many checks were made. `seen` is told each unhealthy answer with its attempt number
/// (from 0).
pub async fn wait_healthy(
    client: &reqwest::Client,
    tunnel: &Tunnel,
    expect: &Expect<'_>,
    deadline: Duration,
    seen: impl Fn(u32, &Answer),
) -> Result<Duration, (Answer, u32)> {
    let started = Instant::now();
    let last = std::sync::Mutex::new(None::<Answer>);
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let attempt = || async {
        let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = get_within(client, tunnel, expect.path, None, Some(attempt_limit(n))).await;
        let ok = expect.healthy(&answer);
        if !ok {
            seen(n, &answer);
        }
        if let Ok(mut l) = last.lock() {
            *l = Some(answer);
        }
        if ok { Ok(()) } else { Err(()) }
    };
    let polled = tokio::time::timeout(deadline, attempt.retry(gate_policy())).await;
    let last = last.into_inner().ok().flatten();
    let checks = attempts.load(std::sync::atomic::Ordering::Relaxed);
    match polled {
        Ok(Ok(())) => Ok(started.elapsed()),
        _ => Err((
            last.unwrap_or(Answer {
                status: None,
                body: String::new(),
                upstream: None,
                error: Some(format!(
                    "no answer within {}",
                    humantime::format_duration(deadline)
                )),
            }),
            checks,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: Some(status),
            body: body.into(),
            upstream: None,
            error: None,
        }
    }

    #[test]
    fn healthy_means_2xx_and_matching_fields() {
        let mut fields = serde_json::Map::new();
        fields.insert("status".into(), "healthy".into());
        let e = Expect {
            path: "/health",
            json: Some(&fields),
        };
        assert!(e.healthy(&answer(200, r#"{"status":"healthy","version":"1"}"#)));
        assert!(!e.healthy(&answer(200, r#"{"status":"unhealthy"}"#)));
        assert!(!e.healthy(&answer(200, "not json")));
        assert!(!e.healthy(&answer(500, r#"{"status":"healthy"}"#)));
        let plain = Expect {
            path: "/",
            json: None,
        };
        assert!(plain.healthy(&answer(204, "")));
        assert!(!plain.healthy(&Answer {
            status: None,
            body: String::new(),
            upstream: None,
            error: Some("refused".into())
        }));
    }

    #[test]
    fn gate_starts_within_25ms_jittered() {
        use backon::BackoffBuilder;
        // 25 ms, plus up to as much again of jitter.
        let first = gate_policy().build().next().unwrap();
        assert!(
            first >= Duration::from_millis(25) && first <= Duration::from_millis(50),
            "{first:?}"
        );
    }
}
