//! `shipit build`: tar the context, build the release image on the local engine, push it.
//!
//! Also the first step of every deploy. Nothing here touches a host: a failed build or push
//! leaves every server as it was.

pub mod context;
pub mod ignore;
pub mod release;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;

use crate::config::Config;
use crate::docker::{Engine, PushError};
use crate::error::Error;
use crate::secret::{Secret, Secrets};
use crate::ui;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Overrides the configured version.
    pub version: Option<semver::Version>,
    pub allow_dirty: bool,
    pub verbose: bool,
    /// Push even when the registry's tag names another image (it is replaced).
    pub force_push: bool,
}

/// The image of a release: pushed to the registry, or (without `[registry]`) in the local
/// engine, to be sent to the hosts over SSH.
#[derive(Clone, Debug, Serialize)]
pub struct Image {
    /// `registry/path/name:tag`
    pub reference: String,
    pub tag: String,
    pub release: String,
    /// The registry's manifest digest; empty when nothing was pushed.
    pub digest: String,
    /// The image ID (`sha256:...`) in the local engine: its configuration's digest on an engine
    /// with its own store, its manifest's on one with containerd's store. Without a registry it
    /// names the release's image in the history, whatever each host calls it.
    pub id: String,
    /// The digest of its configuration, when known: what engines of both stores agree on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Its layers' uncompressed digests, base first.
    #[serde(skip)]
    pub diff_ids: Vec<String>,
    /// `os/architecture[/variant]` when it is for one platform (`None`: unknown, or an index
    /// of several, from which each host's engine pulls its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Uncompressed bytes.
    pub size: u64,
    pub layers_pushed: usize,
    pub layers_reused: usize,
    pub bytes_pushed: u64,
    pub build_seconds: f64,
    pub push_seconds: f64,
}

impl crate::ui::Render for Image {
    /// The pushed reference pinned by digest, or the local image's reference and ID.
    fn text(&self) -> String {
        if self.digest.is_empty() {
            format!("{} {}\n", self.reference, self.id)
        } else {
            format!("{}@{}\n", self.reference, self.digest)
        }
    }
}

impl Image {
    /// What the hosts run: the pushed reference pinned by its digest, or without a registry the
    /// image ID itself (sent over SSH and checked after the load), so that a host runs exactly
    /// the image that was built.
    pub fn target(&self) -> String {
        if self.digest.is_empty() {
            self.id.clone()
        } else {
            format!("{}@{}", self.reference, self.digest)
        }
    }

    /// A release's image in the local engine only (no registry).
    fn local(
        reference: String,
        tag: String,
        release: &release::Release,
        facts: crate::docker::ImageFacts,
        build_seconds: f64,
    ) -> Image {
        Image {
            reference,
            tag,
            release: release.version.to_string(),
            digest: String::new(),
            id: facts.id,
            config: facts.config,
            diff_ids: facts.diff_ids,
            platform: facts.platform,
            size: facts.size,
            layers_pushed: 0,
            layers_reused: 0,
            bytes_pushed: 0,
            build_seconds,
            push_seconds: 0.0,
        }
    }

    /// Whether the hosts get it over SSH (no `[registry]`).
    pub fn over_ssh(&self) -> bool {
        self.digest.is_empty()
    }
}

/// How many times, and how fast, a push is retried after a transient registry error.
pub fn push_retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(3))
        .with_factor(2.0)
        .with_max_times(4)
        .with_jitter()
}

