//! `hello`: the example app that shipit deploys in its demo and tests.
//!
//! A small HTTP/1.1 server on std alone: one thread per connection (at most [`MAX_CONNECTIONS`],
//! the rest refused with 503), persistent connections as nginx's upstream `keepalive` uses them
//! (requests read in a loop, `Connection: close` honoured, a Content-Length on every answer,
//! request bodies read and discarded), an idle timeout and size limits.
//!
//! Routes: `GET /health`, `GET /version`, `GET /`; HEAD for each. Environment knobs:
//! `PORT`, `HELLO_BIND`, `SHIPIT_RELEASE`/`APP_VERSION`, `SHIPIT_COLOUR`, `HELLO_HEALTH`,
//! `HELLO_EXIT_AFTER`, `HELLO_START_DELAY` (see [`Settings::from_env`]).
//!
//! Exits 0 on SIGTERM or SIGINT after draining open connections for at most [`DRAIN_MAX`].

use std::fmt::Write as _;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Live connections beyond this are answered 503 and closed.
const MAX_CONNECTIONS: usize = 256;
/// A request head (request line and header fields) larger than this is answered 431.
const MAX_HEAD: usize = 8 * 1024;
/// A request body larger than this is answered 413 (bodies are read and discarded).
const MAX_BODY: u64 = 1024 * 1024;
/// How long a connection may wait for (the rest of) a request, or for body bytes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting connection thread looks at the shutdown flag.
const POLL: Duration = Duration::from_millis(250);
/// After SIGTERM, how long open connections get to finish before the process exits anyway.
const DRAIN_MAX: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Signals. The crate has no dependencies (no `libc`), so glibc's `signal(2)` is declared by hand.

/// Set by the SIGTERM/SIGINT handler; the server polls it.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    /// glibc's `sighandler_t signal(int signum, sighandler_t handler)`; a handler is a
    /// `void (*)(int)`, passed and returned as its address.
    fn signal(signum: i32, handler: usize) -> usize;
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
/// `SIG_ERR` is `(sighandler_t) -1`.
const SIG_ERR: usize = usize::MAX;

/// The signal handler: only an atomic store, which is async-signal-safe.
extern "C" fn on_signal(_signum: i32) {
    SHUTDOWN.store(true, Ordering::SeqCst);
}

/// Route SIGTERM (docker stop, systemd) and SIGINT (Ctrl-C) to [`SHUTDOWN`]. This matters more
/// than usual here: as PID 1 in a `FROM scratch` container, a process that installs no handler
/// is not killed by SIGTERM at all, and `docker stop` would wait for its SIGKILL.
fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(i32) as usize;
    for signum in [SIGTERM, SIGINT] {
        // SAFETY: `signal` is glibc's, declared with its C prototype above (int and a
        // pointer-sized function address, on every Linux target). `on_signal` is an
        // `extern "C" fn(i32)` that lives as long as the program and only does an atomic store.
        if unsafe { signal(signum, handler) } == SIG_ERR {
            eprintln!("hello: could not install a handler for signal {signum}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings, read once from the environment.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Healthy,
    Unhealthy,
    Error,
}

/// What the routes answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct App {
    version: String,
    colour: String,
    hostname: String,
    health: Health,
}

#[derive(Debug)]
struct Settings {
    app: App,
    bind: IpAddr,
    port: u16,
    exit_after: Option<Duration>,
    start_delay: Option<Duration>,
}

impl Settings {
    /// `get` reads an environment variable (empty counts as unset); `etc_hostname` is the
    /// content of /etc/hostname, if readable.
    ///
    /// - `PORT` (default 3000) and `HELLO_BIND` (default 0.0.0.0): where to listen;
    /// - `SHIPIT_RELEASE`, else `APP_VERSION`, else the crate version: the version reported;
    /// - `SHIPIT_COLOUR`: the colour reported by /version (default empty);
    /// - `HELLO_HEALTH` = `healthy` (default) | `unhealthy` (200, status unhealthy) | `error` (500);
    /// - `HELLO_EXIT_AFTER` = seconds: exit with code 1 that long after start;
    /// - `HELLO_START_DELAY` = seconds: sleep that long before binding.
    fn from_env(
        get: impl Fn(&str) -> Option<String>,
        etc_hostname: Option<String>,
    ) -> Result<Settings, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let version = get("SHIPIT_RELEASE")
            .or_else(|| get("APP_VERSION"))
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
        let hostname = etc_hostname
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| get("HOSTNAME"))
            .unwrap_or_default();
        let health = match get("HELLO_HEALTH").as_deref().map(str::trim) {
            None | Some("healthy") => Health::Healthy,
            Some("unhealthy") => Health::Unhealthy,
            Some("error") => Health::Error,
            Some(other) => {
                return Err(format!(
                    "HELLO_HEALTH={other:?}: expected healthy, unhealthy or error"
                ));
            }
        };
        let port = match get("PORT") {
            None => 3000,
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        };
        let bind = match get("HELLO_BIND") {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(b) => b
                .trim()
                .parse()
                .map_err(|_| format!("HELLO_BIND={b:?} is not an IP address"))?,
        };
        Ok(Settings {
            app: App {
                version,
                colour: get("SHIPIT_COLOUR").unwrap_or_default(),
                hostname,
                health,
            },
            bind,
            port,
            exit_after: seconds(&get, "HELLO_EXIT_AFTER")?,
            start_delay: seconds(&get, "HELLO_START_DELAY")?,
        })
    }
}

