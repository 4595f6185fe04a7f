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

    /// What `--model` and the `model` hyperparameter accept: a model's name, or `all` for both.
    pub const CHOICES: [&'static str; 3] = ["classifier", "attribution", "all"];

    /// The model's name: its random streams, parameter ids, checkpoint directory, manifest entries.
    pub const fn as_str(self) -> &'static str {
        match self {
            ModelKind::Classifier => "classifier",
            ModelKind::Attribution => "attribution",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a model: the message lists the valid ones.
#[derive(Debug, thiserror::Error)]
#[error("unknown model {0:?}: classifier or attribution")]
pub struct UnknownModel(pub String);

impl std::str::FromStr for ModelKind {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownModel(s.to_string()))
    }
}

impl ModelKind {
    /// The models a choice names, in training order: one model, or both for `all` (the default of
    /// `train --model` and of the SageMaker `model` hyperparameter).
    pub fn choice(name: &str) -> Result<&'static [ModelKind], UnknownChoice> {
        match name {
            "all" => Ok(&ModelKind::ALL),
            "classifier" => Ok(&ModelKind::ALL[0..1]),
            "attribution" => Ok(&ModelKind::ALL[1..2]),
            _ => Err(UnknownChoice(name.to_string())),
        }
    }
}

/// A choice of models that is neither a model nor `all`: the message lists the valid ones.
#[derive(Debug, thiserror::Error)]
#[error("unknown model {0:?}: classifier, attribution or all")]
pub struct UnknownChoice(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for m in ModelKind::ALL {
            assert_eq!(m.as_str().parse::<ModelKind>().unwrap(), m);
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
            assert_eq!(ModelKind::choice(m.as_str()).unwrap(), [m]);
        }
        let e = "gan".parse::<ModelKind>().unwrap_err().to_string();
        assert_eq!(e, "unknown model \"gan\": classifier or attribution");
        assert!("Classifier".parse::<ModelKind>().is_err());
        assert_eq!(ModelKind::choice("all").unwrap(), ModelKind::ALL);
        for name in ModelKind::CHOICES {
            assert!(ModelKind::choice(name).is_ok(), "{name}");
        }
        let e = ModelKind::choice("gan").unwrap_err().to_string();
        assert_eq!(e, "unknown model \"gan\": classifier, attribution or all");
    }
}
