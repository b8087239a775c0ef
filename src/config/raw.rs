//! The configuration as written in the files, before validation.
//!
//! Owns: the serde shapes of `shipit.toml` and `environments/<env>.toml` (one shape for both, so
//! the environment file may override any key of the base), the position of every value, and the
//! merge of the two files. Must not: judge values (that is `validate`) or touch anything but the
//! strings it is given.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Deserializer};

/// Which of the two configuration files a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileId {
    Base,
    Environment,
}

thread_local! {
    // The file being deserialized on this thread. `Val` reads it so that every value carries
    // its file without a second walk over the tree; `parse` sets it around one `toml::from_str`.
    static CURRENT_FILE: Cell<FileId> = const { Cell::new(FileId::Base) };
}

/// A value with its file and byte span.
#[derive(Clone, Debug)]
pub struct Val<T> {
    pub value: T,
    pub span: Range<usize>,
    pub file: FileId,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Val<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<T>::deserialize(deserializer)?;
        Ok(Val {
            span: spanned.span(),
            value: spanned.into_inner(),
            file: CURRENT_FILE.with(Cell::get),
        })
    }
}

/// Parse one file's text. The error keeps toml's span and message.
pub fn parse(text: &str, file: FileId) -> Result<RawConfig, toml::de::Error> {
    CURRENT_FILE.with(|c| c.set(file));
    toml::from_str(text)
}

/// Combine two layers: `over` wins for leaves; tables merge key by key.
pub trait Merge {
    fn merge(self, over: Self) -> Self;
}

impl<T> Merge for Val<T> {
    fn merge(self, over: Self) -> Self {
        over
    }
}

impl<T: Merge> Merge for Option<T> {
    fn merge(self, over: Self) -> Self {
        match (self, over) {
            (Some(base), Some(over)) => Some(base.merge(over)),
            (base, over) => over.or(base),
        }
    }
}

impl<V> Merge for BTreeMap<String, V> {
    fn merge(mut self, over: Self) -> Self {
        self.extend(over);
        self
    }
}

macro_rules! raw_table {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $(pub $field: Option<$ty>),* }

        impl Merge for $name {
            fn merge(self, over: Self) -> Self {
                $name { $($field: self.$field.merge(over.$field)),* }
            }
        }
    };
}

raw_table!(
    /// The top level of both files.
    RawConfig {
        app: Val<String>,
        image: Val<String>,
        dockerfile: Val<String>,
        context: Val<String>,
        platform: Val<String>,
        version: Val<String>,
        build_args: BTreeMap<String, Val<String>>,
        domain: Val<String>,
        hosts: Val<Vec<Val<String>>>,
        registry: RawRegistry,
        container: RawContainer,
        ports: RawPorts,
        health: RawHealth,
        env: RawEnv,
        ssh: RawSsh,
        tls: RawTls,
        nginx: RawNginx,
        deploy: RawDeploy,
        hooks: RawHooks,
        smoke: RawSmoke,
        notify: RawNotify,
        processes: BTreeMap<String, Val<RawProcess>>,
        jobs: BTreeMap<String, Val<RawJob>>,
        accessories: BTreeMap<String, Val<RawAccessory>>,
        backup: RawBackup,
        preview: RawPreview,
        canary: RawCanary,
    }
);

/// A process beside the web one (`[processes.<name>]`): an environment file's entry replaces
/// the base's whole.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub command: Option<Val<Vec<Val<String>>>>,
    pub hosts: Option<Val<Vec<Val<String>>>>,
    pub ready_command: Option<Val<Vec<Val<String>>>>,
    pub ready_after: Option<Val<String>>,
}

/// A scheduled job (`[jobs.<name>]`), replaced whole by an environment file's entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub schedule: Option<Val<String>>,
    pub command: Option<Val<Vec<Val<String>>>>,
    pub host: Option<Val<String>>,
    pub randomized_delay: Option<Val<String>>,
    pub persistent: Option<Val<bool>>,
    pub image: Option<Val<String>>,
}