/// An optional environment variable holding a non-negative number of seconds, such as `1.5`.
fn seconds(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<Duration>, String> {
    let Some(v) = get(name) else { return Ok(None) };
    v.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(Some)
        .ok_or_else(|| format!("{name}={v:?} is not a number of seconds"))
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// A parsed request head. The body, if any, is `content_length` bytes that follow it.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    target: String,
    http10: bool,
    content_length: u64,
    /// `Connection: close` was sent.
    close: bool,
    /// `Connection: keep-alive` was sent (what an HTTP/1.0 client needs to keep the connection).
    keep_alive: bool,
    expect_continue: bool,
}

impl Request {
    /// Whether the connection stays open after the answer (HTTP/1.1 persists by default,
    /// HTTP/1.0 only when asked to).
    fn persistent(&self) -> bool {
        !self.close && (!self.http10 || self.keep_alive)
    }
}

/// A request that cannot be served; answered with its status, then the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpError {
    BadRequest,
    RequestTimeout,
    BodyTooLarge,
    HeadTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl HttpError {
    fn status(self) -> u16 {
        match self {
            HttpError::BadRequest => 400,
            HttpError::RequestTimeout => 408,
            HttpError::BodyTooLarge => 413,
            HttpError::HeadTooLarge => 431,
            HttpError::NotImplemented => 501,
            HttpError::VersionNotSupported => 505,
        }
    }
}

/// Parse the request head at the start of `buf`: `Ok(None)` while it is incomplete, else the
/// request and how many bytes of `buf` the head took (the body, or the next request, follows).
fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    let start = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    // Split lines at LF (a CR before it is dropped) until the empty line that ends the head.
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut line_start = start;
    let mut end = None;
    for (i, &b) in buf.iter().enumerate().skip(start) {
        if b != b'\n' {
            continue;
        }
        let line = &buf[line_start..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line_start = i + 1;
        if line.is_empty() {
            end = Some(i + 1);
            break;
        }
        lines.push(line);
    }
    let Some(end) = end else {
        return if buf.len() - start > MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if end - start > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }

    // Request line: method SP request-target SP HTTP-version.
    let mut parts = lines[0].split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest);
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(HttpError::BadRequest);
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::VersionNotSupported);
        }
        _ => return Err(HttpError::BadRequest),
    };

    let mut request = Request {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        http10,
        content_length: 0,
        close: false,
        keep_alive: false,
        expect_continue: false,
    };
    let mut content_length = None;
    let mut hosts = 0;
    for line in &lines[1..] {
        // No obsolete line folding, no whitespace between a field name and its colon.
        let colon = line.iter().position(|&b| b == b':');
        let Some(colon) = colon.filter(|&c| c > 0 && line[..c].iter().all(|&b| is_tchar(b))) else {
            return Err(HttpError::BadRequest);
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)?;
            if content_length.is_some_and(|m| m != n) {
                return Err(HttpError::BadRequest);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked request bodies are not supported: say so, and close.
            return Err(HttpError::NotImplemented);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                request.close |= option.eq_ignore_ascii_case(b"close");
                request.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            request.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    // An HTTP/1.1 request carries exactly one Host (RFC 9112 §3.2).
    if !http10 && hosts != 1 {
        return Err(HttpError::BadRequest);
    }
    request.content_length = content_length.unwrap_or(0);
    if request.content_length > MAX_BODY {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(Some((request, end)))
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest);
    }
    // All digits, so the only way to fail is to overflow: far too large anyway.
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::BodyTooLarge)
}

