//! Quote providers: where evidence comes from.
//!
//! Generation is kept apart from verification (see [`crate::verify`]): a
//! provider only turns 64 bytes of `report_data` into quote bytes, and
//! nothing here judges them. Whoever chooses `report_data` (the one function
//! that binds it to a key and a domain) lives elsewhere; a provider takes it
//! as opaque bytes.
//!
//! [`ConfigfsTsm`] asks the Linux kernel's configfs-tsm interface (Linux
//! 6.7+, modules `configfs`, `tsm`, `tdx-guest`) of a TDX guest. One quote
//! is one entry directory under `/sys/kernel/config/tsm/report`:
//!
//! ```text
//! mkdir  <root>/tessella-<pid>-<n>     the kernel creates the attribute files
//! read   provider                      must be "tdx_guest"
//! read   generation                    g
//! write  inblob                        exactly the 64 bytes of report_data
//! read   outblob                       the quote (the kernel asks the host's QGS)
//! read   generation                    must be g + 1, else another writer raced us
//! rmdir  <root>/tessella-<pid>-<n>     always, also on errors
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where Linux mounts the configfs-tsm report directory.
pub const CONFIGFS_TSM_ROOT: &str = "/sys/kernel/config/tsm/report";

/// The largest quote accepted from `outblob`. A TDX quote with its embedded
/// PCK certificate chain is about 5 KiB; anything far beyond that is not a
/// quote, and the bound keeps a misbehaving kernel or fake from making us
/// allocate without limit.
pub const MAX_QUOTE_BYTES: usize = 64 * 1024;

/// How many fresh entries [`ConfigfsTsm::quote`] tries when another writer
/// changes the entry under it, before giving up with
/// [`ProviderError::GenerationRace`].
pub const GENERATION_ATTEMPTS: u32 = 3;

/// What `provider` must read (after trimming) for the quote to be a TDX quote.
const TDX_PROVIDER: &str = "tdx_guest";

/// Bound for the small text attributes (`provider`, `generation`): configfs
/// never serves more than a page for them.
const MAX_ATTR_BYTES: usize = 4096;

/// How many entry names to try when a name is already taken. Names carry the
/// pid, but processes in different pid namespaces share one configfs, so a
/// live name from someone else is possible, only unlikely twice in a row.
const NAME_ATTEMPTS: u32 = 8;

/// Process-wide counter that makes entry names unique among this process's
/// concurrent calls (the pid makes them unique among processes).
static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);

/// A source of TDX quotes over caller-chosen `report_data`.
///
/// Implementations: [`ConfigfsTsm`] (a real TD) and the dev provider (quotes
/// signed under the dev PKI). Verification never depends on which one made a
/// quote: the trust anchor the verifier holds decides what it accepts.
///
/// Calls may block (configfs-tsm waits for the host's quote generation
/// service, which can take seconds); async callers should use
/// `spawn_blocking`. Implementations must allow concurrent calls from several
/// threads, each getting the quote over its own `report_data`.
pub trait QuoteProvider: Send + Sync {
    /// A quote whose `report_data` field is exactly `report_data`.
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, ProviderError>;

    /// A short name for logs and metrics, such as `configfs-tsm` or `dev`.
    fn name(&self) -> &str;
}

