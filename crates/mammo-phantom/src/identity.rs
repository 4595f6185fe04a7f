//! Fake identifying values and deterministic DICOM UIDs.
//!
//! Every DICOM file the phantom writes carries a patient name, ID, birth date, institution, accession
//! number and study date, as real ones do. The values are fake and recognisable, and exposed here, so a
//! test anywhere in the project can search outputs for them and prove that none leaks past the readers.

use serde::Serialize;

/// The fake institution every phantom DICOM names.
pub const FAKE_INSTITUTION: &str = "PHANTOM GENERAL HOSPITAL";
/// PatientName is this prefix followed by the five-digit patient number.
pub const FAKE_NAME_PREFIX: &str = "PHANTOM^JANE^";
/// PatientID is this prefix followed by the five-digit patient number.
pub const FAKE_ID_PREFIX: &str = "PHANTOM-ID-";
/// AccessionNumber is this prefix followed by the five-digit patient number.
pub const FAKE_ACCESSION_PREFIX: &str = "PHACC";
/// The fake referring physician.
pub const FAKE_REFERRING_PHYSICIAN: &str = "PHANTOM^REFERRER";

/// The identifying attributes of synthetic woman number `patient` (0-based; she owns images
/// `4 * patient .. 4 * patient + 4`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FakeIdentity {
    /// PatientName (0010,0010), e.g. `PHANTOM^JANE^00012`.
    pub patient_name: String,
    /// PatientID (0010,0020), e.g. `PHANTOM-ID-00012`.
    pub patient_id: String,
    /// PatientBirthDate (0010,0030), `YYYYMMDD`.
    pub birth_date: String,
    /// InstitutionName (0008,0080): always [`FAKE_INSTITUTION`].
    pub institution: String,
    /// AccessionNumber (0008,0050), e.g. `PHACC00012`.
    pub accession_number: String,
    /// StudyDate (0008,0020), `YYYYMMDD`.
    pub study_date: String,
    /// ReferringPhysicianName (0008,0090): always [`FAKE_REFERRING_PHYSICIAN`].
    pub referring_physician: String,
}

impl FakeIdentity {
    /// Every value, for leak tests: none of these may appear in anything derived from the phantom.
    pub fn values(&self) -> Vec<String> {
        vec![
            self.patient_name.clone(),
            self.patient_id.clone(),
            self.birth_date.clone(),
            self.institution.clone(),
            self.accession_number.clone(),
            self.study_date.clone(),
            self.referring_physician.clone(),
        ]
    }
}

/// The fake identity of synthetic woman `patient`. Independent of the seed, so a leak test need not know
/// how the phantom was generated.
pub fn fake_identity(patient: usize) -> FakeIdentity {
    // Dates vary with the patient (so a leak of "the" birth date is not one constant) but stay valid.
    let birth_year = 1940 + patient % 40;
    let (month, day) = (1 + patient % 12, 1 + (patient / 12) % 28);
    let study_year = 2018 + patient % 6;
    let (smonth, sday) = (1 + (patient * 7) % 12, 1 + (patient * 11) % 28);
    FakeIdentity {
        patient_name: format!("{FAKE_NAME_PREFIX}{patient:05}"),
        patient_id: format!("{FAKE_ID_PREFIX}{patient:05}"),
        birth_date: format!("{birth_year:04}{month:02}{day:02}"),
        institution: FAKE_INSTITUTION.to_string(),
        accession_number: format!("{FAKE_ACCESSION_PREFIX}{patient:05}"),
        study_date: format!("{study_year:04}{smonth:02}{sday:02}"),
        referring_physician: FAKE_REFERRING_PHYSICIAN.to_string(),
    }
}

/// The phantom's UID root (under the project's root `1.2.826.0.1.3680043.10.1234`).
pub const UID_ROOT: &str = "1.2.826.0.1.3680043.10.1234.2";

/// What a UID identifies; the number is a UID component.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UidKind {
    Study = 1,
    Series = 2,
    Instance = 3,
}

/// A deterministic UID: `<root>.<seed>.<kind>.<key>.<n>`. At most 29 + 21 + 2 + 8 + 2 = 62 characters
/// for keys below 10^7 (DICOM allows 64); components are plain decimals, so never have leading zeros.
pub(crate) fn uid(seed: u64, kind: UidKind, key: usize, n: u32) -> String {
    format!("{UID_ROOT}.{seed}.{}.{key}.{n}", kind as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_recognisable_and_uids_are_valid() {
        let id = fake_identity(12);
        assert_eq!(id.patient_name, "PHANTOM^JANE^00012");
        assert_eq!(id.patient_id, "PHANTOM-ID-00012");
        assert_eq!(id.values().len(), 7);
        assert_ne!(fake_identity(1).birth_date, fake_identity(2).birth_date);
        for p in [0, 1, 11, 12, 99_999] {
            let d = fake_identity(p).birth_date;
            let (m, day): (u32, u32) = (d[4..6].parse().unwrap(), d[6..8].parse().unwrap());
            assert!((1..=12).contains(&m) && (1..=28).contains(&day), "{d}");
        }
        let u = uid(u64::MAX, UidKind::Instance, 9_999_999, 3);
        assert!(u.len() <= 64, "{u}");
        assert!(u.split('.').all(|c| !c.is_empty() && (c == "0" || !c.starts_with('0'))));
    }
}
