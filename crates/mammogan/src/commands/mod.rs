//! One module per subcommand: its arguments and the few lines that call the library.

pub mod convert;
pub mod inspect;
pub mod phantom;
pub mod prepare;
pub mod quickstart;