// Forwarding impls so callers can hold `Arc<dyn QuoteProvider>` (chosen at
// start-up: real or dev) and still pass it where `impl QuoteProvider` is taken.
impl<P: QuoteProvider + ?Sized> QuoteProvider for Arc<P> {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, ProviderError> {
        (**self).quote(report_data)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

impl<P: QuoteProvider + ?Sized> QuoteProvider for Box<P> {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, ProviderError> {
        (**self).quote(report_data)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

impl<P: QuoteProvider + ?Sized> QuoteProvider for &P {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, ProviderError> {
        (**self).quote(report_data)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

/// Why no quote could be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The configfs-tsm report directory does not exist: not a TD, a kernel
    /// older than 6.7, the modules not loaded, or configfs not mounted.
    #[error(
        "configfs-tsm is not available at {}: check that this is an Intel TDX guest on \
         Linux 6.7+, that the configfs, tsm and tdx-guest modules are loaded, and that \
         configfs is mounted at /sys/kernel/config",
        root.display()
    )]
    Unavailable {
        /// The report directory that was expected.
        root: PathBuf,
        /// The error creating an entry under it.
        source: io::Error,
    },
    /// configfs-tsm is served by another TEE's driver (for example `sev_guest`).
    #[error(
        "configfs-tsm provider is {found:?}, not \"tdx_guest\": this is not an Intel TDX guest"
    )]
    WrongProvider {
        /// What `provider` read, trimmed.
        found: String,
    },
    /// A filesystem operation on the configfs-tsm tree failed.
    #[error("cannot {op} {}: {error}{}", path.display(), io_hint(op, path, error))]
    Io {
        /// File or entry directory.
        path: PathBuf,
        /// What was attempted: `create`, `read`, `write` or `parse`.
        op: &'static str,
        /// Cause (in the message, not a `source`, so chains do not repeat it).
        error: io::Error,
    },
    /// `generation` did not advance by exactly one across our write and read,
    /// on every attempt. More than one: another writer used the entry, so the
    /// quote read may be theirs. Zero: the kernel did not take our write
    /// (configfs applies binary attributes on close and drops their errors).
    #[error(
        "configfs-tsm generation went from {before} to {after} instead of {} in each of \
         {attempts} attempts: {}",
        before.saturating_add(1),
        race_hint(*before, *after)
    )]
    GenerationRace {
        /// `generation` before writing `inblob`, on the last attempt.
        before: u64,
        /// `generation` after reading `outblob`, on the last attempt.
        after: u64,
        /// How many entries were tried.
        attempts: u32,
    },
    /// The kernel returned no quote bytes.
    #[error(
        "the kernel returned an empty quote from {}: check the host's quote generation service",
        path.display()
    )]
    EmptyQuote {
        /// The `outblob` read.
        path: PathBuf,
    },
    /// `outblob` holds more than [`MAX_QUOTE_BYTES`]: not a TDX quote.
    #[error("{} holds more than {limit} bytes: not a TDX quote", path.display())]
    TooLarge {
        /// The `outblob` read.
        path: PathBuf,
        /// The bound that was exceeded.
        limit: usize,
    },
}

impl ProviderError {
    /// A stable snake_case code for scripts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Unavailable { .. } => "tsm_unavailable",
            ProviderError::WrongProvider { .. } => "tsm_wrong_provider",
            ProviderError::Io { .. } => "tsm_io",
            ProviderError::GenerationRace { .. } => "tsm_generation_race",
            ProviderError::EmptyQuote { .. } => "empty_quote",
            ProviderError::TooLarge { .. } => "quote_too_large",
        }
    }
}

/// The next step for the operator, appended to [`ProviderError::Io`] messages
/// for the failures that have a known cause.
fn io_hint(op: &str, path: &Path, error: &io::Error) -> &'static str {
    if op == "create" && error.kind() == io::ErrorKind::PermissionDenied {
        "; creating configfs-tsm entries needs root"
    } else if op == "read" && path.file_name().is_some_and(|n| n == "outblob") {
        // The kernel fetches the quote from the host's QGS while this read
        // blocks; its failures surface here as EIO, ETIMEDOUT and the like.
        "; check that the host runs a quote generation service reachable by the TD"
    } else {
        ""
    }
}

/// What a generation mismatch most likely means.
fn race_hint(before: u64, after: u64) -> &'static str {
    if after == before {
        "the kernel did not accept the report data"
    } else {
        "another process is writing to tessella's configfs-tsm entries"
    }
}

/// Filesystem access of [`ConfigfsTsm`], so tests can emulate the kernel.
///
/// A real configfs creates an entry's attribute files on `mkdir` and bumps
/// `generation` when `inblob` is written; a plain directory does neither, so
/// testing against a temp dir needs an implementation that does. This seam
/// stays crate-private: making it public would put a way to feed arbitrary
/// "kernel" output into the production provider in the API, and other crates
/// needing quotes in tests should use the dev provider, whose quotes
/// actually verify. Only this module's protocol needs the fake kernel.
pub(crate) trait TsmFs: Send + Sync {
    /// `mkdir` of an entry. Fails with `NotFound` when the root is missing
    /// and `AlreadyExists` when the name is taken.
    fn create_dir(&self, path: &Path) -> io::Result<()>;

