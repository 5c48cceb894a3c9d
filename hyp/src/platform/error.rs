//! Why a boot DTB could not be turned into a machine description.

use core::fmt;

/// A DTB problem. Each variant names the node (or the part of the blob) at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtbError<'a> {
    /// The blob itself is malformed (header, blocks or token stream); found before any node
    /// is read.
    Invalid(guest_loader::dtb::DtbError),
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
            Self::Invalid(e) => write!(f, "cannot read the DTB: {e}"),
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

impl From<guest_loader::dtb::DtbError> for DtbError<'_> {
    fn from(e: guest_loader::dtb::DtbError) -> Self {
        Self::Invalid(e)
    }
}
