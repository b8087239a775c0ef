//! Accessories on the testbed: a real PostgreSQL 15 and a real Redis, built from Debian's
//! packages by `testbed/accessories.sh`, run beside the app by `shipit provision`, untouched by
//! deploys and rollbacks, reached by the app from another host, dumped before a deploy,
//! restored exactly after a destructive migration, upgraded with a backup first, vacuumed by a
//! job on its timer.
//!
//! The app is the hello example on top of the PostgreSQL image (for `psql`, `pg_dump` and
//! `pg_restore` in the app's own image): its migrations are SQL run by the release command.

mod support;

use std::time::{Duration, Instant};

use sha2::Digest;

use support::{App, Load, TestHost, Testbed, assert_has};

const DATA: &str = "/var/lib/t-accessories-data";
const PASSWORD: &str = "s3cret pass/word";

/// `POSTGRES_IMAGE` and `REDIS_IMAGE` as `testbed/accessories.sh` wrote them (the test command
/// runs it first).
fn images() -> (String, String) {
    let dir = std::env::var("SHIPIT_TESTBED_DIR").unwrap_or("/var/lib/shipit-testbed".into());
    let text = std::fs::read_to_string(format!("{dir}/accessories.env"))
        .expect("accessories.env: run `bash testbed/accessories.sh` (testbed/test.sh does)");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in accessories.env"))
            .trim_matches('\'')
            .to_owned()
    };
    (get("POSTGRES_IMAGE"), get("REDIS_IMAGE"))
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The accessory's container ID and PID, from `shipit accessory status --json`.
fn identity(app: &App, name: &str) -> (String, u64, String, String) {
    let run = app
        .shipit(&["accessory", "status", "production", name, "--json"])
        .success();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let s = &v[0];
    (
        s["container"].as_str().unwrap_or("-").to_owned(),
        s["pid"].as_u64().unwrap_or(0),
        s["health"].as_str().unwrap_or("-").to_owned(),
        s["image"].as_str().unwrap_or("-").to_owned(),
    )
}

/// A query through `shipit accessory exec` (psql in the database's own container).
fn sql(app: &App, query: &str) -> String {
    app.shipit(&[
        "accessory",
        "exec",
        "production",
        "db",
        "--",
        "psql",
        "-U",
        "app",
        "-d",
        "app",
        "-tAq",
        "-c",
        query,
    ])
    .success()
    .stdout
}

/// Rows and schema of the app's tables: what a restore must bring back exactly.
const SNAPSHOT: &str = "select string_agg(t, E'\\n' order by t) from (\
     select 'col ' || table_name || '.' || column_name || ' ' || data_type as t \
       from information_schema.columns where table_schema = 'public' \
     union all select 'row ' || n::text from notes n) x";

