//! Writing a finished image: a docker-archive tarball (what `docker load`,
//! `podman load` and `skopeo` read) or an OCI image layout directory. Both
//! hold the same blobs; entries are written in sorted order with the fixed
//! tar metadata of `tarball`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::cache::{hex, Compressor, Layer};
use crate::error::{io_err, Result};
use crate::oci::{self, Descriptor};
use crate::tarball;

/// An image ready to be written: its config document and its layers.
pub struct Image<'a> {
    pub config: String,
    pub layers: &'a [Layer],
    pub compressor: Compressor,
    /// `name:tag`.
    pub repo_tag: String,
    pub tag: String,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What goes into a docker-archive, by name.
enum Member<'a> {
    Bytes(&'a [u8]),
    Blob(&'a Path),
}

/// Writes `image` as a docker-archive file at `out`.
pub fn write_docker_archive(image: &Image, out: &Path) -> Result<()> {
    let config_file = format!("{}.json", hex(&sha256(image.config.as_bytes())));
    let layer_files: Vec<String> =
        image.layers.iter().map(|l| format!("{}.{}", hex(&l.blob_digest), image.compressor.extension())).collect();
    let manifest = oci::docker_manifest(&config_file, &image.repo_tag, &layer_files);
    let mut members: Vec<(String, Member)> = vec![
        (config_file, Member::Bytes(image.config.as_bytes())),
        ("manifest.json".into(), Member::Bytes(manifest.as_bytes())),
    ];
    for (name, layer) in layer_files.into_iter().zip(image.layers) {
        if !members.iter().any(|(n, _)| *n == name) {
            members.push((name, Member::Blob(&layer.blob)));
        }
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    let mut file = File::create(out).map_err(io_err("creating", out))?;
    for (name, member) in members {
        match member {
            Member::Bytes(bytes) => append(&mut file, &name, bytes.len() as u64, &mut &bytes[..]),
            Member::Blob(path) => {
                let mut blob = File::open(path).map_err(io_err("reading", path))?;
                let size = blob.metadata().map_err(io_err("reading", path))?.len();
                append(&mut file, &name, size, &mut blob)
            }
        }
        .map_err(io_err("writing", out))?;
    }
    // A tar ends with two empty blocks.
    file.write_all(&[0; 1024]).map_err(io_err("writing", out))?;
    Ok(())
}

/// Appends one member to a docker-archive. Written straight to the file,
/// not through the `tar` crate's builder, so that copying a blob from the
/// layer cache is file to file and the kernel does it (`copy_file_range`)
/// instead of a loop through user space. Member names are digests, short
/// enough for a plain header.
fn append(out: &mut File, name: &str, size: u64, data: &mut impl io::Read) -> io::Result<()> {
    let mut header = tarball::header(tar::EntryType::Regular, 0o444, size, None)?;
    header.set_path(name)?;
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    let copied = io::copy(data, out)?;
    if copied != size {
        return Err(io::Error::other(format!("{name} changed while it was copied")));
    }
    let padding = (512 - size % 512) % 512;
    out.write_all(&vec![0; padding as usize])
}

/// Writes `image` as an OCI image layout directory at `out`.
pub fn write_oci_layout(image: &Image, out: &Path) -> Result<()> {
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
    let write = |path: &Path, bytes: &[u8]| fs::write(path, bytes).map_err(io_err("writing", path));
    let config = Descriptor {
        media_type: oci::CONFIG_MEDIA_TYPE.into(),
        digest: sha256(image.config.as_bytes()),
        size: image.config.len() as u64,
    };
    write(&blobs.join(hex(&config.digest)), image.config.as_bytes())?;
    let mut layers = Vec::new();
    for layer in image.layers {
        let target = blobs.join(hex(&layer.blob_digest));
        if !target.exists() {
            fs::copy(&layer.blob, &target).map_err(io_err("writing", &target))?;
        }
        layers.push(Descriptor {
            media_type: image.compressor.media_type().into(),
            digest: layer.blob_digest,
            size: layer.blob_size,
        });
    }
    let manifest = oci::oci_manifest(&config, &layers);
    let manifest_desc = Descriptor {
        media_type: oci::MANIFEST_MEDIA_TYPE.into(),
        digest: sha256(manifest.as_bytes()),
        size: manifest.len() as u64,
    };
    write(&blobs.join(hex(&manifest_desc.digest)), manifest.as_bytes())?;
    write(&out.join("index.json"), oci::oci_index(&manifest_desc, &image.tag, &image.repo_tag).as_bytes())?;
    write(&out.join("oci-layout"), oci::oci_layout().as_bytes())
}
