//! Hermetic tests of the binary: no Docker, no testbed, no network. Configuration errors,
//! `config`, `init`, and what is never printed.

mod support;

use std::process::Command;

use support::{assert_has, shipit_in as shipit};

fn app(base_extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shipit.toml"),
        format!(
            "app = \"web\"\nimage = \"registry.example.com/acme/web\"\nversion = \"1.0.0\"\n{base_extra}"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("environments")).unwrap();
    std::fs::write(
        dir.path().join("environments/production.toml"),
        "domain = \"web.example.com\"\nhosts = [\"deploy@203.0.113.10\"]\n",
    )
    .unwrap();
    dir
}

const SLACK: &str = "https://hooks.slack.com/services/T000/B000/XXXXtokenXXXX";
const DISCORD: &str = "https://discord.com/api/webhooks/123/discord-token-value";
const WEBHOOK: &str = "https://ops:hunter2@ops.example.com/shipit?key=query-token";

#[test]
fn webhook_urls_are_never_printed_whole() {
    let dir = app(&format!(
        "[notify]\nslack = \"{SLACK}\"\ndiscord = \"{DISCORD}\"\nwebhook = \"{WEBHOOK}\"\n"
    ));
    for args in [
        &["config", "production"][..],
        &["config", "production", "--json"],
        &["-vv", "config", "production"],
    ] {
        let run = shipit(dir.path(), args);
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let all = format!("{}{}", run.stdout, run.stderr);
        for secret in [
            "XXXXtokenXXXX",
            "discord-token-value",
            "hunter2",
            "query-token",
        ] {
            assert!(!all.contains(secret), "{args:?} printed `{secret}`:\n{all}");
        }
        assert!(all.contains("https://hooks.slack.com/…"), "{all}");
        assert!(all.contains("https://discord.com/…"), "{all}");
        assert!(all.contains("https://ops.example.com/…"), "{all}");
    }

    // An invalid URL is named by its key and shown by its host alone.
    let dir = app("[notify]\nslack = \"hooks.slack.com/services/T000/B000/XXXXtokenXXXX\"\n");
    let run = shipit(dir.path(), &["config", "production"]);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert_has(
        &run.stderr,
        "shipit.toml:5:9: `notify.slack` = \"hooks.slack.com/…\" is not an http:// or https:// URL",
    );
    assert!(!run.stderr.contains("XXXXtokenXXXX"), "{}", run.stderr);
}

#[test]
fn init_derives_an_app_name_from_any_directory_name() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("My_Web Shop");
    std::fs::create_dir(&dir).unwrap();
    let run = shipit(&dir, &["init"]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "the app `my-web-shop` (from the directory `My_Web Shop`; pass `--app NAME` to choose)"
        ),
        "{}",
        run.stderr
    );
    let config = std::fs::read_to_string(dir.join("shipit.toml")).unwrap();
    assert!(config.contains("app = \"my-web-shop\""), "{config}");
    let check = shipit(&dir, &["config", "production"]);
    assert_eq!(check.code(), 0, "the scaffold is valid: {}", check.stderr);
}

/// An app directory from the two files' text.
fn files(base: &str, env: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shipit.toml"), base).unwrap();
    std::fs::create_dir(dir.path().join("environments")).unwrap();
    std::fs::write(dir.path().join("environments/production.toml"), env).unwrap();
    dir
}

const BASE: &str =
    "app = \"web\"\nimage = \"registry.example.com/acme/web\"\nversion = \"1.0.0\"\n";
const ENV: &str = "domain = \"web.example.com\"\nhosts = [\"deploy@203.0.113.10\"]\n";

