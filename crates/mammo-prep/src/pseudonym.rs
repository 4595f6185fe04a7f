//! Keyed pseudonyms: how a DATASET names patients and input files without carrying an identifier.
//!
//! A patient key (`P_00001`, a study UID, an MRN in a CSV) and every path component that is not a fixed
//! name of the layout (`CBIS-DDSM`, `AllDICOMs`, `images`, `phantom.json`...) is replaced by a BLAKE3
//! keyed hash under a 32-byte secret key ([`PseudonymKey`], kept outside the dataset: see
//! [`crate::key_file`]). Without the key nobody can recompute a pseudonym from a guessed identity and
//! check it; with it, the owner of the input maps every row back to a file ([`Namer::path`] on each
//! input file). The same key gives the same names, so preparing twice is byte-identical; another key
//! gives other names for the same patients, so unrelated datasets cannot be linked.

use std::fmt;
use std::path::{Component, Path};
use std::sync::OnceLock;

use mammo_io::layouts::Format;
use rand::TryRngCore;

/// The length of a key in bytes.
pub const KEY_LEN: usize = 32;

/// The secret behind every pseudonym. It never reaches an output: `Debug` shows its [`id`](Self::id).
#[derive(Clone, PartialEq, Eq)]
pub struct PseudonymKey([u8; KEY_LEN]);

impl PseudonymKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PseudonymKey(bytes)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(std::io::Error::other)?;
        Ok(PseudonymKey(bytes))
    }

    /// One random key per process, for library callers that give none: their pseudonyms are stable
    /// within the process (preparing twice agrees) but can be recomputed by nobody afterwards. Never
    /// a fixed key, which would be a public salt again.
    pub fn ephemeral() -> Self {
        static KEY: OnceLock<PseudonymKey> = OnceLock::new();
        KEY.get_or_init(|| PseudonymKey::generate().expect("the operating system's random source works")).clone()
    }

    /// The key as it is stored in a key file: 64 lower-case hexadecimal digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`to_hex`](Self::to_hex)'s form (surrounding white space allowed).
    pub fn from_hex(text: &str) -> Option<Self> {
        let t = text.trim();
        if t.len() != 2 * KEY_LEN || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(PseudonymKey(bytes))
    }

    /// A short name for the key that does not reveal it (a keyed hash of a constant), for messages.
    pub fn id(&self) -> String {
        self.hex(&[b"mammogan-key-id"])[..8].to_string()
    }

    /// 16 hex digits (64 bits) of the keyed hash of `parts`, each ended by a NUL so that no two
    /// different part lists hash the same input.
    fn hex(&self, parts: &[&[u8]]) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        for p in parts {
            h.update(p);
            h.update(b"\0");
        }
        h.finalize().to_hex()[..16].to_string()
    }
}

impl Default for PseudonymKey {
    fn default() -> Self {
        PseudonymKey::ephemeral()
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PseudonymKey(id {})", self.id())
    }
}

/// File extensions a pseudonymised file name keeps: they say what a file is, never whose. Anything
/// else (`Smith.John`, a folder `1.000000-full mammogram images-24515`) would carry text from the name.
const KEPT_EXTENSIONS: [&str; 9] = ["dcm", "dicom", "png", "pgm", "csv", "txt", "xml", "json", "md"];

/// The names a layout gives to its own folders and tables: the same in every copy of that dataset,
/// about no one, and kept so a pseudonymised path still shows the layout. Everything else (case
/// folders, study and series UIDs, image file names, a CSV table of another name) is pseudonymised;
/// file names that are public reference numbers (mini-MIAS's `mdb001.pgm`) too, since the patient
/// key is derived from them.
pub fn fixed_names(format: Format) -> &'static [&'static str] {
    match format {
        Format::CbisDdsm => &[
            "CBIS-DDSM",
            "mass_case_description_train_set.csv",
            "mass_case_description_test_set.csv",
            "calc_case_description_train_set.csv",
            "calc_case_description_test_set.csv",
        ],
        Format::MiniMias => &["Info.txt"],
        Format::Inbreast => &["AllDICOMs", "AllXML", "INbreast.csv"],
        Format::Vindr => &["images", "breast-level_annotations.csv", "finding_annotations.csv"],
        Format::Csv => &["dataset.csv"],
        Format::Phantom => &["phantom.json", "images", "masks"],
    }
}

