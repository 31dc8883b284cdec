//! Names in a hosts file (`/etc/hosts`, or the file `--hosts-file` names): one block of lines
//! between marker lines that carry a tag of their own, rewritten in place and removed so that
//! the file is back byte for byte. Lines outside the block are never touched; the block says
//! whether it had to add a line break before itself, so removing it needs no other memory.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const BEGIN: &str = "# BEGIN kubeway up ";
const END: &str = "# END kubeway up ";
/// Marks a block that added a line break after a last line that had none.
const JOINED: &str = " (joined)";
/// Hosts files larger than this are not edited.
const LIMIT: u64 = 16 << 20;

/// One line of the block: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The address.
    pub ip: IpAddr,
    /// Its names.
    pub names: Vec<String>,
}

/// Why the hosts file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// Opening, reading or writing failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a regular file of a sane size.
    #[error("{path} is not a hosts file kubeway edits: {why}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Whether `tag` can appear in a marker line.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 100
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/' | b':'))
}

/// The block for `tag` with `entries`.
fn block(tag: &str, entries: &[Entry], joined: bool) -> String {
    let mut out = format!("{BEGIN}{tag}{}\n", if joined { JOINED } else { "" });
    for e in entries {
        out.push_str(&format!("{}\t{}\n", e.ip, e.names.join(" ")));
    }
    out.push_str(&format!("{END}{tag}\n"));
    out
}

/// `content` without the block of `tag` (exactly as it was before the block was added, when
/// nothing else changed).
pub fn without_block(content: &str, tag: &str) -> String {
    let begin_plain = format!("{BEGIN}{tag}\n");
    let begin_joined = format!("{BEGIN}{tag}{JOINED}\n");
    let end = format!("{END}{tag}\n");
    let at_line_start =
        |i: usize| i == 0 || content.as_bytes().get(i.wrapping_sub(1)) == Some(&b'\n');
    let find = |needle: &str| {
        content
            .match_indices(needle)
            .map(|(i, _)| i)
            .find(|&i| at_line_start(i))
    };
    let (start, joined) = match (find(&begin_plain), find(&begin_joined)) {
        (Some(i), _) => (i, false),
        (None, Some(i)) => (i, true),
        (None, None) => return content.to_string(),
    };
    let Some(stop) = content
        .get(start..)
        .unwrap_or_default()
        .match_indices(&end)
        .map(|(i, _)| start.saturating_add(i))
        .find(|&i| at_line_start(i))
    else {
        return content.to_string();
    };
    let stop = stop.saturating_add(end.len());
    // A joined block added the line break just before it.
    let start = if joined {
        start.saturating_sub(1)
    } else {
        start
    };
    format!(
        "{}{}",
        content.get(..start).unwrap_or_default(),
        content.get(stop..).unwrap_or_default()
    )
}

/// `content` with the block of `tag` holding `entries` (the old block removed first; no block
/// when `entries` is empty).
pub fn with_block(content: &str, tag: &str, entries: &[Entry]) -> String {
    let mut base = without_block(content, tag);
    if entries.is_empty() {
        return base;
    }
    let joined = !base.is_empty() && !base.ends_with('\n');
    if joined {
        base.push('\n');
    }
    base.push_str(&block(tag, entries, joined));
    base
}

fn open(path: &Path) -> Result<std::fs::File, HostsError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never through a symbolic link.
        options.custom_flags(crate::files::nofollow());
    }
    let f = options.open(path).map_err(|source| HostsError::Io {
        what: "opening",
        path: path.to_path_buf(),
        source,
    })?;
    let meta = f.metadata().map_err(|source| HostsError::Io {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() || meta.len() > LIMIT {
        return Err(HostsError::Refused {
            path: path.to_path_buf(),
            why: "not a regular file, or larger than 16 MiB".into(),
        });
    }
    Ok(f)
}

/// Rewrites the block of `tag` in the hosts file at `path` to hold `entries` (removes it when
/// empty), in place (hosts files are often bind mounts that cannot be replaced by a rename),
/// never through a symbolic link. Does nothing when the content would not change.
pub fn update(path: &Path, tag: &str, entries: &[Entry]) -> Result<(), HostsError> {
    if !valid_tag(tag) {
        return Err(HostsError::Refused {
            path: path.to_path_buf(),
            why: format!("the tag {tag:?} cannot be a marker"),
        });
    }
    let mut f = open(path)?;
    let io = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| HostsError::Io { what, path, source }
    };
    let mut content = String::new();
    f.read_to_string(&mut content).map_err(io("reading"))?;
    let next = with_block(&content, tag, entries);
    if next == content {
        return Ok(());
    }
    f.seek(SeekFrom::Start(0)).map_err(io("writing"))?;
    f.write_all(next.as_bytes()).map_err(io("writing"))?;
    f.set_len(next.len() as u64).map_err(io("writing"))?;
    f.sync_all().map_err(io("writing"))?;
    Ok(())
}

