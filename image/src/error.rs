//! The error of a build step.

use crate::elf::ElfError;
use crate::fetch::FetchError;
use crate::initrd::InitrdError;
use crate::lock::LockError;
use crate::source::SourceError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The lock file is not valid.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Fetching or checking the inputs failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The initrd could not be assembled.
    #[error(transparent)]
    Initrd(#[from] InitrdError),
    /// The source tree could not be inspected or copied.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The node binary is not a static executable.
    #[error("{path}")]
    Elf {
        /// The binary.
        path: String,
        /// What is wrong with it.
        source: ElfError,
    },
    /// The expected measurements could not be computed.
    #[error("measuring the image: {0}")]
    Measure(String),
    /// The Rust target for the static build is not installed.
    #[error("the Rust target {0} is not installed: run `rustup target add {0}`")]
    MissingTarget(String),
    /// An external tool failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The tool and its arguments.
        tool: String,
        /// Exit status and output.
        message: String,
    },
    /// A user-supplied value is not usable.
    #[error("{0}")]
    Input(String),
    /// A file operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl BuildError {
    /// An adapter for `map_err` on I/O results.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
        let what = what.into();
        move |source| BuildError::Io { what, source }
    }

    /// Whether the failure is the user's input (exit code 2) rather than
    /// the build itself (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BuildError::Lock(_)
                | BuildError::Input(_)
                | BuildError::MissingTarget(_)
                | BuildError::Fetch(FetchError::Inputs(_))
        )
    }
}
