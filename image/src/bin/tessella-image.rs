//! `tessella-image`: fetch the pinned inputs and build the TDX appliance image.
//!
//! Exit codes: 0 success; 1 the build (or fetch) failed; 2 bad usage or
//! input (arguments, lock file, config, missing Rust target); 3
//! `--verify-reproducible` found artefacts that differ between the two builds.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessella_image::{
    copy_tracked, fetch_inputs, find_workspace, AptGet, BuildConfig, BuildContext, BuildError,
    Cache, FetchEvent, FetchOutcome, ImageManifest, LockFile, Pipeline, Progress, VmShape,
    ARTEFACTS, IMAGE_MANIFEST, INITRD_TARGET_BYTES,
};

#[derive(Parser)]
#[command(
    name = "tessella-image",
    version,
    about = "Build the reproducible tessella TDX appliance image",
    after_help = "Exit codes: 0 ok, 1 build failed, 2 bad usage or input, 3 not reproducible."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// The workspace root (default: found above the current dir).
    #[arg(long)]
    source: Option<PathBuf>,
    /// The lock file (default: <source>/image/tessella-image.lock).
    #[arg(long)]
    lock: Option<PathBuf>,
    /// The .deb cache (default: $TESSELLA_IMAGE_CACHE, else
    /// $XDG_CACHE_HOME/tessella-image, else $HOME/.cache/tessella-image).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The inputs dir (default: <source>/target/tessella-image/inputs).
    #[arg(long)]
    inputs: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Download the pinned packages (verified, cached) and extract the inputs.
    Fetch {
        #[command(flatten)]
        common: Common,
    },
    /// Build the image: fetch, static node build, initrd, artefacts, image.json.
    Build {
        #[command(flatten)]
        common: Common,
        /// Use the inputs dir as it is instead of fetching (offline; its inputs.json hashes are still checked).
        #[arg(long)]
        no_fetch: bool,
        /// The output dir (default: <source>/target/tessella-image/out).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The work dir: cargo target dirs, logs (default:
        /// <source>/target/tessella-image/work).
        #[arg(long)]
        work: Option<PathBuf>,
        /// The image's /etc/tessella/node.toml (default: a built-in dev-mode
        /// single-node config, admin on 0.0.0.0:7300).
        #[arg(long)]
        default_config: Option<PathBuf>,
        /// Guest RAM in MiB (part of the measurement).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(128..=1048576))]
        ram_mib: u32,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=512))]
        vcpus: u32,
        /// Build a second time from a copy of the git-tracked files at another
        /// path, with another cargo target dir, and compare every artefact.
        #[arg(long)]
        verify_reproducible: bool,
    },
}

/// Failure classes mapped to exit codes.
enum Failure {
    Build(anyhow::Error),
    Usage(anyhow::Error),
    NotReproducible(Vec<String>),
}

