//! Black-box tests of the server foundation: the embedded server's listeners and health
//! endpoints, the `tripod` binary's flags, signals and exit codes, and the deployment files.

mod cli;
mod deploy;
mod health;
