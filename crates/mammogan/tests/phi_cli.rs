//! `prepare` on a CBIS-DDSM-like tree (case folders named by patient key, study and series UID folders):
//! none of those names reaches any file of the DATASET; the pseudonym key is created on first use with
//! mode 0600 where `$MAMMOGAN_KEY_FILE` (or the user's config folder) says, never in the dataset; the same
//! key gives identical bytes, another key other names; `--keep-paths` keeps the paths and says so.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{exe, run_ok};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `prepare --format cbis-ddsm` of `input` into `out` with `$MAMMOGAN_KEY_FILE` = `key` and `extra` args.
fn prepare(input: &Path, out: &Path, key: &Path, extra: &[&str]) -> Output {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    exe()
        .env("MAMMOGAN_KEY_FILE", key)
        .args(["prepare", "--format", "cbis-ddsm", "--input", &s(input), "--out", &s(out), "--patch-size", "32"])
        .args(extra)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn index_names(ds: &Path) -> BTreeSet<String> {
    let (_, rows) = mammo_prep::PatchStore::read_index(ds).unwrap();
    rows.into_iter().flat_map(|r| [r.patient_id, r.source]).collect()
}

#[test]
fn cbis_ddsm_paths_and_the_key_never_reach_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ph = t.join("cbis");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    run_ok(&[
        "phantom",
        "--format",
        "cbis",
        "--out",
        &s(&ph),
        "--cases",
        "12",
        "--seed",
        "5",
        "--width-mm",
        "80",
        "--spacing-mm",
        "0.4",
    ]);

    // What the tree's folder names carry: the case folders (`Mass-Training_P_00001_LEFT_CC`), study and
    // series UIDs. The fixed `CBIS-DDSM` and the generic file names (`1-1.dcm`) say nothing.
    let mut identifiers = BTreeSet::new();
    for f in files(&ph) {
        for c in f.parent().unwrap().strip_prefix(&ph).unwrap().components() {
            let name = c.as_os_str().to_string_lossy().into_owned();
            if name != "CBIS-DDSM" {
                identifiers.insert(name);
            }
        }
    }
    assert!(identifiers.iter().any(|n| n.contains("P_00001")), "{identifiers:?}");
    assert!(identifiers.iter().filter(|n| n.matches('.').count() >= 4).count() >= 2, "UIDs: {identifiers:?}");
    identifiers.insert("P_000".into());

    // The key does not exist yet: prepare creates it, 0600, where the variable says.
    let key = t.join("secrets/project.key");
    let a = t.join("a");
    let console = ok(prepare(&ph, &a, &key, &[]));
    let key_hex = std::fs::read_to_string(&key).unwrap();
    assert!(key_hex.len() == 65 && key_hex.trim().bytes().all(|b| b.is_ascii_hexdigit()), "{key_hex:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let written = files(&a);
    assert_eq!(written.len(), 4, "{written:?}");
    for f in &written {
        let bytes = std::fs::read(f).unwrap();
        for id in &identifiers {
            assert!(!contains(&bytes, id), "{id} in {}", f.display());
        }
        assert!(!contains(&bytes, key_hex.trim()), "the key in {}", f.display());
    }
    let console = format!("{}{}", String::from_utf8_lossy(&console.stdout), String::from_utf8_lossy(&console.stderr));
    assert!(!console.contains(key_hex.trim()), "the key on the console");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(info["params"]["keep_paths"], false);
    let tables = ["mass_case_description_train_set.csv"];
    assert!(info["inputs"].as_array().unwrap().iter().any(|f| f["path"] == tables[0]), "{}", info["inputs"]);

    // The same key: the same bytes. `--key-file` (over the variable) with another key: other names.
    let b = t.join("b");
    ok(prepare(&ph, &b, &key, &[]));
    for f in ["dataset.json", "index.csv"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    let c = t.join("c");
    let other = t.join("other.key");
    ok(prepare(&ph, &c, &key, &["--key-file", &s(&other)]));
    assert!(other.is_file());
    let info_c: serde_json::Value = serde_json::from_slice(&std::fs::read(c.join("dataset.json")).unwrap()).unwrap();
    assert_ne!(info["content_hash"], info_c["content_hash"]);
    assert!(index_names(&a).is_disjoint(&index_names(&c)), "another key must give other pseudonyms");
    assert_eq!(std::fs::read(a.join("patches.u16")).unwrap(), std::fs::read(c.join("patches.u16")).unwrap());

    // --keep-paths: the paths as they are, recorded.
    let d = t.join("d");
    ok(prepare(&ph, &d, &key, &["--keep-paths"]));
    let index = std::fs::read_to_string(d.join("index.csv")).unwrap();
    assert!(index.contains("CBIS-DDSM/Mass-Training_P_000"), "{index}");
    let info_d: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(info_d["params"]["keep_paths"], true);

    // A key file inside the input would be hashed into the dataset and travel with a copy: refused.
    let e = prepare(&ph, &t.join("e"), &ph.join("pseudonym.key"), &[]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("outside the input") && err.trim().lines().count() == 1, "{err}");
    assert!(!t.join("e").exists() && !ph.join("pseudonym.key").exists());
}

#[test]
fn without_a_variable_the_key_is_made_in_the_config_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let ph = t.join("ph");
    run_ok(&["phantom", "--out", &s(&ph), "--cases", "8", "--seed", "2", "--width-mm", "60", "--spacing-mm", "0.4"]);
    let home = t.join("home");
    let out = exe()
        .env_remove("MAMMOGAN_KEY_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", &home)
        .args(["prepare", "--format", "phantom", "--input", &s(&ph), "--out", &s(&t.join("ds")), "--patch-size", "16"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = home.join(".config/mammogan/pseudonym.key");
    assert!(key.is_file(), "no key in {}", key.display());
    assert_eq!(files(&home), vec![key], "nothing else in the home folder");
}
