//! Which model: the one type every part of mammogan uses to name the classifier or the attribution
//! GAN, parsed once where a name comes in (a command line, a hyperparameter), so no other string can
//! quietly mean one of them.

use serde::{Deserialize, Serialize};

/// One of the two models a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The benign/malignant patch classifier (also the scorer of whole images).
    Classifier,
    /// The attribution GAN's map generator (with its critic), which needs a trained classifier.
    Attribution,
}

impl ModelKind {
    /// Both, in the order a run trains them (the GAN's critic starts from the classifier).
    pub const ALL: [ModelKind; 2] = [ModelKind::Classifier, ModelKind::Attribution];

    /// The model's name: its random streams, parameter ids, checkpoint directory, manifest entries.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Classifier => "classifier",
            ModelKind::Attribution => "attribution",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a model: the message lists the valid ones.
#[derive(Debug, thiserror::Error)]
#[error("unknown model {0:?}: classifier or attribution")]
pub struct UnknownModel(pub String);

impl std::str::FromStr for ModelKind {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownModel(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for m in ModelKind::ALL {
            assert_eq!(m.name().parse::<ModelKind>().unwrap(), m);
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        let e = "gan".parse::<ModelKind>().unwrap_err().to_string();
        assert_eq!(e, "unknown model \"gan\": classifier or attribution");
        assert!("Classifier".parse::<ModelKind>().is_err());
    }
}
