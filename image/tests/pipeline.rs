//! The step list and the integration point for a measure step.

use tessella_image::{
    Artefact, BuildConfig, BuildContext, BuildError, Cache, ImageManifest, ManifestStep, Pipeline,
    Progress, Silent, Step, VmShape,
};

#[test]
fn the_standard_order_and_insertion_before_a_named_step() {
    let mut p = Pipeline::standard();
    assert_eq!(
        p.names(),
        [
            "fetch",
            "node",
            "initrd",
            "artefacts",
            "measure",
            "hash",
            "manifest"
        ]
    );
    assert!(p.insert_before("manifest", Box::new(FakeMeasure)));
    assert_eq!(
        p.names(),
        [
            "fetch",
            "node",
            "initrd",
            "artefacts",
            "measure",
            "hash",
            "measure",
            "manifest"
        ]
    );
    assert!(!p.insert_before("no-such-step", Box::new(FakeMeasure)));
}

/// Stands in for a measure step, without real artefacts.
struct FakeMeasure;
impl Step for FakeMeasure {
    fn name(&self) -> &'static str {
        "measure"
    }
    fn run(&self, ctx: &mut BuildContext, _: &dyn Progress) -> Result<String, BuildError> {
        ctx.measurements = Some(serde_json::json!({ "mrtd": "ab" }));
        Ok("measured".into())
    }
}

#[test]
fn a_measure_step_before_manifest_lands_in_image_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("tessella-image.lock");
    std::fs::write(&lock, include_str!("../tessella-image.lock")).expect("lock");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let mut ctx = BuildContext::new(BuildConfig {
        source_dir: dir.path().to_path_buf(),
        lock_path: lock,
        cache: Cache::new(dir.path().join("cache")),
        inputs_dir: dir.path().join("inputs"),
        fetch: false,
        out_dir: out.clone(),
        work_dir: dir.path().join("work"),
        default_config: None,
        vm: VmShape {
            ram_mib: 2048,
            vcpus: 4,
        },
    })
    .expect("context");
    // Outside git: no revision, SOURCE_DATE_EPOCH 0.
    assert!(ctx.git.is_none());
    assert_eq!(ctx.source_date_epoch, 0);
    // What the node step would have recorded.
    ctx.init = Some(Artefact {
        name: "init".into(),
        size: 1,
        sha256: "00".repeat(32),
    });
    Pipeline::from_steps(vec![Box::new(FakeMeasure), Box::new(ManifestStep)])
        .run(&mut ctx, &Silent)
        .expect("run");
    let m = ImageManifest::read(&out).expect("image.json");
    assert_eq!(m.measurements, Some(serde_json::json!({ "mrtd": "ab" })));
    assert_eq!(m.steps, ["measure", "manifest"]);
    assert_eq!(m.vm.ram_mib, 2048);
    assert_eq!(m.cmdline, "console=ttyS0 panic=-1");
    assert_eq!(m.source.git_revision, None);
    assert_eq!(m.packages.len(), 2);
}
