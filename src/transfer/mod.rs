//! Deploys without a registry: the release's image goes from the local engine to every host
//! over the SSH connection shipit already holds, each host getting only the layers it lacks.
//!
//! 1. every host says what its engine holds ([`plan::HostImages`]); [`plan::what_to_send`]
//!    decides per host (nothing, the layers from some position on, or everything and why);
//! 2. the image is saved once from the local engine into a spool directory
//!    ([`archive::Archive`]); each entry is compressed once, when a host first needs it;
//! 3. each host (at most `ssh.max_parallel` at once) is fed its members on the stdin of
//!    `docker load`, and then must hold the image: the same layers, and the same configuration
//!    where its engine can tell. The ID that host gives it is the one it runs, checks and
//!    prunes it by ([`Sent::id`]): an engine with containerd's image store names an image by
//!    its manifest, which its load makes anew, not by its configuration.
//!
//! Nothing here changes what any host serves: a failure leaves every host as it was, plus
//! possibly the image's layers on some.

pub mod archive;
pub mod plan;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::build::Image;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::remote::scripts;
use crate::ssh::Host;
use crate::ui::{self, plural};
use archive::Archive;
use plan::{HostImage, HostImages, KEEP_FREE, Send, Wanted, load_room};

/// What one host got.
#[derive(Clone, Debug, Serialize)]
pub struct Sent {
    pub host: String,
    /// Layers sent, and layers the host had.
    pub layers_sent: usize,
    pub layers_had: usize,
    /// Compressed bytes sent over SSH.
    pub bytes: u64,
    /// Why every layer went, when they all did although the host had some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub everything_because: Option<String>,
    /// What this host's engine calls the image (`sha256:...`): what it runs.
    pub id: String,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// Put `image` on every host of `fleet` that lacks it. Hosts that have it get nothing. Each
/// host's [`Sent::id`] says what it calls the image.
pub async fn send(fleet: &Fleet, image: &Image) -> Result<Vec<Sent>, Error> {
    let started = Instant::now();
    let held = read_hosts(fleet).await?;
    let layers = image.diff_ids.len();
    let decide = |config: Option<&str>| -> Vec<Send> {
        let wanted = Wanted {
            id: &image.id,
            config,
            diff_ids: &image.diff_ids,
        };
        held.iter()
            .map(|h| plan::what_to_send(&wanted, h))
            .collect()
    };
    let mut decisions = decide(image.config.as_deref());
    if let Some(sent) = present(fleet, image, &decisions) {
        return Ok(sent);
    }
    let engine = crate::docker::Engine::connect().await?;
    let archive = Archive::save(&engine, &image.reference, layers).await?;
    // An engine with containerd's store does not say an image's configuration: its archive
    // does, and hosts of the other store know the image by it.
    let config = image.config.clone().or_else(|| archive.config.clone());
    if image.config.is_none() && config.is_some() {
        decisions = decide(config.as_deref());
        if let Some(sent) = present(fleet, image, &decisions) {
            return Ok(sent);
        }
    }
    let wanted = Wanted {
        id: &image.id,
        config: config.as_deref(),
        diff_ids: &image.diff_ids,
    };
    if let Some(why) = &archive.unsplittable {
        for d in &mut decisions {
            if matches!(d, Send::From { .. }) {
                *d = Send::Everything { why: why.clone() };
            }
        }
    }
    // A host without the room for what it gets fails the deploy here, before anything is sent
    // to any host (and long before any switch).
    // (A lower bound: the host checks again right before its load, under a host-wide lock, with
    // the stream's staging counted where it lands.)
    let sizes = archive.layer_sizes();
    for ((host, h), d) in fleet.hosts.iter().zip(&held).zip(&decisions) {
        let needed = load_room(&h.driver, &sizes, d.first(layers), image.size)
            .unpacked
            .saturating_add(KEEP_FREE);
        if !d.is_nothing() && h.free_kib.saturating_mul(1024) < needed {
            return Err(Error::ImageNoSpace {
                host: host.spec.to_string(),
                needed_mib: needed.div_ceil(1 << 20),
                free_mib: h.free_kib / 1024,
            });
        }
    }
    for (host, d) in fleet.hosts.iter().zip(&decisions) {
        if let Send::Everything { why } = d {
            ui::warn(&format!(
                "`{}` gets the whole image ({}), not only the layers it lacks: {why}",
                host.spec,
                mib(image.size)
            ));
        }
    }
    let plan_text: Vec<String> = fleet
        .hosts
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| !d.is_nothing())
        .map(|(h, d)| {
            let first = d.first(layers);
            format!(
                "`{}` {} of {layers} layer{} ({})",
                h.spec,
                layers - first,
                plural(layers),
                mib(archive.layer_bytes_from(first))
            )
        })
        .collect();
    ui::status(
        "Sending",
        &format!(
            "{} over SSH, compressed, only what each host lacks: {}",
            image.reference,
            plan_text.join(", ")
        ),
    );
    type ToHost = (Arc<Host>, Send, String);
    let (sending, had): (Vec<ToHost>, Vec<ToHost>) = fleet
        .hosts
        .iter()
        .cloned()
        .zip(decisions)
        .zip(held.into_iter().map(|h| h.driver))
        .map(|((h, d), driver)| (h, d, driver))
        .partition(|(_, d, _)| !d.is_nothing());
    let progress = ui::Step::new(
        "Sending",
        sending.iter().map(|(h, _, _)| &h.spec),
        &format!("{} over SSH", image.reference),
    );
    let results =
        crate::fleet::each_bounded(sending, fleet.max_parallel, |(host, decision, driver)| {
            let line = progress.line(&host.spec);
            let archive = Arc::clone(&archive);
            async move {
                let to = Target {
                    host: &host,
                    driver: &driver,
                    line: &line,
                };
                let result = send_host(&to, &archive, image, &wanted, &decision).await;
                match &result {
                    Ok(sent) => line.finish(
                        true,
                        format!(
                            "{} layer{}, {} sent",
                            sent.layers_sent,
                            plural(sent.layers_sent),
                            mib(sent.bytes)
                        ),
                    ),
                    Err(e) => line.failed(e),
                }
                result
            }
        })
        .await;
    drop(progress);
    let mut sent = crate::fleet::collect(results)?;
    let most = sent.iter().map(|s| s.bytes).max().unwrap_or(0);
    let layers_sent = sent.iter().map(|s| s.layers_sent).max().unwrap_or(0);
    ui::status(
        "Sent",
        &format!(
            "{} to {} host{} in {:.2}s: at most {layers_sent} of {layers} layer{} and {} per host (the image is {})",
            image.id,
            sent.len(),
            plural(sent.len()),
            started.elapsed().as_secs_f64(),
            plural(layers),
            mib(most),
            mib(image.size),
        ),
    );
    for (h, d, _) in had {
        if let Send::Nothing { id } = d {
            sent.push(Sent {
                host: h.spec.to_string(),
                layers_sent: 0,
                layers_had: layers,
                bytes: 0,
                everything_because: None,
                id,
            });
        }
    }
    Ok(sent)
}

