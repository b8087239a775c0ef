//! What to send a host, decided from what its engine holds. Pure.
//!
//! Docker's engine (with its own image store, the "graph drivers": overlay2, vfs, btrfs, zfs,
//! devicemapper) loads a `docker save` archive layer by layer: for each layer it first looks up
//! the layer's chain ID (the digest of the diff IDs up to and including it) among the layers it
//! has, and reads the layer's file only when it is missing. So an archive that leaves out the
//! layers a host already has loads fine there. A layer is had when an image on the host starts
//! with the same diff IDs up to it: the longest such prefix over the host's images is skipped.
//!
//! Where that cannot be trusted (an engine using containerd's image store, which imports
//! content blobs and wants them all; another engine behind a `docker` command; an engine older
//! than 17.06), everything is sent, and the reason said.
//!
//! Which image is which, across engines: an engine with its own image store calls an image by
//! its configuration's digest; one with containerd's store calls it by its manifest's digest,
//! which a load from another store makes anew. So a host has the image when it holds one by the
//! same ID, or one whose configuration has the same digest and the same layers (on a containerd
//! store the host reads the configuration's digest from containerd, where it can): then the ID
//! that host has is the one it runs, checks and prunes.

use std::fmt;

/// A host's engine and the images it holds, from `crate::remote::scripts::HostImages`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostImages {
    /// `ServerVersion`, such as `20.10.24+dfsg1`.
    pub engine: String,
    pub driver: String,
    /// Whether the engine keeps images in containerd's store.
    pub containerd_store: bool,
    /// KiB free in the engine's data root.
    pub free_kib: u64,
    /// Every image, intermediate ones included.
    pub images: Vec<HostImage>,
}

/// One image a host's engine holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostImage {
    /// What the engine calls it (`sha256:...`).
    pub id: String,
    /// The digest of its configuration, when the host could tell (on an engine with its own
    /// store it is the ID).
    pub config: Option<String>,
    /// Its layers' uncompressed digests, base first.
    pub diff_ids: Vec<String>,
}

impl HostImage {
    /// Parse `ID CONFIG DIFF-ID...` (`CONFIG` is `-` when unknown), the words after `image `
    /// in [`HostImages`] and after `loaded ` in the answer of `crate::remote::scripts::LoadImage`.
    pub fn parse(words: &str) -> Result<HostImage, String> {
        let mut words = words.split_whitespace();
        let id = words.next().ok_or("an image line without an ID")?;
        let config = words
            .next()
            .ok_or("an image line without a configuration")?;
        Ok(HostImage {
            id: id.to_owned(),
            config: (config != "-").then(|| config.to_owned()),
            diff_ids: words.map(str::to_owned).collect(),
        })
    }
}

/// The image to put on hosts, as the deploying machine knows it.
#[derive(Clone, Copy, Debug)]
pub struct Wanted<'a> {
    /// The local engine's ID for it.
    pub id: &'a str,
    /// Its configuration's digest, when known.
    pub config: Option<&'a str>,
    pub diff_ids: &'a [String],
}

impl Wanted<'_> {
    /// Whether `have` is this image: the same ID, or the same configuration (where both sides
    /// know it) with the same layers.
    pub fn is(&self, have: &HostImage) -> bool {
        have.id == self.id
            || (have.config.is_some()
                && have.config.as_deref() == self.config
                && have.diff_ids == self.diff_ids)
    }

    /// Why `loaded` (what a host says it loaded) is not this image, if it is not.
    pub fn mismatch(&self, loaded: &HostImage) -> Option<String> {
        if loaded.diff_ids != self.diff_ids {
            return Some(format!(
                "its layers differ ({} on the host, {} built)",
                loaded.diff_ids.len(),
                self.diff_ids.len()
            ));
        }
        match (loaded.config.as_deref(), self.config) {
            (Some(have), Some(want)) if have != want => Some(format!(
                "its configuration is `{have}`, the build's is `{want}`"
            )),
            _ => None,
        }
    }
}

