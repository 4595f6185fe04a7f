//! Hostile and careless input through the binary (issue 11): physical sizes that would explode an
//! allocation, output paths that are special files, a closed stdout, special files and symlink loops
//! under `prepare --input`. Every hostile file is made here; each test asserts the exit code and the
//! one line the user gets.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{exe, run_ok, small_dataset};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the binary and asserts a clean failure: exit code 1, no panic, and one line on stderr that
/// contains each of `says`. Returns that line.
fn fails_with(args: &[&str], says: &[&str]) -> String {
    let out: Output = exe().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "mammogan {args:?}: want exit 1, got {:?}:\n{err}", out.status);
    assert!(!err.contains("panicked"), "mammogan {args:?} panicked:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "mammogan {args:?}: want one error line:\n{err}");
    for want in says {
        assert!(lines[0].contains(want), "mammogan {args:?}: want {want:?} in\n{err}");
    }
    lines[0].to_string()
}

/// A run with a classifier trained for a few steps on the shared small phantom (0.4 mm), made once.
fn tiny_run() -> &'static PathBuf {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let (tmp, _, ds) = small_dataset();
        let run = tmp.path().join("hostile-run");
        let mut args = vec!["train", "--data", s(ds), "--out", s(&run), "--threads", "2"];
        for kv in ["train.steps=4", "train.batch_size=8", "train.checkpoint_every=4", "attribution.gen_channels=4"] {
            args.extend(["--set", kv]);
        }
        args.extend(["--set", "attribution.critic_channels=4"]);
        run_ok(&args);
        run
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn png16(path: &Path, w: usize, h: usize) {
    let img = mammo_io::GrayImage::from_vec(w, h, vec![1000u16; w * h]);
    mammo_io::png_io::write_png16(path, &img).unwrap();
}

/// Row 3: a header spacing in the wrong unit, an absurd `--spacing`, and a spacing that would make the
/// resampled image too large are each one line naming the file, exit 1, never an abort (134).
#[test]
fn explain_refuses_spacings_that_would_explode_the_resampled_image() {
    let run = tiny_run();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("out");

    // A 64 x 64 DICOM whose ImagerPixelSpacing says 50 mm.
    let dcm = t.join("fifty.dcm");
    let spec = mammo_io::dicom::DicomWriteSpec {
        sop_instance_uid: "1.2.3.4".into(),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.5".into(),
        strings: vec![],
        bits_stored: 12,
        monochrome1: false,
        spacing_mm: Some(50.0),
        window: None,
    };
    let pixels = vec![1000u16; 64 * 64];
    mammo_io::dicom::write_dicom(&dcm, 64, 64, &pixels, &spec, mammo_io::dicom::WriteSyntax::ExplicitVrLittleEndian)
        .unwrap();
    fails_with(
        &["explain", s(run), s(&dcm), "--out", s(&out)],
        &["fifty.dcm", "source pixel spacing 50 mm is outside"],
    );

    // A PNG (no spacing of its own) with --spacing 1000 and 1e300.
    let png = t.join("small.png");
    png16(&png, 64, 64);
    for bad in ["1000", "1e300"] {
        fails_with(
            &["explain", s(run), s(&png), "--out", s(&out), "--spacing", bad],
            &["small.png", "requested pixel spacing", "is outside 0.01..=1 mm"],
        );
    }
    // Sane spacings, but 3000 x 3000 px at 1 mm resampled to the model's 0.4 mm is 7500 x 7500 px.
    let big = t.join("big.png");
    png16(&big, 3000, 3000);
    fails_with(
        &["explain", s(run), s(&big), "--out", s(&out), "--spacing", "1"],
        &["big.png", "would be 7500 x 7500 px (more than 33554432)"],
    );
    assert!(!out.join("result.json").exists(), "nothing written for a refused image");
}