impl From<BuildError> for Failure {
    fn from(e: BuildError) -> Failure {
        if e.is_usage() {
            Failure::Usage(e.into())
        } else {
            Failure::Build(e.into())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fetch { common } => fetch(&common),
        Command::Build {
            common,
            no_fetch,
            out,
            work,
            default_config,
            ram_mib,
            vcpus,
            verify_reproducible,
        } => build(BuildArgs {
            common,
            no_fetch,
            out,
            work,
            default_config,
            vm: VmShape { ram_mib, vcpus },
            verify_reproducible,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Build(e)) => {
            eprintln!("tessella-image: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("tessella-image: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::NotReproducible(files)) => {
            eprintln!(
                "tessella-image: NOT reproducible: {} differ between the two builds",
                files.join(", ")
            );
            ExitCode::from(3)
        }
    }
}

struct Paths {
    source: PathBuf,
    lock: PathBuf,
    cache: Cache,
    inputs: PathBuf,
    image_dir: PathBuf,
}

fn paths(common: &Common) -> Result<Paths, Failure> {
    let source = match &common.source {
        Some(s) => s.clone(),
        None => {
            let cwd = std::env::current_dir()
                .context("no current dir")
                .map_err(Failure::Usage)?;
            find_workspace(&cwd).map_err(|e| Failure::Usage(e.into()))?
        }
    };
    let source = std::fs::canonicalize(&source)
        .with_context(|| format!("--source {}", source.display()))
        .map_err(Failure::Usage)?;
    let cache_root = match &common.cache {
        Some(c) => c.clone(),
        None => Cache::default_root()
            .context("no cache dir: set --cache, TESSELLA_IMAGE_CACHE or HOME")
            .map_err(Failure::Usage)?,
    };
    let image_dir = source.join("target").join("tessella-image");
    Ok(Paths {
        lock: common
            .lock
            .clone()
            .unwrap_or_else(|| source.join("image").join("tessella-image.lock")),
        cache: Cache::new(cache_root),
        inputs: common
            .inputs
            .clone()
            .unwrap_or_else(|| image_dir.join("inputs")),
        image_dir,
        source,
    })
}

fn spinner(prefix: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix:>9}: {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(prefix.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Draws one spinner per step; plain lines when stderr is not a terminal.
struct Ui {
    label: String,
    bar: RefCell<Option<(ProgressBar, Instant)>>,
}

impl Ui {
    fn new(label: &str) -> Ui {
        Ui {
            label: label.to_string(),
            bar: RefCell::new(None),
        }
    }
}

impl Progress for Ui {
    fn begin(&self, step: &str) {
        let bar = spinner(step);
        if bar.is_hidden() {
            eprintln!("{}{step}: started", self.label);
        }
        *self.bar.borrow_mut() = Some((bar, Instant::now()));
    }
    fn update(&self, text: &str) {
        if let Some((bar, _)) = self.bar.borrow().as_ref() {
            let text: String = text.chars().take(160).collect();
            bar.set_message(text);
        }
    }
    fn end(&self, step: &str, summary: &str) {
        if let Some((bar, start)) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
            eprintln!(
                "{}{step}: {summary} ({:.1} s)",
                self.label,
                start.elapsed().as_secs_f64()
            );
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        if let Some((bar, _)) = self.bar.borrow_mut().take() {
            bar.abandon();
        }
    }
}

fn fetch(common: &Common) -> Result<(), Failure> {
    let p = paths(common)?;
    let lock = LockFile::load(&p.lock)
        .with_context(|| format!("lock file {}", p.lock.display()))
        .map_err(Failure::Usage)?;
    let apt = AptGet::new(&p.cache, &lock.apt);
    let ui = Ui::new("");
    ui.begin("fetch");
    let manifest = fetch_inputs(&lock, &p.cache, &apt, &p.inputs, |e| match e {
        FetchEvent::Fetching(pkg) => ui.update(&format!("fetching {}", pkg.apt_spec())),
        FetchEvent::Fetched(pkg, outcome) => {
            let how = match outcome {
                FetchOutcome::Cached => "cached",
                FetchOutcome::Downloaded => "downloaded",
            };
            ui.update(&format!("{} {how}, verified", pkg.apt_spec()));
        }
        FetchEvent::Extracting(pkg) => ui.update(&format!("extracting {}", pkg.name)),
    })
    .map_err(|e| Failure::Build(e.into()))?;
    ui.end("fetch", &format!("inputs in {}", p.inputs.display()));
    for pkg in &manifest.packages {
        println!("{} {} ({} files)", pkg.name, pkg.version, pkg.files.len());
        for f in &pkg.files {
            println!("  {:<45} {} {:>10} B", f.to, f.sha256, f.size);
        }
    }
    println!("cache: {}", p.cache.root().display());
    Ok(())
}

struct BuildArgs {
    common: Common,
    no_fetch: bool,
    out: Option<PathBuf>,
    work: Option<PathBuf>,
    default_config: Option<PathBuf>,
    vm: VmShape,
    verify_reproducible: bool,
}

/// The steps of every build (both builds of `--verify-reproducible`).
///
/// Integration point: a measure step (reading the artefacts from
/// `ctx.config.out_dir`, setting `ctx.measurements`) goes here with
/// `p.insert_before("manifest", Box::new(MeasureStep))`.
fn pipeline() -> Pipeline {
    Pipeline::standard()
}

fn build(args: BuildArgs) -> Result<(), Failure> {
    let start = Instant::now();
    let p = paths(&args.common)?;
    let out = args.out.clone().unwrap_or_else(|| p.image_dir.join("out"));
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| p.image_dir.join("work"));
    if let Some(c) = &args.default_config {
        if !c.is_file() {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--default-config {}: no such file",
                c.display()
            )));
        }
    }
    let config = BuildConfig {
        source_dir: p.source.clone(),
        lock_path: p.lock.clone(),
        cache: p.cache.clone(),
        inputs_dir: p.inputs.clone(),
        fetch: !args.no_fetch,
        out_dir: out.clone(),
        work_dir: work.join("build-1"),
        default_config: args.default_config.clone(),
        vm: args.vm,
    };
    let label = if args.verify_reproducible {
        "[build 1] "
    } else {
        ""
    };
    let mut ctx = BuildContext::new(config)?;
    if let Some(g) = &ctx.git {
        if g.dirty {
            eprintln!(
                "note: the tree has uncommitted changes to tracked files; image.json records git_dirty = true"
            );
        }
    }
    pipeline().run(&mut ctx, &Ui::new(label))?;
    let first_time = start.elapsed();
    print_figures(&ctx, &out, first_time);
    if !args.verify_reproducible {
        return Ok(());
    }

    // Build 2: a copy of the git-tracked files (working-tree content) at
    // another path, its own cargo target dir, the same verified inputs.
    let second_start = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("tessella-image-repro-")
        .tempdir()
        .context("creating a temp dir for the second build")
        .map_err(Failure::Build)?;
    let copy = tmp.path().join("src");
    let n = copy_tracked(&p.source, &copy).map_err(|e| Failure::Build(e.into()))?;
    eprintln!(
        "[build 2] copied {n} tracked files to {} (untracked files are not part of the build)",
        copy.display()
    );
    let out2 = work.join("reproduced");
    let lock2 = if p.lock.starts_with(&p.source) {
        p.lock
            .strip_prefix(&p.source)
            .map(|rel| copy.join(rel))
            .unwrap_or_else(|_| p.lock.clone())
    } else {
        p.lock.clone()
    };
    let config2 = BuildConfig {
        source_dir: copy.clone(),
        lock_path: lock2,
        cache: p.cache.clone(),
        inputs_dir: p.inputs.clone(),
        fetch: false,
        out_dir: out2.clone(),
        work_dir: tmp.path().join("work"),
        default_config: args.default_config.clone(),
        vm: args.vm,
    };
    let mut ctx2 = BuildContext::new(config2)?;
    // The copy is not a git tree: it is the same revision as build 1.
    ctx2.git = ctx.git.clone();
    ctx2.source_date_epoch = ctx.source_date_epoch;
    pipeline().run(&mut ctx2, &Ui::new("[build 2] "))?;
    print_figures(&ctx2, &out2, second_start.elapsed());
    let differing = compare(&out, &out2).map_err(Failure::Build)?;
    if differing.is_empty() {
        println!("reproducible: every artefact is identical");
        Ok(())
    } else {
        // Keep the second build's work dir for diffing.
        let kept = tmp.keep();
        eprintln!("kept the second build's tree at {}", kept.display());
        Err(Failure::NotReproducible(differing))
    }
}

fn print_figures(ctx: &BuildContext, out: &Path, time: Duration) {
    let initrd = ctx.initrd_size.unwrap_or(0);
    let binary = ctx.init.as_ref().map_or(0, |a| a.size);
    println!("image: {}", out.display());
    println!("  build time   {:.1} s", time.as_secs_f64());
    println!(
        "  initrd.cpio  {initrd} bytes ({:.1} MB; target <= {} MB)",
        initrd as f64 / 1e6,
        INITRD_TARGET_BYTES / 1_000_000
    );
    println!(
        "  /init        {binary} bytes ({:.1} MB, static musl)",
        binary as f64 / 1e6
    );
    println!(
        "  vm           {} MiB RAM, {} vCPUs",
        ctx.config.vm.ram_mib, ctx.config.vm.vcpus
    );
}

/// Prints the two builds' SHA-256 side by side; returns the differing names.
fn compare(a: &Path, b: &Path) -> anyhow::Result<Vec<String>> {
    let mut differing = Vec::new();
    println!(
        "{:<14} {:<64} {:<64} same",
        "file", "build 1 sha256", "build 2 sha256"
    );
    for name in ARTEFACTS.iter().copied().chain([IMAGE_MANIFEST]) {
        let ha = tessella_image::sha256_file(&a.join(name))
            .with_context(|| format!("hashing {}", a.join(name).display()))?
            .0;
        let hb = tessella_image::sha256_file(&b.join(name))
            .with_context(|| format!("hashing {}", b.join(name).display()))?
            .0;
        let same = ha == hb;
        println!("{name:<14} {ha} {hb} {}", if same { "yes" } else { "NO" });
        if !same {
            differing.push(name.to_string());
        }
    }
    // Sanity: both manifests parse.
    ImageManifest::read(a)?;
    ImageManifest::read(b)?;
    Ok(differing)
}
