//! Rendering the server configuration files from Tera templates.
//!
//! Owns: the default templates (embedded in the binary), the app's overrides (a file of the same
//! name in its `templates/` directory), the context they are rendered with, and the list of
//! files provisioning manages. Must not: touch a host. Pure apart from reading overrides.

use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;

/// The templates shipit renders, by file name.
pub const DEFAULTS: &[(&str, &str)] = &[
    (
        "nginx.conf.tera",
        include_str!("../templates/nginx.conf.tera"),
    ),
    (
        "app.service.tera",
        include_str!("../templates/app.service.tera"),
    ),
    (
        "logrotate.tera",
        include_str!("../templates/logrotate.tera"),
    ),
    (
        "process.service.tera",
        include_str!("../templates/process.service.tera"),
    ),
    (
        "job.service.tera",
        include_str!("../templates/job.service.tera"),
    ),
    (
        "job.timer.tera",
        include_str!("../templates/job.timer.tera"),
    ),
    (
        "accessory.service.tera",
        include_str!("../templates/accessory.service.tera"),
    ),
    (
        "tls-check.sh.tera",
        include_str!("../templates/tls-check.sh.tera"),
    ),
    (
        "tls-check.service.tera",
        include_str!("../templates/tls-check.service.tera"),
    ),
    (
        "tls-check.timer.tera",
        include_str!("../templates/tls-check.timer.tera"),
    ),
];

/// What validates a file on the host before it is installed, and what reloads it after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// An nginx site: `nginx -t`, then reload nginx.
    Nginx,
    /// The upstream include: created once by provisioning, then owned by deploys.
    Upstream,
    /// `[preview]`'s upstream include: created once (nothing waits), then owned by deploys.
    Preview,
    /// A systemd unit: `systemd-analyze verify`, then `daemon-reload`.
    Systemd,
    /// A logrotate rule: `logrotate -d`; read at the next rotation.
    Logrotate,
    /// With `[tls] acme`: the stand-in certificate and key nginx starts with, created once
    /// (then `shipit tls renew` owns them). Never shown in a diff.
    Certificate,
    /// The site's check token (an nginx map, mode 0600), created once. Never shown in a diff.
    Token,
    /// A root-only script holding credentials (the certificate check, with the webhook
    /// addresses): installed 0700 without validation or reload, never shown in a diff.
    Private,
    /// An accessory's environment file (mode 0600), holding its secrets: read when its unit
    /// starts; installed without validation or reload, never shown in a diff.
    Secret,
    /// An environment file units read when they start (the options that link the app's
    /// containers to the accessories): installed without validation or reload.
    Settings,
    /// nginx settings of the `http` block that every site on the host shares
    /// ([`NGINX_HTTP_CONF`]): validated with `nginx -t` and installed with the site when
    /// absent, then left as the host has it (another site wrote it, or the operator edited it).
    NginxHttp,
}

/// The host-wide nginx settings shipit's sites need: each site maps two or three variables
/// (its check, the copy that answered, the rate limit's key), and from about ten sites on a
/// host nginx's default variables hash (buckets of 64 bytes) no longer fits them and
/// `nginx -t` warns on every reload. Buckets of 128 bytes hold a hundred sites quietly.
pub const NGINX_HTTP_CONF: &str = "/etc/nginx/conf.d/00-shipit-http.conf";

/// The content of [`NGINX_HTTP_CONF`].
pub fn nginx_http_conf() -> String {
    "# Written by shipit when absent, shared by every shipit site on this host, never rewritten.\n\
     # Each site maps a few variables; nginx's default hash of variables (buckets of 64 bytes)\n\
     # holds about ten sites before `nginx -t` warns. If your nginx.conf sets this directive\n\
     # already, nginx says it is duplicate: keep the larger value in one place and empty this\n\
     # file (shipit leaves an existing file as it is).\n\
     variables_hash_bucket_size 128;\n"
        .to_owned()
}

