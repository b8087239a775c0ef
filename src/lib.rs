//! shipit: blue/green deploys of containers to your own Linux servers, behind nginx.
//!
//! A tour, from the outside in:
//! - [`cli`] maps arguments to operations and stays thin;
//! - [`config`] loads and validates `shipit.toml` + `environments/<env>.toml` (pure after reading);
//! - [`templates`] renders the nginx, systemd and logrotate files (pure);
//! - [`provision`] plans per host from what the host has ([`provision::plan`], pure) and
//!   executes the plan over SSH;
//! - [`remote`] builds every remote command as data (constant scripts, quoted arguments);
//! - [`ssh`] is the only place that talks to hosts;
//! - [`error`] holds every message a user can see; [`ui`] prints status lines.

pub mod build;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod doctor;
pub mod error;
pub mod hooks;
pub mod init;
pub mod layout;
pub mod lock;
pub mod model;
pub mod notify;
pub mod operate;
pub mod probe;
pub mod provision;
pub mod remote;
pub mod secret;
pub mod show;
pub mod signals;
pub mod ssh;
pub mod state;
pub mod suggest;
pub mod templates;
pub mod tls;
pub mod ui;

pub use error::{Error, Result};
