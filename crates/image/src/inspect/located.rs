//! An image located rather than scanned: its config document and where
//! each layer's bytes are, for `mini push`, which reads each layer once,
//! as it compresses it for the registry. Found by the same hardened
//! reading as inspecting (`docker`, `oci`): no link that climbs out of a
//! docker-archive is followed, no file of an OCI layout is opened through
//! a link, and each file is opened once and then read by position, never
//! opened again by name. Layers are never held in memory; whoever reads
//! one checks it against its diff_id.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compress::Compressor;
use crate::error::{io_err, Result};
use crate::produce;

/// An image ready to be read layer by layer.
#[derive(Debug)]
pub struct LocatedImage {
    /// The config document's bytes, as they are.
    pub config: Vec<u8>,
    /// Bottom layer first.
    pub layers: Vec<LocatedLayer>,
}

/// One layer: its diff_id and where its bytes are.
#[derive(Clone)]
pub struct LocatedLayer {
    /// `sha256:<hex>` of the uncompressed tar, as the config lists it.
    pub diff_id: String,
    /// Where the bytes are, for messages.
    what: PathBuf,
    bytes: LayerBytes,
}

#[derive(Clone)]
enum LayerBytes {
    /// A stretch of a file opened once (possibly compressed).
    Slice { file: Arc<File>, offset: u64, size: u64 },
    /// Made from the store when read (a streamed image's layer).
    Made(produce::Source),
}

impl std::fmt::Debug for LocatedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocatedLayer").field("diff_id", &self.diff_id).field("what", &self.what).finish()
    }
}

impl LocatedLayer {
    /// The layer stored as `size` bytes at `offset` of `file`; `what`
    /// names it in messages.
    pub(crate) fn slice(diff_id: String, what: PathBuf, file: Arc<File>, offset: u64, size: u64) -> LocatedLayer {
        LocatedLayer { diff_id, what, bytes: LayerBytes::Slice { file, offset, size } }
    }

    /// The layer `source` makes when it is read.
    pub(crate) fn made(diff_id: String, what: PathBuf, source: produce::Source) -> LocatedLayer {
        LocatedLayer { diff_id, what, bytes: LayerBytes::Made(source) }
    }

    /// Where the layer's bytes are, for messages.
    pub fn what(&self) -> &Path {
        &self.what
    }

    /// The layer's uncompressed tar stream (decompressed as it is read, if
    /// it is stored compressed).
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        let (file, offset, size) = match &self.bytes {
            LayerBytes::Slice { file, offset, size } => (file.clone(), *offset, *size),
            LayerBytes::Made(source) => return source.reader().map_err(io_err("making", &self.what)),
        };
        let slice = Slice { file, offset, end: offset + size };
        let mut reader = BufReader::with_capacity(256 * 1024, slice);
        let head = reader.fill_buf().map_err(io_err("reading", &self.what))?;
        Ok(match Compressor::detect(head) {
            Compressor::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
            Compressor::Zstd => Box::new(zstd::Decoder::with_buffer(reader).map_err(io_err("reading", &self.what))?),
            Compressor::None => Box::new(reader),
        })
    }
}

/// A range of a shared file, read by position.
struct Slice {
    file: Arc<File>,
    offset: u64,
    end: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Locates the one image in `path`: an OCI layout directory whose
/// `index.json` lists exactly one manifest, or a plain docker-archive whose
/// `manifest.json` lists exactly one image.
pub fn locate(path: &Path) -> Result<LocatedImage> {
    let meta = std::fs::metadata(path).map_err(io_err("reading", path))?;
    if meta.is_dir() {
        super::oci::locate(path)
    } else if meta.len() == 0 {
        Err(super::not_an_image(path, "the file is empty"))
    } else {
        super::docker::locate(path)
    }
}

/// The one item of a list of images; `what` names the list.
pub(super) fn the_only<T>(mut list: Vec<T>, what: &str) -> std::result::Result<T, String> {
    match list.len() {
        0 => Err(format!("{what} lists no image")),
        1 => Ok(list.remove(0)),
        _ => Err(format!("{what} lists several images; mini pushes one at a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn message(path: &Path) -> String {
        super::super::not_an_image_message(locate(path))
    }

    fn layer_bytes(layer: &LocatedLayer) -> Vec<u8> {
        let mut bytes = Vec::new();
        layer.open().unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn docker_archives_and_oci_layouts_locate_alike() {
        let dir = TempDir::new("locate");
        let image = sample_image();
        for gzipped in [false, true] {
            let (docker, oci) = both_formats(&dir, &image, gzipped);
            for located in [locate(&docker).unwrap(), locate(&oci).unwrap()] {
                assert_eq!(located.layers.len(), image.layers.len());
                for (layer, tar) in located.layers.iter().zip(&image.layers) {
                    assert_eq!(layer.diff_id, format!("sha256:{}", sha256_hex(tar)));
                    assert_eq!(&layer_bytes(layer), tar, "layers read back uncompressed");
                }
            }
        }
    }

    #[test]
    fn links_in_an_oci_layout_are_not_followed() {
        let dir = TempDir::new("locate-links");
        let layout = dir.path().join("layout");
        write_oci_layout(&sample_image(), false, &layout);
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        let blobs = layout.join("blobs/sha256");
        let layer = blobs.join(sha256_hex(&sample_image().layers[1]));
        std::fs::remove_file(&layer).unwrap();
        std::os::unix::fs::symlink(&secret, &layer).unwrap();
        assert!(message(&layout).starts_with("layer 2 (sha256:"), "{}", message(&layout));
        assert!(message(&layout).contains("is a symbolic link"), "{}", message(&layout));
        std::fs::remove_file(layout.join("index.json")).unwrap();
        std::os::unix::fs::symlink(&secret, layout.join("index.json")).unwrap();
        assert!(message(&layout).starts_with("index.json is a symbolic link"), "{}", message(&layout));
    }

    #[test]
    fn links_climbing_out_of_a_docker_archive_are_refused() {
        let dir = TempDir::new("locate-climb");
        let config = config_for(&[layer_tar(&["bin/sh"])], "/bin/sh");
        let manifest = serde_json::json!([{ "Config": "config.json", "Layers": ["a/layer.tar"] }]).to_string();
        let members: [(&str, &[u8]); 3] = [
            ("manifest.json", manifest.as_bytes()),
            ("config.json", &config),
            ("a/layer.tar -> ../../etc/passwd", b""),
        ];
        let path = dir.path().join("climb.tar");
        std::fs::write(&path, tar_of(&members)).unwrap();
        assert!(message(&path).contains("is a link out of the archive"), "{}", message(&path));
    }

    #[test]
    fn inputs_must_hold_exactly_one_image() {
        assert_eq!(the_only(vec![1], "index.json"), Ok(1));
        assert_eq!(the_only(Vec::<u8>::new(), "index.json").unwrap_err(), "index.json lists no image");
        assert!(the_only(vec![1, 2], "manifest.json").unwrap_err().contains("several images"));
    }
}