/// A file shipit manages on every host, with the content it should have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManagedFile {
    pub path: String,
    pub content: String,
    /// Octal mode as `stat -c %a` prints it, such as `644`.
    pub mode: &'static str,
    pub owner: &'static str,
    pub kind: FileKind,
    /// Written only when absent (a later deploy owns its content).
    pub create_only: bool,
    /// The template it came from, for messages.
    pub template: Option<String>,
    /// The hosts it goes to; `None`: every host of the environment.
    pub hosts: Option<Vec<crate::config::HostSpec>>,
}

impl ManagedFile {
    /// Whether `host` gets this file.
    pub fn goes_to(&self, host: &crate::config::HostSpec) -> bool {
        self.hosts.as_ref().is_none_or(|h| h.contains(host))
    }
}

#[derive(Serialize)]
struct Context<'a> {
    app: &'a str,
    domain: &'a str,
    environment: &'a str,
    /// `<app>_<environment>`: units are `<key>@<colour>`, containers `<key>-<colour>`.
    key: String,
    upstream_name: String,
    /// The prefix of the site's variables ([`crate::layout::Site::nginx_var`]).
    var: String,
    upstream_include: String,
    verify_conf: String,
    config_dir: String,
    log_dir: String,
    state_dir: String,
    container_port: u16,
    memory_max: &'a str,
    cpu_quota: &'a str,
    docker_memory: String,
    docker_cpus: String,
    ports: &'a crate::config::Ports,
    tls: Option<TlsContext>,
    /// With TLS: the daily certificate check the hosts run themselves.
    tls_check: Option<TlsCheckContext>,
    nginx: &'a crate::config::Nginx,
    volumes: &'a [String],
    preview: Option<PreviewContext>,
    /// `[canary]`: nginx keeps a log of which copy answered.
    canary: bool,
    /// With accessories: the app's containers read the options that reach them from
    /// `links.env` ([`crate::layout::Site::links_env`]).
    links: Option<String>,
}

/// One accessory's unit.
#[derive(Serialize)]
struct AccessoryContext<'a> {
    name: &'a str,
    unit: String,
    container: String,
    network: String,
    image: &'a str,
    publish: String,
    port: u16,
    env_file: String,
    volumes: &'a [String],
    memory_max: &'a str,
    cpu_quota: &'a str,
    docker_memory: String,
    docker_cpus: String,
}

/// `[preview]`'s part of the nginx site: its upstream's include, its host name, and nginx's
/// variable for its header.
#[derive(Serialize)]
struct PreviewContext {
    include: String,
    host: String,
    header: String,
    header_var: String,
}

/// The daily certificate check's part of the context: its script, when it warns, and the
/// webhooks it calls (each shell-quoted, as they go into the script).
#[derive(Serialize)]
struct TlsCheckContext {
    script: String,
    days: i64,
    /// What to do, as it goes inside the script's double quotes (backquotes escaped).
    advice: String,
    webhook: Option<String>,
    slack: Option<String>,
    discord: Option<String>,
}

/// A process's own part of its unit's context.
#[derive(Serialize)]
struct ProcessContext<'a> {
    name: &'a str,
    command: &'a [String],
}

/// A job's own part of its units' context.
#[derive(Serialize)]
struct JobContext<'a> {
    name: &'a str,
    schedule: &'a str,
    command: &'a [String],
    persistent: bool,
    randomized_delay_secs: u64,
    image: Option<&'a str>,
}

/// A fresh random token (128 bits, hex) for a site's checks.
fn token() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal {
        context: "making the site's check token".into(),
        source: e.to_string().into(),
    })?;
    Ok(hex::encode(bytes))
}

/// The nginx map that tells shipit's own checks (their `X-Shipit-Verify` carries `token`) from
/// everyone else's requests, for the site whose variables start with `name`.
pub fn verify_map(name: &str, token: &str) -> String {
    format!(
        "# Managed by shipit: what tells shipit's own checks (their `X-Shipit-Verify` header) from\n\
         # every other request to this site. Made once by `shipit provision` (mode 0600) and read\n\
         # by shipit over SSH; whoever reads it gets past the maintenance page and the rate limit.\n\
         map $http_x_shipit_verify ${name}_check {{\n    default \"\";\n    \"{token}\" 1;\n}}\n"
    )
}

