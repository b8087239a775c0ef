//! The local Docker engine, through its API (bollard): build an image from a context tar and
//! push it with the environment's registry credentials.
//!
//! Owns: connecting (with API version negotiation), reading the build and push streams into
//! progress and results, classifying engine and registry errors. Must not: decide tags or read
//! files (the `build` operation does).

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{BuildImageOptionsBuilder, PushImageOptionsBuilder};
use futures::StreamExt;
use tracing::debug;

use crate::error::Error;
use crate::secret::Secret;
use crate::ui;

pub struct Engine {
    docker: Docker,
    /// Whether it keeps images in containerd's store (then an image's ID is its manifest's
    /// digest, not its configuration's).
    containerd_store: bool,
}

/// What a finished build left.
#[derive(Debug)]
pub struct Built {
    pub steps: usize,
    /// Steps the engine answered from its cache.
    pub cached: usize,
}

/// What a finished push did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub digest: String,
    pub layers_pushed: usize,
    pub layers_reused: usize,
    pub bytes: u64,
}

/// An image in the local engine, as `docker image inspect` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// `sha256:...`: what this engine calls it: the digest of its configuration on an engine
    /// with its own store, of its manifest (or index) on one with containerd's store.
    pub id: String,
    /// The digest of its configuration, when the engine says it (one with its own store: the
    /// ID); on containerd's store it is read from the saved image when needed.
    pub config: Option<String>,
    /// Its layers' uncompressed digests, base first.
    pub diff_ids: Vec<String>,
    /// Uncompressed bytes.
    pub size: u64,
    /// `repo@sha256:...` of each registry the engine pushed it to or pulled it from.
    pub repo_digests: Vec<String>,
    /// `os/architecture[/variant]`, as its configuration says.
    pub platform: Option<String>,
}

