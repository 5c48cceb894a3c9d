//! The host's apt sources, read to find which Debian archive it uses, so a kernel from another
//! suite (trixie, sid) comes from the same archive with the same keyring. Nothing here names a
//! mirror: the URI is whatever the host's administrator chose.
//!
//! apt reads two formats: deb822 stanzas (`*.sources`) and one-line entries (`sources.list`,
//! `*.list`). Both parse to [`SourceEntry`]; [`main_archive`] picks the Debian archive's entry
//! and [`suite_sources`] writes a private deb822 file for another suite of it.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Where apt finds its sources: the one-line main list and the directory of parts.
const SOURCE_LIST: &str = "/etc/apt/sources.list";
const SOURCE_PARTS: &str = "/etc/apt/sources.list.d";

/// The keyring Debian's archive is signed with, as its package installs it; an entry that names
/// it is the Debian archive rather than a third-party repository with a suite like `bookworm`.
const DEBIAN_KEYRING: &str = "debian-archive-keyring";

/// One apt source: a deb822 stanza, or a one-line entry (one type, one URI, one suite).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceEntry {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// `Signed-By`: keyring paths or fingerprints, or (deb822 only) an inline armored key whose
    /// lines are joined with `\n`.
    pub signed_by: Option<String>,
}

/// The Debian archive as the host reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    pub uri: String,
    pub signed_by: Option<String>,
}

/// The entries of deb822 text (`*.sources`): stanzas separated by blank lines, `#` comment
/// lines, continuation lines starting with a space or tab. Stanzas with `Enabled: no` are
/// left out.
pub fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    stanzas(text)
        .iter()
        .filter_map(|fields| deb822_entry(fields))
        .collect()
}

/// The `(field, value)` pairs of each stanza, a multi-line value's lines joined with `\n`.
fn stanzas(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stanzas = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !fields.is_empty() {
                stanzas.push(std::mem::take(&mut fields));
            }
        } else if line.starts_with('#') {
            // A comment inside a stanza neither ends it nor continues a field.
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    if !fields.is_empty() {
        stanzas.push(fields);
    }
    stanzas
}

fn deb822_entry(fields: &[(String, String)]) -> Option<SourceEntry> {
    // Field names are case-insensitive.
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let words = |name: &str| -> Vec<String> {
        field(name)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
        return None;
    }
    Some(SourceEntry {
        types: words("Types"),
        uris: words("URIs"),
        suites: words("Suites"),
        components: words("Components"),
        signed_by: field("Signed-By").map(str::to_string),
    })
}

/// The entries of one-line text (`sources.list`, `*.list`):
/// `deb [ key=value ... ] URI SUITE [COMPONENT...]`, `#` starting a comment anywhere.
pub fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    text.lines().filter_map(one_line_entry).collect()
}

fn one_line_entry(line: &str) -> Option<SourceEntry> {
    let line = line.split('#').next().unwrap_or("").trim();
    let (kind, rest) = line.split_once(char::is_whitespace)?;
    let (options, rest) = match rest.trim_start().strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?,
        None => ("", rest),
    };
    let mut words = rest.split_whitespace().map(str::to_string);
    let uri = words.next()?;
    let suite = words.next()?;
    let signed_by = options
        .split_whitespace()
        .find_map(|o| o.strip_prefix("signed-by="))
        .map(str::to_string);
    Some(SourceEntry {
        types: vec![kind.to_string()],
        uris: vec![uri],
        suites: vec![suite],
        components: words.collect(),
        signed_by,
    })
}

/// The Debian archive among `entries`: a binary (`deb`) entry with the `main` component and a
/// release suite, one without a `-` suffix (`bookworm`, not `bookworm-updates` or
/// `bookworm-security`) and not a flat repository's path. Of several, the first that names
/// Debian's archive keyring wins, then the first with no `Signed-By` (apt's trusted keys,
/// which hold Debian's on a Debian host), then the first of the rest.
pub fn main_archive(entries: &[SourceEntry]) -> Option<Archive> {
    let candidates = entries.iter().filter(|e| is_release_entry(e));
    let best = candidates.min_by_key(|e| match &e.signed_by {
        Some(keys) if keys.contains(DEBIAN_KEYRING) => 0,
        None => 1,
        Some(_) => 2,
    })?;
    Some(Archive {
        uri: best.uris.first()?.clone(),
        signed_by: best.signed_by.clone(),
    })
}