    /// Reads at most `limit + 1` bytes, so the caller can tell a file of
    /// exactly `limit` bytes from a longer one without reading all of it.
    fn read(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>>;

    /// Writes all of `data` in one open, write, close: configfs applies a
    /// binary attribute when the file is closed.
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;

    /// `rmdir` of an entry; configfs removes the attribute files with it.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
}

/// [`TsmFs`] over `std::fs`: the real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RealFs;

impl TsmFs for RealFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn read(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        let file = std::fs::File::open(path)?;
        let mut buf = Vec::new();
        // usize -> u64 never truncates on supported targets; saturate anyway.
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        file.take(cap).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // No O_CREAT: the kernel made the file, and creating one would hide
        // that it is missing. Dropping the file closes it, which runs
        // configfs's release; that hands the bytes to the TSM driver before
        // close(2) returns to user space, so `generation` has moved by the
        // time this returns.
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.write_all(data)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
}

/// Quotes from the Linux configfs-tsm interface of a TDX guest.
///
/// Each call makes its own entry directory, so concurrent calls (from threads
/// or processes) never share one; the `generation` check catches anyone who
/// writes into our entry anyway. Requires root.
#[derive(Clone)]
pub struct ConfigfsTsm {
    root: PathBuf,
    fs: Arc<dyn TsmFs>,
}

impl ConfigfsTsm {
    /// The provider at the kernel's standard path, [`CONFIGFS_TSM_ROOT`].
    /// Nothing is checked until the first [`QuoteProvider::quote`].
    pub fn new() -> Self {
        Self::with_root(CONFIGFS_TSM_ROOT)
    }

    /// The provider at another report directory (configfs mounted elsewhere).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self::with_fs(root, Arc::new(RealFs))
    }

    /// The provider over another filesystem, for tests that emulate the kernel.
    pub(crate) fn with_fs(root: impl Into<PathBuf>, fs: Arc<dyn TsmFs>) -> Self {
        ConfigfsTsm {
            root: root.into(),
            fs,
        }
    }

    /// The report directory entries are made under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes a fresh, uniquely named entry, removed when the guard drops.
    fn create_entry(&self) -> Result<Entry<'_>, ProviderError> {
        /// Linux's "no such device or address" errno.
        const ENXIO: i32 = 6;
        let pid = std::process::id();
        let mut attempt = 0;
        loop {
            let n = NEXT_ENTRY.fetch_add(1, Ordering::Relaxed);
            let path = self.root.join(format!("tessella-{pid}-{n}"));
            match self.fs.create_dir(&path) {
                Ok(()) => {
                    return Ok(Entry {
                        fs: &*self.fs,
                        path,
                    })
                }
                // mkdir under a missing directory: there is no configfs-tsm;
                // ENXIO: the tsm module is loaded but no TEE driver (tdx-guest)
                // registered with it, as off a TD.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ENXIO) =>
                {
                    return Err(ProviderError::Unavailable {
                        root: self.root.clone(),
                        source: e,
                    })
                }
                // Someone else's live entry (same pid in another pid
                // namespace): never share it, take the next name.
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < NAME_ATTEMPTS =>
                {
                    attempt += 1;
                    tracing::debug!(path = %path.display(), "configfs-tsm entry name taken, trying another");
                }
                Err(error) => {
                    return Err(ProviderError::Io {
                        path,
                        op: "create",
                        error,
                    })
                }
            }
        }
    }

    /// One pass of the protocol on a fresh entry.
    fn attempt(&self, report_data: &[u8; 64]) -> Result<Attempt, ProviderError> {
        let entry = self.create_entry()?;

        // Check the provider before writing, so report data never goes to
        // another TEE's driver and the error names what is really there.
        let provider = self.read_text(&entry.file("provider"))?;
        if provider != TDX_PROVIDER {
            return Err(ProviderError::WrongProvider { found: provider });
        }

        let generation = entry.file("generation");
        let before = self.read_generation(&generation)?;

        let inblob = entry.file("inblob");
        self.fs
            .write(&inblob, report_data)
            .map_err(|error| ProviderError::Io {
                path: inblob,
                op: "write",
                error,
            })?;

        let outblob = entry.file("outblob");
        let quote = self
            .fs
            .read(&outblob, MAX_QUOTE_BYTES)
            .map_err(|error| ProviderError::Io {
                path: outblob.clone(),
                op: "read",
                error,
            })?;

        // Only our write may lie between the two reads: if generation moved
        // by anything but one, the outblob may answer someone else's inblob
        // (or none), so it is discarded before it is even size-checked.
        let after = self.read_generation(&generation)?;
        if before.checked_add(1) != Some(after) {
            return Ok(Attempt::Raced { before, after });
        }

        if quote.len() > MAX_QUOTE_BYTES {
            return Err(ProviderError::TooLarge {
                path: outblob,
                limit: MAX_QUOTE_BYTES,
            });
        }
        if quote.is_empty() {
            return Err(ProviderError::EmptyQuote { path: outblob });
        }
        Ok(Attempt::Quote(quote))
    }

    /// A small text attribute, trimmed of the kernel's trailing newline.
    fn read_text(&self, path: &Path) -> Result<String, ProviderError> {
        let bytes = self
            .fs
            .read(path, MAX_ATTR_BYTES)
            .map_err(|error| ProviderError::Io {
                path: path.to_path_buf(),
                op: "read",
                error,
            })?;
        if bytes.len() > MAX_ATTR_BYTES {
            return Err(ProviderError::Io {
                path: path.to_path_buf(),
                op: "read",
                error: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than {MAX_ATTR_BYTES} bytes"),
                ),
            });
        }
        Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
    }

    /// The `generation` counter (decimal text).
    fn read_generation(&self, path: &Path) -> Result<u64, ProviderError> {
        let text = self.read_text(path)?;
        text.parse().map_err(|_| ProviderError::Io {
            path: path.to_path_buf(),
            op: "parse",
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{text:?} is not a generation number"),
            ),
        })
    }
}

