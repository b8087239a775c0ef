//! `hello`: the example app that shipit deploys in its demo and tests, as a team's app would
//! look: a few routes on axum, configured from its environment, stopped cleanly by SIGTERM.
//!
//! Routes: `GET /health` (JSON), `GET /version` (JSON: version, colour, hostname), `GET /`
//! (text); HEAD for each; anything else a JSON 404. Environment: `PORT` (3000), `HELLO_BIND`
//! (0.0.0.0), `SHIPIT_RELEASE` or `APP_VERSION` (the version reported), `SHIPIT_COLOUR`,
//! `HELLO_HEALTH=unhealthy|error` (a failing health gate), `HELLO_EXIT_AFTER=<s>` (exit 1 that
//! long after start: dies after passing the gate), `HELLO_START_DELAY=<s>` (a slow start).
//! Each request is logged as `METHOD PATH STATUS MICROSECONDS`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Healthy,
    Unhealthy,
    Error,
}

/// What the routes answer with.
#[derive(Debug)]
struct App {
    version: String,
    colour: String,
    hostname: String,
    health: Health,
}

#[derive(Debug)]
struct Settings {
    app: App,
    addr: SocketAddr,
    exit_after: Option<Duration>,
    start_delay: Option<Duration>,
}

impl Settings {
    /// From the environment (`get`; empty counts as unset) and /etc/hostname's content.
    fn from_env(
        get: impl Fn(&str) -> Option<String>,
        etc_hostname: Option<String>,
    ) -> Result<Settings, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let seconds = |name: &str| -> Result<Option<Duration>, String> {
            get(name)
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| format!("{name}={v:?} is not a number of seconds"))
                })
                .transpose()
        };
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
        let port: u16 = get("PORT")
            .map(|p| {
                p.trim()
                    .parse()
                    .map_err(|_| format!("PORT={p:?} is not a port number"))
            })
            .transpose()?
            .unwrap_or(3000);
        let bind: IpAddr = get("HELLO_BIND")
            .map(|b| {
                b.trim()
                    .parse()
                    .map_err(|_| format!("HELLO_BIND={b:?} is not an IP address"))
            })
            .transpose()?
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Settings {
            app: App {
                version: get("SHIPIT_RELEASE")
                    .or_else(|| get("APP_VERSION"))
                    .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
                colour: get("SHIPIT_COLOUR").unwrap_or_default(),
                hostname: etc_hostname
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .or_else(|| get("HOSTNAME"))
                    .unwrap_or_default(),
                health,
            },
            addr: SocketAddr::new(bind, port),
            exit_after: seconds("HELLO_EXIT_AFTER")?,
            start_delay: seconds("HELLO_START_DELAY")?,
        })
    }
}

fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/", get(root))
        .fallback(not_found)
        .layer(middleware::from_fn(access_log))
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let (status, body) = match app.health {
        Health::Healthy => (StatusCode::OK, json!({"status": "healthy", "version": app.version})),
        Health::Unhealthy => (StatusCode::OK, json!({"status": "unhealthy", "version": app.version})),
        Health::Error => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "error", "error": "HELLO_HEALTH=error", "version": app.version}),
        ),
    };
    (status, Json(body)).into_response()
}

async fn version(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({"version": app.version, "colour": app.colour, "hostname": app.hostname}))
}

async fn root(State(app): State<Arc<App>>) -> String {
    format!("hello from {}\n", app.version)
}

async fn not_found(req: Request) -> Response {
    let body = json!({"error": "not found", "path": req.uri().path()});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// One line per request on stdout, which the container's log (and `shipit logs`) shows.
async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let line = format!("{} {}", req.method(), req.uri());
    let resp = next.run(req).await;
    println!(
        "{line} {} {}",
        resp.status().as_u16(),
        started.elapsed().as_micros()
    );
    resp
}

/// SIGTERM (`docker stop`, systemd) or Ctrl-C: as PID 1 of a `FROM scratch` container, the
/// process must handle them itself or `docker stop` waits for its SIGKILL.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    println!("shutting down");
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let etc_hostname = std::fs::read_to_string("/etc/hostname").ok();
    let settings = match Settings::from_env(|n| std::env::var(n).ok(), etc_hostname) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hello: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(delay) = settings.start_delay {
        println!("HELLO_START_DELAY={}: waiting before listening", delay.as_secs_f64());
        tokio::time::sleep(delay).await;
    }
    if let Some(after) = settings.exit_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            println!("HELLO_EXIT_AFTER={}: exiting with 1", after.as_secs_f64());
            std::process::exit(1);
        });
    }
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on {}: {e}", settings.addr);
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("hello {} listening on {}", settings.app.version, settings.addr);
    let served = axum::serve(listener, router(Arc::new(settings.app)))
        .with_graceful_shutdown(shutdown())
        .await;
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_env(
            |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
            Some("th1\n".into()),
        )
    }

    async fn answer(app: App, method: &str, path: &str) -> (u16, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = router(Arc::new(app)).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn routes() {
        let s = settings(&[("SHIPIT_RELEASE", "2.0.0+abc"), ("SHIPIT_COLOUR", "green")]).unwrap();
        assert_eq!(s.addr, "0.0.0.0:3000".parse().unwrap());
        let app = || App { ..settings(&[("SHIPIT_RELEASE", "2.0.0+abc"), ("SHIPIT_COLOUR", "green")]).unwrap().app };
        assert_eq!(
            answer(app(), "GET", "/health").await,
            (200, r#"{"status":"healthy","version":"2.0.0+abc"}"#.into())
        );
        assert_eq!(
            answer(app(), "GET", "/version").await,
            (200, r#"{"colour":"green","hostname":"th1","version":"2.0.0+abc"}"#.into())
        );
        assert_eq!(answer(app(), "GET", "/").await, (200, "hello from 2.0.0+abc\n".into()));
        assert_eq!(answer(app(), "HEAD", "/").await.0, 200);
        assert_eq!(
            answer(app(), "GET", "/nope").await,
            (404, r#"{"error":"not found","path":"/nope"}"#.into())
        );
        let sick = settings(&[("HELLO_HEALTH", "unhealthy")]).unwrap().app;
        assert!(answer(sick, "GET", "/health").await.1.contains(r#""status":"unhealthy""#));
        let broken = settings(&[("HELLO_HEALTH", "error")]).unwrap().app;
        assert_eq!(answer(broken, "GET", "/health").await.0, 500);
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(settings(&[("HELLO_HEALTH", "meh")]).unwrap_err().contains("HELLO_HEALTH"));
        assert!(settings(&[("PORT", "x")]).unwrap_err().contains("PORT"));
        assert!(settings(&[("HELLO_EXIT_AFTER", "-1")]).unwrap_err().contains("HELLO_EXIT_AFTER"));
        let s = settings(&[("HELLO_START_DELAY", "1.5"), ("HELLO_BIND", "127.0.0.1"), ("PORT", "8080")]).unwrap();
        assert_eq!(s.start_delay, Some(Duration::from_millis(1500)));
        assert_eq!(s.addr, "127.0.0.1:8080".parse().unwrap());
    }
}