/// Row 12: every physical or count parameter of `prepare` far out of range is a validation error
/// before any work, and so is a phantom.json whose spacing is 500 mm; `phantom` refuses the same.
#[test]
fn prepare_and_phantom_refuse_parameters_that_would_explode() {
    let (_, ph, _) = small_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("ds");
    let prepare = |extra: &[&str], input: &Path| {
        let mut args = vec!["prepare", "--format", "phantom", "--input", s(input), "--out", s(&out)];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (extra, says) in [
        (&["--patch-size", "100000"][..], "--patch-size 100000: must be in 8..=512"),
        (&["--spacing", "0.0001"][..], "--spacing: pixel spacing 0.0001 mm is outside 0.01..=1 mm"),
        (&["--per-lesion", "100000"][..], "--per-lesion 100000: must be in 0..=64"),
        (&["--normal-per-image", "100000"][..], "--normal-per-image 100000: must be in 0..=64"),
        (&["--default-spacing", "500"][..], "--default-spacing: pixel spacing 500 mm"),
    ] {
        let args = prepare(extra, ph);
        fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[says]);
        assert!(!out.exists());
    }

    // A phantom whose manifest says 500 mm per pixel.
    let edited = t.join("edited");
    copy_dir(ph, &edited);
    let manifest = edited.join("phantom.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"spacing_mm\": 0.4"), "the phantom's manifest records its spacing");
    std::fs::write(&manifest, text.replace("\"spacing_mm\": 0.4", "\"spacing_mm\": 500")).unwrap();
    let args = prepare(&[], &edited);
    fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), &["phantom.json", "pixel spacing 500 mm"]);
    assert!(!out.exists());

    // The phantom generator: a spacing no reader accepts, a blur-free but absurd lesion size.
    let pout = t.join("ph");
    fails_with(&["phantom", "--out", s(&pout), "--spacing-mm", "0.0001", "--width-mm", "1"], &["spacing_mm"]);
    fails_with(&["phantom", "--out", s(&pout), "--max-size", "1e9"], &["max_diameter_mm must be at most 100"]);
    assert!(!pout.exists() || std::fs::read_dir(&pout).unwrap().next().is_none());
}

/// A pipe whose reading end is already closed: whatever is written to it fails with EPIPE (or raises
/// SIGPIPE), deterministically, unlike a reader that exits "soon".
fn broken_pipe() -> std::process::Stdio {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: `pipe` fills two new descriptors; the read end is closed at once and the write end is
    // owned by the returned `Stdio` alone.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        std::process::Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

/// Row 9: `status RUN | head -1`, `inspect --json F | head -1`: a reader that goes away ends the
/// command quietly (SIGPIPE's default, as `cat`), never a panic "failed printing to stdout" (101).
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let run = tiny_run();
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("x.png");
    png16(&png, 64, 64);
    for args in [vec!["status", s(run)], vec!["inspect", "--json", s(&png)], vec!["inspect", s(&png)], vec!["--help"]] {
        let out = exe().args(&args).stdout(broken_pipe()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "mammogan {args:?} said on stderr:\n{err}");
        let quiet = out.status.signal() == Some(libc::SIGPIPE) || out.status.success();
        assert!(quiet, "mammogan {args:?}: {:?}", out.status);
    }
}

/// Row 8: an output that is a FIFO, a device or a link is written through (or refused), never
/// replaced by a regular file.
#[test]
fn outputs_that_are_fifos_devices_or_links_are_written_through_or_refused() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let png = t.join("x.png");
    png16(&png, 40, 30);
    let want = {
        let reference = t.join("reference.png");
        run_ok(&["convert", s(&png), s(&reference)]);
        std::fs::read(&reference).unwrap()
    };

    // A FIFO: the PNG goes through it to the reader; the FIFO stays a FIFO.
    let fifo = t.join("fifo.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    run_ok(&["convert", s(&png), s(&fifo)]);
    assert_eq!(reader.join().unwrap(), want);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // /dev/null stays a device; /dev/stdout (a link to the pipe) delivers the PNG.
    run_ok(&["convert", s(&png), "/dev/null"]);
    assert!(std::fs::symlink_metadata("/dev/null").unwrap().file_type().is_char_device());
    assert_eq!(run_ok(&["convert", s(&png), "/dev/stdout"]).stdout, want);

    // A link to a file: the link stays, its target gets the PNG.
    let real = t.join("real.png");
    std::fs::write(&real, b"old").unwrap();
    let link = t.join("link.png");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    run_ok(&["convert", s(&png), s(&link)]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&real).unwrap(), want);

    // A dangling link and a directory: refused, one line naming them, left as they were.
    let dangling = t.join("dangling.png");
    std::os::unix::fs::symlink(t.join("missing/x.png"), &dangling).unwrap();
    fails_with(&["convert", s(&png), s(&dangling)], &["dangling.png", "symbolic link to nothing"]);
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    let dir = t.join("dir.png");
    std::fs::create_dir(&dir).unwrap();
    fails_with(&["convert", s(&png), s(&dir)], &["dir.png", "is a directory"]);
    assert!(dir.is_dir());
}

