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
    /// `(image ID, its diff IDs)` for every image, intermediate ones included.
    pub images: Vec<(String, Vec<String>)>,
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
                "image" => {
                    let mut words = rest.split_whitespace();
                    let id = words.next().ok_or("an image line without an ID")?;
                    h.images
                        .push((id.to_owned(), words.map(str::to_owned).collect()));
                }
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
    /// It has the image already.
    Nothing,
    /// The layers from position `from` on (it has the ones before).
    From { from: usize },
    /// Every layer, and why.
    Everything { why: String },
}

impl fmt::Display for Send {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Send::Nothing => f.write_str("has the image already"),
            Send::From { from } => write!(f, "has the first {from} layers"),
            Send::Everything { why } => write!(f, "gets every layer: {why}"),
        }
    }
}

impl Send {
    /// The first layer position sent (`layers` when none is).
    pub fn first(&self, layers: usize) -> usize {
        match self {
            Send::Nothing => layers,
            Send::From { from } => *from,
            Send::Everything { .. } => 0,
        }
    }
}

/// Decide for one host: the image `id` with layers `diff_ids`.
pub fn what_to_send(id: &str, diff_ids: &[String], host: &HostImages) -> Send {
    if host.images.iter().any(|(have, _)| have == id) {
        return Send::Nothing;
    }
    if let Some(why) = host.untrusted() {
        return Send::Everything { why };
    }
    let from = host
        .images
        .iter()
        .map(|(_, layers)| {
            layers
                .iter()
                .zip(diff_ids)
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0);
    Send::From { from }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                .map(|(i, l)| ((*i).to_owned(), ids(l)))
                .collect(),
        }
    }

    #[test]
    fn the_longest_shared_prefix_is_skipped() {
        let target = ids(&["a", "b", "c", "d"]);
        let h = host(&[
            ("x", &["a", "b", "z"]),
            ("y", &["a"]),
            ("w", &["q", "b", "c"]),
        ]);
        assert_eq!(what_to_send("new", &target, &h), Send::From { from: 2 });
        // A layer with the same content at another position is not the same layer.
        let h = host(&[("w", &["q", "b", "c", "d"])]);
        assert_eq!(what_to_send("new", &target, &h), Send::From { from: 0 });
        assert_eq!(
            what_to_send("new", &target, &host(&[])),
            Send::From { from: 0 }
        );
        // The image itself is there: nothing to send, whatever the engine.
        let mut h = host(&[("new", &["a", "b", "c", "d"])]);
        h.containerd_store = true;
        assert_eq!(what_to_send("new", &target, &h), Send::Nothing);
        assert_eq!(Send::Nothing.first(4), 4);
        assert_eq!(Send::From { from: 2 }.first(4), 2);
    }

    #[test]
    fn engines_that_cannot_be_trusted_get_everything() {
        let target = ids(&["a", "b"]);
        let mut h = host(&[("x", &["a"])]);
        h.containerd_store = true;
        assert!(matches!(
            what_to_send("new", &target, &h),
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
        let text = "engine 20.10.24+dfsg1\ndriver vfs\nstore graphdriver\nfree 40960\nimage sha256:1 sha256:a sha256:b\nimage sha256:2\n";
        let h = HostImages::parse(text).unwrap();
        assert_eq!(h.engine, "20.10.24+dfsg1");
        assert_eq!(h.driver, "vfs");
        assert!(!h.containerd_store);
        assert_eq!(h.free_kib, 40960);
        assert_eq!(
            h.images,
            [
                ("sha256:1".to_owned(), ids(&["sha256:a", "sha256:b"])),
                ("sha256:2".to_owned(), vec![])
            ]
        );
        assert!(HostImages::parse("store containerd\n").is_err());
        assert!(HostImages::parse("engine 1\nfree lots\n").is_err());
        assert!(HostImages::parse("engine 1\nsurprise\n").is_err());
        assert!(
            HostImages::parse("engine 24.0.7\nstore containerd\nfree 1\n")
                .unwrap()
                .containerd_store
        );
    }
}
