//! The image as `docker save` writes it, spooled to a temporary directory, cut into pieces a
//! host's stream is assembled from.
//!
//! Each tar entry (its header, its data, its padding) is compressed on its own into one gzip
//! member, once, when the first host needs it: gzip members concatenate into one valid gzip
//! stream (RFC 1952), and tar entries into one valid archive, so a host's stream is the members
//! of the entries it needs, then a member holding the end-of-archive blocks. `docker load`
//! decompresses it as it comes. A layer many hosts need is compressed once; a layer no host
//! needs is never compressed. Nothing is held in memory whole.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::error::Error;

/// One entry of the saved archive.
struct Entry {
    /// Its 512-byte header, as the engine wrote it.
    header: [u8; 512],
    path: String,
    /// Where its data starts in the spooled tar, and how long it is.
    offset: u64,
    size: u64,
    /// Its gzip member, made once.
    member: OnceCell<Member>,
}

/// An entry compressed: a file in the spool directory.
#[derive(Clone, Debug)]
pub struct Member {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The saved image, spooled.
pub struct Archive {
    dir: tempfile::TempDir,
    tar: PathBuf,
    entries: Vec<Entry>,
    /// Per layer position (base first), the index of its entry; empty when the archive
    /// cannot be split by layer (then every host gets all of it).
    layers: Vec<usize>,
    /// Why it cannot be split, when it cannot.
    pub unsplittable: Option<String>,
    /// The digest of the image's configuration, as the archive names it.
    pub config: Option<String>,
    trailer: Member,
}

fn spool_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal {
        context: format!("reading the saved image ({what})"),
        source: e.to_string().into(),
    }
}

/// The manifest `docker save` writes (`manifest.json`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    #[serde(default)]
    config: String,
    layers: Vec<String>,
}

/// The digest of the configuration a `manifest.json` entry names: `<hex>.json` in the layout of
/// an engine with its own store, `blobs/sha256/<hex>` in the OCI layout of a containerd store.
fn config_digest(path: &str) -> Option<String> {
    let hex = path
        .strip_suffix(".json")
        .or_else(|| path.strip_prefix("blobs/sha256/"))?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

impl Archive {
    /// Save `reference` from the local engine into a new spool directory and index it.
    /// `layer_count` is the number of layers the image has (its diff IDs).
    pub async fn save(
        engine: &crate::docker::Engine,
        reference: &str,
        layer_count: usize,
    ) -> Result<Arc<Archive>, Error> {
        let dir = tempfile::Builder::new()
            .prefix("shipit-image-")
            .tempdir()
            .map_err(|e| spool_error("making a spool directory", e))?;
        let tar = dir.path().join("image.tar");
        engine.save_to(reference, &tar).await?;
        let archive = tokio::task::spawn_blocking(move || Archive::open(dir, tar, layer_count))
            .await
            .map_err(|e| spool_error("indexing", e))??;
        Ok(Arc::new(archive))
    }

    /// Index the saved `tar` in `dir` (which the archive then owns).
    fn open(dir: tempfile::TempDir, tar: PathBuf, layer_count: usize) -> Result<Archive, Error> {
        let Indexed {
            entries,
            layers,
            unsplittable,
            config,
        } = index(&tar, layer_count)?;
        let trailer = dir.path().join("trailer.gz");
        let bytes = write_member(&trailer, &[0u8; 1024], &mut std::io::empty(), 0)?;
        Ok(Archive {
            dir,
            tar,
            entries,
            layers,
            unsplittable,
            config,
            trailer: Member {
                path: trailer,
                bytes,
            },
        })
    }

    /// The number of layers the archive is split by (0 when it cannot be).
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Each layer's uncompressed bytes, base first (empty when the archive cannot be split).
    pub fn layer_sizes(&self) -> Vec<u64> {
        self.layers.iter().map(|i| self.entries[*i].size).collect()
    }

    /// Uncompressed bytes of the layers from position `from` on.
    pub fn layer_bytes_from(&self, from: usize) -> u64 {
        self.needed(from)
            .iter()
            .filter(|i| self.layers.contains(i))
            .map(|i| self.entries[*i].size)
            .sum()
    }

    /// The entries a host that has the layers before position `from` needs: everything but
    /// the files of layers it has.
    pub fn needed(&self, from: usize) -> Vec<usize> {
        if self.unsplittable.is_some() {
            return (0..self.entries.len()).collect();
        }
        (0..self.entries.len())
            .filter(|i| {
                let positions: Vec<usize> = self
                    .layers
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| *e == i)
                    .map(|(p, _)| p)
                    .collect();
                positions.is_empty() || positions.iter().any(|p| *p >= from)
            })
            .collect()
    }

    /// The member of entry `i`, compressing it the first time it is asked for.
    pub async fn member(self: &Arc<Self>, i: usize) -> Result<Member, Error> {
        let this = Arc::clone(self);
        self.entries[i]
            .member
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || this.compress(i))
                    .await
                    .map_err(|e| spool_error("compressing", e))?
            })
            .await
            .cloned()
    }

    /// The end-of-archive member, sent last.
    pub fn trailer(&self) -> &Member {
        &self.trailer
    }

    fn compress(&self, i: usize) -> Result<Member, Error> {
        let entry = &self.entries[i];
        let path = self.dir.path().join(format!("{i}.gz"));
        let mut tar = std::fs::File::open(&self.tar).map_err(|e| spool_error("opening", e))?;
        tar.seek(SeekFrom::Start(entry.offset))
            .map_err(|e| spool_error("seeking", e))?;
        let bytes = write_member(&path, &entry.header, &mut tar.take(entry.size), entry.size)?;
        Ok(Member { path, bytes })
    }

    /// A name for messages: the entry's path in the archive.
    pub fn entry_path(&self, i: usize) -> &str {
        &self.entries[i].path
    }
}

