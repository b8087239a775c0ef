//! HTTP checks of the app on a host: directly on a colour's loopback port, or through the
//! host's nginx, both reached through the SSH master connection (a Unix socket of shipit's own
//! forwarded to the host's loopback), so nothing but SSH needs to be open on the host and
//! nothing of shipit's listens on TCP here.
//!
//! Owns: the tunnels, the HTTP client, what counts as healthy, and the health gate's backoff.
//! Must not: decide what to do about a failure (the deploy does).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backon::ExponentialBuilder;
use openssh::{ForwardType, Socket};
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

/// A Unix socket in shipit's private directory (mode 0700), forwarded to
/// `127.0.0.1:remote_port` on a host over its master connection. Nothing of shipit's listens on
/// TCP on this machine, so no other local user reaches the app or nginx "from the host" through
/// it. Dropped, the forward is closed and the socket removed.
pub struct Tunnel {
    pub socket: PathBuf,
    pub remote_port: u16,
    host: Arc<Host>,
    /// What proves shipit's own checks to the host's nginx (`X-Shipit-Verify`), when the
    /// site has one.
    token: Option<String>,
    /// HTTP clients over the socket: a new connection per request, and pooled.
    fresh: OnceLock<reqwest::Client>,
    pooled: OnceLock<reqwest::Client>,
}

/// The forwards being closed in the background (by dropped tunnels).
fn closing() -> &'static std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> {
    static CLOSING: OnceLock<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = OnceLock::new();
    CLOSING.get_or_init(Default::default)
}

/// At the end of a run: wait (a little) for the forwards still closing, so that a master
/// kept for the next run (`ssh.persist`) keeps none of them, then remove this process's
/// directory of forwarded sockets.
pub async fn finish() {
    let pending: Vec<_> = closing()
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(pending)).await;
    if let Ok(dir) = crate::ssh::private_dir() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Tunnel {
    pub async fn open(host: &Arc<Host>, remote_port: u16) -> Result<Tunnel, Error> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let failed = |message: String| Error::Transport {
            host: host.spec.to_string(),
            command: format!("forward a local socket to 127.0.0.1:{remote_port}"),
            message,
        };
        let dir = crate::ssh::private_dir().map_err(failed)?;
        let socket = dir.join(format!("{}.sock", NEXT.fetch_add(1, Ordering::Relaxed)));
        let listen = Socket::UnixSocket {
            path: socket.as_path().into(),
        };
        let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, remote_port));
        host.session()
            .request_port_forward(ForwardType::Local, listen, remote)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(Tunnel {
            socket,
            remote_port,
            host: Arc::clone(host),
            token: None,
            fresh: OnceLock::new(),
            pooled: OnceLock::new(),
        })
    }

    /// The token this tunnel's checks through nginx carry.
    pub fn with_token(mut self, token: Option<&str>) -> Tunnel {
        self.token = token.map(str::to_owned);
        self
    }

    fn client(&self, fresh: bool) -> Result<&reqwest::Client, reqwest::Error> {
        let cell = if fresh { &self.fresh } else { &self.pooled };
        if let Some(c) = cell.get() {
            return Ok(c);
        }
        // Plain HTTP over the forwarded socket: no certificate is ever checked, so none is
        // loaded (the platform's roots cost about 0.2 MB and some CPU per client, and a
        // 500-host verification holds a thousand tunnels).
        let mut b = crate::tls::client_builder()
            .tls_certs_only(Vec::<reqwest::Certificate>::new())
            .unix_socket(self.socket.clone())
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none());
        if fresh {
            b = b.pool_max_idle_per_host(0);
        }
        let client = b.build()?;
        Ok(cell.get_or_init(|| client))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Closed in the background, holding the host until it is closed (the fleet's close waits
        // for that): a tunnel may be the host's last holder, and a host dropped first would
        // leave the forward on a master that outlives the run (`ssh.persist`).
        let host = Arc::clone(&self.host);
        let socket = std::mem::take(&mut self.socket);
        let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, self.remote_port));
        let task = runtime.spawn(async move {
            let listen = Socket::UnixSocket {
                path: socket.as_path().into(),
            };
            let _ = host
                .session()
                .close_port_forward(ForwardType::Local, listen, remote)
                .await;
        });
        if let Ok(mut pending) = closing().lock() {
            pending.retain(|t| !t.is_finished());
            pending.push(task);
        }
    }
}

/// How checks are made: short timeouts, no proxy, and (for checks through nginx) a new
/// connection per request, so that every request meets nginx's current workers.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    fresh_connections: bool,
}