/// A `tchar` of RFC 9110 §5.6.2: what methods and field names are made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------------------
// Routing.

#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn error(status: u16) -> Response {
        let body = format!(
            "{{\"error\":{}}}",
            json_str(&reason(status).to_ascii_lowercase())
        );
        Response::json(status, body)
    }
}

/// The answer to `method target`. HEAD is answered like GET; the caller drops the body.
fn route(app: &App, method: &str, target: &str) -> Response {
    // An absolute-form target (`http://host/path`) names the same path.
    let path = match target.split_once("://") {
        Some((_, rest)) if target.starts_with("http") => {
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        _ => target,
    };
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if !matches!(path, "/" | "/health" | "/version") {
        return Response::json(
            404,
            format!("{{\"error\":\"not found\",\"path\":{}}}", json_str(path)),
        );
    }
    if method != "GET" && method != "HEAD" {
        return Response::error(405);
    }
    let version = json_str(&app.version);
    match path {
        "/health" => match app.health {
            Health::Healthy => Response::json(
                200,
                format!("{{\"status\":\"healthy\",\"version\":{version}}}"),
            ),
            Health::Unhealthy => Response::json(
                200,
                format!("{{\"status\":\"unhealthy\",\"version\":{version}}}"),
            ),
            Health::Error => Response::json(
                500,
                format!(
                    "{{\"status\":\"error\",\"error\":\"HELLO_HEALTH=error\",\"version\":{version}}}"
                ),
            ),
        },
        "/version" => Response::json(
            200,
            format!(
                "{{\"version\":{version},\"colour\":{},\"hostname\":{}}}",
                json_str(&app.colour),
                json_str(&app.hostname)
            ),
        ),
        _ => Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: format!("hello from {}\n", app.version),
        },
    }
}

/// `s` as a JSON string literal, quotes included.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The bytes of an answer: always a Content-Length (for HEAD, the length GET would have sent).
/// `connection` is the Connection header to send, if any.
fn encode_response(resp: &Response, head_only: bool, connection: Option<&str>) -> Vec<u8> {
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        resp.status,
        reason(resp.status),
        http_date(SystemTime::now()),
        resp.content_type,
        resp.body.len(),
    );
    if resp.status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    if resp.status == 503 {
        head.push_str("Retry-After: 1\r\n");
    }
    if let Some(connection) = connection {
        let _ = write!(head, "Connection: {connection}\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(resp.body.as_bytes());
    }
    bytes
}

/// An IMF-fixdate (RFC 9110 §5.6.7), such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs_of_day / 3_600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
    )
}

// ---------------------------------------------------------------------------------------------
// Serving.

/// One line on stdout, flushed. Write errors are ignored: a closed stdout must not stop the
/// server (`println!` would panic). Under `cargo test`, `println!` so the harness captures it.
fn log(line: std::fmt::Arguments<'_>) {
    #[cfg(test)]
    println!("{line}");
    #[cfg(not(test))]
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Accept connections until `stop` is set, then give open connections up to [`DRAIN_MAX`] to
/// finish. `accept` blocks; a watcher thread wakes it by connecting once `stop` is set.
fn run(listener: TcpListener, app: Arc<App>, max_connections: usize, stop: &'static AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    let waker = listener.local_addr().map(wake_on_stop(stop));
    if let Err(e) = waker {
        log(format_args!("cannot watch for shutdown: {e}"));
    }
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, or an aborted handshake: back off a little.
                log(format_args!("accept: {e}"));
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= max_connections {
            refuse(stream);
            continue;
        }
        let slot = Slot::take(&active);
        let app = Arc::clone(&app);
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            let _slot = slot; // given back when the connection ends
            serve_connection(stream, &app, stop);
        });
        if let Err(e) = spawned {
            log(format_args!("cannot start a connection thread: {e}"));
        }
    }
    drop(listener);
    let open = active.load(Ordering::SeqCst);
    log(format_args!("shutting down: draining {open} connection(s)"));
    let deadline = Instant::now() + DRAIN_MAX;
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