/// Every configuration error a user can meet, as the binary prints it, with its exit code: a
/// change of wording is a reviewed snapshot diff. Nothing here connects anywhere.
#[test]
fn every_configuration_error_as_the_user_reads_it() {
    let cases: Vec<(&str, String, String)> = vec![
        ("syntax error", "app = \"web\nimage =\n".into(), ENV.into()),
        ("unknown key with a suggestion", format!("{BASE}imgae = \"x\"\n"), ENV.into()),
        ("unknown table key", format!("{BASE}[health]\npaht = \"/up\"\n"), ENV.into()),
        ("wrong type", format!("{BASE}[container]\nport = \"3000\"\n"), ENV.into()),
        (
            "bad app, image, version",
            "app = \"Hello World\"\nimage = \"Registry/App:tag\"\nversion = \"1.4\"\n".into(),
            ENV.into(),
        ),
        ("missing keys", "app = \"web\"\n".into(), "hosts = []\n".into()),
        (
            "hostile host and domain",
            BASE.into(),
            "domain = \"x.com; include /etc/passwd\"\nhosts = [\"h;rm -rf /\", \"h:99999\", \"h\", \"h\"]\n".into(),
        ),
        (
            "ports, durations, policies",
            format!(
                "{BASE}[ports]\nblue = 3001\ngreen = 3001\n[health]\ntimeout = \"soon\"\n[deploy]\nkeep_previous = \"cold\"\nretain = 0\n"
            ),
            format!("{ENV}[ssh]\nknown_hosts = \"strcit\"\nconnect_timeout = \"-1s\"\n"),
        ),
        (
            "preview and canary",
            format!(
                "{BASE}[preview]\nheader = \"X Preview\"\n[canary]\nsteps = [\"50%\", \"10%\"]\nmax_error_rate = 2.0\nmax_p95_ratio = 0.5\n"
            ),
            ENV.into(),
        ),
        (
            "environment and secrets",
            format!(
                "{BASE}[env]\nclear = {{ \"BAD-NAME\" = \"x\", SHIPIT_X = \"y\", A = \"two\\nlines\", B = \"b\" }}\nsecret = [\"B\", \"C\", \"C\", \"1X\"]\n"
            ),
            ENV.into(),
        ),
        (
            "tls, smoke, hooks, notify",
            format!(
                "{BASE}[tls]\ncertificate = \"relative.pem\"\n[smoke]\nmax_error_rate = 2.0\npath = \"no-slash\"\n[hooks]\npre_deploy = [\"\"]\n[notify]\nwebhook = \"ftp://hooks.example.com/secret-token\"\n"
            ),
            ENV.into(),
        ),
        (
            "acme and nginx",
            format!(
                "{BASE}[tls]\nacme = {{ email = \"ops@localhost\", directory = \"http://acme.example.com/dir\" }}\n[nginx]\ncsp = \"script-src 'nonce-$x'\"\nrate_limit = {{ rate = \"lots\" }}\ntrusted_proxies = [\"lb\"]\n"
            ),
            ENV.into(),
        ),
        (
            "paths that leave the app directory",
            format!("{BASE}context = \"../elsewhere\"\ndockerfile = \"/etc/passwd\"\n"),
            ENV.into(),
        ),
    ];
    let mut shown = String::new();
    for (name, base, env) in cases {
        let dir = files(&base, &env);
        let run = shipit(dir.path(), &["config", "production"]);
        shown.push_str(&format!(
            "## {name} (exit {})\n{}\n",
            run.code(),
            run.stderr.trim_end()
        ));
    }
    // The environment itself: a bad name, an unknown one (with a suggestion), no config at all.
    let dir = files(BASE, ENV);
    for env in ["Prod", "prodution"] {
        let run = shipit(dir.path(), &["deploy", env]);
        shown.push_str(&format!(
            "## environment `{env}` (exit {})\n{}\n",
            run.code(),
            run.stderr.trim_end()
        ));
    }
    let empty = tempfile::tempdir().unwrap();
    let run = shipit(empty.path(), &["status", "production"]);
    shown.push_str(&format!(
        "## no shipit.toml (exit {})\n{}\n",
        run.code(),
        run.stderr
            .trim_end()
            .replace(&empty.path().display().to_string(), "DIR")
    ));
    let shown = shown.replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(shown);
}

#[test]
fn secrets_check_names_each_secret_and_its_source_never_its_value() {
    let dir = files(
        &format!(
            "{BASE}[registry]\nserver = \"registry.example.com\"\nusername = \"ci\"\n[env]\nsecret = [\"DATABASE_URL\", \"API_TOKEN\"]\n"
        ),
        ENV,
    );
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL='postgres://u:hunter2@db/app'\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(["secrets", "check", "production"])
        .current_dir(dir.path())
        .env("API_TOKEN", "tok-value")
        .env_remove("SHIPIT_REGISTRY_PASSWORD")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stdout,
        "DATABASE_URL: set, from `DATABASE_URL` in .env\nAPI_TOKEN: set, from environment variable `API_TOKEN`\nSHIPIT_REGISTRY_PASSWORD: MISSING\n"
    );
    assert_eq!(stderr, "error: secret missing: SHIPIT_REGISTRY_PASSWORD\n");
    assert!(!stdout.contains("hunter2") && !stdout.contains("tok-value"));
    let json = Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(["secrets", "check", "production", "--json"])
        .current_dir(dir.path())
        .env("API_TOKEN", "tok-value")
        .env("SHIPIT_REGISTRY_PASSWORD", "pw")
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[1]["name"], "API_TOKEN");
    assert_eq!(v[1]["source"], "environment variable `API_TOKEN`");
}

#[test]
fn completions_man_and_exit_codes_without_any_host() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let run = shipit(dir.path(), &["completions", shell]);
        assert_eq!(run.code(), 0, "{}", run.stderr);
        assert!(
            run.stdout.contains("deploy") && run.stdout.contains("rollback"),
            "{shell}"
        );
    }
    let man = shipit(dir.path(), &["man"]);
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH shipit"),
        "{}",
        &man.stdout[..100.min(man.stdout.len())]
    );
    // clap's own usage errors are 2, as bad input is.
    assert_eq!(shipit(dir.path(), &["deploy"]).code(), 2);
    assert_eq!(shipit(dir.path(), &["nonsense"]).code(), 2);
    // A second init refuses to overwrite, naming the files.
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    assert_eq!(shipit(&app, &["init", "--app", "web"]).code(), 0);
    let again = shipit(&app, &["init", "--app", "web"]);
    assert_eq!(again.code(), 2);
    assert_has(&again.stderr, "refusing to overwrite `shipit.toml`");
    assert_eq!(shipit(&app, &["init", "--app", "Web Shop"]).code(), 2);
}