/// The release a build of the current tree would make, and its context; nothing is built.
pub fn prepare(
    config: &Config,
    options: &Options,
) -> Result<(release::Release, context::Context), Error> {
    let context_dir = config.app_dir.join(&config.context);
    let dockerfile_path = context_dir.join(&config.dockerfile);
    if !dockerfile_path.is_file() {
        return Err(Error::NoDockerfile {
            path: dockerfile_path,
        });
    }
    let context = context::scan(
        &context_dir,
        &config.dockerfile,
        &crate::secret::Secrets::files(&config.app_dir),
    )?;
    let mut tree = release::probe_tree(&config.app_dir);
    // Files git ignores go into the image too (a `dist/` built before, a binary): the commit
    // does not pin them, so their hash joins it in the release's name. Another build of them
    // is another release, never the same name over other content.
    if let release::Tree::Clean { sha } = &tree {
        let ignored =
            release::ignored_in_context(&config.app_dir, &context_dir, context.relative_paths());
        if !ignored.is_empty() {
            let hash = context.sha256_of(ignored.iter().map(|(rel, _)| rel.as_str()))?;
            ui::status(
                "Pinned",
                &format!(
                    "{} file{} of the context that git ignores ({}{}) by {} hash in the release's name",
                    ignored.len(),
                    ui::plural(ignored.len()),
                    ignored
                        .iter()
                        .take(3)
                        .map(|(_, shown)| format!("`{shown}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if ignored.len() > 3 { ", ..." } else { "" },
                    if ignored.len() == 1 { "its" } else { "their" }
                ),
            );
            tree = release::Tree::Clean {
                sha: format!("{sha}.{}", &hash[..hash.len().min(7)]),
            };
        }
    }
    let version = options.version.as_ref().unwrap_or(&config.version);
    let release = release::Release::new(version, &tree, options.allow_dirty, || context.sha256())?;
    Ok((release, context))
}

/// The registry, its password and where the password came from; `None` without `[registry]`.
fn registry_login(
    config: &Config,
) -> Result<Option<(&crate::config::Registry, Secret, crate::secret::Source)>, Error> {
    let Some(registry) = config.registry.as_ref() else {
        return Ok(None);
    };
    let secrets = Secrets::load(&config.app_dir)?;
    let (password, source) =
        secrets
            .get(&registry.password_env)
            .ok_or_else(|| Error::MissingRegistryPassword {
                var: registry.password_env.clone(),
                dotenv: config.app_dir.join(".env"),
            })?;
    Ok(Some((registry, password, source)))
}

/// The local engine's facts of `reference`, which a build has just made.
async fn local_facts(
    engine: &Engine,
    reference: &str,
    environment: &str,
) -> Result<crate::docker::ImageFacts, Error> {
    engine
        .image_facts(reference)
        .await?
        .ok_or_else(|| Error::NotBuiltLocally {
            reference: reference.to_owned(),
            environment: environment.to_owned(),
        })
}

/// A registry error after `attempts` tries, as the user reads it.
fn registry_error(
    e: PushError,
    registry: &crate::config::Registry,
    source: &crate::secret::Source,
    attempts: usize,
    reference: &str,
) -> Error {
    match e {
        PushError::Unauthorized(message) => Error::RegistryUnauthorized {
            registry: registry.server.clone(),
            username: registry.username.clone(),
            source_used: source.to_string(),
            message,
        },
        PushError::Transient(message) => Error::RegistryUnreachable {
            registry: registry.server.clone(),
            attempts,
            message,
        },
        PushError::Other(message) => Error::Push {
            reference: reference.to_owned(),
            message,
        },
    }
}

/// One call to the registry (through the engine): transient errors are retried with backon,
/// each retry announced as `Retrying <what> <registry> ...`; a final error as the user reads it.
async fn registry_call<T, F, Fut>(
    what: &str,
    registry: &crate::config::Registry,
    source: &crate::secret::Source,
    reference: &str,
    call: F,
) -> Result<T, Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, PushError>>,
{
    let attempts = AtomicUsize::new(0);
    (|| {
        attempts.fetch_add(1, Ordering::Relaxed);
        call()
    })
    .retry(push_retry_policy())
    .when(|e| matches!(e, PushError::Transient(_)))
    .notify(|e, delay| {
        let left = 4usize.saturating_sub(attempts.load(Ordering::Relaxed) - 1);
        ui::status(
            "Retrying",
            &format!(
                "{what} {} in {:.1}s ({left} left): {}",
                registry.server,
                delay.as_secs_f64(),
                e.message()
            ),
        );
    })
    .await
    .map_err(|e| {
        registry_error(
            e,
            registry,
            source,
            attempts.load(Ordering::Relaxed),
            reference,
        )
    })
}

/// `--no-build`: the image of the release the current tree names, built before (by `shipit
/// build` or an earlier deploy, on this machine or another): found by its tag in the registry,
/// or without `[registry]` in the local engine. Nothing is built or pushed: staging and
/// production get the very same image.
pub async fn find_built(config: &Config, options: &Options) -> Result<Image, Error> {
    let login = registry_login(config)?;
    let (release, _) = prepare(config, options)?;
    let tag = release.tag();
    let reference = format!("{}:{tag}", config.image);
    let engine = Engine::connect().await?;
    let started = Instant::now();
    let Some((registry, password, source)) = login else {
        let facts = local_facts(&engine, &reference, &config.environment).await?;
        ui::status(
            "Found",
            &format!(
                "{reference} in the local engine ({}): not building",
                facts.id
            ),
        );
        return Ok(Image::local(reference, tag, &release, facts, 0.0));
    };
    let found = registry_call("look up", registry, &source, &reference, || {
        engine.registry_digest(
            &config.image,
            &tag,
            &registry.server,
            &registry.username,
            &password,
        )
    })
    .await?;
    let Some((digest, platform)) = found else {
        return Err(Error::NotBuilt {
            reference,
            environment: config.environment.clone(),
        });
    };
    let push_seconds = started.elapsed().as_secs_f64();
    ui::status(
        "Found",
        &format!("{reference} in the registry ({digest}): not building"),
    );
    Ok(Image {
        reference,
        tag,
        release: release.version.to_string(),
        digest,
        id: String::new(),
        config: None,
        diff_ids: Vec::new(),
        platform,
        size: 0,
        layers_pushed: 0,
        layers_reused: 0,
        bytes_pushed: 0,
        build_seconds: 0.0,
        push_seconds,
    })
}

/// Whether an image's platform (`os/architecture[/variant]`) has the architecture `want` asks
/// for (the variant is left to the engine).
fn same_arch(want: &str, got: Option<&str>) -> bool {
    let arch = |p: &str| p.split('/').nth(1).map(str::to_owned);
    got.is_some_and(|g| arch(g) == arch(want))
}

/// A retained release's image in this machine's engine, by its ID (`sha256:...`), for hosts that
/// lack it (a rollback over SSH to a host that follows the fleet); `None` when the engine no
/// longer has it.
pub async fn local_image(id: &str, release: &str) -> Result<Option<Image>, Error> {
    let engine = Engine::connect().await?;
    Ok(engine.image_facts(id).await?.map(|facts| Image {
        reference: id.to_owned(),
        tag: String::new(),
        release: release.to_owned(),
        digest: String::new(),
        id: facts.id,
        config: facts.config,
        diff_ids: facts.diff_ids,
        platform: facts.platform,
        size: facts.size,
        layers_pushed: 0,
        layers_reused: 0,
        bytes_pushed: 0,
        build_seconds: 0.0,
        push_seconds: 0.0,
    }))
}

/// Say, once, which of shipit's secret files were left out of the context.
fn say_excluded(files: &[String]) {
    if files.is_empty() {
        return;
    }
    ui::status(
        "Excluded",
        &format!(
            "{} from the build context: shipit reads secrets from {}, they never go into an image",
            files
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if files.len() == 1 { "it" } else { "them" }
        ),
    );
}

/// Build the release image and push it; without `[registry]` it stays in the local engine
/// (deploys send it to the hosts over SSH).
pub async fn build_and_push(config: &Config, options: &Options) -> Result<Image, Error> {
    let login = registry_login(config)?;
    let (release, context) = prepare(config, options)?;
    let tag = release.tag();
    let reference = format!("{}:{tag}", config.image);

    let engine = Engine::connect().await?;
    say_excluded(&context.secrets_left_out);
    ui::status(
        "Building",
        &format!(
            "{reference} ({} files, {} KiB of context)",
            context.files,
            context.bytes.div_ceil(1024)
        ),
    );
    let started = Instant::now();
    let labels = HashMap::from([
        ("shipit.app".to_owned(), config.app.clone()),
        ("shipit.release".to_owned(), release.version.to_string()),
    ]);
    let build_args: HashMap<String, String> = config.build_args.clone().into_iter().collect();
    let mut spec = crate::docker::BuildSpec {
        dockerfile: &config.dockerfile,
        tag: &reference,
        build_args: &build_args,
        labels: &labels,
        platform: config.platform.as_deref(),
        nocache: false,
    };
    let mut built = engine
        .build(context.clone().stream(), &spec, options.verbose)
        .await?;
    let mut facts = local_facts(&engine, &reference, &config.environment).await?;
    // The classic builder's cache does not tell platforms apart: steps built for this machine's
    // architecture are reused for another. The image is built again without the cache then.
    if let Some(want) = config.platform.as_deref()
        && !same_arch(want, facts.platform.as_deref())
    {
        ui::warn(&format!(
            "the engine's cache gave an image for {} where `platform` asks for {want}: building again without the cache",
            facts.platform.as_deref().unwrap_or("an unknown platform")
        ));
        spec.nocache = true;
        built = engine
            .build(context.stream(), &spec, options.verbose)
            .await?;
        facts = local_facts(&engine, &reference, &config.environment).await?;
        if !same_arch(want, facts.platform.as_deref()) {
            return Err(Error::BuildStep {
                step: "checking the image's platform".into(),
                output: String::new(),
                error: format!(
                    "the engine built an image for {} though `platform` asks for {want}: build it with `docker buildx build --platform {want}` and deploy with `--no-build`",
                    facts.platform.as_deref().unwrap_or("an unknown platform")
                ),
            });
        }
    }
    let build_seconds = started.elapsed().as_secs_f64();
    ui::status(
        "Built",
        &format!(
            "{reference} in {build_seconds:.2}s ({} steps, {} from cache)",
            built.steps, built.cached
        ),
    );

    let Some((registry, password, source)) = login else {
        ui::status(
            "Kept",
            &format!(
                "{reference} ({}, {} MiB) in the local engine: no `[registry]`, deploys send it to the hosts over SSH",
                facts.id,
                facts.size.div_ceil(1 << 20)
            ),
        );
        return Ok(Image::local(reference, tag, &release, facts, build_seconds));
    };
    // A release's tag names one image: a build of the same release with other content (the
    // same commit rebuilt elsewhere, or after the engine's cache was cleared) never replaces
    // what the registry holds unless asked.
    let held = registry_call("look up", registry, &source, &reference, || {
        engine.registry_digest(
            &config.image,
            &tag,
            &registry.server,
            &registry.username,
            &password,
        )
    })
    .await?;
    if let Some((digest, _)) = held {
        let ours = facts
            .repo_digests
            .iter()
            .any(|d| d.ends_with(&format!("@{digest}")));
        if !ours && !options.force_push {
            return Err(Error::TagTaken {
                reference,
                registry_digest: digest,
                id: facts.id,
            });
        }
        if !ours {
            ui::warn(&format!(
                "replacing `{reference}` in the registry ({digest}) with this build (`{}`): `--force-push`",
                facts.id
            ));
        }
    }
    let started = Instant::now();
    let pushed = registry_call("push to", registry, &source, &reference, || {
        engine.push_once(
            &config.image,
            &tag,
            &registry.server,
            &registry.username,
            &password,
        )
    })
    .await?;
    let push_seconds = started.elapsed().as_secs_f64();
    ui::status(
        "Pushed",
        &format!(
            "{reference} in {push_seconds:.2}s: {} layer{} pushed ({} KiB), {} already there",
            pushed.layers_pushed,
            ui::plural(pushed.layers_pushed),
            pushed.bytes.div_ceil(1024),
            pushed.layers_reused
        ),
    );
    Ok(Image {
        reference,
        tag,
        release: release.version.to_string(),
        digest: pushed.digest,
        id: facts.id,
        config: facts.config,
        diff_ids: facts.diff_ids,
        platform: facts.platform,
        size: facts.size,
        layers_pushed: pushed.layers_pushed,
        layers_reused: pushed.layers_reused,
        bytes_pushed: pushed.bytes,
        build_seconds,
        push_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_platform_is_judged_by_its_architecture() {
        assert!(same_arch("linux/arm64", Some("linux/arm64/v8")));
        assert!(same_arch("linux/amd64", Some("linux/amd64")));
        assert!(!same_arch("linux/arm64", Some("linux/amd64")));
        assert!(!same_arch("linux/arm64", None));
    }
}