/// Names patients and input files in a DATASET, for one layout and key.
#[derive(Clone, Debug)]
pub struct Namer {
    key: PseudonymKey,
    format: Format,
    keep_paths: bool,
}

impl Namer {
    /// `keep_paths`: input paths are written as they are (relative to the input); patients are still
    /// pseudonymised.
    pub fn new(key: PseudonymKey, format: Format, keep_paths: bool) -> Self {
        Namer { key, format, keep_paths }
    }

    /// The layout named.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether paths are kept as they are.
    pub fn keeps_paths(&self) -> bool {
        self.keep_paths
    }

    /// The key's id, for messages.
    pub fn key_id(&self) -> String {
        self.key.id()
    }

    /// The patient pseudonym `pt-` + 16 hex digits.
    pub fn patient(&self, patient: &str) -> String {
        format!("pt-{}", self.key.hex(&[b"mammogan-patient", self.format.name().as_bytes(), patient.as_bytes()]))
    }

    /// How `index.csv`'s `source` and `dataset.json`'s inputs name the input file `p`: its path
    /// relative to the input directory `root` with `/` separators, each component that is not one of
    /// the layout's [`fixed_names`] replaced by its keyed hash (a kept extension after it). A file outside
    /// `root` (a CSV may name absolute paths) keeps a leading `/` and has every component replaced.
    pub fn path(&self, root: &Path, p: &Path) -> String {
        if self.keep_paths {
            return relative(root, p);
        }
        let rel = p.strip_prefix(root).unwrap_or(p);
        let mut parts = Vec::new();
        let mut absolute = false;
        let n = rel.components().count();
        for (i, c) in rel.components().enumerate() {
            match c {
                Component::Prefix(_) | Component::RootDir => absolute = true,
                Component::CurDir => {}
                Component::ParentDir => parts.push("..".to_string()),
                Component::Normal(name) => parts.push(self.component(&name.to_string_lossy(), i + 1 == n)),
            }
        }
        let joined = parts.join("/");
        if absolute { format!("/{joined}") } else { joined }
    }

    /// One path component: kept when the layout fixes it, else its keyed hash (plus a kept extension
    /// when it is the file name).
    fn component(&self, name: &str, is_file_name: bool) -> String {
        if fixed_names(self.format).contains(&name) {
            return name.to_string();
        }
        let hash = self.key.hex(&[b"mammogan-path", self.format.name().as_bytes(), name.as_bytes()]);
        let ext = Path::new(name)
            .extension()
            .map(|e| e.to_string_lossy())
            .filter(|e| is_file_name && KEPT_EXTENSIONS.iter().any(|k| e.eq_ignore_ascii_case(k)));
        match ext {
            Some(ext) => format!("{hash}.{ext}"),
            None => hash,
        }
    }
}

