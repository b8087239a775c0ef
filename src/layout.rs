//! Where shipit keeps things on a host. One place, so plans, templates and tests agree.

use crate::model::Colour;

/// The nginx site of an app (Debian's nginx.conf includes `conf.d/*.conf`).
pub fn nginx_site(app: &str) -> String {
    format!("/etc/nginx/conf.d/shipit-{app}.conf")
}

/// The upstream include the deploy switches between colours.
pub fn upstream_include(app: &str) -> String {
    format!("/etc/shipit/{app}/upstream.conf")
}

/// The systemd template unit; `<app>@blue` and `<app>@green` are its instances.
pub fn systemd_unit(app: &str) -> String {
    format!("/etc/systemd/system/{app}@.service")
}

pub fn logrotate(app: &str) -> String {
    format!("/etc/logrotate.d/shipit-{app}")
}

/// Configuration directory of an app: upstream include and env files.
pub fn config_dir(app: &str) -> String {
    format!("/etc/shipit/{app}")
}

/// The env file systemd reads for one colour (image reference and port).
pub fn unit_env(app: &str, colour: Colour) -> String {
    format!("/etc/shipit/{app}/{colour}.env")
}

/// The env file passed to the app's container for one colour (its environment and secrets).
pub fn app_env(app: &str, colour: Colour) -> String {
    format!("/etc/shipit/{app}/{colour}.app.env")
}

/// nginx logs of the app (kept out of /var/log/nginx so Debian's own logrotate rule, which
/// matches `/var/log/nginx/*.log`, never rotates them twice).
pub fn log_dir(app: &str) -> String {
    format!("/var/log/shipit/{app}")
}

/// State the hosts keep: live colour, release history, lock.
pub fn state_dir(app: &str) -> String {
    format!("/var/lib/shipit/{app}")
}

/// A name beside `path` for a staged candidate. Hidden and ending in `~`, so neither nginx's
/// `*.conf`, systemd, nor logrotate's include of its directory ever reads it.
pub fn staged(path: &str) -> String {
    sibling(path, "shipit-new~")
}

/// A name beside `path` for the previous version, kept after each install.
pub fn backup(path: &str) -> String {
    sibling(path, "shipit-prev~")
}

fn sibling(path: &str, suffix: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.{suffix}"),
        None => format!(".{path}.{suffix}"),
    }
}

/// The environment lock (a directory: `mkdir` is atomic) and its details file.
pub fn lock_dir(app: &str) -> String {
    format!("/var/lib/shipit/{app}/lock")
}

/// The append-only release history, one JSON object a line.
pub fn history(app: &str) -> String {
    format!("/var/lib/shipit/{app}/history.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_and_backup_names_stay_beside_the_target() {
        assert_eq!(
            staged("/etc/nginx/conf.d/shipit-a.conf"),
            "/etc/nginx/conf.d/.shipit-a.conf.shipit-new~"
        );
        assert_eq!(
            backup("/etc/logrotate.d/shipit-a"),
            "/etc/logrotate.d/.shipit-a.shipit-prev~"
        );
    }
}
