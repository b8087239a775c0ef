//! Hermetic tests of the binary: no Docker, no testbed, no network. Configuration errors,
//! `config`, `init`, and what is never printed.

use std::path::Path;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn shipit(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_shipit"))
        .args(args)
        .current_dir(dir)
        .env_remove("SHIPIT_LOG")
        .output()
        .expect("shipit runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

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
        assert_eq!(run.code, 0, "{}", run.stderr);
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
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "shipit.toml:5:9: `notify.slack` = \"hooks.slack.com/…\" is not an http:// or https:// URL"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("XXXXtokenXXXX"), "{}", run.stderr);
}

#[test]
fn init_derives_an_app_name_from_any_directory_name() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("My_Web Shop");
    std::fs::create_dir(&dir).unwrap();
    let run = shipit(&dir, &["init"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
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
    assert_eq!(check.code, 0, "the scaffold is valid: {}", check.stderr);
}
