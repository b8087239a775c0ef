//! `hello` or `hello serve`: the HTTP service. Routes: `GET /health` (JSON), `GET /version`
//! (JSON: version, colour, hostname), `GET /store` (the store's summary, JSON), `GET /`
//! (text); HEAD for each; anything else a JSON 404. Environment: `PORT` (3000), `HELLO_BIND`
//! (0.0.0.0), `SHIPIT_RELEASE` or `APP_VERSION` (the version reported), `SHIPIT_COLOUR`,
//! `HELLO_DATA` (the store, `/data`), `HELLO_HEALTH=unhealthy|error` (a failing health gate),
//! `HELLO_EXIT_AFTER=<s>` (exit 1 that long after start: dies after passing the gate),
//! `HELLO_START_DELAY=<s>` (a slow start), `HELLO_ERROR_RATE=<fraction>` (that share of the
//! requests to any route but `/health` answer 500: every 20th for 0.05, so a canary's error
//! rate is known exactly). Each request is logged as
//! `METHOD PATH STATUS MICROSECONDS`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::env::Env;
use crate::failure::Failure;
use crate::store::Store;

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
    data: PathBuf,
    /// `HELLO_ERROR_RATE`: every this many requests (but `/health`), one answers 500.
    error_every: Option<u64>,
    requests: AtomicU64,
}

#[derive(Debug)]
struct Settings {
    app: App,
    addr: SocketAddr,
    exit_after: Option<Duration>,
    start_delay: Option<Duration>,
}

impl Settings {
    /// From the environment and /etc/hostname's content.
    fn from_env(env: &Env, etc_hostname: Option<String>) -> Result<Settings, Failure> {
        let health = match env.get("HELLO_HEALTH").as_deref().map(str::trim) {
            None | Some("healthy") => Health::Healthy,
            Some("unhealthy") => Health::Unhealthy,
            Some("error") => Health::Error,
            Some(other) => {
                return Err(Failure::Usage(format!(
                    "HELLO_HEALTH={other:?}: expected healthy, unhealthy or error"
                )));
            }
        };
        let error_every = match env.parse::<f64>("HELLO_ERROR_RATE", "a fraction")? {
            None => None,
            Some(rate) if rate > 0.0 && rate <= 1.0 => Some((1.0 / rate).round() as u64),
            Some(0.0) => None,
            Some(rate) => {
                return Err(Failure::Usage(format!(
                    "HELLO_ERROR_RATE={rate}: expected a fraction between 0 and 1"
                )));
            }
        };
        let port: u16 = env.parse("PORT", "a port number")?.unwrap_or(3000);
        let bind: IpAddr = env
            .parse("HELLO_BIND", "an IP address")?
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Settings {
            app: App {
                version: env.release(),
                colour: env.colour().unwrap_or_default(),
                hostname: etc_hostname
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .or_else(|| env.get("HOSTNAME"))
                    .unwrap_or_default(),
                health,
                data: env.data_dir(),
                error_every,
                requests: AtomicU64::new(0),
            },
            addr: SocketAddr::new(bind, port),
            exit_after: env.seconds("HELLO_EXIT_AFTER")?,
            start_delay: env.seconds("HELLO_START_DELAY")?,
        })
    }
}

pub fn run(env: &Env) -> Result<(), Failure> {
    let etc_hostname = std::fs::read_to_string("/etc/hostname").ok();
    let settings = Settings::from_env(env, etc_hostname)?;
    crate::runtime()?.block_on(serve(settings))
}

async fn serve(settings: Settings) -> Result<(), Failure> {
    if let Some(delay) = settings.start_delay {
        println!(
            "HELLO_START_DELAY={}: waiting before listening",
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
    }
    if let Some(after) = settings.exit_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            println!("HELLO_EXIT_AFTER={}: exiting with 1", after.as_secs_f64());
            std::process::exit(1);
        });
    }
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|error| Failure::Listen {
            addr: settings.addr,
            error,
        })?;
    let stop = crate::stop_signal();
    println!(
        "hello {} listening on {}",
        settings.app.version, settings.addr
    );
    axum::serve(listener, router(Arc::new(settings.app)))
        .with_graceful_shutdown(async {
            stop.await;
            println!("shutting down");
        })
        .await
        .map_err(Failure::Serve)
}

fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/store", get(store))
        .route("/", get(root))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), sickly))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let (status, body) = match app.health {
        Health::Healthy => (
            StatusCode::OK,
            json!({"status": "healthy", "version": app.version}),
        ),
        Health::Unhealthy => (
            StatusCode::OK,
            json!({"status": "unhealthy", "version": app.version}),
        ),
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

/// What `hello store` prints; a 500 with the error if the store cannot be read.
async fn store(State(app): State<Arc<App>>) -> Response {
    let dir = app.data.clone();
    // File-system calls block: off the async workers.
    let summary = tokio::task::spawn_blocking(move || Store::open(dir)?.summary())
        .await
        .map_err(|e| e.to_string())
        .and_then(|summary| summary.map_err(|e| e.to_string()));
    match summary {
        Ok(summary) => Json(summary).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": error})),
        )
            .into_response(),
    }
}

