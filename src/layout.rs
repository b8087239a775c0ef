//! Where shipit keeps things on a host. One place, so plans, templates and tests agree.
//!
//! Everything is keyed by the app *and* its environment (a [`Site`]), so that staging and
//! production of one app, and several apps, live side by side on one host. Names join the two
//! with `_`, which neither an app nor an environment name may contain, so no two sites ever
//! share a name: `web_production@blue.service`, container `web_production-blue`,
//! `/etc/shipit/web/production/`. Hosts set up by earlier versions used the app alone
//! ([`Legacy`]); `shipit provision` moves them.

use crate::model::Colour;

/// One environment of one app on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub app: String,
    pub env: String,
}

impl Site {
    pub fn new(app: &str, env: &str) -> Site {
        Site {
            app: app.to_owned(),
            env: env.to_owned(),
        }
    }

    /// `web_production`: the name of units, containers and files.
    pub fn key(&self) -> String {
        format!("{}_{}", self.app, self.env)
    }

    /// The nginx site (Debian's nginx.conf includes `conf.d/*.conf`).
    pub fn nginx_site(&self) -> String {
        format!("/etc/nginx/conf.d/shipit-{}.conf", self.key())
    }

    /// nginx's name for the site's upstream and the prefix of its variables: letters, digits
    /// and `_` only, with the app's length first so that no two sites share it
    /// (`shipit_3_web_production`).
    pub fn nginx_name(&self) -> String {
        format!(
            "shipit_{}_{}_{}",
            self.app.len(),
            self.app.replace('-', "_"),
            self.env.replace('-', "_")
        )
    }