pub fn client(fresh_connections: bool) -> Result<Client, Error> {
    Ok(Client { fresh_connections })
}

/// One GET; never fails, the answer says what happened.
pub async fn get(
    client: &Client,
    tunnel: &Tunnel,
    path: &str,
    host_header: Option<&str>,
) -> Answer {
    get_within(client, tunnel, path, host_header, None).await
}

/// One GET with its own time limit. With a `Host` (a request through nginx), the tunnel's
/// token goes with it: nginx then says which upstream answered.
pub async fn get_within(
    client: &Client,
    tunnel: &Tunnel,
    path: &str,
    host_header: Option<&str>,
    limit: Option<Duration>,
) -> Answer {
    let http = match tunnel.client(client.fresh_connections) {
        Ok(c) => c,
        Err(e) => return Answer::failed(&e),
    };
    let mut req = http.get(format!("http://127.0.0.1{path}"));
    if let Some(limit) = limit {
        req = req.timeout(limit);
    }
    if let Some(h) = host_header {
        req = req.header(reqwest::header::HOST, h);
        if let Some(token) = &tunnel.token {
            req = req.header("X-Shipit-Verify", token.as_str());
        }
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
            .unix_socket(tunnel.socket.clone())
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .tls_info(true)
            .danger_accept_invalid_certs(!check)
            .build()?;
        let mut req = client.get(format!("https://{domain}{path}"));
        if let Some(token) = &tunnel.token {
            req = req.header("X-Shipit-Verify", token.as_str());
        }
        req.send().await
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

/// How often the health gate starts a check: every 20 ms for the first second (a new copy that
/// is ready at once is seen within a few tens of ms, as the floor done by hand polls), then
/// from 25 ms growing by 1.3 to at most 250 ms, jittered, for a copy that takes its time.
pub fn gate_pace() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    std::iter::repeat_n(Duration::from_millis(20), 50).chain(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(25))
            .with_max_delay(Duration::from_millis(250))
            .with_factor(1.3)
            .with_jitter()
            .without_max_times()
            .build(),
    )
}

/// Checks of one host's gate in flight at once: a check that hangs (a connection made while a
/// container's network comes up waits for a TCP retransmit) does not hold back the next one.
pub const GATE_IN_FLIGHT: usize = 3;

/// The time limit of a health check started `since` the gate began: short in the first
/// second, because a connection made while a container's network comes up can hang for a TCP
/// retransmit (1 s) when a fresh one would be answered at once; longer later, so a slow health
/// endpoint still passes (500 ms up to 3 s, then 2 s).
pub fn attempt_limit(since: Duration) -> Duration {
    if since < Duration::from_secs(1) {
        Duration::from_millis(200)
    } else if since < Duration::from_secs(3) {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    }
}

/// Poll until healthy or `deadline` passes; returns the time it took, or the last answer and
/// how many checks were made. `seen` is told each unhealthy answer with its attempt number
/// (from 0).
pub async fn wait_healthy(
    client: &Client,
    tunnel: &Tunnel,
    expect: &Expect<'_>,
    deadline: Duration,
    seen: impl Fn(u32, &Answer),
) -> Result<Duration, (Answer, u32)> {
    poll_paced(
        deadline,
        |limit| get_within(client, tunnel, expect.path, None, Some(limit)),
        |answer| expect.healthy(answer),
        seen,
    )
    .await
}