async fn root(State(app): State<Arc<App>>) -> String {
    format!("hello from {}\n", app.version)
}

async fn not_found(req: Request) -> Response {
    let body = json!({"error": "not found", "path": req.uri().path()});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// `HELLO_ERROR_RATE`: every `error_every`-th request but `/health` answers 500.
async fn sickly(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(every) = app.error_every
        && req.uri().path() != "/health"
        && (app.requests.fetch_add(1, Ordering::Relaxed) + 1) % every == 0
    {
        let body = json!({"error": "HELLO_ERROR_RATE asked for this 500", "version": app.version});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    next.run(req).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TempStore;
    use axum::body::Body;
    use tower::ServiceExt;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, Failure> {
        Settings::from_env(&Env::from_pairs(vars), Some("th1\n".into()))
    }

    async fn answer(app: App, method: &str, path: &str) -> (u16, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = router(Arc::new(app)).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn an_error_rate_answers_500_to_exactly_that_share_and_never_to_health() {
        let app = Arc::new(settings(&[("HELLO_ERROR_RATE", "0.05")]).unwrap().app);
        let mut errors = 0;
        for _ in 0..200 {
            let req = Request::builder()
                .uri("/version")
                .body(Body::empty())
                .unwrap();
            let resp = router(Arc::clone(&app)).oneshot(req).await.unwrap();
            errors += usize::from(resp.status() == StatusCode::INTERNAL_SERVER_ERROR);
        }
        assert_eq!(errors, 10);
        for _ in 0..40 {
            let req = Request::builder()
                .uri("/health")
                .body(Body::empty())
                .unwrap();
            let resp = router(Arc::clone(&app)).oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
        assert!(settings(&[("HELLO_ERROR_RATE", "2")]).is_err());
    }

    #[tokio::test]
    async fn routes() {
        let vars = [("SHIPIT_RELEASE", "2.0.0+abc"), ("SHIPIT_COLOUR", "green")];
        let s = settings(&vars).unwrap();
        assert_eq!(s.addr, "0.0.0.0:3000".parse().unwrap());
        assert_eq!(s.app.data, PathBuf::from("/data"));
        let app = || settings(&vars).unwrap().app;
        assert_eq!(
            answer(app(), "GET", "/health").await,
            (200, r#"{"status":"healthy","version":"2.0.0+abc"}"#.into())
        );
        assert_eq!(
            answer(app(), "GET", "/version").await,
            (
                200,
                r#"{"colour":"green","hostname":"th1","version":"2.0.0+abc"}"#.into()
            )
        );
        assert_eq!(
            answer(app(), "GET", "/").await,
            (200, "hello from 2.0.0+abc\n".into())
        );
        assert_eq!(answer(app(), "HEAD", "/").await.0, 200);
        assert_eq!(
            answer(app(), "GET", "/nope").await,
            (404, r#"{"error":"not found","path":"/nope"}"#.into())
        );
        let sick = settings(&[("HELLO_HEALTH", "unhealthy")]).unwrap().app;
        assert!(
            answer(sick, "GET", "/health")
                .await
                .1
                .contains(r#""status":"unhealthy""#)
        );
        let broken = settings(&[("HELLO_HEALTH", "error")]).unwrap().app;
        assert_eq!(answer(broken, "GET", "/health").await.0, 500);
    }

    #[tokio::test]
    async fn the_store_route() {
        let t = TempStore::new("route");
        t.write("schema", "1\n");
        t.write("queue/a", "");
        let dir = t.0.dir().to_str().unwrap();
        let app = settings(&[("HELLO_DATA", dir)]).unwrap().app;
        assert_eq!(
            answer(app, "GET", "/store").await,
            (
                200,
                r#"{"done":0,"files":["queue/a","schema"],"queue":1,"schema":1}"#.into()
            )
        );
        let missing = settings(&[("HELLO_DATA", "/nonexistent/hello-data")])
            .unwrap()
            .app;
        let (status, body) = answer(missing, "GET", "/store").await;
        assert_eq!(status, 500);
        assert!(body.contains("is not a directory: mount it"), "{body}");
    }

    #[test]
    fn bad_settings_are_named() {
        let e = |vars| settings(vars).unwrap_err().to_string();
        assert!(e(&[("HELLO_HEALTH", "meh")]).contains("HELLO_HEALTH"));
        assert!(e(&[("PORT", "x")]).contains("PORT"));
        assert!(e(&[("HELLO_EXIT_AFTER", "-1")]).contains("HELLO_EXIT_AFTER"));
        let s = settings(&[
            ("HELLO_START_DELAY", "1.5"),
            ("HELLO_BIND", "127.0.0.1"),
            ("PORT", "8080"),
        ])
        .unwrap();
        assert_eq!(s.start_delay, Some(Duration::from_millis(1500)));
        assert_eq!(s.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings(&[("PORT", "x")]).unwrap_err().exit_code(), 2);
    }
}