    /// The prefix of the site's nginx variables: short (`shipit_` and 8 hex digits of the
    /// key's digest) so that ten sites' variables still fit nginx's default variables hash
    /// (long names are what make `nginx -t` warn "could not build optimal variables_hash").
    pub fn nginx_var(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.key().as_bytes());
        format!("shipit_{}", hex::encode(&digest[..4]))
    }

    /// Configuration directory: upstream include and env files.
    pub fn config_dir(&self) -> String {
        format!("/etc/shipit/{}/{}", self.app, self.env)
    }

    /// With `[tls] acme`: the certificate, its key and the record of its issuance (mode 0700).
    pub fn tls_dir(&self) -> String {
        format!("{}/tls", self.config_dir())
    }

    /// The certificate chain shipit installs with `[tls] acme` (nginx's `ssl_certificate`).
    pub fn certificate(&self) -> String {
        format!("{}/fullchain.pem", self.tls_dir())
    }

    /// Its private key, mode 0600.
    pub fn certificate_key(&self) -> String {
        format!("{}/privkey.pem", self.tls_dir())
    }

    /// Which CA issued the installed certificate, for which names, when
    /// ([`crate::acme::plan::Issued`]).
    pub fn certificate_record(&self) -> String {
        format!("{}/issued.json", self.tls_dir())
    }

    /// Where the ACME HTTP-01 answers are written, served by nginx on port 80 at
    /// `/.well-known/acme-challenge/`.
    pub fn acme_challenges(&self) -> String {
        format!("{}/acme-challenge", self.config_dir())
    }

    /// Every certificate the CA issued for the site, with the host's clock (mode 0600): at most
    /// one a day per name set unless forced.
    pub fn acme_orders(&self) -> String {
        format!("{}/acme-orders.log", self.state_dir())
    }

    /// The ACME account (its key included), mode 0600, the same on every host.
    pub fn acme_account(&self) -> String {
        format!("{}/acme-account.json", self.state_dir())
    }

    /// The nginx map of the token that proves shipit's own checks to this site's nginx (mode
    /// 0600, made once by provision, read by shipit over SSH).
    pub fn verify_conf(&self) -> String {
        format!("{}/verify.conf", self.config_dir())
    }

    /// The upstream include the deploy switches between colours.
    pub fn upstream_include(&self) -> String {
        format!("{}/upstream.conf", self.config_dir())
    }

    /// The upstream include of `[preview]`: the release waiting for promotion, or nothing.
    pub fn preview_include(&self) -> String {
        format!("{}/preview.conf", self.config_dir())
    }

    /// The systemd template unit; `<key>@blue` and `<key>@green` are its instances.
    pub fn systemd_unit(&self) -> String {
        format!("/etc/systemd/system/{}@.service", self.key())
    }

    /// The unit of one colour, such as `web_production@blue.service`.
    pub fn unit(&self, colour: Colour) -> String {
        format!("{}@{colour}.service", self.key())
    }

    /// The template unit of a process beside the web one: `web_production_worker@.service`.
    /// A second `_` (which no name holds) keeps every site's units apart: only this site's
    /// processes match `web_production_*@.service`.
    pub fn process_unit(&self, process: &str) -> String {
        format!("/etc/systemd/system/{}_{process}@.service", self.key())
    }

    /// One colour's instance of a process: `web_production_worker@blue.service`.
    pub fn process_instance(&self, process: &str, colour: Colour) -> String {
        format!("{}_{process}@{colour}.service", self.key())
    }

    /// Its container: `web_production_worker-blue`.
    pub fn process_container(&self, process: &str, colour: Colour) -> String {
        format!("{}_{process}-{colour}", self.key())
    }

    /// A scheduled job's service (`web_production_job_cleanup.service`) and timer.
    /// The daily certificate check (with TLS): its script (0700, it holds the webhook
    /// addresses), its service and its timer.
    pub fn tls_check_script(&self) -> String {
        format!("{}/tls-check.sh", self.config_dir())
    }

    pub fn tls_check_service(&self) -> String {
        format!("/etc/systemd/system/{}_tls_check.service", self.key())
    }

    pub fn tls_check_timer(&self) -> String {
        format!("/etc/systemd/system/{}_tls_check.timer", self.key())
    }

    /// The options the app's containers on a host need to reach the accessories.
    pub fn links_env(&self) -> String {
        format!("{}/links.env", self.config_dir())
    }

    /// An accessory's environment (mode 0600): its settings and secrets.
    pub fn accessory_env(&self, name: &str) -> String {
        format!("{}/accessory-{name}.env", self.config_dir())
    }

    /// An accessory's unit, `web_production_db.service` (no `@`: one instance, on one host).
    pub fn accessory_unit(&self, name: &str) -> String {
        format!("{}_{name}.service", self.key())
    }

    pub fn accessory_unit_file(&self, name: &str) -> String {
        format!("/etc/systemd/system/{}", self.accessory_unit(name))
    }

    /// An accessory's container: `web_production_db`.
    pub fn accessory_container(&self, name: &str) -> String {
        format!("{}_{name}", self.key())
    }

    pub fn job_service(&self, job: &str) -> String {
        format!("/etc/systemd/system/{}_job_{job}.service", self.key())
    }

    pub fn job_timer(&self, job: &str) -> String {
        format!("/etc/systemd/system/{}_job_{job}.timer", self.key())
    }

    /// The units' names, for `systemctl`.
    pub fn job_service_unit(&self, job: &str) -> String {
        format!("{}_job_{job}.service", self.key())
    }

    pub fn job_timer_unit(&self, job: &str) -> String {
        format!("{}_job_{job}.timer", self.key())
    }

    /// Links to the live colour's env files, moved by every switch: what jobs run.
    pub fn live_env(&self) -> String {
        format!("{}/live.env", self.config_dir())
    }

    pub fn live_app_env(&self) -> String {
        format!("{}/live.app.env", self.config_dir())
    }

    /// Where backups are kept (0700; each file 0600).
    pub fn backups_dir(&self) -> String {
        format!("{}/backups", self.state_dir())
    }

    /// The audit log of one-off commands (`shipit exec`): one JSON object a line.
    pub fn audit_log(&self) -> String {
        format!("{}/audit.jsonl", self.state_dir())
    }

    /// The container of one colour, such as `web_production-blue` (the unit's `--name`).
    pub fn container(&self, colour: Colour) -> String {
        format!("{}-{colour}", self.key())
    }

    pub fn logrotate(&self) -> String {
        format!("/etc/logrotate.d/shipit-{}", self.key())
    }

    /// The env file systemd reads for one colour (image reference and port).
    pub fn unit_env(&self, colour: Colour) -> String {
        format!("{}/{colour}.env", self.config_dir())
    }

    /// The env file passed to the app's container for one colour (its environment and secrets).
    pub fn app_env(&self, colour: Colour) -> String {
        format!("{}/{colour}.app.env", self.config_dir())
    }

    /// nginx logs of the site (kept out of /var/log/nginx so Debian's own logrotate rule,
    /// which matches `/var/log/nginx/*.log`, never rotates them twice).
    pub fn log_dir(&self) -> String {
        format!("/var/log/shipit/{}/{}", self.app, self.env)
    }

    /// `[canary]`'s log: which copy answered each request, its status and time.
    pub fn upstreams_log(&self) -> String {
        format!("{}/upstreams.log", self.log_dir())
    }

    /// State the hosts keep: release history, lock.
    pub fn state_dir(&self) -> String {
        format!("/var/lib/shipit/{}/{}", self.app, self.env)
    }

    /// The environment lock (a directory: `mkdir` is atomic) and its details file.
    pub fn lock_dir(&self) -> String {
        format!("{}/lock", self.state_dir())
    }

    /// The append-only release history, one JSON object a line.
    pub fn history(&self) -> String {
        format!("{}/history.jsonl", self.state_dir())
    }

    /// The hosts the last deploy or rollback counted as the environment (`host SPEC` lines),
    /// and those deployed to before that are no longer configured (`removed SPEC`).
    pub fn fleet_record(&self) -> String {
        format!("{}/fleet", self.state_dir())
    }

    /// The release waiting for promotion on this host (`deploy --no-promote`): one JSON object,
    /// or empty when nothing waits.
    pub fn waiting_record(&self) -> String {
        format!("{}/waiting", self.state_dir())
    }

    /// Hosts a run left out as unreachable: they missed a release (one JSON object a line).
    pub fn behind_record(&self) -> String {
        format!("{}/behind", self.state_dir())
    }

    /// The images this site keeps (one reference a line), written when it prunes: another site
    /// of the app on the host never prunes them.
    pub fn retained_record(&self) -> String {
        format!("{}/retained", self.state_dir())
    }

    /// Where earlier versions of shipit kept this app (keyed by the app alone).
    pub fn legacy(&self) -> Legacy {
        Legacy {
            app: self.app.clone(),
        }
    }
}