/// The token in a site's check map ([`verify_map`]), when the text has one.
pub fn token_of(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let t = l.trim().strip_suffix(" 1;")?.trim_matches('"');
        (t.len() >= 16 && t.chars().all(|c| c.is_ascii_hexdigit())).then(|| t.to_owned())
    })
}

/// The `systemd_args` filter: a list of arguments as systemd's `ExecStart=` reads them back
/// unchanged: each in double quotes, with `\`, `"`, `%` (specifiers) and `$` (variables)
/// escaped.
fn systemd_args(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let args = value
        .as_array()
        .ok_or_else(|| tera::Error::msg("systemd_args: expected a list of strings"))?;
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            let a = a
                .as_str()
                .ok_or_else(|| tera::Error::msg("systemd_args: expected strings"))?;
            Ok(format!("\"{}\"", systemd_escape(a)))
        })
        .collect::<tera::Result<_>>()?;
    Ok(tera::Value::String(quoted.join(" ")))
}

/// `ctx` with one more value.
fn with<T: Serialize>(ctx: &tera::Context, key: &str, value: &T) -> tera::Context {
    let mut ctx = ctx.clone();
    ctx.insert(key, value);
    ctx
}

/// One argument's text inside systemd's double quotes.
pub fn systemd_escape(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// What the nginx template needs of `[tls]`: the files it reads, and with ACME where the
/// challenge answers are served from.
#[derive(Serialize)]
struct TlsContext {
    certificate: String,
    certificate_key: String,
    acme_challenges: Option<String>,
}

/// The templates to use: the app's override where it has one, else the default.
pub struct Templates {
    tera: tera::Tera,
    sources: Vec<(String, String)>,
}

impl Templates {
    /// Load the defaults and the app's overrides from `app_dir/templates/`.
    pub fn load(app_dir: &Path) -> Result<Templates, Error> {
        let mut sources = Vec::new();
        for (name, default) in DEFAULTS {
            let path = app_dir.join("templates").join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push((format!("templates/{name}"), text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    sources.push(((*name).to_owned(), (*default).to_owned()));
                }
                Err(source) => return Err(Error::Read { path, source }),
            }
        }
        Templates::from_sources(sources)
    }

    /// Parse templates given as `(name, text)`; names are as shown in messages.
    pub fn from_sources(sources: Vec<(String, String)>) -> Result<Templates, Error> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        tera.register_filter("systemd_args", systemd_args);
        for (name, text) in &sources {
            tera.add_raw_template(name, text)
                .map_err(|e| template_error(name, &e))?;
        }
        Ok(Templates { tera, sources })
    }

    fn name_of<'a>(&'a self, default_name: &'a str) -> &'a str {
        self.sources
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| n.ends_with(default_name))
            .unwrap_or(default_name)
    }

    fn render(&self, default_name: &str, ctx: &tera::Context) -> Result<String, Error> {
        let name = self.name_of(default_name);
        self.tera
            .render(name, ctx)
            .map_err(|e| template_error(name, &e))
    }

    /// Every file provisioning installs for `config`, rendered.
    pub fn render_all(&self, config: &Config) -> Result<Vec<ManagedFile>, Error> {
        let site = config.site();
        let ctx = Context {
            app: &config.app,
            domain: &config.domain,
            environment: &config.environment,
            key: site.key(),
            upstream_name: site.nginx_name(),
            var: site.nginx_var(),
            upstream_include: site.upstream_include(),
            verify_conf: site.verify_conf(),
            config_dir: site.config_dir(),
            log_dir: site.log_dir(),
            state_dir: site.state_dir(),
            container_port: config.container.port,
            memory_max: &config.container.memory_max,
            cpu_quota: &config.container.cpu_quota,
            docker_memory: config.container.memory_max.to_lowercase(),
            docker_cpus: docker_cpus(&config.container.cpu_quota),
            ports: &config.ports,
            tls: config
                .tls_files()
                .map(|(certificate, certificate_key)| TlsContext {
                    certificate,
                    certificate_key,
                    acme_challenges: config.acme().map(|_| site.acme_challenges()),
                }),
            tls_check: config.tls_files().map(|_| {
                let quoted = |u: &Option<crate::config::WebhookUrl>| {
                    u.as_ref()
                        .map(|u| crate::remote::quote(u.expose()).into_owned())
                };
                TlsCheckContext {
                    script: site.tls_check_script(),
                    advice: match (config.acme(), config.tls_files()) {
                        (None, Some((certificate, _))) => format!(
                            "put a renewed certificate in {certificate} (its key beside it) and reload nginx"
                        ),
                        _ => format!(
                            "run \\`shipit tls renew {}\\` (and see why its daily run did not)",
                            config.environment
                        ),
                    },
                    days: crate::doctor::CERTIFICATE_WARNING_DAYS
                        .min(crate::acme::warning_days(config))
                        .max(1),
                    webhook: quoted(&config.notify.webhook),
                    slack: quoted(&config.notify.slack),
                    discord: quoted(&config.notify.discord),
                }
            }),
            nginx: &config.nginx,
            volumes: &config.container.volumes,
            preview: config.preview.as_ref().map(|p| PreviewContext {
                include: site.preview_include(),
                host: p.host.clone(),
                header: p.header.clone(),
                header_var: p.header_var(),
            }),
            canary: config.canary.is_some(),
            links: (!config.accessories.is_empty()).then(|| site.links_env()),
        };
        let ctx = tera::Context::from_serialize(&ctx).map_err(|e| template_error("context", &e))?;
        let file = |path: String, kind, template: &str, ctx: &tera::Context| {
            Ok::<_, Error>(ManagedFile {
                path,
                content: self.render(template, ctx)?,
                mode: "644",
                owner: "root:root",
                kind,
                create_only: false,
                template: Some(self.name_of(template).to_owned()),
                hosts: None,
            })
        };
        let mut files = vec![
            ManagedFile {
                path: site.upstream_include(),
                content: crate::state::upstream_not_deployed(config.ports.blue),
                mode: "644",
                owner: "root:root",
                kind: FileKind::Upstream,
                create_only: true,
                template: None,
                hosts: None,
            },
            file(site.nginx_site(), FileKind::Nginx, "nginx.conf.tera", &ctx)?,
            file(
                site.systemd_unit(),
                FileKind::Systemd,
                "app.service.tera",
                &ctx,
            )?,
            file(
                site.logrotate(),
                FileKind::Logrotate,
                "logrotate.tera",
                &ctx,
            )?,
            ManagedFile {
                path: site.verify_conf(),
                content: verify_map(&site.nginx_var(), &token()?),
                mode: "600",
                owner: "root:root",
                kind: FileKind::Token,
                create_only: true,
                template: None,
                hosts: None,
            },
            ManagedFile {
                path: NGINX_HTTP_CONF.to_owned(),
                content: nginx_http_conf(),
                mode: "644",
                owner: "root:root",
                kind: FileKind::NginxHttp,
                create_only: false,
                template: None,
                hosts: None,
            },
        ];
        if config.preview.is_some() {
            // Before the site, which includes it (created-once files go first anyway).
            files.insert(
                1,
                ManagedFile {
                    path: site.preview_include(),
                    content: crate::state::preview_nothing_waits(config.ports.blue),
                    mode: "644",
                    owner: "root:root",
                    kind: FileKind::Preview,
                    create_only: true,
                    template: None,
                    hosts: None,
                },
            );
        }
        if config.tls_files().is_some() {
            files.push(ManagedFile {
                mode: "700",
                kind: FileKind::Private,
                ..file(
                    site.tls_check_script(),
                    FileKind::Private,
                    "tls-check.sh.tera",
                    &ctx,
                )?
            });
            // The service first: the timer is validated against it.
            for (path, template) in [
                (site.tls_check_service(), "tls-check.service.tera"),
                (site.tls_check_timer(), "tls-check.timer.tera"),
            ] {
                files.push(file(path, FileKind::Systemd, template, &ctx)?);
            }
        }
        for p in &config.processes {
            let ctx = with(
                &ctx,
                "process",
                &ProcessContext {
                    name: &p.name,
                    command: &p.command,
                },
            );
            files.push(ManagedFile {
                hosts: Some(p.hosts.clone()),
                ..file(
                    site.process_unit(&p.name),
                    FileKind::Systemd,
                    "process.service.tera",
                    &ctx,
                )?
            });
        }
        for j in &config.jobs {
            let ctx = with(
                &ctx,
                "job",
                &JobContext {
                    name: &j.name,
                    schedule: &j.schedule,
                    command: &j.command,
                    persistent: j.persistent,
                    randomized_delay_secs: j.randomized_delay.as_secs(),
                    image: j.image.as_deref(),
                },
            );
            // The service first: the timer is validated against it.
            for (path, template) in [
                (site.job_service(&j.name), "job.service.tera"),
                (site.job_timer(&j.name), "job.timer.tera"),
            ] {
                files.push(ManagedFile {
                    hosts: Some(vec![j.host.clone()]),
                    ..file(path, FileKind::Systemd, template, &ctx)?
                });
            }
        }
        for a in &config.accessories {
            let ctx = with(
                &ctx,
                "accessory",
                &AccessoryContext {
                    name: &a.name,
                    unit: site.accessory_unit(&a.name),
                    container: site.accessory_container(&a.name),
                    network: crate::config::network_name(&site.key()),
                    image: &a.image,
                    publish: a.published(),
                    port: a.port,
                    env_file: site.accessory_env(&a.name),
                    volumes: &a.volumes,
                    memory_max: &a.memory_max,
                    cpu_quota: &a.cpu_quota,
                    docker_memory: a.memory_max.to_lowercase(),
                    docker_cpus: docker_cpus(&a.cpu_quota),
                },
            );
            files.push(ManagedFile {
                hosts: Some(vec![a.host.clone()]),
                ..file(
                    site.accessory_unit_file(&a.name),
                    FileKind::Systemd,
                    "accessory.service.tera",
                    &ctx,
                )?
            });
        }
        if !config.accessories.is_empty() {
            // Each host's own: the options its app containers need to reach every accessory.
            for host in &config.hosts {
                files.push(ManagedFile {
                    path: site.links_env(),
                    content: links_env(config, host),
                    mode: "644",
                    owner: "root:root",
                    kind: FileKind::Settings,
                    create_only: false,
                    template: None,
                    hosts: Some(vec![host.clone()]),
                });
            }
        }
        Ok(files)
    }
}