/// Write one gzip member: `header`, then `size` bytes of `data`, then the zeros that pad the
/// data to a 512-byte block. Its compressed size.
fn write_member(path: &Path, header: &[u8], data: &mut impl Read, size: u64) -> Result<u64, Error> {
    let write_error = |e: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::create(path).map_err(write_error)?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    gz.write_all(header).map_err(write_error)?;
    let copied = std::io::copy(data, &mut gz).map_err(write_error)?;
    if copied != size {
        return Err(spool_error(
            "copying an entry",
            format!("{copied} of {size} bytes"),
        ));
    }
    let padding = (512 - size % 512) % 512;
    gz.write_all(&vec![0u8; usize::try_from(padding).unwrap_or(0)])
        .map_err(write_error)?;
    let mut out = gz.finish().map_err(write_error)?;
    out.flush().map_err(write_error)?;
    let file = out.into_inner().map_err(|e| write_error(e.into_error()))?;
    file.metadata().map(|m| m.len()).map_err(write_error)
}

struct Indexed {
    entries: Vec<Entry>,
    layers: Vec<usize>,
    unsplittable: Option<String>,
    config: Option<String>,
}

/// Read the spooled tar's entries (headers only: data is skipped) and map each layer position
/// to its entry through `manifest.json`.
fn index(tar_path: &Path, layer_count: usize) -> Result<Indexed, Error> {
    let file = std::fs::File::open(tar_path).map_err(|e| spool_error("opening", e))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = Vec::new();
    let mut manifest: Option<Vec<u8>> = None;
    let mut unsplittable = None;
    for entry in archive.entries().map_err(|e| spool_error("listing", e))? {
        let mut entry = entry.map_err(|e| spool_error("an entry", e))?;
        let path = entry
            .path()
            .map_err(|e| spool_error("an entry's name", e))?
            .to_string_lossy()
            .into_owned();
        let header: [u8; 512] = entry
            .header()
            .as_bytes()
            .as_slice()
            .try_into()
            .map_err(|e| spool_error("a header", e))?;
        // The header must name the entry by itself (no long-name extension before it), since
        // it is sent alone. `docker save` names are short; anything else is sent whole.
        if entry.header().path_bytes().as_ref() != path.as_bytes() {
            unsplittable = Some(format!("its archive has a long name (`{path}`)"));
        }
        if path == "manifest.json" {
            let mut text = Vec::new();
            entry
                .read_to_end(&mut text)
                .map_err(|e| spool_error("manifest.json", e))?;
            manifest = Some(text);
        }
        entries.push(Entry {
            header,
            offset: entry.raw_file_position(),
            size: entry.size(),
            path,
            member: OnceCell::new(),
        });
    }
    let list = manifest
        .as_deref()
        .and_then(|m| serde_json::from_slice::<Vec<ManifestEntry>>(m).ok())
        .unwrap_or_default();
    let config = match list.as_slice() {
        [one] => config_digest(&one.config),
        _ => None,
    };
    let layers = match list.as_slice() {
        [one] if one.layers.len() == layer_count => one
            .layers
            .iter()
            .map(|l| entries.iter().position(|e| e.path == *l))
            .collect::<Option<Vec<usize>>>(),
        _ => None,
    };
    let layers = match layers {
        Some(layers) => layers,
        None => {
            unsplittable.get_or_insert_with(|| {
                "its manifest.json does not list the image's layers one to one".into()
            });
            Vec::new()
        }
    };
    if unsplittable.is_some() {
        return Ok(Indexed {
            entries,
            layers: Vec::new(),
            unsplittable,
            config,
        });
    }
    Ok(Indexed {
        entries,
        layers,
        unsplittable: None,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar in `docker save`'s legacy layout: two layers, a config, a manifest.
    fn saved(dir: &Path, long_name: bool) -> PathBuf {
        let path = dir.join("image.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add("aaa/layer.tar", &vec![1u8; 3000]);
        add("bbb/layer.tar", &vec![2u8; 700]);
        add(&format!("{}.json", "c".repeat(64)), b"{}");
        if long_name {
            add(&format!("{}.json", "x".repeat(120)), b"{}");
        }
        add(
            "manifest.json",
            format!(
                r#"[{{"Config":"{}.json","RepoTags":["app:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#,
                "c".repeat(64)
            )
            .as_bytes(),
        );
        b.finish().unwrap();
        path
    }

    fn gunzip_all(parts: &[PathBuf]) -> Vec<u8> {
        let mut joined = Vec::new();
        for p in parts {
            joined.extend(std::fs::read(p).unwrap());
        }
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&joined[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn archive(dir: tempfile::TempDir, long_name: bool) -> Archive {
        let tar = saved(dir.path(), long_name);
        Archive::open(dir, tar, 2).unwrap()
    }

    #[tokio::test]
    async fn members_concatenate_into_an_archive_without_the_layers_a_host_has() {
        let a = Arc::new(archive(tempfile::tempdir().unwrap(), false));
        assert_eq!(a.layers(), 2);
        assert!(a.unsplittable.is_none());
        assert_eq!(a.layer_bytes_from(0), 3700);
        assert_eq!(a.layer_bytes_from(1), 700);
        // A host with the first layer: the second layer, the config and the manifest.
        let needed = a.needed(1);
        let names: Vec<&str> = needed.iter().map(|i| a.entry_path(*i)).collect();
        let config = format!("{}.json", "c".repeat(64));
        assert_eq!(names, ["bbb/layer.tar", config.as_str(), "manifest.json"]);
        assert_eq!(a.config, Some(format!("sha256:{}", "c".repeat(64))));
        let mut parts = Vec::new();
        for i in &needed {
            parts.push(a.member(*i).await.unwrap().path);
        }
        parts.push(a.trailer().path.clone());
        let tar_bytes = gunzip_all(&parts);
        let mut read = tar::Archive::new(&tar_bytes[..]);
        let got: Vec<(String, Vec<u8>)> = read
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().display().to_string(), data)
            })
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ("bbb/layer.tar".to_owned(), vec![2u8; 700]));
        assert_eq!(got[1].1, b"{}");
        // A member is made once, whoever asks.
        let first = a.member(needed[0]).await.unwrap();
        assert_eq!(a.member(needed[0]).await.unwrap().path, first.path);
        // Nothing had: every entry.
        assert_eq!(a.needed(0).len(), 4);
    }

    #[test]
    fn an_archive_with_long_names_or_a_strange_manifest_is_sent_whole() {
        let a = archive(tempfile::tempdir().unwrap(), true);
        assert!(a.unsplittable.as_deref().unwrap().contains("long name"));
        assert_eq!(a.needed(2).len(), a.entries.len());
        let dir = tempfile::tempdir().unwrap();
        let tar = saved(dir.path(), false);
        let Indexed {
            layers,
            unsplittable,
            ..
        } = index(&tar, 3).unwrap();
        assert!(layers.is_empty());
        assert!(unsplittable.unwrap().contains("manifest.json"));
    }

    #[test]
    fn the_configuration_is_named_in_either_layout() {
        let hex = "ab".repeat(32);
        let want = Some(format!("sha256:{hex}"));
        assert_eq!(config_digest(&format!("{hex}.json")), want);
        assert_eq!(config_digest(&format!("blobs/sha256/{hex}")), want);
        assert_eq!(config_digest("cfg.json"), None);
        assert_eq!(config_digest(&format!("blobs/sha512/{hex}")), None);
    }
}
