//! Where kubeway keeps state (tunnel journals and locks, lab kubeconfigs): `$KUBEWAY_STATE_DIR`,
//! else the XDG state directory (`$XDG_STATE_HOME/kubeway`, else `~/.local/state/kubeway`).
//! There is no fallback to a shared temporary folder: without any of these, kubeway says so.

use std::ffi::OsString;
use std::path::PathBuf;

/// Why there is no state directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDirError {
    /// Neither KUBEWAY_STATE_DIR, XDG_STATE_HOME nor a home directory.
    #[error(
        "kubeway has no place for its state: HOME is not set and no home directory is known, and neither \
         XDG_STATE_HOME nor KUBEWAY_STATE_DIR is set; set one of them to a directory of your own \
         (kubeway never falls back to a shared temporary folder)"
    )]
    NoHome,
    /// A relative path where an absolute one is needed.
    #[error(
        "the state directory {path:?} (from {from}) is not an absolute path; set {from} to an absolute path of a directory of your own"
    )]
    Relative {
        /// The path.
        path: String,
        /// Where it came from.
        from: &'static str,
    },
}

/// kubeway's state directory, as the environment says; nothing is created here.
pub fn state_dir() -> Result<PathBuf, StateDirError> {
    use etcetera::BaseStrategy;
    let base = etcetera::choose_base_strategy()
        .ok()
        .map(|s| (s.state_dir(), s.home_dir().to_path_buf()));
    resolve(std::env::var_os("KUBEWAY_STATE_DIR"), base)
}

/// The rules of [`state_dir`]: an explicit `KUBEWAY_STATE_DIR`, else the base strategy's state
/// directory (None on systems without one: then `~/.local/state`), else an error.
pub fn resolve(
    explicit: Option<OsString>,
    base: Option<(Option<PathBuf>, PathBuf)>,
) -> Result<PathBuf, StateDirError> {
    if let Some(d) = explicit.filter(|d| !d.is_empty()) {
        let p = PathBuf::from(d);
        if !p.is_absolute() {
            return Err(StateDirError::Relative {
                path: p.display().to_string(),
                from: "KUBEWAY_STATE_DIR",
            });
        }
        return Ok(p);
    }
    let (state, home) = base.ok_or(StateDirError::NoHome)?;
    let dir = state.unwrap_or_else(|| home.join(".local/state"));
    if !dir.is_absolute() {
        return Err(StateDirError::Relative {
            path: dir.display().to_string(),
            from: "HOME",
        });
    }
    Ok(dir.join("kubeway"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_then_xdg_then_home_and_never_a_temp_folder() {
        let home = PathBuf::from("/home/ada");
        assert_eq!(
            resolve(Some("/srv/kw".into()), Some((None, home.clone()))),
            Ok(PathBuf::from("/srv/kw"))
        );
        assert_eq!(
            resolve(None, Some((Some(PathBuf::from("/x/state")), home.clone()))),
            Ok(PathBuf::from("/x/state/kubeway"))
        );
        assert_eq!(
            resolve(Some("".into()), Some((None, home))),
            Ok(PathBuf::from("/home/ada/.local/state/kubeway"))
        );
        // No home, no XDG, no KUBEWAY_STATE_DIR: an error that says so, not /tmp.
        let e = resolve(None, None).expect_err("no place");
        assert_eq!(e, StateDirError::NoHome);
        assert!(e.to_string().contains("HOME"), "{e}");
        assert!(
            matches!(
                resolve(Some("rel/dir".into()), None),
                Err(StateDirError::Relative { .. })
            ),
            "a relative KUBEWAY_STATE_DIR is refused"
        );
        assert!(matches!(
            resolve(None, Some((None, PathBuf::from("relative-home")))),
            Err(StateDirError::Relative { from: "HOME", .. })
        ));
    }
}
