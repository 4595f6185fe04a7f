//! One module per subcommand: its arguments and the few lines that call the library.

pub mod convert;
pub mod evaluate;
pub mod explain;
pub mod inspect;
pub mod phantom;
pub mod prepare;
pub mod quickstart;
pub mod train;