/// `p` relative to `base`, with `/` separators: how paths are written with `--keep-paths`.
pub fn relative(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PseudonymKey {
        PseudonymKey::from_bytes([b; KEY_LEN])
    }

    #[test]
    fn cbis_paths_keep_only_the_layout_names_and_the_extension() {
        let n = Namer::new(key(1), Format::CbisDdsm, false);
        let root = Path::new("/data/in");
        let p = root.join(
            "CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/1.3.6.1.4.1.9590.100.1.2.422/1.000000-full mammogram images-24515/1-1.dcm",
        );
        let s = n.path(root, &p);
        let parts: Vec<&str> = s.split('/').collect();
        assert_eq!(parts.len(), 5, "{s}");
        assert_eq!(parts[0], "CBIS-DDSM");
        for part in &parts[1..4] {
            assert!(part.len() == 16 && part.bytes().all(|b| b.is_ascii_hexdigit()), "{s}");
        }
        assert!(parts[4].ends_with(".dcm") && parts[4].len() == 20, "{s}");
        for leak in ["P_00001", "1.3.6.1", "mammogram", "1-1", "/data"] {
            assert!(!s.contains(leak), "{leak} in {s}");
        }
        // A table keeps its fixed name; the same component hashes alike wherever it appears.
        assert_eq!(
            n.path(root, &root.join("mass_case_description_train_set.csv")),
            "mass_case_description_train_set.csv"
        );
        let other = n.path(root, &root.join("CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/x.dcm"));
        assert_eq!(other.split('/').nth(1), Some(parts[1]));
    }

    #[test]
    fn extensions_are_kept_only_on_file_names_and_only_known_ones() {
        let n = Namer::new(key(1), Format::Csv, false);
        let root = Path::new("in");
        let s = n.path(root, &root.join("Smith.John/MRN12345678.PNG"));
        assert!(!s.contains("Smith") && !s.contains("John") && !s.contains("MRN"), "{s}");
        assert!(s.ends_with(".PNG") && s.split('/').next().unwrap().len() == 16, "{s}");
        let s = n.path(root, &root.join("Doe.Jane"));
        assert!(!s.contains("Jane") && s.len() == 16, "{s}");
        assert_eq!(n.path(root, &root.join("dataset.csv")), "dataset.csv");
    }

    #[test]
    fn outside_the_root_is_marked_absolute_and_fully_hashed() {
        let n = Namer::new(key(1), Format::Csv, false);
        let s = n.path(Path::new("/in"), Path::new("/home/alice/scans/a.png"));
        assert!(s.starts_with('/') && !s.contains("alice") && !s.contains("home") && s.ends_with(".png"), "{s}");
        let s = n.path(Path::new("/in"), Path::new("/in/../up/a.png"));
        assert!(s.starts_with("../") && !s.contains("up/"), "{s}");
    }

    #[test]
    fn another_key_gives_other_names_and_keep_paths_keeps_them() {
        let root = Path::new("in");
        let p = root.join("P_00001/MRN12345678.dcm");
        let (a, b) = (Namer::new(key(1), Format::Csv, false), Namer::new(key(2), Format::Csv, false));
        assert_eq!(a.path(root, &p), Namer::new(key(1), Format::Csv, false).path(root, &p));
        assert_ne!(a.path(root, &p), b.path(root, &p));
        assert_ne!(a.patient("P_00001"), b.patient("P_00001"));
        assert!(a.patient("P_00001").starts_with("pt-") && a.patient("P_00001").len() == 19);
        // The layout is part of the name: one key, two layouts, unlinkable.
        assert_ne!(a.patient("P_00001"), Namer::new(key(1), Format::CbisDdsm, false).patient("P_00001"));
        let kept = Namer::new(key(1), Format::Csv, true);
        assert_eq!(kept.path(root, &p), "P_00001/MRN12345678.dcm");
        assert_eq!(kept.patient("P_00001"), a.patient("P_00001"), "keep_paths is about paths only");
    }

    #[test]
    fn the_key_round_trips_through_hex_and_debug_hides_it() {
        let k = PseudonymKey::generate().unwrap();
        assert_eq!(PseudonymKey::from_hex(&format!("{}\n", k.to_hex())), Some(k.clone()));
        assert_ne!(k, PseudonymKey::generate().unwrap());
        assert!(!format!("{k:?}").contains(&k.to_hex()));
        assert!(format!("{k:?}").contains(&k.id()));
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(PseudonymKey::from_hex(bad), None, "{bad:?}");
        }
        assert_eq!(PseudonymKey::ephemeral(), PseudonymKey::ephemeral());
    }
}