#[test]
fn a_database_and_a_cache_beside_the_app_untouched_by_deploys_backed_up_and_restored_exactly() {
    let tb = Testbed::from_env();
    let hosts = tb.hosts(2);
    let (pg, redis) = images();
    let name = "t-accessories";
    for h in &hosts {
        tb.sh_ok(h, &format!("rm -rf {DATA}"));
    }
    let mut app = App::hello_unprovisioned(&tb, name, &hosts, 4951, "");
    app.set_env("POSTGRES_PASSWORD", PASSWORD);
    // The app's image: the hello binary on the PostgreSQL image (its clients), with the
    // migrations. The release command applies the one SCHEMA names.
    app.file(
        "Dockerfile.production",
        &format!(
            "FROM {pg}\nCOPY app/hello /hello\nCOPY migrations /migrations\nUSER 65534:65534\nENTRYPOINT []\nCMD [\"/hello\"]\n"
        ),
    )
    .file(".dockerignore", "*\n!app/hello\n!migrations\n")
    .file(
        "migrations/1.sql",
        "create table if not exists notes (id int primary key, body text not null, at date);\n\
         insert into notes values (1, 'one', '2026-01-01'), (2, 'two', null) on conflict do nothing;\n",
    )
    .file(
        "migrations/2.sql",
        "alter table notes drop column body;\ndelete from notes where id > 1;\n",
    );
    // PostgreSQL on host 1, published on its address on the testbed's network (host 2's app
    // reaches it there); Redis on host 2, the same way.
    let (a1, a2) = (hosts[0].address(), hosts[1].address());
    let settings = |pg_image: &str, schema: &str| {
        format!(
            r#"
[deploy]
verify_window = "1500ms"
release_command = ["sh", "-c", "psql -v ON_ERROR_STOP=1 -q \"$DATABASE_URL\" -f /migrations/$SCHEMA.sql"]

[backup]
command = ["sh", "-c", "pg_dump --format=custom --dbname=\"$DATABASE_URL\" --file=\"$SHIPIT_BACKUP_FILE\""]
restore = ["sh", "-c", "pg_restore --clean --if-exists --no-owner --exit-on-error --dbname=\"$DATABASE_URL\" \"$SHIPIT_BACKUP_FILE\""]
keep = 5

[jobs.vacuum]
schedule = "*:*:0/5"
command = ["sh", "-c", "psql -q \"$DATABASE_URL\" -c 'VACUUM ANALYZE notes'"]

# Redis's persistence checked by its own client, in the Redis image, with the app's REDIS_URL.
[jobs.bgsave]
schedule = "*:*:0/10"
image = "{redis}"
command = ["sh", "-c", "redis-cli -u \"$REDIS_URL\" BGSAVE SCHEDULE && sleep 2 && redis-cli -u \"$REDIS_URL\" INFO persistence | grep -q '^rdb_last_bgsave_status:ok'"]

[accessories.db]
image = "{pg_image}"
host = "{h1}"
port = 5432
bind = "{a1}"
volumes = ["{DATA}/db:/var/lib/postgresql/data"]
health = ["pg_isready", "-U", "app", "-h", "127.0.0.1"]
memory_max = "256M"
url = "postgres://app:{{POSTGRES_PASSWORD}}@{{host}}:{{port}}/app"
url_env = "DATABASE_URL"
env.clear = {{ POSTGRES_USER = "app", POSTGRES_DB = "app" }}
env.secret = ["POSTGRES_PASSWORD"]

[accessories.cache]
image = "{redis}"
host = "{h2}"
port = 6379
bind = "{a2}"
volumes = ["{DATA}/cache:/data"]
health = ["redis-cli", "ping"]
memory_max = "128M"
url = "redis://{{host}}:{{port}}/0"
url_env = "REDIS_URL"

[env.clear]
SCHEMA = "{schema}"
"#,
            h1 = hosts[0].dest,
            h2 = hosts[1].dest,
        )
    };
    let write = |app: &App, pg_image: &str, schema: &str| {
        let base = std::fs::read_to_string(app.path().join("shipit.toml")).unwrap();
        let base = base.split("\n# accessories\n").next().unwrap().to_owned();
        // The hello settings' own `[deploy]` and `[env.clear]` are replaced by these.
        let base = base
            .replace("\n[deploy]\nverify_window = \"1500ms\"\n", "\n")
            .replace("\n[env.clear]\n\n", "\n");
        app.file(
            "shipit.toml",
            &format!("{base}\n# accessories\n{}", settings(pg_image, schema)),
        );
        app.commit();
    };
    write(&app, &pg, "1");

    // Provisioned: started and healthy, each on its host.
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "accessory `db`");
    assert_has(&run.stderr, "healthy");
    let (db_id, db_pid, health, image) = identity(&app, "db");
    assert_eq!((health.as_str(), image.as_str()), ("healthy", pg.as_str()));
    let (cache_id, cache_pid, health, _) = identity(&app, "cache");
    assert_eq!(health, "healthy");
    // Published on the address named, never on every address.
    let published = tb.sh_ok(
        &hosts[0],
        &format!("docker port {name}_production_db 5432/tcp"),
    );
    assert_eq!(published.trim(), format!("{a1}:5432"), "{published}");
    // A second provision changes nothing and restarts nothing.
    app.shipit(&["provision", "production"]).success();
    assert_eq!(identity(&app, "db").0, db_id);

    // The first deploy: an (empty) backup, then migration 1. From now on users are served.
    app.deploy("1.0.0");
    let load = Load::start(&hosts, &app.domain, 2);
    assert_eq!(sql(&app, "select count(*) from notes").trim(), "2");
    // The app on host 2 reaches PostgreSQL on host 1 (and Redis on its own host), with the
    // URLs shipit composed: its own `psql` in a one-off container of the release there.
    let run = app
        .shipit(&[
            "exec",
            "production",
            "--host",
            &hosts[1].dest,
            "--",
            "sh",
            "-c",
            "psql -tAq \"$DATABASE_URL\" -c \"insert into notes values (3, 'three from host 2', now()::date)\" -c 'select count(*) from notes' && echo \"$REDIS_URL\"",
        ])
        .success();
    assert_has(&run.stdout, "3\n");
    assert_has(&run.stdout, "redis://cache:6379/0");
    // The password reached the app percent-encoded in the URL, and shipit never printed it.
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    // Redis answers its own client, and keeps what it is told.
    let set = app
        .shipit(&[
            "accessory",
            "exec",
            "production",
            "cache",
            "--",
            "redis-cli",
            "SET",
            "k",
            "v1",
        ])
        .success();
    assert_has(&set.stdout, "OK");

    // Migration 2 is destructive (a column and two rows gone); its deploy takes a dump first.
    let before = sql(&app, SNAPSHOT);
    assert_has(&before, "col notes.body text");
    assert_has(&before, "three from host 2");
    write(&app, &pg, "2");
    let run = app.deploy("2.0.0");
    assert_has(&run.stderr, "Backed up");
    let after = sql(&app, SNAPSHOT);
    assert!(
        !after.contains("notes.body") && !after.contains("row (2,"),
        "{after}"
    );
    // The dump taken before migration 2 is the newest; restored, rows and schema come back
    // exactly.
    let list = app.shipit(&["backups", "production", "--json"]).success();
    let backups: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let id = backups[0]["id"].as_str().unwrap().to_owned();
    assert!(
        id.contains("2.0.0"),
        "{id}: the newest, taken by the deploy of 2.0.0"
    );
    app.shipit(&["backups", "restore", "production", &id, "--yes"])
        .success();
    assert_eq!(sql(&app, SNAPSHOT), before);
    // Pulled to this machine: the same bytes as on the backup host, mode 0600; a second pull
    // finds it there.
    let here = tempfile::tempdir().unwrap();
    let to = here.path().to_str().unwrap();
    let run = app
        .shipit(&["backups", "pull", "production", &id, "--to", to])
        .success();
    assert_has(&run.stderr, "Pulled");
    let local = std::fs::read(here.path().join(&id)).unwrap();
    let on_host = tb.sh_ok(
        &hosts[0],
        &format!("sha256sum /var/lib/shipit/{name}/production/backups/{id} | cut -d' ' -f1"),
    );
    assert_eq!(hex::encode(sha2::Sha256::digest(&local)), on_host.trim());
    assert_eq!(local.len() as u64, backups[0]["bytes"].as_u64().unwrap());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(here.path().join(&id))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let again = app
        .shipit(&["backups", "pull", "production", &id, "--to", to])
        .success();
    assert_has(&again.stderr, "Unchanged");

    // A rollback touches neither accessory.
    app.shipit(&["rollback", "production"]).success();
    assert_eq!(identity(&app, "db").0, db_id);
    assert_eq!(identity(&app, "db").1, db_pid);
    assert_eq!(identity(&app, "cache").0, cache_id);
    assert_eq!(identity(&app, "cache").1, cache_pid);
    let get = app
        .shipit(&[
            "accessory",
            "exec",
            "production",
            "cache",
            "--",
            "redis-cli",
            "GET",
            "k",
        ])
        .success();
    assert_has(&get.stdout, "v1");

    // The job vacuums on its timer, with the live release and its DATABASE_URL.
    wait_for(
        "a VACUUM ANALYZE by the job",
        Duration::from_secs(60),
        || {
            sql(
            &app,
            "select coalesce(last_vacuum::text, '-') || ' ' || coalesce(last_analyze::text, '-') from pg_stat_user_tables where relname = 'notes'",
        )
        .trim()
        .split(' ')
        .all(|w| w != "-")
        },
    );
    wait_for("a BGSAVE check by the job", Duration::from_secs(60), || {
        let status = app.shipit(&["status", "production"]).success();
        status.stdout.contains("job bgsave: last run")
            && !status.stdout.contains("job bgsave: not run")
    });
    let status = app.shipit(&["status", "production"]).success();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("job bgsave: last run") && l.contains("(success, exit status 0)")),
        "{}",
        status.stdout
    );
    assert_has(&status.stdout, "job vacuum: last run");
    assert_has(&status.stdout, "(success, exit status 0)");
    assert_has(&status.stdout, "accessory db on");
    assert_has(&status.stdout, "accessory cache on");
    assert_has(&status.stdout, "active (healthy)");

    // The database down: the deploy's dump fails, and nothing switches.
    let unit = format!("{name}_production_db.service");
    tb.sh_ok(&hosts[0], &format!("systemctl stop {unit}"));
    let serving = app.versions(&tb, &hosts);
    let run = app.deploy_fails("3.0.0", 12);
    assert_has(&run.stderr, "backup");
    assert_eq!(app.versions(&tb, &hosts), serving);
    let (_, _, health, _) = identity(&app, "db");
    assert_eq!(health, "down");
    // A provision (nothing to change in the files) starts it again: healthy, the same data.
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "Started accessory `db`");
    assert_eq!(sql(&app, SNAPSHOT), before);
    // Restarted: a new container, healthy, the same data.
    let (stopped_id, _, _, _) = identity(&app, "db");
    app.shipit(&["accessory", "restart", "production", "db"])
        .success();
    assert_ne!(identity(&app, "db").0, stopped_id);
    assert_eq!(sql(&app, SNAPSHOT), before);

    // An upgrade (here to the same image by another name): provision writes the unit but
    // leaves the running database alone and says so; the upgrade takes a backup, then moves it.
    let (db_id, _, _, _) = identity(&app, "db");
    let other = format!("{}:15", pg.rsplit_once(':').unwrap().0);
    write(&app, &other, "2");
    let run = app.shipit(&["provision", "production"]).success();
    assert_has(&run.stderr, "shipit accessory upgrade production db");
    assert_eq!(identity(&app, "db").0, db_id);
    let backups_before = app.shipit(&["backups", "production", "--json"]).success();
    let count = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    let run = app
        .shipit(&["accessory", "upgrade", "production", "db"])
        .success();
    assert_has(&run.stderr, "Backed up");
    assert_has(&run.stderr, "Upgraded");
    let (new_id, _, health, image) = identity(&app, "db");
    assert_ne!(new_id, db_id);
    assert_eq!(
        (health.as_str(), image.as_str()),
        ("healthy", other.as_str())
    );
    let backups_after = app.shipit(&["backups", "production", "--json"]).success();
    assert_eq!(
        count(&backups_after.stdout),
        count(&backups_before.stdout) + 1
    );
    assert_eq!(sql(&app, SNAPSHOT), before);

    // A backup that would not fit on the backup host's disk is refused before it starts (the
    // newest kept backup says how big one is: here a sparse file of 8 TiB), nothing switched.
    let huge = format!("/var/lib/shipit/{name}/production/backups/29991231T000000Z_huge.backup");
    tb.sh_ok(&hosts[0], &format!("truncate -s 8T {huge}"));
    let serving = app.versions(&tb, &hosts);
    let run = app.deploy_fails("4.0.0", 12);
    assert_has(&run.stderr, "the backup would not fit");
    assert_eq!(app.versions(&tb, &hosts), serving);
    tb.sh_ok(&hosts[0], &format!("rm -f {huge}"));

    let report = load.stop();
    report.assert_no_failures(
        "deploys, a restore, a rollback and a failed deploy beside the accessories",
    );

    // Removed: stopped, its unit gone, its data kept.
    let run = app
        .shipit(&["accessory", "remove", "production", "cache", "--yes"])
        .success();
    assert_has(&run.stderr, "data kept");
    let gone = tb.sh(
        &hosts[1],
        &format!("test -e /etc/systemd/system/{name}_production_cache.service"),
    );
    assert!(!gone.status.success());
    tb.sh_ok(&hosts[1], &format!("test -d {DATA}/cache"));
    cleanup(&tb, &hosts, name);
}

fn cleanup(tb: &Testbed, hosts: &[TestHost], name: &str) {
    for h in hosts {
        tb.wipe(h, name);
        tb.sh_ok(h, &format!("rm -rf {DATA}"));
    }
}