impl Default for ConfigfsTsm {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ConfigfsTsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigfsTsm")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl QuoteProvider for ConfigfsTsm {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, ProviderError> {
        let mut last = (0, 0);
        for attempt in 1..=GENERATION_ATTEMPTS {
            // Each attempt uses a fresh entry (the old one is removed when
            // `attempt` returns), so a writer that found our entry name
            // cannot follow us into the retry.
            match self.attempt(report_data)? {
                Attempt::Quote(quote) => return Ok(quote),
                Attempt::Raced { before, after } => {
                    tracing::warn!(
                        attempt,
                        before,
                        after,
                        "configfs-tsm generation changed under us; retrying with a fresh entry"
                    );
                    last = (before, after);
                }
            }
        }
        Err(ProviderError::GenerationRace {
            before: last.0,
            after: last.1,
            attempts: GENERATION_ATTEMPTS,
        })
    }

    fn name(&self) -> &str {
        "configfs-tsm"
    }
}

/// The result of one protocol pass that did not fail outright.
enum Attempt {
    /// A quote over our `report_data`.
    Quote(Vec<u8>),
    /// `generation` moved by other than one: the outblob cannot be trusted.
    Raced { before: u64, after: u64 },
}

/// An entry directory, removed on drop so every path out of
/// [`ConfigfsTsm::attempt`] (errors and panics included) cleans up: a leaked
/// entry holds kernel memory until reboot.
struct Entry<'a> {
    fs: &'a dyn TsmFs,
    path: PathBuf,
}