/// [`wait_healthy`]'s loop, over any `check` (given its time limit). Checks start on
/// [`gate_pace`]'s schedule whether or not the one before has answered (at most
/// [`GATE_IN_FLIGHT`] at once): a paced poll, not a retry loop, because one check that hangs
/// for its whole limit would otherwise delay seeing a copy that is already healthy.
pub async fn poll_paced<C, F>(
    deadline: Duration,
    check: C,
    healthy: impl Fn(&Answer) -> bool,
    seen: impl Fn(u32, &Answer),
) -> Result<Duration, (Answer, u32)>
where
    C: Fn(Duration) -> F,
    F: std::future::Future<Output = Answer>,
{
    use futures::StreamExt;
    use tokio::time::Instant;
    let started = Instant::now();
    let until = started + deadline;
    let check = &check;
    let mut pace = gate_pace();
    let mut next = started;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sent: u32 = 0;
    let mut last: Option<Answer> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next), if in_flight.len() < GATE_IN_FLIGHT => {
                let n = sent;
                sent += 1;
                let limit = attempt_limit(started.elapsed());
                in_flight.push(async move {
                    let asked = Instant::now();
                    (n, asked, check(limit).await)
                });
                // The pace never runs out (`without_max_times`); 250 ms if it did.
                next = Instant::now() + pace.next().unwrap_or(Duration::from_millis(250));
            }
            Some((n, asked, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                let ok = healthy(&answer);
                tracing::debug!(
                    attempt = n + 1,
                    at_ms = started.elapsed().as_millis() as u64,
                    took_ms = asked.elapsed().as_millis() as u64,
                    healthy = ok,
                    answer = %answer.summary(),
                    "health check"
                );
                if ok {
                    return Ok(started.elapsed());
                }
                seen(n, &answer);
                last = Some(answer);
            }
            () = tokio::time::sleep_until(until) => break,
        }
    }
    Err((
        last.unwrap_or(Answer {
            status: None,
            body: String::new(),
            upstream: None,
            error: Some(format!(
                "no answer within {}",
                humantime::format_duration(deadline)
            )),
        }),
        sent,
    ))
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

    fn failure(error: &str) -> Answer {
        Answer {
            status: None,
            body: String::new(),
            upstream: None,
            error: Some(error.into()),
        }
    }

    /// What a check of a copy on the way up gets at `at` since the gate began: refused
    /// before `ready`, healthy from then on; a check started within `hang` waits for its whole
    /// limit (a connection made while the container's network comes up).
    async fn copy_coming_up(
        at: Duration,
        limit: Duration,
        ready: Duration,
        hang: std::ops::Range<Duration>,
    ) -> Answer {
        if hang.contains(&at) {
            tokio::time::sleep(limit).await;
            return failure("operation timed out");
        }
        if at < ready {
            return failure("Connection reset by peer (os error 104)");
        }
        answer(200, r#"{"status":"healthy"}"#)
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_does_not_hold_back_seeing_a_copy_that_is_already_healthy() {
        let start = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let seen = std::sync::Mutex::new(Vec::new());
        // Healthy from 100 ms; the check made at 40 ms hangs for its 200 ms limit.
        let took = poll_paced(
            Duration::from_secs(5),
            |limit| copy_coming_up(start.elapsed(), limit, ms(100), ms(40)..ms(60)),
            |a| a.status == Some(200),
            |n, a| seen.lock().unwrap().push((n, a.summary())),
        )
        .await
        .unwrap();
        // Seen on the first check at or after 100 ms, not after the hanging one's 200 ms.
        assert!(took >= ms(100) && took <= ms(120), "{took:?}");
        let seen = seen.into_inner().unwrap();
        assert!(seen.len() >= 4, "{seen:?}");
        assert!(seen.iter().all(|(_, s)| s.contains("reset")), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn checks_that_all_hang_keep_three_in_flight_and_the_gate_ends_at_its_deadline() {
        let start = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let in_flight = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        let (last, checks) = poll_paced(
            Duration::from_secs(2),
            |limit| {
                let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                let in_flight = &in_flight;
                async move {
                    let a =
                        copy_coming_up(start.elapsed(), limit, ms(60_000), ms(0)..ms(60_000)).await;
                    in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    a
                }
            },
            |a| a.status == Some(200),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(most.into_inner(), GATE_IN_FLIGHT);
        assert!(last.summary().contains("timed out"), "{}", last.summary());
        // 200 ms limits for the first second (3 at a time), 500 ms after: 3 x 5 + 3 x 2 + 3.
        assert!((15..=25).contains(&checks), "{checks}");
    }

    #[test]
    fn the_gate_checks_every_20ms_for_a_second_then_backs_off_to_at_most_half_a_second() {
        let pace: Vec<Duration> = gate_pace().take(200).collect();
        assert!(pace[..50].iter().all(|d| *d == Duration::from_millis(20)));
        // 25 ms, plus up to as much again of jitter, then growing.
        assert!(
            pace[50] >= Duration::from_millis(25) && pace[50] <= Duration::from_millis(50),
            "{:?}",
            pace[50]
        );
        // At most 250 ms plus as much again of jitter.
        assert!(pace.iter().all(|d| *d <= Duration::from_millis(500)));
        assert!(pace[199] >= Duration::from_millis(250), "{:?}", pace[199]);
        // A check's limit is short while the pace is quick, longer after.
        let ms = Duration::from_millis;
        assert_eq!(attempt_limit(ms(0)), ms(200));
        assert_eq!(attempt_limit(ms(999)), ms(200));
        assert_eq!(attempt_limit(ms(1000)), ms(500));
        assert_eq!(attempt_limit(ms(3000)), ms(2000));
    }
}