/// An image's platform as `os/architecture[/variant]`, from the parts an engine reports.
fn platform_of(os: Option<&str>, arch: Option<&str>, variant: Option<&str>) -> Option<String> {
    let arch = arch.filter(|a| !a.is_empty())?;
    let os = os.filter(|o| !o.is_empty()).unwrap_or("linux");
    Some(match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// What to build: the Dockerfile, the tag, the build arguments and labels, and the platform
/// when it is not the engine's own.
pub struct BuildSpec<'a> {
    pub dockerfile: &'a str,
    pub tag: &'a str,
    pub build_args: &'a HashMap<String, String>,
    pub labels: &'a HashMap<String, String>,
    pub platform: Option<&'a str>,
    /// Build every step anew, whatever the engine's cache holds.
    pub nocache: bool,
}

/// A registry push failure, classified for the retry policy and the message.
#[derive(Debug, Clone)]
pub enum PushError {
    /// The registry refused the credentials.
    Unauthorized(String),
    /// Worth retrying: refused connection, timeout, 5xx.
    Transient(String),
    Other(String),
}

impl PushError {
    fn classify(message: String) -> PushError {
        let lower = message.to_lowercase();
        if [
            "unauthorized",
            "authentication required",
            "no basic auth credentials",
            "401",
        ]
        .iter()
        .any(|s| lower.contains(s))
        {
            PushError::Unauthorized(message)
        } else if [
            "connection refused",
            "connection reset",
            "timeout",
            "timed out",
            "eof",
            "502 bad gateway",
            "503 service unavailable",
            "500 internal server error",
            "504 gateway",
            "no such host",
            "temporarily unavailable",
        ]
        .iter()
        .any(|s| lower.contains(s))
        {
            PushError::Transient(message)
        } else {
            PushError::Other(message)
        }
    }

    pub fn message(&self) -> &str {
        match self {
            PushError::Unauthorized(m) | PushError::Transient(m) | PushError::Other(m) => m,
        }
    }
}

/// The registry login the engine passes on (in a header, never on a command line).
fn credentials(registry: &str, user: &str, password: &Secret) -> DockerCredentials {
    DockerCredentials {
        username: Some(user.to_owned()),
        password: Some(password.expose().to_owned()),
        serveraddress: Some(registry.to_owned()),
        ..Default::default()
    }
}

impl Engine {
    /// Connect to the local engine (`DOCKER_HOST` or the default socket) and agree on an API
    /// version: Debian's engine speaks 1.41.
    pub async fn connect() -> Result<Engine, Error> {
        let address =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |e: &dyn std::fmt::Display| Error::EngineUnreachable {
            address: address.clone(),
            message: e.to_string(),
        };
        let docker = Docker::connect_with_local_defaults().map_err(|e| unreachable(&e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(&e))?;
        // An engine that cannot say is taken for one with its own store: only the name of the
        // image then differs, which a transfer reads back from the saved image.
        let containerd_store = docker.info().await.ok().is_some_and(|info| {
            info.driver_status
                .unwrap_or_default()
                .iter()
                .flatten()
                .any(|s| s.contains("io.containerd.snapshotter"))
        });
        debug!(api = %docker.client_version(), containerd_store, "connected to the Docker engine");
        Ok(Engine {
            docker,
            containerd_store,
        })
    }

    /// Build `tag` from a context tar. Progress: one status line per step; with `verbose`
    /// every line of output. A failed step is shown with its own output only.
    pub async fn build(
        &self,
        context: impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
        spec: &BuildSpec<'_>,
        verbose: bool,
    ) -> Result<Built, Error> {
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(spec.dockerfile)
            .t(spec.tag)
            .rm(true)
            .forcerm(true)
            .buildargs(spec.build_args)
            .labels(spec.labels)
            .nocache(spec.nocache);
        if let Some(platform) = spec.platform {
            options = options.platform(platform);
        }
        let options = options.build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(context)));
        let mut steps = 0;
        let mut cached = 0;
        let mut step = String::new();
        let mut step_output = String::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    // Before the first step: the engine refused the build, or the upload failed.
                    let (before_any_step, error) = match e {
                        bollard::errors::Error::DockerStreamError { error } => {
                            ("preparing the build", error)
                        }
                        e => ("sending the context", e.to_string()),
                    };
                    return Err(Error::BuildStep {
                        step: if step.is_empty() {
                            before_any_step.into()
                        } else {
                            step
                        },
                        output: step_output,
                        error,
                    });
                }
            };
            if let Some(text) = info.stream {
                for line in text.lines() {
                    if line.starts_with("Step ") {
                        steps += 1;
                        step = line.to_owned();
                        step_output.clear();
                        ui::status("Step", line.strip_prefix("Step ").unwrap_or(line));
                    } else {
                        if line.contains("Using cache") {
                            cached += 1;
                        }
                        if !line.trim().is_empty() {
                            step_output.push_str(line);
                            step_output.push('\n');
                        }
                        if verbose {
                            ui::status("", line);
                        }
                    }
                }
            }
        }
        Ok(Built { steps, cached })
    }

    /// What the local engine holds under `reference`; `None` when it has no such image.
    pub async fn image_facts(&self, reference: &str) -> Result<Option<ImageFacts>, Error> {
        match self.docker.inspect_image(reference).await {
            Ok(found) => Ok(Some(ImageFacts {
                config: found
                    .id
                    .clone()
                    .filter(|id| !self.containerd_store && id.starts_with("sha256:")),
                id: found.id.unwrap_or_default(),
                diff_ids: found.root_fs.and_then(|r| r.layers).unwrap_or_default(),
                size: found
                    .size
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or_default(),
                platform: platform_of(
                    found.os.as_deref(),
                    found.architecture.as_deref(),
                    found.variant.as_deref(),
                ),
                repo_digests: found.repo_digests.unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(Error::EngineUnreachable {
                address: "the local engine".into(),
                message: format!("inspecting `{reference}`: {e}"),
            }),
        }
    }

    /// Write `docker save` of `reference` (an uncompressed tar) to `path`, streamed: the
    /// engine's answer never sits in memory whole. Its size in bytes.
    pub async fn save_to(&self, reference: &str, path: &std::path::Path) -> Result<u64, Error> {
        use tokio::io::AsyncWriteExt;
        let failed = |what: &str, e: &dyn std::fmt::Display| Error::Internal {
            context: format!("saving `{reference}` from the local engine ({what})"),
            source: e.to_string().into(),
        };
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| Error::Write {
                path: path.to_path_buf(),
                source: e,
            })?;
        let mut stream = self.docker.export_image(reference);
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed("reading", &e))?;
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| Error::Write {
                path: path.to_path_buf(),
                source: e,
            })?;
        }
        file.flush().await.map_err(|e| Error::Write {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(bytes)
    }

    /// The digest of `image:tag` in its registry, asked through the engine; `None` when the
    /// registry has no such tag.
    pub async fn registry_digest(
        &self,
        image: &str,
        tag: &str,
        registry: &str,
        user: &str,
        password: &Secret,
    ) -> Result<Option<(String, Option<String>)>, PushError> {
        let credentials = credentials(registry, user, password);
        match self
            .docker
            .inspect_registry_image(&format!("{image}:{tag}"), Some(credentials))
            .await
        {
            // One platform: the image is for it alone; several (an index): each host's engine
            // pulls its own.
            Ok(found) => Ok(found.descriptor.digest.map(|digest| {
                let platform = match found.platforms.as_slice() {
                    [one] => platform_of(
                        one.os.as_deref(),
                        one.architecture.as_deref(),
                        one.variant.as_deref(),
                    ),
                    _ => None,
                };
                (digest, platform)
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                message,
                status_code,
            }) => {
                let lower = message.to_lowercase();
                if lower.contains("manifest unknown") || lower.contains("not found") {
                    Ok(None)
                } else {
                    Err(PushError::classify(format!("{status_code}: {message}")))
                }
            }
            Err(e) => Err(PushError::classify(e.to_string())),
        }
    }

    /// Push `image:tag` once; layers are counted from the engine's per-layer statuses.
    pub async fn push_once(
        &self,
        image: &str,
        tag: &str,
        registry: &str,
        user: &str,
        password: &Secret,
    ) -> Result<Pushed, PushError> {
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let credentials = credentials(registry, user, password);
        let started = Instant::now();
        let mut stream = self
            .docker
            .push_image(image, Some(options), Some(credentials));
        let mut pushed = Pushed::default();
        let mut in_flight: u64 = 0;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(PushError::classify(error));
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    message,
                    status_code,
                }) => {
                    return Err(PushError::classify(format!("{status_code}: {message}")));
                }
                Err(e) => return Err(PushError::classify(e.to_string())),
            };
            let Some(status) = info.status else { continue };
            tracing::trace!(%status, progress = ?info.progress_detail, "push");
            match status.as_str() {
                "Pushed" => {
                    pushed.layers_pushed += 1;
                    pushed.bytes += in_flight;
                    in_flight = 0;
                }
                "Layer already exists" => pushed.layers_reused += 1,
                s if s.starts_with("Mounted from") => pushed.layers_reused += 1,
                "Pushing" => {
                    // The engine's `total` can be smaller than `current`: count what was sent.
                    if let Some(p) = info.progress_detail {
                        let sent = p.current.max(p.total).unwrap_or(0);
                        in_flight = in_flight.max(u64::try_from(sent).unwrap_or(0));
                    }
                }
                s if s.contains("digest: sha256:") => {
                    if let Some(d) = s
                        .split("digest: ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                    {
                        pushed.digest = d.to_owned();
                    }
                }
                _ => {}
            }
        }
        if pushed.digest.is_empty() {
            return Err(PushError::Other(
                "the engine finished the push without reporting a digest".into(),
            ));
        }
        debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ?pushed,
            "pushed"
        );
        Ok(pushed)
    }
}