/// When every host has the image already: what each calls it, and it is said.
fn present(fleet: &Fleet, image: &Image, decisions: &[Send]) -> Option<Vec<Sent>> {
    if !decisions.iter().all(Send::is_nothing) {
        return None;
    }
    ui::status(
        "Present",
        &format!(
            "{} ({}) on every host already: nothing to send",
            image.reference, image.id
        ),
    );
    Some(
        fleet
            .hosts
            .iter()
            .zip(decisions)
            .map(|(h, d)| Sent {
                host: h.spec.to_string(),
                layers_sent: 0,
                layers_had: image.diff_ids.len(),
                bytes: 0,
                everything_because: None,
                id: match d {
                    Send::Nothing { id } => id.clone(),
                    _ => image.id.clone(),
                },
            })
            .collect(),
    )
}

/// What every host's engine holds, in host order.
async fn read_hosts(fleet: &Fleet) -> Result<Vec<HostImages>, Error> {
    let cmd = scripts::HostImages.command();
    let results = fleet
        .each(|host| {
            let cmd = cmd.clone();
            async move {
                let out = host.check(&cmd).await?;
                HostImages::parse(&String::from_utf8_lossy(&out)).map_err(|message| {
                    Error::Protocol {
                        host: host.spec.to_string(),
                        command: cmd.to_string(),
                        message,
                    }
                })
            }
        })
        .await;
    crate::fleet::collect(results)
}

/// A host an image is sent to: its engine's storage driver (what its load takes room for
/// depends on it) and its progress line.
struct Target<'a> {
    host: &'a Host,
    driver: &'a str,
    line: &'a ui::HostLine,
}

