//! The source tree being built: where it is, its git state, and copies of it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the source tree could not be inspected or copied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// No workspace `Cargo.toml` above the start dir.
    #[error("no cargo workspace (Cargo.toml with [workspace] and node/) above {0}; pass --source")]
    NoWorkspace(String),
    /// git failed.
    #[error("git {args}: {message}")]
    Git {
        /// The git arguments.
        args: String,
        /// What went wrong.
        message: String,
    },
    /// A file operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The git state recorded in `image.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitState {
    /// `HEAD`'s commit id.
    pub revision: String,
    /// Whether tracked files differ from `HEAD`.
    pub dirty: bool,
    /// `HEAD`'s committer time (Unix seconds).
    pub commit_time: u64,
}

/// Finds the workspace root: the nearest dir at or above `start` with a
/// `Cargo.toml` that declares `[workspace]` and has a `node/` crate.
pub fn find_workspace(start: &Path) -> Result<PathBuf, SourceError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        if d.join("node").is_dir()
            && std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("[workspace]"))
        {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(SourceError::NoWorkspace(start.display().to_string()))
}

fn git(dir: &Path, args: &[&str]) -> Result<String, SourceError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| SourceError::Git {
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SourceError::Git {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The git state of `dir`, or `None` when it is not in a git work tree.
pub fn git_state(dir: &Path) -> Option<GitState> {
    let revision = git(dir, &["rev-parse", "HEAD"]).ok()?.trim().to_string();
    let commit_time = git(dir, &["log", "-1", "--format=%ct", "HEAD"])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let dirty = !git(dir, &["status", "--porcelain", "--untracked-files=no"])
        .ok()?
        .trim()
        .is_empty();
    Some(GitState {
        revision,
        dirty,
        commit_time,
    })
}

/// Copies the files git tracks in `src` (their working-tree content, so
/// uncommitted edits of tracked files are included; untracked files are not)
/// to the new dir `dest`. Returns the number of files copied.
pub fn copy_tracked(src: &Path, dest: &Path) -> Result<usize, SourceError> {
    let list = git(src, &["ls-files", "-z", "--cached"])?;
    let mut copied = 0;
    for rel in list.split('\0').filter(|s| !s.is_empty()) {
        let from = src.join(rel);
        // Deleted in the working tree but still in the index: skip.
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|source| SourceError::Io {
                what: format!("creating {}", parent.display()),
                source,
            })?;
        }
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(|source| SourceError::Io {
                what: format!("reading link {}", from.display()),
                source,
            })?;
            std::os::unix::fs::symlink(&target, &to).map_err(|source| SourceError::Io {
                what: format!("linking {}", to.display()),
                source,
            })?;
        } else if meta.is_file() {
            std::fs::copy(&from, &to).map_err(|source| SourceError::Io {
                what: format!("copying {}", from.display()),
                source,
            })?;
        }
        copied += 1;
    }
    Ok(copied)
}
