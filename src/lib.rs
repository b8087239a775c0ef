//! shipit: blue/green deploys of containers to your own Linux servers, behind nginx.
//!
//! A tour, from the outside in:
//! - [`cli`] maps arguments to one operation per command and prints its report ([`ui::Render`]);
//! - [`config`] loads and validates `shipit.toml` + `environments/<env>.toml` (pure after reading);
//!   [`suggest`] gives its "did you mean";
//! - [`deploy`] is `deploy` and `rollback`: [`deploy::plan`] decides from what the hosts hold
//!   (pure), its `run` executes the stages with one undo path; `status` and `releases` sit
//!   beside them;
//! - [`provision`] plans per host from what the host has ([`provision::plan`], pure) and
//!   installs the files [`templates`] renders (pure);
//! - [`acme`] is `shipit tls`: certificates from an ACME CA for the whole fleet; what is due
//!   and which account to use is decided in [`acme::plan`] (pure), the protocol is [`acme::ca`];
//! - [`build`] tars the context (streamed) and builds and pushes the image through [`docker`];
//!   without a registry, [`transfer`] sends it to the hosts over SSH, only the layers each
//!   lacks ([`transfer::plan`] decides, purely);
//! - [`state`] parses what a host answers about a site (pure); [`layout`] says where everything
//!   is on a host, keyed by app and environment;
//! - [`fleet`] connects an environment's hosts, fans work out over them within bounds, collects
//!   their answers and reads each host's deploy state: every operation that touches hosts goes
//!   through it, and it knows nothing of deploys or certificates;
//! - [`lock`] is the environment lock; [`signals`] turns SIGINT, SIGTERM and SIGHUP into a
//!   cancellation the run acts on;
//! - [`remote`] builds every command a host runs: its [`remote::scripts`] are `.sh` files with a
//!   typed builder each; [`ssh`] is the only place that talks to hosts, [`probe`] the only one
//!   that makes HTTP checks (through SSH tunnels), [`tls`] their TLS;
//! - [`oneoff`] builds the one-off containers of a release (the release command, the backup
//!   and its restore, [`exec`]); [`backups`] lists, takes and restores backups;
//! - [`accessory`] runs the services the app uses (a database, a cache) on their hosts;
//! - [`retire`] takes hosts taken out of `hosts` off for good;
//! - [`doctor`], [`operate`] (logs, maintenance), [`init`], [`show`] (config, secrets) and
//!   [`hooks`], [`notify`] are the rest of the commands and their side effects;
//! - [`secret`] holds values that never print; [`model`] the shared vocabulary (colours);
//!   [`error`] every message a user can see; [`ui`] status lines, progress and reports.

pub mod accessory;
pub mod acme;
pub mod backups;
pub mod build;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod fleet;
pub mod hooks;
pub mod init;
pub mod layout;
pub mod lock;
pub mod model;
pub mod notify;
pub mod oneoff;
pub mod operate;
pub mod probe;
pub mod provision;
pub mod remote;
pub mod retire;
pub mod secret;
pub mod show;
pub mod signals;
pub mod ssh;
pub mod state;
pub mod suggest;
pub mod templates;
pub mod tls;
pub mod transfer;
pub mod ui;

pub use error::{Error, Result};