/// Removes the block of `tag` from the hosts file at `path`; a missing file is fine.
pub fn remove(path: &Path, tag: &str) -> Result<(), HostsError> {
    match update(path, tag, &[]) {
        Err(HostsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

/// The names a Service gets, as cluster DNS gives them: `SVC.NS`, `SVC.NS.svc`,
/// `SVC.NS.svc.DOMAIN`, and the short `SVC` when `short` (the first namespace given).
pub fn service_names(name: &str, namespace: &str, domain: &str, short: bool) -> Vec<String> {
    let mut names = Vec::new();
    if short {
        names.push(name.to_string());
    }
    names.push(format!("{name}.{namespace}"));
    names.push(format!("{name}.{namespace}.svc"));
    names.push(format!("{name}.{namespace}.svc.{domain}"));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ip: &str, names: &[&str]) -> Entry {
        Entry {
            ip: ip.parse().expect("ip"),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_block_goes_and_the_file_is_back_byte_for_byte() {
        for original in [
            "",
            "127.0.0.1 localhost\n",
            "127.0.0.1 localhost",
            "# no newline at the end\n10.0.0.1 a b",
            "\n\n",
        ] {
            let with = with_block(original, "1.2", &[e("127.77.0.1", &["web", "web.default"])]);
            assert!(with.contains("127.77.0.1\tweb web.default\n"), "{with:?}");
            assert!(with.starts_with(original), "lines before stay: {with:?}");
            let again = with_block(&with, "1.2", &[e("127.77.0.2", &["echo"])]);
            assert!(!again.contains("127.77.0.1"), "replaced: {again:?}");
            assert_eq!(without_block(&again, "1.2"), original, "from {original:?}");
            assert_eq!(with_block(&again, "1.2", &[]), original);
        }
    }

    #[test]
    fn other_blocks_and_lines_are_left_alone() {
        let other = with_block("a\n", "other", &[e("127.77.0.9", &["x"])]);
        let mine = with_block(&other, "mine", &[e("127.77.0.1", &["y"])]);
        let mut after = mine.clone();
        after.push_str("10.1.1.1 added-by-someone-else\n");
        let back = without_block(&after, "mine");
        assert_eq!(back, format!("{other}10.1.1.1 added-by-someone-else\n"));
        // A marker that is not at a line start is not a marker.
        let fake = format!("x {BEGIN}mine\n{END}mine\n");
        assert_eq!(without_block(&fake, "mine"), fake);
    }

    #[test]
    fn the_file_is_edited_in_place_and_never_through_a_link() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost").expect("write");
        update(&path, "t-1", &[e("127.77.0.1", &["web"])]).expect("update");
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .contains("web")
        );
        remove(&path, "t-1").expect("remove");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1 localhost"
        );
        #[cfg(unix)]
        {
            let target = dir.path().join("target");
            std::fs::write(&target, "keep\n").expect("write");
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&target, &link).expect("symlink");
            assert!(update(&link, "t-1", &[e("127.77.0.1", &["web"])]).is_err());
            assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep\n");
        }
        assert!(update(&path, "bad tag\n", &[]).is_err());
        assert!(remove(&dir.path().join("missing"), "t-1").is_ok());
    }

    #[test]
    fn names_follow_cluster_dns() {
        assert_eq!(
            service_names("web", "shop", "cluster.local", true),
            [
                "web",
                "web.shop",
                "web.shop.svc",
                "web.shop.svc.cluster.local"
            ]
        );
        assert_eq!(
            service_names("web", "shop", "cluster.local", false).len(),
            3
        );
    }
}
