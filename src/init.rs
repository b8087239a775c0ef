//! `shipit init`: scaffold an app directory, with comments, refusing to overwrite anything.

use std::path::Path;

use crate::error::Error;
use crate::ui;

/// The files `init` writes, by path relative to the app directory.
pub fn scaffold(app: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "shipit.toml",
            format!(
                r#"# shipit's configuration: what is the same in every environment. Any key may be
# overridden in environments/<name>.toml. Reference: the README's "Configuration".

app = "{app}"                          # names units, containers and files on the hosts
image = "registry.example.com/acme/{app}"   # repository without tag: the tag is the release
version = "0.1.0"                      # semver; `shipit deploy --version` overrides it

[registry]
server = "registry.example.com"
username = "deploy"
password_env = "SHIPIT_REGISTRY_PASSWORD"   # the variable's name, never the password

[container]
port = 3000                            # the app's port inside the container
memory_max = "512M"
cpu_quota = "100%"

[health]
path = "/health"                       # must answer 2xx before traffic moves
timeout = "30s"

[env]
clear = {{ RUST_LOG = "info" }}
secret = []                            # names; values from your environment or .env
"#
            ),
        ),
        (
            "environments/production.toml",
            format!(
                r#"# The production environment of {app}.
domain = "{app}.example.com"
hosts = ["root@203.0.113.10"]          # user@host[:port]

[ssh]
known_hosts = "strict"                 # unknown host keys are refused; "accept-new" trusts on first use
"#
            ),
        ),
        (
            "environments/staging.toml",
            format!(
                r#"# The staging environment of {app}: any key of shipit.toml may be overridden here.
domain = "staging.{app}.example.com"
hosts = ["root@203.0.113.20"]

[deploy]
verify_window = "2s"
"#
            ),
        ),
        (
            "Dockerfile.production",
            "# The image shipit builds and deploys. It must serve HTTP on `container.port` and\n\
             # answer `health.path`.\n\
             FROM scratch\n\
             COPY app /app\n\
             EXPOSE 3000\n\
             USER 65534:65534\n\
             ENTRYPOINT [\"/app\"]\n"
                .to_owned(),
        ),
        (
            ".dockerignore",
            "# Kept out of the build context (Docker's rules: anchored at the root, `**`, `!`).\n\
             .git\n\
             .env\n\
             target\n\
             environments\n\
             *.md\n"
                .to_owned(),
        ),
    ]
}

/// An app name made from a directory's name: lowercase, each run of other characters a `-`,
/// starting with a letter, at most 40 characters; `app` when nothing is left.
pub fn derive_name(dir_name: &str) -> String {
    let mut name = String::new();
    for c in dir_name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || (c.is_ascii_digit() && !name.is_empty()) {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(40);
    let name = name.trim_end_matches('-').to_owned();
    if name.is_empty() { "app".into() } else { name }
}

/// Write the scaffold into `dir`; nothing is written if any file exists.
pub fn init(dir: &Path, app: &str) -> Result<(), Error> {
    if !crate::config::is_name(app) || app.ends_with('-') {
        return Err(Error::InitName {
            name: app.to_owned(),
        });
    }
    let files = scaffold(app);
    let existing: Vec<String> = files
        .iter()
        .map(|(rel, _)| *rel)
        .filter(|rel| dir.join(rel).exists() && *rel != "Dockerfile.production")
        .map(str::to_owned)
        .collect();
    if !existing.is_empty() {
        return Err(Error::InitExists { files: existing });
    }
    for (rel, text) in files {
        let path = dir.join(rel);
        if rel == "Dockerfile.production" && path.exists() {
            ui::status("Kept", &format!("{rel} (already there)"));
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        ui::status("Created", rel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaffold_is_a_valid_configuration() {
        let files = scaffold("my-app");
        let base = &files[0].1;
        for env in [&files[1].1, &files[2].1] {
            let c = crate::config::validate_for_tests(base, env).unwrap();
            assert_eq!(c.app, "my-app");
        }
    }

    #[test]
    fn refuses_to_overwrite_and_keeps_a_dockerfile() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile.production"), "FROM mine\n").unwrap();
        init(d.path(), "web").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("Dockerfile.production")).unwrap(),
            "FROM mine\n"
        );
        assert!(d.path().join("environments/staging.toml").is_file());
        let err = init(d.path(), "web").unwrap_err().to_string();
        assert!(
            err.contains("shipit.toml") && err.contains("environments/production.toml"),
            "{err}"
        );
        assert!(init(d.path(), "Bad Name").is_err());
    }

    #[test]
    fn names_are_derived_from_any_directory_name() {
        for (dir, want) in [
            ("my-app", "my-app"),
            ("My_App", "my-app"),
            ("2024 Web Shop!", "web-shop"),
            ("café.api", "caf-api"),
            ("___", "app"),
            ("", "app"),
        ] {
            let got = derive_name(dir);
            assert_eq!(got, want, "{dir}");
            assert!(crate::config::is_name(&got) && !got.ends_with('-'), "{got}");
        }
        assert_eq!(derive_name(&"a".repeat(60)).len(), 40);
    }
}
