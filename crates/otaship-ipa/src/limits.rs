//! The explicit bounds on everything the reader does with untrusted input.
//!
//! One value of [`Limits`] is passed to every entry point. The defaults fit every real app we
//! know of with room to spare, while keeping the reader under 64 MiB of memory and well under a
//! second on hostile input. They are documented in the README; change them there too.

/// Bounds on reading one archive or profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Entries in the zip central directory. Large games ship tens of thousands of files.
    pub max_entries: u64,
    /// Bytes of the zip central directory, which is held in memory while reading.
    pub max_central_directory_bytes: u64,
    /// Uncompressed bytes of an `Info.plist`.
    pub max_plist_bytes: u64,
    /// Objects (values, including keys) in one property list after expansion; bounds the CPU
    /// time of binary plists whose objects reference each other many times.
    pub max_plist_objects: u64,
    /// Nesting depth of a property list.
    pub max_plist_depth: usize,
    /// Uncompressed bytes of an `embedded.mobileprovision` or a profile file.
    pub max_profile_bytes: u64,
    /// Uncompressed bytes of an icon PNG.
    pub max_icon_bytes: u64,
    /// Width or height of an icon, in pixels (the largest iOS icon, the App Store's, is 1024).
    pub max_icon_dimension: u32,
    /// App extensions, watch apps and App Clips; more is refused (each is read and checked).
    pub max_extensions: usize,
    /// Bytes of metadata one inspection may hold: entries read plus the strings and data of
    /// every property list once expanded. Bounds memory whatever the archive repeats or nests.
    pub max_metadata_bytes: u64,
    /// Check the local header of every entry against the central directory (one small read
    /// per entry). Turn off only for sources where each read is expensive (HTTP ranges); the
    /// entries actually read are always checked.
    pub check_every_local_header: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 150_000,
            max_central_directory_bytes: 24 << 20,
            max_plist_bytes: 1 << 20,
            max_plist_objects: 200_000,
            max_plist_depth: 64,
            max_profile_bytes: 2 << 20,
            max_icon_bytes: 4 << 20,
            max_icon_dimension: 1024,
            max_extensions: 64,
            max_metadata_bytes: 32 << 20,
            check_every_local_header: true,
        }
    }
}

/// What is left of [`Limits::max_metadata_bytes`] during one inspection.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    remaining: std::cell::Cell<u64>,
}

impl Budget {
    /// A full budget.
    pub fn new(limit: u64) -> Self {
        Budget { limit, remaining: std::cell::Cell::new(limit) }
    }

    /// Spends `bytes`, failing once the budget is exhausted.
    pub fn spend(&self, bytes: u64) -> crate::Result<()> {
        match self.remaining.get().checked_sub(bytes) {
            Some(left) => {
                self.remaining.set(left);
                Ok(())
            }
            None => Err(crate::IpaError::MetadataTooLarge { limit: self.limit }),
        }
    }
}
