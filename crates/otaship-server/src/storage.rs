//! Blob storage: the `.ipa` and the icon of each build, on local disk under the data directory.
//!
//! Every path comes from a [`BlobKey`], so no request can name a file. Blobs are moved into
//! place from the upload's temporary file (same filesystem: an atomic rename) and written with
//! a temporary name then renamed, so a crash never leaves a half-written blob under its key.

use std::io;
use std::path::{Path, PathBuf};

/// What a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// The uploaded archive.
    Ipa,
    /// The icon as a standard PNG.
    Icon,
}

/// The address of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey {
    /// Build id (random hex, checked before any path is made).
    pub build_id: String,
    /// Which blob of the build.
    pub kind: BlobKind,
}

/// Local-disk blob storage.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Storage rooted at `root` (created by the caller).
    pub fn new(root: PathBuf) -> Self {
        Storage { root }
    }

    /// The file of a blob. Ids are checked to be plain hex, so the path stays under the root.
    pub fn path(&self, key: &BlobKey) -> io::Result<PathBuf> {
        if key.build_id.is_empty() || !key.build_id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a build id"));
        }
        let file = match key.kind {
            BlobKind::Ipa => "app.ipa",
            BlobKind::Icon => "icon.png",
        };
        Ok(self.root.join("builds").join(&key.build_id).join(file))
    }

    /// Moves a finished temporary file into place under `key`.
    pub async fn put_file(&self, key: &BlobKey, from: &Path) -> io::Result<()> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(from, &path).await?;
        sync_parent(&path).await
    }

    /// Writes bytes under `key` (via a temporary name, then a rename).
    pub async fn put_bytes(&self, key: &BlobKey, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(key)?;
        let parent = path.parent().ok_or_else(|| io::Error::other("blob path has no parent"))?;
        tokio::fs::create_dir_all(parent).await?;
        let temporary = path.with_extension("part");
        tokio::fs::write(&temporary, bytes).await?;
        tokio::fs::File::open(&temporary).await?.sync_all().await?;
        tokio::fs::rename(&temporary, &path).await?;
        sync_parent(&path).await
    }

    /// Opens a blob for reading.
    pub async fn open(&self, key: &BlobKey) -> io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(key)?).await
    }

    /// Deletes every blob of a build.
    pub async fn delete_build(&self, build_id: &str) -> io::Result<()> {
        let dir = self.path(&BlobKey { build_id: build_id.to_owned(), kind: BlobKind::Ipa })?;
        match dir.parent() {
            Some(dir) => match tokio::fs::remove_dir_all(dir).await {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Build ids that have blobs on disk.
    pub async fn stored_build_ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut entries = match tokio::fs::read_dir(self.root.join("builds")).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(error) => return Err(error),
        };
        while let Some(entry) = entries.next_entry().await? {
            if let Some(name) = entry.file_name().to_str() {
                ids.push(name.to_owned());
            }
        }
        Ok(ids)
    }
}

/// Makes a rename durable: fsync the directory that holds the new name.
async fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        tokio::fs::File::open(parent).await?.sync_all().await?;
    }
    Ok(())
}
