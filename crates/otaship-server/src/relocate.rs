//! Moving every blob from one storage to another (`otaship migrate-storage`), resumably.
//!
//! The database is the list of what must move: each build's `.ipa` (checked against its
//! SHA-256 on the way) and icon. A blob already in the destination with the right size is
//! skipped, and blobs appear in either storage whole or not at all, so an interrupted move is
//! simply run again. The source is only emptied (`delete_source`) build by build, after both of
//! its blobs are verified in the destination.

use std::io;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::db::{BuildRow, Db};
use crate::storage::{BlobKey, BlobKind, Storage};
use crate::tokens::hex;

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// Copied (and verified).
    Copied {
        /// Bytes.
        bytes: u64,
    },
    /// Already in the destination.
    AlreadyThere,
    /// In neither storage: the build's file is lost.
    Missing,
}

/// One step, for progress output.
#[derive(Debug, Clone)]
pub struct Step {
    /// `builds/<id>/app.ipa` or `.../icon.png`.
    pub key: String,
    /// What happened.
    pub moved: Moved,
}

/// The totals of a move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Builds looked at.
    pub builds: usize,
    /// Blobs copied.
    pub copied: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Blobs the destination had already.
    pub already_there: usize,
    /// Blobs found in neither storage.
    pub missing: Vec<String>,
    /// Builds whose blobs were deleted from the source.
    pub deleted_from_source: usize,
}

/// Copies every build's blobs from `from` to `to`, calling `progress` after each blob.
pub async fn move_blobs(
    db: &Db,
    from: &Storage,
    to: &Storage,
    delete_source: bool,
    mut progress: impl FnMut(&Step),
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for id in db.build_ids().await? {
        let build = match db.build_by_id(&id).await {
            Ok(build) => build,
            // Deleted while we ran.
            Err(crate::db::DbError::NotFound) => continue,
            Err(error) => return Err(error.into()),
        };
        report.builds += 1;
        let mut complete = true;
        let kinds: &[BlobKind] = if build.has_icon { &[BlobKind::Ipa, BlobKind::Icon] } else { &[BlobKind::Ipa] };
        for &kind in kinds {
            let key = BlobKey::new(&build.id, kind);
            let moved = move_one(&build, &key, from, to).await?;
            match &moved {
                Moved::Copied { bytes } => {
                    report.copied += 1;
                    report.bytes += bytes;
                }
                Moved::AlreadyThere => report.already_there += 1,
                Moved::Missing => {
                    complete = false;
                    report.missing.push(key.relative()?);
                }
            }
            progress(&Step { key: key.relative()?, moved });
        }
        if delete_source && complete {
            from.delete_build(&build.id).await?;
            report.deleted_from_source += 1;
        }
    }
    Ok(report)
}

async fn move_one(build: &BuildRow, key: &BlobKey, from: &Storage, to: &Storage) -> anyhow::Result<Moved> {
    let expected = match key.kind {
        BlobKind::Ipa => Some(build.size),
        BlobKind::Icon => None,
    };
    let source_size = match from.size(key).await {
        Ok(size) => Some(size),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error.into()),
    };
    let there = match to.size(key).await {
        Ok(size) => Some(size),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error.into()),
    };
    let wanted = expected.or(source_size);
    if there.is_some() && there == wanted {
        return Ok(Moved::AlreadyThere);
    }
    let Some(size) = source_size else {
        return Ok(Moved::Missing);
    };
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
    let stream = {
        let hasher = std::sync::Arc::clone(&hasher);
        from.read_range(key, 0, size)
            .await?
            .inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    hasher.lock().unwrap_or_else(std::sync::PoisonError::into_inner).update(chunk);
                }
            })
            .boxed()
    };
    to.put_stream(key, stream).await?;
    if key.kind == BlobKind::Ipa {
        let digest = std::mem::take(&mut *hasher.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let digest = hex(&digest.finalize());
        if digest != build.sha256 {
            // Never leave a wrong copy where a later run would take it as done.
            to.delete_build(&build.id).await.ok();
            anyhow::bail!(
                "the file of build {} in the source has SHA-256 {digest}, not {}: it is damaged there; nothing was \
                 copied for it",
                build.id,
                build.sha256
            );
        }
    }
    Ok(Moved::Copied { bytes: size })
}