/// A service the app uses (`[accessories.<name>]`), replaced whole by an environment file's
/// entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessory {
    pub image: Option<Val<String>>,
    pub host: Option<Val<String>>,
    pub port: Option<Val<i64>>,
    pub bind: Option<Val<String>>,
    pub volumes: Option<Val<Vec<Val<String>>>>,
    pub env: Option<RawEnv>,
    pub health: Option<Val<Vec<Val<String>>>>,
    pub health_timeout: Option<Val<String>>,
    pub memory_max: Option<Val<String>>,
    pub cpu_quota: Option<Val<String>>,
    pub url: Option<Val<String>>,
    pub url_env: Option<Val<String>>,
}

raw_table!(RawHooks {
    pre_deploy: Val<Vec<Val<String>>>,
    post_deploy: Val<Vec<Val<String>>>,
});

raw_table!(RawSmoke {
    requests: Val<i64>,
    max_error_rate: Val<f64>,
    max_p95: Val<String>,
    path: Val<String>,
});

raw_table!(RawNotify {
    webhook: Val<String>,
    slack: Val<String>,
    discord: Val<String>,
});

raw_table!(RawRegistry {
    server: Val<String>,
    username: Val<String>,
    password_env: Val<String>,
});

raw_table!(RawContainer {
    port: Val<i64>,
    memory_max: Val<String>,
    cpu_quota: Val<String>,
    volumes: Val<Vec<Val<String>>>,
});

raw_table!(RawBackup {
    command: Val<Vec<Val<String>>>,
    restore: Val<Vec<Val<String>>>,
    image: Val<String>,
    host: Val<String>,
    keep: Val<i64>,
});

raw_table!(RawPreview {
    host: Val<String>,
    header: Val<String>,
});

raw_table!(RawCanary {
    steps: Val<Vec<Val<String>>>,
    hold: Val<String>,
    max_error_rate: Val<f64>,
    max_error_increase: Val<f64>,
    max_p95_ratio: Val<f64>,
    min_requests: Val<i64>,
});

raw_table!(RawPorts {
    blue: Val<i64>,
    green: Val<i64>,
});

raw_table!(RawHealth {
    path: Val<String>,
    expect_json: Val<toml::Table>,
    timeout: Val<String>,
});

raw_table!(RawEnv {
    clear: BTreeMap<String, Val<String>>,
    secret: Val<Vec<Val<String>>>,
});

raw_table!(RawSsh {
    identity: Val<String>,
    known_hosts: Val<String>,
    known_hosts_file: Val<String>,
    connect_timeout: Val<String>,
    max_parallel: Val<i64>,
    max_starts: Val<i64>,
    persist: Val<String>,
    bastion: Val<String>,
    config_file: Val<String>,
});

raw_table!(RawTls {
    certificate: Val<String>,
    certificate_key: Val<String>,
    acme: RawAcme,
});

raw_table!(RawAcme {
    email: Val<String>,
    directory: Val<String>,
    renew_before: Val<String>,
});

raw_table!(RawNginx {
    csp: Val<String>,
    csp_enforce: Val<bool>,
    rate_limit: RawRateLimit,
    trusted_proxies: Val<Vec<Val<String>>>,
});

raw_table!(RawRateLimit {
    rate: Val<String>,
    burst: Val<i64>,
});

raw_table!(RawDeploy {
    images: Val<String>,
    release_command: Val<Vec<Val<String>>>,
    release_host: Val<String>,
    retain: Val<i64>,
    keep_previous: Val<String>,
    verify_window: Val<String>,
    drain: Val<String>,
    tolerate_unreachable: Val<i64>,
    lock_lease: Val<String>,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_leaves_and_merges_tables() {
        let base = parse(
            "app = \"a\"\n[container]\nport = 1\nmemory_max = \"1G\"\n[env.clear]\nA = \"1\"\nB = \"2\"\n",
            FileId::Base,
        )
        .unwrap();
        let env = parse(
            "[container]\nport = 2\n[env.clear]\nB = \"3\"\n",
            FileId::Environment,
        )
        .unwrap();
        let merged = base.merge(env);
        let container = merged.container.unwrap();
        assert_eq!(container.port.as_ref().unwrap().value, 2);
        assert_eq!(container.port.unwrap().file, FileId::Environment);
        assert_eq!(container.memory_max.unwrap().file, FileId::Base);
        let clear = merged.env.unwrap().clear.unwrap();
        assert_eq!(clear["A"].value, "1");
        assert_eq!(clear["B"].value, "3");
        assert_eq!(merged.app.unwrap().file, FileId::Base);
    }
}
