//! Files and directories created safely: directories 0700 and files 0600 from the moment they
//! exist, a new file made with `O_CREAT|O_EXCL` (which refuses an existing path, a symbolic link
//! included), a replaced file written to a fresh temporary file in the same directory and renamed
//! into place (a rename replaces a link, it never follows one), locks and reads opened with
//! `O_NOFOLLOW`, and directories checked to belong to their user and to be writable by nobody
//! else.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// What went wrong with a file or directory, naming the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A directory could not be created.
    #[error("creating the directory {}", .path.display())]
    CreateDir {
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file to create exists already (perhaps as a symbolic link).
    #[error(
        "{} already exists: kubeway writes a new file there and never overwrites or follows what is in the way; remove it, or choose another path",
        .path.display()
    )]
    Exists {
        /// Which.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("writing {}", .path.display())]
    Write {
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading failed.
    #[error("reading {}", .path.display())]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A symbolic link stands where kubeway keeps a file or directory of its own.
    #[error(
        "{} is a symbolic link: kubeway never reads or writes its own files through one; remove it (`rm {}`) if you did not put it there",
        .path.display(), .path.display()
    )]
    Symlink {
        /// Which.
        path: PathBuf,
    },
    /// Not a directory (or not a regular file) where one is expected.
    #[error("{} is not a {expected}", .path.display())]
    WrongKind {
        /// Which.
        path: PathBuf,
        /// What was expected.
        expected: &'static str,
    },
    /// Owned by someone else.
    #[error(
        "{} belongs to uid {owner}, not to uid {me} who runs kubeway: kubeway keeps its files only where no one else can change them; \
         fix it with `chown {me} {}`, or choose another place",
        .path.display(), .path.display()
    )]
    NotOwned {
        /// Which.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Who runs kubeway.
        me: u32,
    },
    /// Group- or world-writable.
    #[error(
        "{} can be changed by other users (mode {mode:o}): kubeway keeps its files only where no one else can change them; \
         fix it with `chmod go-w {}`",
        .path.display(), .path.display()
    )]
    Shared {
        /// Which.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Larger than any file kubeway writes there.
    #[error("{} is larger than {limit} bytes: not a file kubeway wrote", .path.display())]
    TooLarge {
        /// Which.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
}

/// A file's identity (device and inode), to remove a file later only if it is still the one
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of an open file.
    pub fn of(f: &File) -> io::Result<Self> {
        Ok(Self::from_meta(&f.metadata()?))
    }

    /// The identity of what is at `path` now (a link itself, not its target).
    pub fn at(path: &Path) -> io::Result<Self> {
        Ok(Self::from_meta(&std::fs::symlink_metadata(path)?))
    }

    #[cfg(unix)]
    fn from_meta(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    #[cfg(not(unix))]
    fn from_meta(m: &std::fs::Metadata) -> Self {
        // No inode numbers: the length and modification time stand in.
        Self {
            dev: m.len(),
            ino: m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Creates `dir` and its missing parents with mode 0700 (directories that exist keep theirs).
pub fn create_private_dir_all(dir: &Path) -> Result<(), FileError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| FileError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Checks that `dir` is a real directory (not a link), that no one but its owner can write to
/// it, and returns its owner's uid (0 where there are no uids).
pub fn check_private_dir(dir: &Path) -> Result<u32, FileError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|source| FileError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(FileError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(FileError::WrongKind {
            path: dir.to_path_buf(),
            expected: "directory",
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(FileError::Shared {
                path: dir.to_path_buf(),
                mode,
            });
        }
        Ok(meta.uid())
    }
    #[cfg(not(unix))]
    {
        Ok(0)
    }
}

/// Creates `dir` (0700) if needed and checks it belongs to the user running kubeway and that no
/// one else can write to it.
pub fn ensure_own_dir(dir: &Path) -> Result<(), FileError> {
    create_private_dir_all(dir)?;
    let owner = check_private_dir(dir)?;
    let me = crate::euid();
    if cfg!(unix) && owner != me {
        return Err(FileError::NotOwned {
            path: dir.to_path_buf(),
            owner,
            me,
        });
    }
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a new file at `path`, mode 0600 from creation on, creating missing parent
/// directories 0700. Refuses when anything is at `path` already, a symbolic link included
/// (`O_CREAT|O_EXCL`). Returns the file's identity, for [`remove_if_same`].
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<FileId, FileError> {
    create_private_dir_all(parent_of(path))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            FileError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            FileError::Write {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let write_err = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let id = FileId::of(&f).map_err(write_err)?;
    if let Err(source) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(write_err(source));
    }
    Ok(id)
}

/// Writes `bytes` to `path`, replacing what is there atomically: the bytes go to a new temporary
/// file (0600, random name) in the same directory, which is then renamed over `path`. A
/// symbolic link at `path` is replaced, never followed. Missing parents are created 0700.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = parent_of(path);
    create_private_dir_all(dir)?;
    let err = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Opens (creating it 0600 if `create`) the file at `path` for locking, never through a
/// symbolic link; it must be a regular file. Without `create`, a missing file is `Ok(None)`.
pub fn open_lock(path: &Path, create: bool) -> Result<Option<File>, FileError> {
    let mut opts = std::fs::OpenOptions::new();
    if create {
        opts.read(true).write(true).create(true).truncate(false);
    } else {
        opts.read(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
        opts.custom_flags(nofollow());
    }
    let f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(open_error(path, source)),
    };
    let meta = f.metadata().map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(FileError::WrongKind {
            path: path.to_path_buf(),
            expected: "regular file",
        });
    }
    Ok(Some(f))
}

/// Reads the regular file at `path` without following a symbolic link, up to `limit` bytes;
/// `Ok(None)` when there is none. Returns the bytes and the file's owner (0 where there are no
/// uids).
pub fn read_private(path: &Path, limit: u64) -> Result<Option<(Vec<u8>, u32)>, FileError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(nofollow());
    }
    let f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(open_error(path, source)),
    };
    let read_err = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = f.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(FileError::WrongKind {
            path: path.to_path_buf(),
            expected: "regular file",
        });
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    f.take(limit).read_to_end(&mut bytes).map_err(read_err)?;
    #[cfg(unix)]
    let owner = {
        use std::os::unix::fs::MetadataExt;
        meta.uid()
    };
    #[cfg(not(unix))]
    let owner = 0;
    Ok(Some((bytes, owner)))
}

/// `O_NOFOLLOW` for `OpenOptionsExt::custom_flags`.
#[cfg(unix)]
pub fn nofollow() -> i32 {
    // The flag's value differs between systems; rustix knows it.
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

fn open_error(path: &Path, source: io::Error) -> FileError {
    // O_NOFOLLOW on a link fails with ELOOP (Linux, macOS) or EMLINK (FreeBSD).
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        FileError::Symlink {
            path: path.to_path_buf(),
        }
    } else {
        FileError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Removes `path` if it is still the file `id` (not one put there since). True if removed.
pub fn remove_if_same(path: &Path, id: FileId) -> io::Result<bool> {
    match FileId::at(path) {
        Ok(now) if now == id => std::fs::remove_file(path).map(|()| true),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("meta").mode() & 0o777
    }

    #[test]
    fn a_new_file_is_0600_in_a_0700_directory_and_refuses_what_is_there() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("a/b/kubeconfig");
        // The umask would widen a file written the usual way; mode 0600 is asked at creation.
        let id = write_new(&path, b"secret").expect("written");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        assert_eq!(mode(&t.path().join("a/b")), 0o700);
        assert!(matches!(
            write_new(&path, b"again"),
            Err(FileError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        assert!(remove_if_same(&path, id).expect("remove"));
        assert!(!path.exists());
    }

    #[test]
    fn a_planted_symlink_is_neither_followed_nor_changed() {
        let t = tempfile::tempdir().expect("tempdir");
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let link = t.path().join("kubeconfig");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");

        assert!(matches!(
            write_new(&link, b"token"),
            Err(FileError::Exists { .. })
        ));
        assert!(matches!(
            open_lock(&link, true),
            Err(FileError::Symlink { .. })
        ));
        assert!(matches!(
            read_private(&link, 1024),
            Err(FileError::Symlink { .. })
        ));
        // Replacing puts a new file where the link was; the link's target is untouched.
        replace(&link, b"new").expect("replaced");
        assert!(
            !std::fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        assert_eq!(mode(&link), 0o600);
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert_eq!(mode(&victim), 0o644);
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(t.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_dangling_symlink_is_not_created_through_either() {
        let t = tempfile::tempdir().expect("tempdir");
        let target = t.path().join("would-be-created");
        let link = t.path().join("lock");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(write_new(&link, b"x").is_err());
        assert!(open_lock(&link, true).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn a_state_directory_others_can_write_or_a_link_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("state");
        ensure_own_dir(&dir).expect("made");
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = ensure_own_dir(&dir).expect_err("world-writable");
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        assert!(matches!(
            ensure_own_dir(&link),
            Err(FileError::Symlink { .. })
        ));
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if crate::euid() != 0 {
            eprintln!("SKIPPED: needs root to chown a directory to another user");
            return;
        }
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("state");
        ensure_own_dir(&dir).expect("made");
        std::os::unix::fs::chown(&dir, Some(65534), None).expect("chown");
        let e = ensure_own_dir(&dir).expect_err("not ours");
        assert!(matches!(e, FileError::NotOwned { owner: 65534, .. }), "{e}");
        assert_eq!(check_private_dir(&dir).expect("private"), 65534);
    }
}