/// A watcher for `stop` that unblocks `accept` on `addr` by connecting to it.
fn wake_on_stop(stop: &'static AtomicBool) -> impl FnOnce(SocketAddr) {
    move |mut addr| {
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            for _ in 0..20 {
                if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            log(format_args!(
                "cannot wake the accept loop on {addr}: exiting"
            ));
            std::process::exit(0);
        });
    }
}

/// A counted place among the live connections, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::SeqCst);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answer 503 without a thread: one nonblocking write of a short answer, then close.
fn refuse(stream: TcpStream) {
    let bytes = encode_response(&Response::error(503), false, Some("close"));
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(&bytes);
    let _ = stream.shutdown(Shutdown::Write);
    log(format_args!("- - 503 0"));
}

/// What one read brought.
enum Got {
    Bytes,
    Eof,
    /// Nothing yet, the deadline is not reached: look at the shutdown flag and try again.
    Nothing,
    TimedOut,
}

/// Read what is there (waiting at most [`POLL`]) onto the end of `buf`.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<Got> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Ok(Got::TimedOut);
    }
    stream.set_read_timeout(Some(left.min(POLL)))?;
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) => Ok(Got::Eof),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(Got::Bytes)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Ok(Got::Nothing)
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Got::Nothing),
        Err(e) => Err(e),
    }
}