/// The layout of shipit before sites were keyed by environment: one environment per app and
/// host. Read to move it ([`crate::provision`]), and to stop its units as deploys replace them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Legacy {
    pub app: String,
}

impl Legacy {
    pub fn nginx_site(&self) -> String {
        format!("/etc/nginx/conf.d/shipit-{}.conf", self.app)
    }

    pub fn config_dir(&self) -> String {
        format!("/etc/shipit/{}", self.app)
    }

    pub fn upstream_include(&self) -> String {
        format!("/etc/shipit/{}/upstream.conf", self.app)
    }

    pub fn systemd_unit(&self) -> String {
        format!("/etc/systemd/system/{}@.service", self.app)
    }

    pub fn unit(&self, colour: Colour) -> String {
        format!("{}@{colour}.service", self.app)
    }

    pub fn logrotate(&self) -> String {
        format!("/etc/logrotate.d/shipit-{}", self.app)
    }

    pub fn unit_env(&self, colour: Colour) -> String {
        format!("/etc/shipit/{}/{colour}.env", self.app)
    }

    pub fn app_env(&self, colour: Colour) -> String {
        format!("/etc/shipit/{}/{colour}.app.env", self.app)
    }

    pub fn lock_dir(&self) -> String {
        format!("/var/lib/shipit/{}/lock", self.app)
    }

    pub fn history(&self) -> String {
        format!("/var/lib/shipit/{}/history.jsonl", self.app)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_and_backup_names_stay_beside_the_target() {
        assert_eq!(
            staged("/etc/nginx/conf.d/shipit-a_prod.conf"),
            "/etc/nginx/conf.d/.shipit-a_prod.conf.shipit-new~"
        );
        assert_eq!(
            backup("/etc/logrotate.d/shipit-a_prod"),
            "/etc/logrotate.d/.shipit-a_prod.shipit-prev~"
        );
    }

    #[test]
    fn no_two_sites_share_a_name() {
        let names = |s: &Site| {
            [
                s.key(),
                s.nginx_name(),
                s.config_dir(),
                s.unit(Colour::Blue),
                s.container(Colour::Blue),
                s.state_dir(),
            ]
        };
        let pairs = [
            (Site::new("a-b", "c"), Site::new("a", "b-c")),
            (Site::new("a", "b"), Site::new("a", "c")),
            (
                Site::new("web", "production"),
                Site::new("web-production", "x"),
            ),
        ];
        for (x, y) in pairs {
            for (p, q) in names(&x).iter().zip(names(&y)) {
                assert_ne!(*p, q, "{x:?} and {y:?}");
            }
        }
        let s = Site::new("web", "production");
        assert_eq!(s.unit(Colour::Green), "web_production@green.service");
        assert_eq!(s.container(Colour::Blue), "web_production-blue");
        assert_eq!(s.nginx_name(), "shipit_3_web_production");
        assert_eq!(s.history(), "/var/lib/shipit/web/production/history.jsonl");
        assert_eq!(s.legacy().unit(Colour::Blue), "web@blue.service");
    }
}
