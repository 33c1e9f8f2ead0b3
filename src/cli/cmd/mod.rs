//! One module per command or group of commands: each takes the parsed
//! arguments, calls the library, and hands what it got to `render`.

pub mod backup;
pub mod baseline;
pub mod check;
pub mod forget;
pub mod init;
pub mod key;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod snapshots;
pub mod stack;
pub mod sync;
pub mod unlock;
