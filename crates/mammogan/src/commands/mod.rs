//! One module per subcommand: its arguments and the few lines that call the library.

pub mod convert;
pub mod dataset;
pub mod diff;
pub mod env;
pub mod evaluate;
pub mod explain;
pub mod inspect;
pub mod lab;
pub mod phantom;
pub mod prepare;
pub mod quickstart;
pub mod reproduce;
pub mod scores;
pub mod serve;
pub mod status;
pub mod sweep;
pub mod track;
pub mod train;