/// Row 10: a FIFO and symbolic-link loops under `prepare --input` are skipped with a warning: the run
/// ends (it used to hang hashing the FIFO) and `dataset.json` names neither.
#[test]
fn prepare_skips_fifos_and_does_not_follow_link_loops() {
    let (_, ph, _) = small_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let input = t.join("input");
    copy_dir(ph, &input);
    assert!(std::process::Command::new("mkfifo").arg(input.join("notes.csv")).status().unwrap().success());
    std::os::unix::fs::symlink(".", input.join("loop")).unwrap();
    std::os::unix::fs::symlink("..", input.join("masks/up")).unwrap();
    let out = t.join("ds");
    let mut child = exe()
        .args(["prepare", "--format", "phantom", "--input", s(&input), "--out", s(&out), "--patch-size", "32"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(180) {
            child.kill().unwrap();
            panic!("prepare still running after 180 s (hashing the FIFO?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out_put = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out_put.stderr);
    assert!(out_put.status.success(), "{err}");
    assert!(err.contains("notes.csv: not a regular file (a FIFO, device or socket); skipped"), "{err}");
    assert!(err.contains("loop: a directory already listed"), "{err}");
    let json = std::fs::read_to_string(out.join("dataset.json")).unwrap();
    assert!(json.contains("phantom.json"), "the layout's manifest is still hashed");
    assert!(!json.contains("notes.csv") && !json.contains("loop/") && !json.contains("up/"), "{json}");
}

/// Runs the binary under `sh` with a file-size limit of about 10 KB, so its first larger write fails:
/// with `kill` the default action of SIGXFSZ kills it mid-write (as a kill -9 would), else the signal
/// is ignored and the write fails with EFBIG, like a full disk.
fn with_file_size_limit(args: &[&str], kill: bool) -> Output {
    let trap = if kill { "" } else { "trap '' XFSZ; " };
    let script = format!("{trap}ulimit -c 0; ulimit -f 20; exec \"$0\" --quiet \"$@\"");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_mammogan"))
        .args(args)
        .output()
        .unwrap()
}

/// The hidden `.NAME.partial-PID` folders beside `out`.
fn partials(out: &Path) -> Vec<String> {
    let name = format!(".{}.partial-", out.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&name))
        .collect()
}

/// Smaller rows: a `phantom` or `prepare` that fails for space leaves nothing that blocks a rerun; one
/// that is killed leaves a `.NAME.partial-PID` folder, which the next run removes.
#[test]
fn failed_or_killed_outputs_do_not_block_a_rerun_and_stale_partials_are_removed() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ph = t.join("ph");
    let phantom = ["phantom", "--out", s(&ph), "--cases", "4", "--width-mm", "40", "--spacing-mm", "0.2"];

    // Out of space: one line, exit 1, no phantom and no partial folder.
    let out = with_file_size_limit(&phantom, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(!ph.exists() && partials(&ph).is_empty(), "{:?}", partials(&ph));

    // Killed mid-write: the partial folder stays, `ph` does not exist; the rerun removes it and works.
    let out = with_file_size_limit(&phantom, true);
    assert_eq!(out.status.signal(), Some(libc::SIGXFSZ), "{:?}", out.status);
    assert!(!ph.exists());
    assert_eq!(partials(&ph).len(), 1);
    run_ok(&phantom);
    assert!(ph.join("phantom.json").is_file());
    assert!(partials(&ph).is_empty(), "{:?}", partials(&ph));

    // The same for prepare: a kill while writing patches leaves a partial folder the rerun removes.
    let ds = t.join("ds");
    let prepare = ["prepare", "--format", "phantom", "--input", s(&ph), "--out", s(&ds), "--patch-size", "32"];
    let out = with_file_size_limit(&prepare, true);
    assert_eq!(out.status.signal(), Some(libc::SIGXFSZ), "{:?}", out.status);
    assert_eq!(partials(&ds).len(), 1);
    run_ok(&prepare);
    assert!(ds.join("dataset.json").is_file());
    assert!(partials(&ds).is_empty(), "{:?}", partials(&ds));
}