/// `links.env` of one host: `SHIPIT_LINKS=` the `docker run` options of its app containers
/// that reach the accessories (systemd splits `$SHIPIT_LINKS` at spaces; no option has one).
pub fn links_env(config: &Config, host: &crate::config::HostSpec) -> String {
    format!(
        "# Written by shipit provision: how {}'s containers on this host reach its accessories.\nSHIPIT_LINKS={}\n",
        config.site().key(),
        link_args(config, host).join(" ")
    )
}

/// The `docker run` options of the app's containers on `host` that reach the accessories.
pub fn link_args(config: &Config, host: &crate::config::HostSpec) -> Vec<String> {
    let key = config.site().key();
    let mut args: Vec<String> = Vec::new();
    for a in &config.accessories {
        let more = a.link_args(&key, host);
        if more.first().is_some_and(|f| f == "--network") && args.iter().any(|x| x == "--network") {
            continue;
        }
        args.extend(more);
    }
    args
}

/// `200%` (systemd) as docker's `--cpus 2.00`.
pub fn docker_cpus(quota: &str) -> String {
    let percent: u32 = quota.trim_end_matches('%').parse().unwrap_or(100);
    format!("{}.{:02}", percent / 100, percent % 100)
}

/// Tera's errors nest the useful part (line and column of a parse error, the missing
/// variable) in their sources: show the whole chain.
fn template_error(name: &str, e: &dyn std::error::Error) -> Error {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!("\n{s}"));
        source = s.source();
    }
    // Tera marks the place of a parse error as `--> LINE:COL`: show it as `file:LINE:COL`.
    let position = message.split("--> ").nth(1).and_then(|rest| {
        let pos: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ':')
            .collect();
        pos.contains(':').then_some(pos)
    });
    Error::Template {
        name: match position {
            Some(pos) => format!("{name}:{pos}"),
            None => name.to_owned(),
        },
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_from_quota() {
        assert_eq!(docker_cpus("200%"), "2.00");
        assert_eq!(docker_cpus("50%"), "0.50");
        assert_eq!(docker_cpus("125%"), "1.25");
    }
}