impl HostImages {
    pub fn parse(text: &str) -> Result<HostImages, String> {
        let mut h = HostImages::default();
        for line in text.lines() {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "engine" => rest.clone_into(&mut h.engine),
                "driver" => rest.clone_into(&mut h.driver),
                "store" => h.containerd_store = rest == "containerd",
                "free" => {
                    h.free_kib = rest
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad free space `{rest}`"))?;
                }
                "image" => h.images.push(HostImage::parse(rest)?),
                "" => {}
                other => return Err(format!("unexpected line `{other} ...`")),
            }
        }
        if h.engine.is_empty() {
            return Err("no engine version".into());
        }
        Ok(h)
    }

    /// Why a partial archive cannot be trusted on this engine, if it cannot.
    pub fn untrusted(&self) -> Option<String> {
        if self.containerd_store {
            return Some(format!(
                "its engine ({}) keeps images in containerd's store, which wants every layer",
                self.engine
            ));
        }
        let mut parts = self.engine.split(|c: char| !c.is_ascii_digit());
        let major: Option<u32> = parts.next().and_then(|p| p.parse().ok());
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        match major {
            Some(m) if (m, minor) >= (17, 6) => None,
            _ => Some(format!(
                "its engine (`{}`) is not a Docker engine from 17.06 on",
                self.engine
            )),
        }
    }
}

/// What one host gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Send {
    /// It has the image already, by this ID.
    Nothing { id: String },
    /// The layers from position `from` on (it has the ones before).
    From { from: usize },
    /// Every layer, and why.
    Everything { why: String },
}

impl fmt::Display for Send {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Send::Nothing { id } => write!(f, "has the image already (`{id}`)"),
            Send::From { from } => write!(f, "has the first {from} layers"),
            Send::Everything { why } => write!(f, "gets every layer: {why}"),
        }
    }
}

impl Send {
    /// Whether the host has the image already.
    pub fn is_nothing(&self) -> bool {
        matches!(self, Send::Nothing { .. })
    }

    /// The first layer position sent (`layers` when none is).
    pub fn first(&self, layers: usize) -> usize {
        match self {
            Send::Nothing { .. } => layers,
            Send::From { from } => *from,
            Send::Everything { .. } => 0,
        }
    }
}

/// Decide for one host.
pub fn what_to_send(image: &Wanted<'_>, host: &HostImages) -> Send {
    // Its own ID first: a host may hold the same image under both names.
    if let Some(have) = host
        .images
        .iter()
        .find(|h| h.id == image.id)
        .or_else(|| host.images.iter().find(|h| image.is(h)))
    {
        return Send::Nothing {
            id: have.id.clone(),
        };
    }
    if let Some(why) = host.untrusted() {
        return Send::Everything { why };
    }
    let from = host
        .images
        .iter()
        .map(|have| {
            have.diff_ids
                .iter()
                .zip(image.diff_ids)
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0);
    Send::From { from }
}

/// What a serving host keeps free whatever it loads: room for its logs, journal and the
/// containers' writes while the new release starts.
pub const KEEP_FREE: u64 = 256 << 20;

/// The room one `docker load` takes on a host, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadRoom {
    /// The stream as the engine stages it in its temporary directory before registering
    /// anything: the layers sent.
    pub staged: u64,
    /// What unpacking them adds to the data root: the same again, except with `vfs`, which
    /// stores every layer as a full copy of the ones below it plus its own files.
    pub unpacked: u64,
}