impl Entry<'_> {
    /// An attribute file of this entry.
    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        match self.fs.remove_dir(&self.path) {
            Ok(()) => {}
            // Already gone (someone cleaned up for us): nothing leaked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Cannot fail the call from here, and the quote (if any) is
            // still good; say what leaked so an operator can rmdir it.
            Err(error) => tracing::warn!(
                path = %self.path.display(),
                %error,
                "cannot remove configfs-tsm entry"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
    use std::sync::Mutex;

    /// A [`TsmFs`] over a real directory that behaves like the kernel's
    /// configfs-tsm, with knobs for the failures the provider must handle.
    struct FakeTsm {
        /// What `provider` reads in new entries.
        provider: Mutex<Vec<u8>>,
        /// Writes left on which a "concurrent writer" also writes (generation
        /// +2, outblob replaced by someone else's quote).
        races: AtomicU32,
        /// `create_dir` calls left that fail with `AlreadyExists`.
        collisions: AtomicU32,
        /// `create_dir` fails with ENXIO (tsm loaded, no TEE provider).
        no_provider: AtomicBool,
        /// Reading `outblob` fails, as when the host's QGS is unreachable.
        outblob_error: AtomicBool,
        /// Writing `inblob` yields an empty `outblob`.
        empty_outblob: AtomicBool,
        /// Writing `inblob` yields an `outblob` of this many bytes instead.
        outblob_len: AtomicUsize,
        /// Every entry created, in order.
        created: Mutex<Vec<PathBuf>>,
        /// Every `create_dir` call, successful or not.
        create_calls: AtomicU32,
        /// Every `inblob` write, byte for byte.
        inblobs: Mutex<Vec<Vec<u8>>>,
    }

    impl FakeTsm {
        fn new() -> Arc<Self> {
            Arc::new(FakeTsm {
                provider: Mutex::new(b"tdx_guest\n".to_vec()),
                races: AtomicU32::new(0),
                collisions: AtomicU32::new(0),
                no_provider: AtomicBool::new(false),
                outblob_error: AtomicBool::new(false),
                empty_outblob: AtomicBool::new(false),
                outblob_len: AtomicUsize::new(0),
                created: Mutex::new(Vec::new()),
                create_calls: AtomicU32::new(0),
                inblobs: Mutex::new(Vec::new()),
            })
        }

        /// The fake quote for `inblob`.
        fn quote_for(inblob: &[u8]) -> Vec<u8> {
            [b"QUOTE".as_slice(), inblob].concat()
        }

        /// Consumes one unit of a countdown knob, if any is left.
        fn take(counter: &AtomicU32) -> bool {
            counter
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    impl TsmFs for FakeTsm {
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            self.create_calls.fetch_add(1, Ordering::SeqCst);
            if Self::take(&self.collisions) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            if self.no_provider.load(Ordering::SeqCst) {
                return Err(io::Error::from_raw_os_error(6));
            }
            std::fs::create_dir(path)?;
            let provider = self.provider.lock().expect("lock").clone();
            std::fs::write(path.join("provider"), provider)?;
            std::fs::write(path.join("generation"), "0\n")?;
            std::fs::write(path.join("inblob"), "")?;
            std::fs::write(path.join("outblob"), "")?;
            self.created.lock().expect("lock").push(path.to_path_buf());
            Ok(())
        }

        fn read(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
            if path.ends_with("outblob") && self.outblob_error.load(Ordering::SeqCst) {
                return Err(io::Error::other("quote generation service unreachable"));
            }
            RealFs.read(path, limit)
        }

        fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
            std::fs::write(path, data)?;
            if !path.ends_with("inblob") {
                return Ok(());
            }
            self.inblobs.lock().expect("lock").push(data.to_vec());
            let entry = path.parent().expect("entry");
            let generation = entry.join("generation");
            let current: u64 = std::fs::read_to_string(&generation)?
                .trim()
                .parse()
                .map_err(io::Error::other)?;
            let mut outblob = if self.empty_outblob.load(Ordering::SeqCst) {
                Vec::new()
            } else {
                Self::quote_for(data)
            };
            let len = self.outblob_len.load(Ordering::SeqCst);
            if len > 0 {
                outblob = vec![0x55; len];
            }
            let mut bump = 1;
            if Self::take(&self.races) {
                // Someone else wrote the entry after us: their quote wins.
                bump = 2;
                outblob = b"SOMEONE ELSE'S QUOTE".to_vec();
            }
            std::fs::write(&generation, format!("{}\n", current + bump))?;
            std::fs::write(entry.join("outblob"), outblob)
        }

        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            // configfs removes the attribute files with the entry.
            std::fs::remove_dir_all(path)
        }
    }

    fn setup() -> (tempfile::TempDir, Arc<FakeTsm>, ConfigfsTsm) {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeTsm::new();
        let tsm = ConfigfsTsm::with_fs(dir.path(), fake.clone());
        (dir, fake, tsm)
    }

    fn entries_left(dir: &tempfile::TempDir) -> Vec<PathBuf> {
        std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect()
    }

    fn report_data(seed: u8) -> [u8; 64] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
    }

    #[test]
    fn provider_happy_path_returns_quote_and_removes_entry() {
        let (dir, fake, tsm) = setup();
        let data = report_data(1);
        let quote = tsm.quote(&data).expect("quote");
        assert_eq!(quote, FakeTsm::quote_for(&data));
        let created = fake.created.lock().expect("lock").clone();
        assert_eq!(created.len(), 1);
        assert!(!created[0].exists(), "entry {created:?} left behind");
        assert!(entries_left(&dir).is_empty());
        assert_eq!(tsm.name(), "configfs-tsm");
    }

    #[test]
    fn provider_entry_name_carries_pid_and_sits_under_root() {
        let (dir, fake, tsm) = setup();
        tsm.quote(&report_data(2)).expect("quote");
        let created = fake.created.lock().expect("lock").clone();
        assert_eq!(created[0].parent(), Some(dir.path()));
        let name = created[0]
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        let prefix = format!("tessella-{}-", std::process::id());
        assert!(name.starts_with(&prefix), "{name}");
        assert!(name[prefix.len()..].parse::<u64>().is_ok(), "{name}");
    }

    #[test]
    fn provider_writes_exactly_the_report_data_to_inblob() {
        let (_dir, fake, tsm) = setup();
        let data = report_data(3);
        tsm.quote(&data).expect("quote");
        let inblobs = fake.inblobs.lock().expect("lock").clone();
        assert_eq!(inblobs, vec![data.to_vec()]);
        assert_eq!(inblobs[0].len(), 64);
    }

    #[test]
    fn provider_refuses_wrong_provider_without_writing() {
        let (dir, fake, tsm) = setup();
        *fake.provider.lock().expect("lock") = b"sev_guest\n".to_vec();
        let err = tsm.quote(&report_data(4)).expect_err("must refuse");
        assert!(
            matches!(&err, ProviderError::WrongProvider { found } if found == "sev_guest"),
            "{err:?}"
        );
        assert_eq!(err.code(), "tsm_wrong_provider");
        assert!(err.to_string().contains("\"sev_guest\""), "{err}");
        assert!(fake.inblobs.lock().expect("lock").is_empty());
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_race_once_is_retried_on_a_fresh_entry() {
        let (dir, fake, tsm) = setup();
        fake.races.store(1, Ordering::SeqCst);
        let data = report_data(5);
        let quote = tsm.quote(&data).expect("second attempt succeeds");
        // The raced outblob (someone else's quote) is never returned.
        assert_eq!(quote, FakeTsm::quote_for(&data));
        let created = fake.created.lock().expect("lock").clone();
        assert_eq!(created.len(), 2);
        assert_ne!(created[0], created[1]);
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_persistent_race_fails_with_generation_race() {
        let (dir, fake, tsm) = setup();
        fake.races.store(u32::MAX, Ordering::SeqCst);
        let err = tsm.quote(&report_data(6)).expect_err("must fail");
        assert!(
            matches!(
                err,
                ProviderError::GenerationRace {
                    before: 0,
                    after: 2,
                    attempts: GENERATION_ATTEMPTS
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "tsm_generation_race");
        assert!(err.to_string().contains("another process"), "{err}");
        assert_eq!(
            fake.created.lock().expect("lock").len(),
            GENERATION_ATTEMPTS as usize
        );
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn tsm_without_a_tee_driver_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeTsm::new();
        fake.no_provider.store(true, Ordering::SeqCst);
        let tsm = ConfigfsTsm::with_fs(dir.path(), fake.clone());
        let err = tsm.quote(&report_data(7)).expect_err("no TEE driver");
        assert_eq!(err.code(), "tsm_unavailable", "{err:?}");
        assert!(err.to_string().contains("tdx-guest"), "{err}");
    }

    #[test]
    fn provider_missing_root_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("sys/kernel/config/tsm/report");
        let tsm = ConfigfsTsm::with_root(&root);
        let err = tsm.quote(&report_data(7)).expect_err("no configfs-tsm");
        match &err {
            ProviderError::Unavailable { root: r, source } => {
                assert_eq!(r, &root);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(err.code(), "tsm_unavailable");
        let msg = err.to_string();
        for needle in ["Linux 6.7+", "configfs", "tsm", "tdx-guest"] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
    }

    #[test]
    fn provider_unreadable_outblob_is_io_and_removes_entry() {
        let (dir, fake, tsm) = setup();
        fake.outblob_error.store(true, Ordering::SeqCst);
        let err = tsm.quote(&report_data(8)).expect_err("must fail");
        match &err {
            ProviderError::Io { path, op, .. } => {
                assert!(path.ends_with("outblob"), "{path:?}");
                assert_eq!(*op, "read");
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(
            err.to_string().contains("quote generation service"),
            "{err}"
        );
        assert_eq!(fake.created.lock().expect("lock").len(), 1);
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_empty_outblob_is_refused_and_removes_entry() {
        let (dir, fake, tsm) = setup();
        fake.empty_outblob.store(true, Ordering::SeqCst);
        let err = tsm.quote(&report_data(9)).expect_err("must fail");
        assert!(
            matches!(&err, ProviderError::EmptyQuote { path } if path.ends_with("outblob")),
            "{err:?}"
        );
        assert_eq!(err.code(), "empty_quote");
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_outblob_bound_is_enforced() {
        let (dir, fake, tsm) = setup();
        // Exactly the bound is accepted ...
        fake.outblob_len.store(MAX_QUOTE_BYTES, Ordering::SeqCst);
        let quote = tsm.quote(&report_data(10)).expect("at the bound");
        assert_eq!(quote.len(), MAX_QUOTE_BYTES);
        // ... one byte more is not.
        fake.outblob_len
            .store(MAX_QUOTE_BYTES + 1, Ordering::SeqCst);
        let err = tsm.quote(&report_data(10)).expect_err("over the bound");
        assert!(
            matches!(
                err,
                ProviderError::TooLarge {
                    limit: MAX_QUOTE_BYTES,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "quote_too_large");
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_skips_taken_entry_names() {
        let (dir, fake, tsm) = setup();
        fake.collisions.store(2, Ordering::SeqCst);
        let data = report_data(11);
        assert_eq!(tsm.quote(&data).expect("quote"), FakeTsm::quote_for(&data));
        assert_eq!(fake.create_calls.load(Ordering::SeqCst), 3);
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_plain_directory_fails_on_provider_and_removes_entry() {
        // RealFs on a directory that is not configfs: mkdir works but no
        // attribute files appear. The error names the file, and the (empty)
        // entry is still removed.
        let dir = tempfile::tempdir().expect("tempdir");
        let tsm = ConfigfsTsm::with_root(dir.path());
        let err = tsm.quote(&report_data(12)).expect_err("not configfs");
        match &err {
            ProviderError::Io { path, op, error } => {
                assert!(path.ends_with("provider"), "{path:?}");
                assert_eq!(*op, "read");
                assert_eq!(error.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert_eq!(err.code(), "tsm_io");
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_concurrent_calls_get_own_entries_and_quotes() {
        let (dir, fake, tsm) = setup();
        const THREADS: u8 = 8;
        const PER_THREAD: u8 = 10;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let tsm = &tsm;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        let mut data = report_data(i);
                        data[0] = t;
                        data[1] = i;
                        let quote = tsm.quote(&data).expect("quote");
                        assert_eq!(quote, FakeTsm::quote_for(&data), "thread {t} call {i}");
                    }
                });
            }
        });
        let created = fake.created.lock().expect("lock").clone();
        let total = usize::from(THREADS) * usize::from(PER_THREAD);
        assert_eq!(created.len(), total);
        let unique: HashSet<_> = created.iter().collect();
        assert_eq!(unique.len(), total, "entry names were reused");
        assert!(entries_left(&dir).is_empty());
    }

    #[test]
    fn provider_works_through_dyn_arc() {
        let (_dir, _fake, tsm) = setup();
        let shared: Arc<dyn QuoteProvider> = Arc::new(tsm);
        fn takes(p: impl QuoteProvider) -> Vec<u8> {
            p.quote(&[7; 64]).expect("quote")
        }
        assert_eq!(takes(shared.clone()), FakeTsm::quote_for(&[7; 64]));
        assert_eq!(shared.name(), "configfs-tsm");
    }

    #[test]
    fn provider_default_root_is_the_kernel_path() {
        assert_eq!(ConfigfsTsm::new().root(), Path::new(CONFIGFS_TSM_ROOT));
        assert_eq!(ConfigfsTsm::default().root(), Path::new(CONFIGFS_TSM_ROOT));
    }
}