fn is_release_entry(entry: &SourceEntry) -> bool {
    let release_suite = |s: &String| !s.contains('-') && !s.contains('/') && s != ".";
    entry.types.iter().any(|t| t == "deb")
        && !entry.uris.is_empty()
        && entry.components.iter().any(|c| c == "main")
        && entry.suites.iter().any(release_suite)
}

/// A deb822 sources file with one entry: `suite` of `archive`, arm64 binaries of `main`.
pub fn suite_sources(archive: &Archive, suite: &str) -> String {
    let mut text = format!(
        "# Written by `cargo xtask` from this host's Debian archive entry; rewritten on each fetch.\n\
         Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\nArchitectures: arm64\n",
        archive.uri
    );
    if let Some(keys) = &archive.signed_by {
        // An inline key keeps its lines, each continued with a leading space.
        text.push_str("Signed-By:");
        let mut lines = keys.lines();
        if let Some(first) = lines.next().filter(|l| !l.is_empty()) {
            text.push(' ');
            text.push_str(first);
        }
        for line in lines {
            text.push_str("\n ");
            text.push_str(line);
        }
        text.push('\n');
    }
    text
}

/// The host's apt sources, in the order apt reads them: the main list, then the parts
/// directory's `*.list` and `*.sources` files by name (apt ignores other names there).
fn host_entries() -> Result<Vec<SourceEntry>> {
    let mut entries = Vec::new();
    let main = Path::new(SOURCE_LIST);
    if main.is_file() {
        entries.extend(parse_one_line(&read(main)?));
    }
    let mut parts: Vec<PathBuf> = match std::fs::read_dir(SOURCE_PARTS) {
        Ok(dir) => dir.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    parts.sort();
    for path in parts {
        match path.extension().and_then(|e| e.to_str()) {
            Some("list") => entries.extend(parse_one_line(&read(&path)?)),
            Some("sources") => entries.extend(parse_deb822(&read(&path)?)),
            _ => {}
        }
    }
    Ok(entries)
}

/// The host's Debian archive, or an error saying where it was looked for.
pub fn host_archive() -> Result<Archive> {
    let entries = host_entries()?;
    let Some(archive) = main_archive(&entries) else {
        bail!(
            "no Debian archive entry in this host's apt sources ({SOURCE_LIST}, \
             {SOURCE_PARTS}/*.list, {SOURCE_PARTS}/*.sources): none is a `deb` entry of a \
             release suite (such as `bookworm`, not `bookworm-updates`) with the `main` \
             component, and the other Debian suites' kernels are fetched from that archive. \
             Give --kernel PATH instead"
        );
    };
    Ok(archive)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

    /// A Debian host's deb822 file as the installer writes it (the URIs are placeholders).
    const DEBIAN_SOURCES: &str = "\
Types: deb
# a comment inside a stanza
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# The security archive: its suite has a suffix.
Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_stanzas_parse_with_comments_and_several_suites() {
        let entries = parse_deb822(DEBIAN_SOURCES);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            SourceEntry {
                types: vec!["deb".into()],
                uris: vec!["http://archive.example/debian".into()],
                suites: vec!["bookworm".into(), "bookworm-updates".into()],
                components: vec!["main".into()],
                signed_by: Some(KEYRING.into()),
            }
        );
        assert_eq!(entries[1].suites, ["bookworm-security"]);
        assert_eq!(
            main_archive(&entries),
            Some(Archive {
                uri: "http://archive.example/debian".into(),
                signed_by: Some(KEYRING.into()),
            })
        );
    }

    #[test]
    fn deb822_field_names_ignore_case_and_disabled_stanzas_are_skipped() {
        let text = "types: deb\nuris: http://a.example/debian\nsuites: trixie\ncomponents: main\n\
                    Enabled: no\n\n\
                    TYPES: deb deb-src\nURIS: http://b.example/debian\nSUITES: trixie\n\
                    COMPONENTS: contrib main\n";
        let entries = parse_deb822(text);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].uris, ["http://b.example/debian"]);
        assert_eq!(
            main_archive(&entries).unwrap().uri,
            "http://b.example/debian"
        );
    }

    #[test]
    fn an_inline_key_survives_the_round_trip_into_a_suite_file() {
        let text = "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\n\
                    Components: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n \
                    mQINBF\n -----END PGP PUBLIC KEY BLOCK-----\n";
        let archive = main_archive(&parse_deb822(text)).unwrap();
        assert_eq!(
            archive.signed_by.as_deref(),
            Some(
                "\n-----BEGIN PGP PUBLIC KEY BLOCK-----\n.\nmQINBF\n-----END PGP PUBLIC KEY BLOCK-----"
            )
        );
        let written = suite_sources(&archive, "sid");
        assert!(
            written.ends_with(
                "Suites: sid\nComponents: main\nArchitectures: arm64\nSigned-By:\n \
                 -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n \
                 -----END PGP PUBLIC KEY BLOCK-----\n"
            ),
            "{written}"
        );
        // What we write parses back to the same archive.
        assert_eq!(main_archive(&parse_deb822(&written)), Some(archive.clone()));
    }

    #[test]
    fn one_line_entries_parse_with_options_and_comments() {
        let text = "\
# deb http://commented.example/debian bookworm main
deb-src http://a.example/debian bookworm main
deb [ arch=amd64,arm64 signed-by=/k/debian-archive-keyring.gpg ] http://a.example/debian bookworm main contrib # trailing
deb [arch=amd64] http://a.example/debian-security bookworm-security main
deb http://a.example/debian bookworm-updates main

deb http://flat.example/repo ./
";
        let entries = parse_one_line(text);
        assert_eq!(entries.len(), 5);
        assert_eq!(
            entries[1],
            SourceEntry {
                types: vec!["deb".into()],
                uris: vec!["http://a.example/debian".into()],
                suites: vec!["bookworm".into()],
                components: vec!["main".into(), "contrib".into()],
                signed_by: Some("/k/debian-archive-keyring.gpg".into()),
            }
        );
        assert_eq!(entries[2].signed_by, None);
        assert_eq!(entries[4].suites, ["./"]);
        assert_eq!(
            main_archive(&entries),
            Some(Archive {
                uri: "http://a.example/debian".into(),
                signed_by: Some("/k/debian-archive-keyring.gpg".into()),
            })
        );
    }

    #[test]
    fn the_debian_keyring_wins_over_a_third_party_release_suite() {
        // Third-party repositories also use release names; a keyring of their own, or none,
        // ranks them below the entry signed with Debian's keyring, whatever the file order.
        let mut entries = parse_one_line(
            "deb [signed-by=/k/vendor.gpg] http://vendor.example/debian/12 bookworm main\n\
             deb http://old.example/debian bookworm main\n",
        );
        assert_eq!(
            main_archive(&entries).unwrap().uri,
            "http://old.example/debian"
        );
        entries.extend(parse_deb822(DEBIAN_SOURCES));
        assert_eq!(
            main_archive(&entries).unwrap().uri,
            "http://archive.example/debian"
        );
    }

    #[test]
    fn entries_without_a_release_suite_or_main_are_no_archive() {
        let text = "deb http://a.example/debian bookworm-updates main\n\
                    deb http://a.example/debian-security bookworm-security main\n\
                    deb http://docker.example/debian bookworm stable\n\
                    deb-src http://a.example/debian bookworm main\n\
                    deb http://flat.example/repo ./\n\
                    deb http://broken.example\n";
        assert_eq!(main_archive(&parse_one_line(text)), None);
        assert_eq!(main_archive(&[]), None);
    }

    #[test]
    fn the_suite_file_names_the_archive_its_keyring_and_arm64() {
        let archive = Archive {
            uri: "http://a.example/debian".into(),
            signed_by: Some(KEYRING.into()),
        };
        let text = suite_sources(&archive, "trixie");
        assert_eq!(
            parse_deb822(&text),
            [SourceEntry {
                types: vec!["deb".into()],
                uris: vec!["http://a.example/debian".into()],
                suites: vec!["trixie".into()],
                components: vec!["main".into()],
                signed_by: Some(KEYRING.into()),
            }]
        );
        assert!(text.contains("Architectures: arm64\n"), "{text}");
        let unsigned = suite_sources(
            &Archive {
                signed_by: None,
                ..archive
            },
            "sid",
        );
        assert!(!unsigned.contains("Signed-By"), "{unsigned}");
    }
}
