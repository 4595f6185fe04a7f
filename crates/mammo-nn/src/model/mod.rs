//! The three networks: the classifier, the attribution GAN's map generator (U-Net) and its critic,
//! and the layers they share.

pub mod classifier;
pub mod critic;
pub mod layers;
pub mod unet;

pub use classifier::Classifier;
pub use critic::{CRITIC, Critic};
pub use unet::{GENERATOR, MapGenerator};
