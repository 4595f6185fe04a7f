//! Serving mammogan's models: whole-mammogram inference ([`explain`]), the HTTP server ([`server`]) and
//! the SageMaker container contract ([`sagemaker`]). Above `mammo-nn` and `mammo-run`, below the binary.

pub mod custom_attributes;
pub mod evaluate_images;
pub mod explain;
pub mod sagemaker;
pub mod server;

pub use evaluate_images::{ImageEvaluation, ImageSet, evaluate_images};
pub use explain::{ExplainError, ExplainResult, Explanation, RegionOut, explain_image, explain_image_with};
pub use server::{Limits, ServeOptions, check_bind, check_token, serve};