#[cfg(test)]
mod snapshots {
    use super::*;

    fn config(extra_env: &str) -> Config {
        crate::config::validate_for_tests(
            "app = \"hello-web\"\nimage = \"r.test/acme/hello\"\nversion = \"1.0.0\"\n[container]\nport = 8080\nmemory_max = \"2G\"\ncpu_quota = \"200%\"\n",
            &format!("domain = \"hello.example.com\"\nhosts = [\"h1\"]\n{extra_env}"),
        )
        .unwrap()
    }

    fn rendered(config: &Config) -> Vec<ManagedFile> {
        let sources = DEFAULTS
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        Templates::from_sources(sources)
            .unwrap()
            .render_all(config)
            .unwrap()
    }

    #[test]
    fn default_templates() {
        let files = rendered(&config(""));
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/shipit/hello-web/test/upstream.conf",
                "/etc/nginx/conf.d/shipit-hello-web_test.conf",
                "/etc/systemd/system/hello-web_test@.service",
                "/etc/logrotate.d/shipit-hello-web_test",
                "/etc/shipit/hello-web/test/verify.conf",
                "/etc/nginx/conf.d/00-shipit-http.conf",
            ]
        );
        assert_eq!(
            token_of(&files[4].content).map(|t| t.len()),
            Some(32),
            "{}",
            files[4].content
        );
        assert_eq!(files[4].mode, "600");
        insta::assert_snapshot!("upstream", files[0].content);
        insta::assert_snapshot!("nginx_plain", files[1].content);
        insta::assert_snapshot!("systemd_unit", files[2].content);
        insta::assert_snapshot!("logrotate", files[3].content);
    }

    #[test]
    fn nginx_with_acme_rate_limit_csp_and_trusted_proxies() {
        let files = rendered(&config(
            "[tls]\nacme = { email = \"ops@example.com\" }\n[nginx]\ncsp = \"default-src 'self'\"\nrate_limit = { rate = \"30r/m\", burst = 10 }\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n",
        ));
        let nginx = &files[1].content;
        insta::assert_snapshot!("nginx_acme_limits", nginx);
        // What each setting must produce, whatever the rest of the template becomes.
        for line in [
            "ssl_certificate /etc/shipit/hello-web/test/tls/fullchain.pem;",
            "ssl_certificate_key /etc/shipit/hello-web/test/tls/privkey.pem;",
            "location ^~ /.well-known/acme-challenge/ {",
            "alias /etc/shipit/hello-web/test/acme-challenge/;",
            "add_header Content-Security-Policy-Report-Only \"default-src 'self'\" always;",
            "zone=shipit_9_hello_web_test_requests:10m rate=30r/m;",
            "limit_req zone=shipit_9_hello_web_test_requests burst=10 nodelay;",
            "add_header Retry-After 2 always;",
            "set_real_ip_from 2001:db8::/32;",
        ] {
            assert!(nginx.contains(line), "{line}\n{nginx}");
        }
        // The placeholder certificate and key come from provisioning, not from templates; the
        // daily certificate check (its script, service and timer) comes with TLS.
        assert_eq!(files.len(), 9);
        let enforced = rendered(&config(
            "[nginx]\ncsp = \"default-src 'self'\"\ncsp_enforce = true\n",
        ));
        assert!(
            enforced[1]
                .content
                .contains("add_header Content-Security-Policy \"default-src 'self'\" always;")
        );
        assert!(!enforced[1].content.contains("acme-challenge"));
        assert!(!enforced[1].content.contains("limit_req"));
    }

    #[test]
    fn a_preview_gets_its_upstream_its_name_and_its_header() {
        let files = rendered(&config("[preview]\nheader = \"X-Preview-Me\"\n"));
        assert_eq!(files[1].path, "/etc/shipit/hello-web/test/preview.conf");
        assert_eq!(files[1].kind, FileKind::Preview);
        assert!(files[1].create_only);
        assert!(files[1].content.contains("server 127.0.0.1:3001 down;"));
        let nginx = &files[2].content;
        insta::assert_snapshot!("nginx_preview", nginx);
        for line in [
            "include /etc/shipit/hello-web/test/preview.conf;",
            "map \"$http_x_preview_me:$host\" $shipit_269e56bf_backend {",
            "\":preview.hello.example.com\" shipit_9_hello_web_test_preview;",
            "server_name hello.example.com preview.hello.example.com;",
            "proxy_pass http://$shipit_269e56bf_backend;",
        ] {
            assert!(nginx.contains(line), "{line}\n{nginx}");
        }
        let plain = rendered(&config(""));
        assert!(
            plain[1]
                .content
                .contains("proxy_pass http://shipit_9_hello_web_test;")
        );
        assert!(!plain[1].content.contains("preview"));
    }

    #[test]
    fn the_daily_certificate_check_quotes_its_webhooks_and_is_roots_alone() {
        let files = rendered(&config(
            "[tls]\ncertificate = \"/etc/ssl/hello.pem\"\ncertificate_key = \"/etc/ssl/hello.key\"\n[notify]\nwebhook = \"https://hooks.example.com/in?token=a&b=c\"\ndiscord = \"https://discord.com/api/webhooks/1/x\"\n",
        ));
        let script = files
            .iter()
            .find(|f| f.path.ends_with("/tls-check.sh"))
            .unwrap();
        assert_eq!((script.mode, script.kind), ("700", FileKind::Private));
        insta::assert_snapshot!("tls_check_script", script.content);
        assert!(
            script
                .content
                .contains("post 'https://hooks.example.com/in?token=a&b=c' ")
        );
        assert!(!script.content.contains("hooks.slack.com"));
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &script.content])
            .status()
            .unwrap();
        assert!(status.success(), "the script parses");
        let timer = files
            .iter()
            .find(|f| f.path.ends_with("_tls_check.timer"))
            .unwrap();
        insta::assert_snapshot!("tls_check_timer", timer.content);
        // Without TLS, no check.
        assert!(!rendered(&config("")).iter().any(|f| f.path.contains("tls")));
    }

    #[test]
    fn nginx_with_tls() {
        let files = rendered(&config(
            "[tls]\ncertificate = \"/etc/ssl/hello.pem\"\ncertificate_key = \"/etc/ssl/hello.key\"\n",
        ));
        insta::assert_snapshot!("nginx_tls", files[1].content);
    }

    #[test]
    fn an_override_is_used_and_a_bad_one_is_named_with_its_position() {
        let mut sources: Vec<(String, String)> = DEFAULTS
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        sources[2] = (
            "templates/logrotate.tera".into(),
            "# {{ app }} custom\n".into(),
        );
        let files = Templates::from_sources(sources.clone())
            .unwrap()
            .render_all(&config(""))
            .unwrap();
        assert_eq!(files[3].content, "# hello-web custom\n");
        assert_eq!(
            files[3].template.as_deref(),
            Some("templates/logrotate.tera")
        );

        sources[2].1 = "line one\n{% if %}\n".into();
        let err = Templates::from_sources(sources.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("template `templates/logrotate.tera:2:"),
            "{err}"
        );

        sources[2].1 = "{{ no_such_variable }}\n".into();
        let err = Templates::from_sources(sources)
            .unwrap()
            .render_all(&config(""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("templates/logrotate.tera") && err.contains("no_such_variable"),
            "{err}"
        );
    }
}
