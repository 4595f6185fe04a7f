//! The patient-grouped, label-stratified split. A patient's images all go to one split — otherwise the
//! left and right breast (or the CC and MLO views) of one woman would let test scores leak from training.

use std::collections::BTreeMap;

use mammo_io::layouts::Label;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Split::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Fractions of patients in train, val and test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions { train: 0.7, val: 0.15, test: 0.15 }
    }
}

/// Assigns each patient (by key, with the worst label among their images) to a split. Within each
/// label stratum patients are shuffled with `seed` and cut by the fractions (largest remainder), with
/// val and test each given at least one patient of the stratum when it has three or more.
pub fn assign(patients: &BTreeMap<String, Label>, fractions: SplitFractions, seed: u64) -> BTreeMap<String, Split> {
    let mut strata: BTreeMap<Label, Vec<&String>> = BTreeMap::new();
    for (key, label) in patients {
        strata.entry(*label).or_default().push(key);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    for (_, mut keys) in strata {
        keys.shuffle(&mut rng);
        let n = keys.len();
        let total = fractions.train + fractions.val + fractions.test;
        let mut val = (n as f64 * fractions.val / total).round() as usize;
        let mut test = (n as f64 * fractions.test / total).round() as usize;
        if n >= 3 {
            val = val.max((fractions.val > 0.0) as usize);
            test = test.max((fractions.test > 0.0) as usize);
        }
        while val + test > n {
            if test >= val { test -= 1 } else { val -= 1 }
        }
        for (i, key) in keys.into_iter().enumerate() {
            let split = if i < test {
                Split::Test
            } else if i < test + val {
                Split::Val
            } else {
                Split::Train
            };
            out.insert(key.clone(), split);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patient_gets_one_split_and_strata_are_spread() {
        let patients: BTreeMap<String, Label> =
            (0..40).map(|i| (format!("p{i}"), [Label::Normal, Label::Benign, Label::Malignant][i % 3])).collect();
        let a = assign(&patients, SplitFractions::default(), 7);
        assert_eq!(a.len(), 40);
        for label in [Label::Normal, Label::Benign, Label::Malignant] {
            for split in Split::ALL {
                assert!(patients.iter().any(|(k, l)| *l == label && a[k] == split), "{label:?} missing from {split:?}");
            }
        }
        assert_eq!(a, assign(&patients, SplitFractions::default(), 7), "deterministic");
    }
}
