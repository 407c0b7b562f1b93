//! The one error type of the archive reader.
//!
//! Every variant has a stable kebab-case [`IpaError::code`] that callers (the CLI, the HTTP API)
//! show to people and scripts, and a `Display` sentence that says what is wrong and what to do.
//! Codes never change meaning once published; add new ones instead.

use std::io;

/// Why an `.ipa` or a provisioning profile could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpaError {
    /// The file could not be read from its source.
    #[error("could not read the file: {0}")]
    Io(#[from] io::Error),

    /// No zip end-of-central-directory record: not a zip archive at all.
    #[error(
        "this is not a zip archive, so it is not an .ipa; export the app again from Xcode (Product > Archive > Distribute App)"
    )]
    NotAZip,

    /// The archive ends before the structures it declares.
    #[error(
        "the zip archive is truncated ({detail}); the file was probably cut short during upload or copy, so send the complete .ipa again"
    )]
    Truncated {
        /// What was missing.
        detail: String,
    },

    /// A zip structure is inconsistent (bad signature, impossible offsets).
    #[error("the zip archive is damaged ({detail}); export the .ipa again")]
    Malformed {
        /// What is wrong.
        detail: String,
    },

    /// A zip feature that an .ipa never uses (multi-disk, encryption, exotic compression).
    #[error("the zip archive uses {feature}, which iOS cannot install from; export the .ipa again from Xcode")]
    Unsupported {
        /// The feature.
        feature: String,
    },

    /// More entries than [`crate::Limits::max_entries`].
    #[error(
        "the archive lists {count} entries, more than the limit of {limit}; if this is a real app, raise the entry limit"
    )]
    TooManyEntries {
        /// Entries declared.
        count: u64,
        /// The limit.
        limit: u64,
    },

    /// The central directory is larger than [`crate::Limits::max_central_directory_bytes`].
    #[error("the archive's central directory is {size} bytes, more than the limit of {limit}")]
    CentralDirectoryTooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// Two entries carry the same name: a device and this reader could see different files.
    #[error(
        "the archive holds two entries named {name:?}; a device could install a different file than the one inspected, so the archive is refused"
    )]
    DuplicateEntry {
        /// The repeated name.
        name: String,
    },

    /// Two entries share bytes, or an entry runs into the central directory.
    #[error(
        "the entries {first:?} and {second:?} overlap inside the archive (a zip-bomb or parser-confusion trick); the archive is refused"
    )]
    OverlappingEntries {
        /// The earlier entry.
        first: String,
        /// The entry it runs into.
        second: String,
    },

    /// A local header disagrees with the central directory.
    #[error(
        "the entry {name:?} has a local header that disagrees with the central directory ({detail}); a device could see a different file, so the archive is refused"
    )]
    HeaderMismatch {
        /// Entry name.
        name: String,
        /// The disagreement.
        detail: String,
    },

    /// An entry name that could escape a directory: `..`, absolute, backslashes, NUL.
    #[error(
        "the archive holds an unsafe entry name {name:?} (absolute, with '..', a backslash or a NUL); the archive is refused"
    )]
    UnsafePath {
        /// The name.
        name: String,
    },

    /// An entry whose declared or real size is over its limit (zip bombs included).
    #[error("the entry {name:?} is larger than the limit of {limit} bytes for {what}")]
    EntryTooLarge {
        /// Entry name.
        name: String,
        /// Which limit.
        what: &'static str,
        /// The limit.
        limit: u64,
    },

    /// An entry failed to decompress or its checksum does not match.
    #[error("the entry {name:?} is corrupt ({detail}); export the .ipa again")]
    CorruptEntry {
        /// Entry name.
        name: String,
        /// What failed.
        detail: String,
    },

    /// A zip with no `Payload/` folder.
    #[error(
        "the archive has no Payload/ folder, so it is not an .ipa; export it with Xcode's Distribute App, not by zipping the .app yourself"
    )]
    NoPayload,

    /// `Payload/` without an `.app` bundle.
    #[error("the archive has a Payload/ folder but no Payload/<Name>.app/Info.plist; the app bundle is missing")]
    NoAppBundle,

    /// More than one top-level `.app` bundle.
    #[error("the archive holds {count} apps at the top of Payload/ ({names}); an .ipa must hold exactly one")]
    MultipleApps {
        /// How many.
        count: usize,
        /// Their folder names.
        names: String,
    },

    /// A property list could not be parsed.
    #[error("{what} is not a valid property list ({detail})")]
    MalformedPlist {
        /// Which file.
        what: String,
        /// The parser's words.
        detail: String,
    },

    /// A property list with more objects or nesting than the limits allow.
    #[error("{what} has more than {limit} objects or is nested too deeply; it is refused as hostile")]
    PlistTooComplex {
        /// Which file.
        what: String,
        /// The limit.
        limit: u64,
    },

    /// A required key is missing.
    #[error("{what} has no {key}; the app cannot be installed without it")]
    MissingKey {
        /// Which file.
        what: String,
        /// The key.
        key: &'static str,
    },

    /// A key has the wrong type.
    #[error("{what} has {key} of the wrong type (expected {expected})")]
    WrongType {
        /// Which file.
        what: String,
        /// The key.
        key: &'static str,
        /// The type expected.
        expected: &'static str,
    },

    /// The metadata would take more memory than [`crate::Limits::max_metadata_bytes`].
    #[error(
        "reading this app's metadata would take more than {limit} bytes (hostile repetition or nesting); the archive is refused"
    )]
    MetadataTooLarge {
        /// The limit.
        limit: u64,
    },

    /// More nested bundles than [`crate::Limits::max_extensions`].
    #[error("the app holds more than {limit} extensions, watch apps and App Clips; the archive is refused")]
    TooManyExtensions {
        /// The limit.
        limit: usize,
    },

    /// A provisioning profile that is neither CMS nor a property list.
    #[error("{what} is not a provisioning profile ({detail})")]
    MalformedProfile {
        /// Which file.
        what: String,
        /// What is wrong.
        detail: String,
    },

    /// A Profile Service reply that is not signed (a bare plist, or no signer).
    #[error(
        "the device reply is not signed; devices always sign it, so this did not come from a device's Settings app"
    )]
    DeviceReplyUnsigned,

    /// A Profile Service reply whose plist does not match its signature.
    #[error("the device reply was altered after the device signed it; install the enrollment profile again")]
    DeviceReplyAltered,

    /// A Profile Service reply that cannot be read.
    #[error("the device reply cannot be read ({detail}); install the enrollment profile again")]
    DeviceReplyMalformed {
        /// What is wrong.
        detail: String,
    },

    /// A Profile Service reply without what every reply must carry.
    #[error("the device reply is incomplete ({detail}); install the enrollment profile again")]
    DeviceReplyIncomplete {
        /// What is missing.
        detail: String,
    },
}