/// The room to load the layers from position `first` on (`layer_sizes` base first; empty for
/// an archive that cannot be split, which is then `whole` bytes in all) on an engine with
/// storage driver `driver`.
pub fn load_room(driver: &str, layer_sizes: &[u64], first: usize, whole: u64) -> LoadRoom {
    if layer_sizes.is_empty() {
        return LoadRoom {
            staged: whole,
            unpacked: whole,
        };
    }
    let sent = layer_sizes
        .iter()
        .skip(first)
        .fold(0u64, |a, s| a.saturating_add(*s));
    let unpacked = if driver == "vfs" {
        let mut below = 0u64;
        let mut total = 0u64;
        for (i, size) in layer_sizes.iter().enumerate() {
            below = below.saturating_add(*size);
            if i >= first {
                total = total.saturating_add(below);
            }
        }
        total
    } else {
        sent
    };
    LoadRoom {
        staged: sent,
        unpacked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_needs_its_stream_staged_then_unpacked_and_vfs_copies_every_lower_layer() {
        let sizes = [100, 10, 1];
        // Everything sent: staged once, unpacked once more.
        assert_eq!(
            load_room("overlay2", &sizes, 0, 0),
            LoadRoom {
                staged: 111,
                unpacked: 111
            }
        );
        // Only the top layer sent: only its bytes, twice.
        assert_eq!(
            load_room("overlay2", &sizes, 2, 0),
            LoadRoom {
                staged: 1,
                unpacked: 1
            }
        );
        // vfs: each layer is a full copy of those below it plus its own files.
        assert_eq!(
            load_room("vfs", &sizes, 0, 0),
            LoadRoom {
                staged: 111,
                unpacked: 100 + 110 + 111
            }
        );
        assert_eq!(load_room("vfs", &sizes, 2, 0).unpacked, 111);
        // An archive that cannot be split: its whole size, twice.
        assert_eq!(
            load_room("overlay2", &[], 0, 5000),
            LoadRoom {
                staged: 5000,
                unpacked: 5000
            }
        );
        assert_eq!(load_room("vfs", &[u64::MAX, 1], 0, 0).unpacked, u64::MAX);
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn host(images: &[(&str, &[&str])]) -> HostImages {
        HostImages {
            engine: "20.10.24+dfsg1".into(),
            driver: "overlay2".into(),
            containerd_store: false,
            free_kib: 1 << 20,
            images: images
                .iter()
                .map(|(i, l)| HostImage {
                    id: (*i).to_owned(),
                    config: Some((*i).to_owned()),
                    diff_ids: ids(l),
                })
                .collect(),
        }
    }

    fn wanted<'a>(id: &'a str, config: Option<&'a str>, diff_ids: &'a [String]) -> Wanted<'a> {
        Wanted {
            id,
            config,
            diff_ids,
        }
    }

    #[test]
    fn the_longest_shared_prefix_is_skipped() {
        let target = ids(&["a", "b", "c", "d"]);
        let new = wanted("new", Some("new"), &target);
        let h = host(&[
            ("x", &["a", "b", "z"]),
            ("y", &["a"]),
            ("w", &["q", "b", "c"]),
        ]);
        assert_eq!(what_to_send(&new, &h), Send::From { from: 2 });
        // A layer with the same content at another position is not the same layer.
        let h = host(&[("w", &["q", "b", "c", "d"])]);
        assert_eq!(what_to_send(&new, &h), Send::From { from: 0 });
        assert_eq!(what_to_send(&new, &host(&[])), Send::From { from: 0 });
        // The image itself is there: nothing to send, whatever the engine.
        let mut h = host(&[("new", &["a", "b", "c", "d"])]);
        h.containerd_store = true;
        assert_eq!(what_to_send(&new, &h), Send::Nothing { id: "new".into() });
        assert!(what_to_send(&new, &h).is_nothing());
        assert_eq!(Send::Nothing { id: "x".into() }.first(4), 4);
        assert_eq!(Send::From { from: 2 }.first(4), 2);
    }

    #[test]
    fn an_image_is_known_by_its_configuration_across_stores() {
        let layers = ids(&["a", "b"]);
        // A containerd store calls the image by its manifest (`m1`), its configuration is `c1`.
        let mut h = host(&[]);
        h.containerd_store = true;
        h.images.push(HostImage {
            id: "m1".into(),
            config: Some("c1".into()),
            diff_ids: layers.clone(),
        });
        // Built on an engine with its own store: its ID is its configuration's digest.
        assert_eq!(
            what_to_send(&wanted("c1", Some("c1"), &layers), &h),
            Send::Nothing { id: "m1".into() }
        );
        // Built on a containerd store too (`m0`), configuration known from its archive.
        assert_eq!(
            what_to_send(&wanted("m0", Some("c1"), &layers), &h),
            Send::Nothing { id: "m1".into() }
        );
        // Another configuration over the same layers (another release's labels) is another
        // image; so is an unknown configuration.
        assert!(!what_to_send(&wanted("c2", Some("c2"), &layers), &h).is_nothing());
        assert!(!what_to_send(&wanted("m0", None, &layers), &h).is_nothing());
        // Where the host cannot tell the configuration, only the same ID counts.
        h.images[0].config = None;
        assert!(!what_to_send(&wanted("c1", Some("c1"), &layers), &h).is_nothing());
        // The same configuration over other layers is not the image.
        h.images[0].config = Some("c1".into());
        h.images[0].diff_ids.pop();
        assert!(!what_to_send(&wanted("c1", Some("c1"), &layers), &h).is_nothing());
    }

    #[test]
    fn what_a_host_loaded_is_checked_on_what_both_stores_agree_on() {
        let layers = ids(&["a", "b"]);
        let want = wanted("c1", Some("c1"), &layers);
        let loaded = |config: Option<&str>, diff: &[&str]| HostImage {
            id: "m1".into(),
            config: config.map(str::to_owned),
            diff_ids: ids(diff),
        };
        assert_eq!(want.mismatch(&loaded(Some("c1"), &["a", "b"])), None);
        // The host cannot tell the configuration: its layers must be the build's.
        assert_eq!(want.mismatch(&loaded(None, &["a", "b"])), None);
        assert!(
            want.mismatch(&loaded(Some("c9"), &["a", "b"]))
                .unwrap()
                .contains("`c9`")
        );
        assert!(
            want.mismatch(&loaded(None, &["a"]))
                .unwrap()
                .contains("layers")
        );
    }

    #[test]
    fn engines_that_cannot_be_trusted_get_everything() {
        let target = ids(&["a", "b"]);
        let mut h = host(&[("x", &["a"])]);
        h.containerd_store = true;
        assert!(matches!(
            what_to_send(&wanted("new", Some("new"), &target), &h),
            Send::Everything { why } if why.contains("containerd")
        ));
        for (engine, trusted) in [
            ("17.06.0-ce", true),
            ("17.05.0-ce", false),
            ("24.0.7", true),
            ("1.13.1", false),
            ("podman", false),
            ("28.3.2", true),
        ] {
            let h = HostImages {
                engine: engine.into(),
                ..host(&[])
            };
            assert_eq!(h.untrusted().is_none(), trusted, "{engine}");
        }
    }

    #[test]
    fn a_hosts_answer_is_parsed() {
        let text = "engine 20.10.24+dfsg1\ndriver vfs\nstore graphdriver\nfree 40960\nimage sha256:1 sha256:1 sha256:a sha256:b\nimage sha256:2 -\n";
        let h = HostImages::parse(text).unwrap();
        assert_eq!(h.engine, "20.10.24+dfsg1");
        assert_eq!(h.driver, "vfs");
        assert!(!h.containerd_store);
        assert_eq!(h.free_kib, 40960);
        assert_eq!(
            h.images,
            [
                HostImage {
                    id: "sha256:1".into(),
                    config: Some("sha256:1".into()),
                    diff_ids: ids(&["sha256:a", "sha256:b"])
                },
                HostImage {
                    id: "sha256:2".into(),
                    config: None,
                    diff_ids: vec![]
                }
            ]
        );
        assert!(HostImages::parse("store containerd\n").is_err());
        assert!(HostImages::parse("engine 1\nfree lots\n").is_err());
        assert!(HostImages::parse("engine 1\nsurprise\n").is_err());
        assert!(HostImages::parse("engine 1\nimage sha256:1\n").is_err());
        assert!(
            HostImages::parse("engine 24.0.7\nstore containerd\nfree 1\n")
                .unwrap()
                .containerd_store
        );
    }
}