/// Feed one host its members on the stdin of `docker load`; when a stream without the layers it
/// has is refused, it gets the whole image once more (and it is said).
async fn send_host(
    to: &Target<'_>,
    archive: &Arc<Archive>,
    image: &Image,
    wanted: &Wanted<'_>,
    decision: &Send,
) -> Result<Sent, Error> {
    let host = to.host;
    let layers = image.diff_ids.len();
    let first = decision.first(layers);
    match load(to, archive, image, wanted, first).await {
        Ok((bytes, id)) => Ok(Sent {
            host: host.spec.to_string(),
            layers_sent: layers - first,
            layers_had: first,
            bytes,
            everything_because: match decision {
                Send::Everything { why } => Some(why.clone()),
                _ => None,
            },
            id,
        }),
        Err(e) if first > 0 && is_missing_layer(&e) => {
            let why = format!(
                "the engine refused the image without the layers it has ({})",
                crate::fleet::first_line(&e)
            );
            ui::warn(&format!("`{}`: {why}; sending the whole image", host.spec));
            let (bytes, id) = load(to, archive, image, wanted, 0).await?;
            Ok(Sent {
                host: host.spec.to_string(),
                layers_sent: layers,
                layers_had: 0,
                bytes,
                everything_because: Some(why),
                id,
            })
        }
        Err(e) => Err(e),
    }
}

/// Whether a failed load says a layer's file was missing from the stream (an engine with its
/// own store, or one with containerd's: `layer "..." not found`).
fn is_missing_layer(e: &Error) -> bool {
    let text = e.to_string().to_lowercase();
    text.contains("no such file")
        || text.contains("layer does not exist")
        || (text.contains("layer") && text.contains("not found"))
}

/// One `docker load` on `host` of the entries a host with the layers before `first` needs.
/// The compressed bytes sent, and what the host's engine calls the image it loaded, once it
/// is checked to be the one built.
async fn load(
    to: &Target<'_>,
    archive: &Arc<Archive>,
    image: &Image,
    wanted: &Wanted<'_>,
    first: usize,
) -> Result<(u64, String), Error> {
    let (host, line) = (to.host, to.line);
    let needed = archive.needed(first);
    let layers_total = image.diff_ids.len() - first;
    let sent = AtomicU64::new(0);
    let cmd = scripts::LoadImage {
        room: load_room(to.driver, &archive.layer_sizes(), first, image.size),
    }
    .command();
    let feed = |mut stdin: openssh::ChildStdin| {
        let (needed, sent) = (&needed, &sent);
        async move {
            let mut buf = vec![0u8; 1 << 16];
            for (n, i) in needed.iter().enumerate() {
                let member = archive.member(*i).await.map_err(std::io::Error::other)?;
                let mut file = tokio::fs::File::open(&member.path).await?;
                loop {
                    let read = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
                    if read == 0 {
                        break;
                    }
                    stdin.write_all(&buf[..read]).await?;
                    let total = sent.fetch_add(read as u64, Ordering::Relaxed) + read as u64;
                    line.set(format!(
                        "{} sent, entry {} of {} ({layers_total} layer{} to send)",
                        mib(total),
                        n + 1,
                        needed.len(),
                        plural(layers_total)
                    ));
                }
            }
            let trailer = tokio::fs::read(&archive.trailer().path).await?;
            stdin.write_all(&trailer).await?;
            sent.fetch_add(trailer.len() as u64, Ordering::Relaxed);
            stdin.shutdown().await?;
            line.set("loading into the engine");
            Ok(())
        }
    };
    let out = host.run_fed(&cmd, feed).await?;
    if out.code != Some(0) {
        return Err(host.failed(&cmd, &out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let loaded = text
        .lines()
        .find_map(|l| l.strip_prefix("loaded "))
        .ok_or_else(|| "no `loaded` line".to_owned())
        .and_then(HostImage::parse)
        .map_err(|message| Error::Protocol {
            host: host.spec.to_string(),
            command: cmd.to_string(),
            message,
        })?;
    if let Some(why) = wanted.mismatch(&loaded) {
        return Err(Error::ImageMismatch {
            host: host.spec.to_string(),
            id: loaded.id,
            built: image.id.clone(),
            why,
        });
    }
    Ok((sent.load(Ordering::Relaxed), loaded.id))
}