impl IpaError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            IpaError::Io(_) => "io-error",
            IpaError::NotAZip => "not-a-zip",
            IpaError::Truncated { .. } => "zip-truncated",
            IpaError::Malformed { .. } => "zip-malformed",
            IpaError::Unsupported { .. } => "zip-unsupported",
            IpaError::TooManyEntries { .. } => "zip-too-many-entries",
            IpaError::CentralDirectoryTooLarge { .. } => "zip-directory-too-large",
            IpaError::DuplicateEntry { .. } => "zip-duplicate-entry",
            IpaError::OverlappingEntries { .. } => "zip-overlapping-entries",
            IpaError::HeaderMismatch { .. } => "zip-header-mismatch",
            IpaError::UnsafePath { .. } => "zip-unsafe-path",
            IpaError::EntryTooLarge { .. } => "entry-too-large",
            IpaError::CorruptEntry { .. } => "entry-corrupt",
            IpaError::NoPayload => "ipa-no-payload",
            IpaError::NoAppBundle => "ipa-no-app-bundle",
            IpaError::MultipleApps { .. } => "ipa-multiple-apps",
            IpaError::MalformedPlist { .. } => "plist-malformed",
            IpaError::PlistTooComplex { .. } => "plist-too-complex",
            IpaError::MissingKey { .. } => "plist-missing-key",
            IpaError::WrongType { .. } => "plist-wrong-type",
            IpaError::MetadataTooLarge { .. } => "metadata-too-large",
            IpaError::TooManyExtensions { .. } => "ipa-too-many-extensions",
            IpaError::MalformedProfile { .. } => "profile-malformed",
            IpaError::DeviceReplyUnsigned => "device-reply-unsigned",
            IpaError::DeviceReplyAltered => "device-reply-altered",
            IpaError::DeviceReplyMalformed { .. } => "device-reply-malformed",
            IpaError::DeviceReplyIncomplete { .. } => "device-reply-incomplete",
        }
    }

    pub(crate) fn truncated(detail: impl Into<String>) -> Self {
        IpaError::Truncated { detail: detail.into() }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        IpaError::Malformed { detail: detail.into() }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = IpaError> = std::result::Result<T, E>;
