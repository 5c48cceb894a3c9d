//! Why a boot DTB could not be turned into a machine description.

use core::fmt;

/// A DTB problem. Each variant names the node (or the part of the blob) at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtbError<'a> {
    /// The blob is shorter than its header or than the header's `totalsize`.
    Truncated { len: usize, needed: usize },
    /// The first word is not 0xd00dfeed.
    BadMagic { found: u32 },
    /// A format version we cannot read (we need 16 or 17 compatible).
    UnsupportedVersion { version: u32, last_compatible: u32 },
    /// A header offset/size points outside the blob or is misaligned.
    BadHeader { field: &'static str },
    /// The structure block is not a well-formed token stream.
    Malformed { offset: usize, what: &'static str },
    /// A required node is absent.
    MissingNode { node: &'static str },
    /// A node lacks a property we need.
    MissingProperty {
        node: &'a str,
        property: &'static str,
    },
    /// A property is there but its value cannot be used.
    BadProperty {
        node: &'a str,
        property: &'static str,
        why: &'static str,
    },
    /// More entries than this build keeps (memory regions, reserved regions, CPUs, ...).
    TooMany {
        node: &'a str,
        what: &'static str,
        max: usize,
    },
}

impl fmt::Display for DtbError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len, needed } => {
                write!(
                    f,
                    "cannot read the DTB: it is {len} bytes but needs {needed}"
                )
            }
            Self::BadMagic { found } => {
                write!(
                    f,
                    "cannot read the DTB: magic is {found:#010x}, not 0xd00dfeed"
                )
            }
            Self::UnsupportedVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "cannot read the DTB: version {version} (compatible with {last_compatible}) is not 16 or 17"
            ),
            Self::BadHeader { field } => {
                write!(
                    f,
                    "cannot read the DTB: header field {field} points outside the blob"
                )
            }
            Self::Malformed { offset, what } => {
                write!(
                    f,
                    "cannot read the DTB structure block at offset {offset:#x}: {what}"
                )
            }
            Self::MissingNode { node } => write!(f, "the DTB has no {node} node"),
            Self::MissingProperty { node, property } => {
                write!(f, "DTB node {node} has no `{property}` property")
            }
            Self::BadProperty {
                node,
                property,
                why,
            } => {
                write!(
                    f,
                    "DTB node {node} has an unusable `{property}` property: {why}"
                )
            }
            Self::TooMany { node, what, max } => {
                write!(
                    f,
                    "DTB node {node} lists more {what} than the {max} this build supports"
                )
            }
        }
    }
}