/// Serve requests on one connection until it closes, times out, errs, asks to close, or the
/// server stops (an idle connection is then closed at once; a request being read is answered).
fn serve_connection(mut stream: TcpStream, app: &App, stop: &AtomicBool) {
    // Accepted sockets are blocking on Linux; say it anyway, as the timeouts rely on it.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // 1. The request head.
        let deadline = Instant::now() + IDLE_TIMEOUT;
        let mut started = Instant::now();
        let parsed = loop {
            match parse_request(&buf) {
                Ok(Some(parsed)) => break Ok(parsed),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let idle = buf.iter().all(|&b| b == b'\r' || b == b'\n');
            if idle && stop.load(Ordering::SeqCst) {
                return;
            }
            match read_some(&mut stream, &mut buf, deadline) {
                Ok(Got::Bytes) if idle => started = Instant::now(),
                Ok(Got::Bytes | Got::Nothing) => {}
                Ok(Got::TimedOut) if !idle => break Err(HttpError::RequestTimeout),
                Ok(Got::Eof | Got::TimedOut) | Err(_) => return,
            }
        };
        let (request, head_len) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                let resp = Response::error(e.status());
                let _ = stream.write_all(&encode_response(&resp, false, Some("close")));
                log(format_args!(
                    "- - {} {}",
                    resp.status,
                    started.elapsed().as_micros()
                ));
                linger_close(stream);
                return;
            }
        };
        buf.drain(..head_len);

        // 2. The body, read and thrown away, so that the next request starts where it should.
        let mut left = request.content_length;
        let here = left.min(buf.len() as u64);
        buf.drain(..here as usize);
        left -= here;
        if left > 0 && request.expect_continue && !request.http10 {
            let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = Vec::new();
        let mut deadline = Instant::now() + IDLE_TIMEOUT;
        while left > 0 {
            body.clear();
            match read_some(&mut stream, &mut body, deadline) {
                Ok(Got::Bytes) => {
                    // Bytes past the body are the next request's.
                    let n = left.min(body.len() as u64);
                    buf.extend_from_slice(&body[n as usize..]);
                    left -= n;
                    deadline = Instant::now() + IDLE_TIMEOUT;
                }
                Ok(Got::Nothing) => {}
                Ok(Got::Eof | Got::TimedOut) | Err(_) => return,
            }
        }

        // 3. The answer.
        let resp = route(app, &request.method, &request.target);
        let keep = request.persistent() && !stop.load(Ordering::SeqCst);
        let connection = match (keep, request.http10) {
            (false, _) => Some("close"),
            (true, true) => Some("keep-alive"),
            (true, false) => None,
        };
        let bytes = encode_response(&resp, request.method == "HEAD", connection);
        let written = stream.write_all(&bytes);
        log(format_args!(
            "{} {} {} {}",
            request.method,
            request.target,
            resp.status,
            started.elapsed().as_micros()
        ));
        if written.is_err() || !keep {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Close after an error answer without losing it: stop sending, then read (and drop) what the
/// client still sends for a moment, so that closing with unread data does not reset the
/// connection before the client has read the answer.
fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    let mut total = 0;
    while total < 256 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let started = Instant::now();
    install_signal_handlers();
    let etc_hostname = std::fs::read_to_string("/etc/hostname").ok();
    let settings = match Settings::from_env(|name| std::env::var(name).ok(), etc_hostname) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("hello: {e}");
            return ExitCode::from(2);
        }
    };

    if let Some(after) = settings.exit_after {
        thread::spawn(move || {
            thread::sleep(after.saturating_sub(started.elapsed()));
            log(format_args!(
                "HELLO_EXIT_AFTER={}: exiting with 1",
                after.as_secs_f64()
            ));
            std::process::exit(1);
        });
    }
    if let Some(delay) = settings.start_delay {
        log(format_args!(
            "HELLO_START_DELAY={}: waiting before listening",
            delay.as_secs_f64()
        ));
        while started.elapsed() < delay {
            if SHUTDOWN.load(Ordering::SeqCst) {
                log(format_args!("stopped before listening"));
                return ExitCode::SUCCESS;
            }
            thread::sleep(Duration::from_millis(20).min(delay.saturating_sub(started.elapsed())));
        }
    }

    let addr = SocketAddr::new(settings.bind, settings.port);
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("hello: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = settings.app;
    log(format_args!(
        "hello {} listening on {} (colour {:?}, health {:?}, pid {})",
        app.version,
        listener.local_addr().unwrap_or(addr),
        app.colour,
        app.health,
        std::process::id()
    ));
    run(listener, Arc::new(app), MAX_CONNECTIONS, &SHUTDOWN);
    log(format_args!("stopped"));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn app(health: Health) -> App {
        App {
            version: "1.2.3".into(),
            colour: "blue".into(),
            hostname: "box".into(),
            health,
        }
    }

    fn parse(text: &str) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(text.as_bytes())
    }

    fn request(text: &str) -> Request {
        parse(text).unwrap().unwrap().0
    }

    #[test]
    fn parses_a_get() {
        let text = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n";
        let (r, len) = parse(text).unwrap().unwrap();
        assert_eq!(len, text.len());
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                target: "/health?x=1".into(),
                http10: false,
                content_length: 0,
                close: false,
                keep_alive: false,
                expect_continue: false,
            }
        );
        assert!(r.persistent());
    }

    #[test]
    fn waits_for_a_whole_head_and_stops_at_its_end() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        // Bare LF line ends, leading empty lines, and a body and next request after the head.
        let text = "\r\nPOST /x HTTP/1.1\nhost: a\ncontent-length: 3\n\nabcGET / HTTP/1.1\r\n";
        let (r, len) = parse(text).unwrap().unwrap();
        assert_eq!((r.method.as_str(), r.content_length), ("POST", 3));
        assert_eq!(&text[len..], "abcGET / HTTP/1.1\r\n");
    }

    #[test]
    fn connection_options() {
        let r = request("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n");
        assert!(r.close && !r.persistent());
        assert!(!request("GET / HTTP/1.0\r\n\r\n").persistent());
        assert!(request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").persistent());
        assert!(
            request("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").expect_continue
        );
    }

    #[test]
    fn rejects_bad_requests() {
        let bad = |text: &str| parse(text).unwrap_err();
        assert_eq!(bad("GET /\r\n\r\n"), HttpError::BadRequest);
        assert_eq!(
            bad("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
            HttpError::BadRequest
        );
        assert_eq!(
            bad("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
            HttpError::BadRequest
        );
        assert_eq!(bad("GET / HTTP/1.1\r\n\r\n"), HttpError::BadRequest); // no Host
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            HttpError::BadRequest
        );
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            HttpError::BadRequest
        );
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
            HttpError::BadRequest
        );
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            HttpError::BadRequest
        );
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            HttpError::BadRequest
        );
        assert_eq!(
            bad("GET / HTTP/2.0\r\n\r\n"),
            HttpError::VersionNotSupported
        );
        assert_eq!(bad("GET / FTP/1.1\r\n\r\n"), HttpError::BadRequest);
        assert_eq!(
            bad("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::NotImplemented
        );
    }

    #[test]
    fn enforces_size_limits() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "y".repeat(MAX_HEAD)
        );
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));
        // Too large already before the head is complete.
        assert_eq!(parse(&big[..MAX_HEAD + 10]), Err(HttpError::HeadTooLarge));
        let body = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(parse(&body), Err(HttpError::BodyTooLarge));
        let huge = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse(huge), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn routes() {
        let a = app(Health::Healthy);
        let r = route(&a, "GET", "/health");
        assert_eq!((r.status, r.content_type), (200, "application/json"));
        assert_eq!(r.body, r#"{"status":"healthy","version":"1.2.3"}"#);
        assert_eq!(route(&a, "GET", "/health?probe=1").status, 200);
        assert_eq!(route(&a, "GET", "http://x.test/health").status, 200);
        assert_eq!(
            route(&a, "GET", "/version").body,
            r#"{"version":"1.2.3","colour":"blue","hostname":"box"}"#
        );
        let r = route(&a, "HEAD", "/");
        assert_eq!((r.status, r.body.as_str()), (200, "hello from 1.2.3\n"));
        assert!(r.content_type.starts_with("text/plain"));
        let r = route(&a, "GET", "/nope");
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, r#"{"error":"not found","path":"/nope"}"#)
        );
        let r = route(&a, "POST", "/");
        assert_eq!(
            (r.status, r.body.as_str()),
            (405, r#"{"error":"method not allowed"}"#)
        );
    }

    #[test]
    fn health_modes() {
        let r = route(&app(Health::Unhealthy), "GET", "/health");
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, r#"{"status":"unhealthy","version":"1.2.3"}"#)
        );
        let r = route(&app(Health::Error), "GET", "/health");
        assert_eq!(r.status, 500);
        assert!(r.body.starts_with(r#"{"status":"error","error":"#));
    }

    #[test]
    fn encodes_answers() {
        let resp = Response::error(405);
        let text = String::from_utf8(encode_response(&resp, true, Some("close"))).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nContent-Length: 30\r\n"));
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text.ends_with("\r\nConnection: close\r\n\r\n")); // HEAD: no body
    }

    #[test]
    fn json_strings_and_dates() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let rfc_example = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(rfc_example), "Sun, 06 Nov 1994 08:49:37 GMT");
        let leap_day = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        assert_eq!(http_date(leap_day), "Thu, 29 Feb 2024 12:00:00 GMT");
    }

    #[test]
    fn settings_from_env() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |name: &str| map.get(name).cloned()
        };
        let s = Settings::from_env(env(&[]), None).unwrap();
        assert_eq!(s.app.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            (s.port, s.app.health, s.app.colour.as_str()),
            (3000, Health::Healthy, "")
        );
        assert_eq!((s.exit_after, s.start_delay), (None, None));
        let s = Settings::from_env(
            env(&[
                ("SHIPIT_RELEASE", ""),
                ("APP_VERSION", "2.0.0"),
                ("SHIPIT_COLOUR", "green"),
                ("HOSTNAME", "from-env"),
                ("HELLO_HEALTH", "unhealthy"),
                ("HELLO_EXIT_AFTER", "1.5"),
                ("PORT", "3999"),
                ("HELLO_BIND", "127.0.0.1"),
            ]),
            Some("from-file\n".into()),
        )
        .unwrap();
        assert_eq!(s.app.version, "2.0.0");
        assert_eq!(
            (s.app.colour.as_str(), s.app.hostname.as_str()),
            ("green", "from-file")
        );
        assert_eq!(s.app.health, Health::Unhealthy);
        assert_eq!(s.exit_after, Some(Duration::from_millis(1500)));
        assert_eq!((s.bind, s.port), (IpAddr::V4(Ipv4Addr::LOCALHOST), 3999));
        let s = Settings::from_env(env(&[("SHIPIT_RELEASE", "r7"), ("APP_VERSION", "x")]), None);
        assert_eq!(s.unwrap().app.version, "r7");
        for bad in [
            ("HELLO_HEALTH", "meh"),
            ("PORT", "70000"),
            ("HELLO_EXIT_AFTER", "-1"),
        ] {
            assert!(Settings::from_env(env(&[bad]), None).is_err(), "{bad:?}");
        }
    }

    // -- Against a live server ----------------------------------------------------------------

    /// A server on 127.0.0.1:0 in a thread; `stop` must be this test's own flag.
    fn serve(
        max_connections: usize,
        stop: &'static AtomicBool,
    ) -> (SocketAddr, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(app(Health::Healthy));
        (
            addr,
            thread::spawn(move || run(listener, app, max_connections, stop)),
        )
    }

    /// Stop a server and check that it returns promptly.
    fn stop(stop: &'static AtomicBool, server: thread::JoinHandle<()>) {
        let asked = Instant::now();
        stop.store(true, Ordering::SeqCst);
        server.join().unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
    }

    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Client {
                stream,
                buf: Vec::new(),
            }
        }

        fn send(&mut self, text: &str) {
            self.stream.write_all(text.as_bytes()).unwrap();
        }

        /// The next answer: status, head (lowercased), body (per Content-Length).
        fn answer(&mut self, head_only: bool) -> (u16, String, String) {
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                self.fill();
            };
            let head = String::from_utf8(self.buf.drain(..end).collect()).unwrap();
            let head = head.to_ascii_lowercase();
            let status = head[9..12].parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a Content-Length")
                .parse()
                .unwrap();
            let length = if head_only { 0 } else { length };
            while self.buf.len() < length {
                self.fill();
            }
            let body = String::from_utf8(self.buf.drain(..length).collect()).unwrap();
            (status, head, body)
        }

        fn fill(&mut self) {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }

        fn closed(&mut self) -> bool {
            let mut b = [0u8; 1];
            self.buf.is_empty() && matches!(self.stream.read(&mut b), Ok(0))
        }
    }

    #[test]
    fn keep_alive_serves_many_requests_on_one_connection() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let (addr, server) = serve(8, &STOP);
        let mut c = Client::connect(addr);

        c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        let (status, head, body) = c.answer(false);
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"healthy","version":"1.2.3"}"#)
        );
        assert!(head.contains("content-type: application/json\r\n"));
        assert!(!head.contains("connection: close"));

        c.send("GET /version HTTP/1.1\r\nHost: t\r\n\r\n");
        let (status, _, body) = c.answer(false);
        assert_eq!(status, 200);
        assert!(body.contains(r#""colour":"blue""#));

        // A body is skipped; two pipelined requests; HEAD has no body.
        c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhel");
        thread::sleep(Duration::from_millis(20));
        c.send("loHEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.answer(false).0, 405);
        let (status, head, _) = c.answer(true);
        assert_eq!(status, 200);
        assert!(head.contains("content-length: 17\r\n"), "{head}");
        assert_eq!(c.answer(false).0, 404);

        c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (status, head, body) = c.answer(false);
        assert_eq!((status, body.as_str()), (200, "hello from 1.2.3\n"));
        assert!(head.contains("connection: close\r\n"));
        assert!(c.closed());

        // A malformed request is answered, then the connection closed.
        let mut c = Client::connect(addr);
        c.send("GET / HTTP/1.1\r\n\r\n");
        assert_eq!(c.answer(false).0, 400);
        assert!(c.closed());

        // An idle keep-alive connection does not hold up the shutdown.
        let _idle = Client::connect(addr);
        stop(&STOP, server);
    }

    #[test]
    fn refuses_connections_over_the_limit() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let (addr, server) = serve(1, &STOP);
        let mut first = Client::connect(addr);
        first.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(first.answer(false).0, 200); // the first holds the only slot
        let mut second = Client::connect(addr);
        let (status, head, _) = second.answer(false);
        assert_eq!(status, 503);
        assert!(head.contains("connection: close\r\n"));
        assert!(second.closed());
        drop(first);
        stop(&STOP, server);
    }
}
