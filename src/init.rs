//! `shipit init`: scaffold an app directory, with comments, refusing to overwrite anything.
//!
//! Owns the scaffold's files and the choice of the production image: [`detect`] reads the app's
//! manifests (given as text in [`AppFiles`], so it is tested without I/O) into a [`Stack`], which
//! renders a multi-stage `Dockerfile.production` and a `.dockerignore`. Only [`init`] touches the
//! file system; nothing here runs Docker.

use std::path::Path;

use crate::error::Error;
use crate::ui;

/// The health path the scaffold configures and the image's HEALTHCHECK asks for.
const HEALTH_PATH: &str = "/health";
/// The uid and gid the app runs as in every scaffolded image.
const UID: u32 = 10001;
const DOCKERFILE: &str = "Dockerfile.production";

/// What [`detect`] looks at in the app directory: the manifests' text, and which lock files
/// exist.
#[derive(Debug, Default, Clone)]
pub struct AppFiles {
    pub cargo_toml: Option<String>,
    pub cargo_lock: bool,
    pub package_json: Option<String>,
    pub package_lock: bool,
    pub pyproject: Option<String>,
    pub requirements: bool,
}

impl AppFiles {
    /// The manifests in `dir`; a missing file is `None`, one that cannot be read an error.
    pub fn read(dir: &Path) -> Result<AppFiles, Error> {
        let text = |name: &str| -> Result<Option<String>, Error> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Read { path, source }),
            }
        };
        let exists = |name: &str| dir.join(name).is_file();
        Ok(AppFiles {
            cargo_toml: text("Cargo.toml")?,
            cargo_lock: exists("Cargo.lock"),
            package_json: text("package.json")?,
            package_lock: exists("package-lock.json"),
            pyproject: text("pyproject.toml")?,
            requirements: exists("requirements.txt"),
        })
    }
}

/// The kind of app found, with what its Dockerfile needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stack {
    Rust(RustApp),
    Node(NodeApp),
    Python(PythonApp),
    /// None recognised: a Dockerfile with `CHANGE ME` lines to fill in; `reason` says why.
    Generic {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustApp {
    /// The package's name.
    pub package: String,
    /// The binary built and run.
    pub bin: String,
    /// The `[[bin]]` names, when there are several (then `bin` is the package's name).
    pub several: Vec<String>,
    /// Cargo.lock exists: it is copied and builds are `--locked`.
    pub locked: bool,
    /// The stand-in files that let cargo build the dependencies from Cargo.toml alone, in a
    /// layer of their own; or why it cannot.
    pub deps_layer: Result<Vec<String>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeApp {
    pub start: NodeStart,
    /// package-lock.json exists: `npm ci`, else `npm install`.
    pub locked: bool,
    /// `scripts.build` exists: run in the build stage.
    pub build: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStart {
    /// `npm start` (`scripts.start`).
    Script,
    /// `node <main>`.
    Main(String),
    /// Neither: `node index.js` (npm's default `main`), to be checked.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonApp {
    /// `pip install -r requirements.txt`.
    pub requirements: bool,
    /// `pip install .`.
    pub pyproject: bool,
    pub start: PythonStart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonStart {
    /// The one `[project.scripts]` entry, installed in the virtual environment.
    Script(String),
    /// `python -m <module>`: a guess (from pyproject.toml's name, else `app`), to be checked.
    Module(String),
}

/// The stack of the app whose manifests are `files`: Rust, Node, Python in that order, else
/// generic. Never fails: a manifest that cannot be used gives generic, with the reason.
pub fn detect(files: &AppFiles) -> Stack {
    if let Some(text) = &files.cargo_toml {
        return rust(text, files.cargo_lock);
    }
    if let Some(text) = &files.package_json {
        return node(text, files.package_lock);
    }
    if files.pyproject.is_some() || files.requirements {
        return python(files.pyproject.as_deref(), files.requirements);
    }
    Stack::Generic {
        reason: "no Cargo.toml, package.json, pyproject.toml or requirements.txt".into(),
    }
}

fn generic(file: &str, why: impl std::fmt::Display) -> Stack {
    Stack::Generic {
        reason: format!("`{file}` {why}"),
    }
}

/// A TOML error in one line: `line N: message`.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}

/// A package or binary name that can go into a shell command and a path as it is.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A relative path of plain characters, inside the build directory.
fn is_plain_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with(['/', '-'])
        && !path.ends_with('/')
        && path.split('/').all(|part| part != "..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn rust(text: &str, locked: bool) -> Stack {
    use toml::Value;
    let doc: toml::Table = match text.parse() {
        Ok(doc) => doc,
        Err(e) => {
            return generic(
                "Cargo.toml",
                format!("is not valid TOML: {}", toml_error(text, &e)),
            );
        }
    };
    let Some(package) = doc.get("package") else {
        return if doc.contains_key("workspace") {
            generic(
                "Cargo.toml",
                "is a workspace root without `[package]`: write the build stage for the member to deploy",
            )
        } else {
            generic("Cargo.toml", "has no `[package]`")
        };
    };
    let Some(name) = package.get("name").and_then(Value::as_str) else {
        return generic("Cargo.toml", "has no `package.name`");
    };
    if !is_plain_name(name) {
        return generic(
            "Cargo.toml",
            format!(
                "names the package `{}`: not a cargo name",
                name.escape_debug()
            ),
        );
    }
    let bins: Vec<&Value> = match doc.get("bin") {
        None => Vec::new(),
        Some(Value::Array(bins)) => bins.iter().collect(),
        Some(_) => return generic("Cargo.toml", "has a `bin` that is not `[[bin]]` tables"),
    };
    let mut names = Vec::new();
    for bin in &bins {
        match bin.get("name").and_then(Value::as_str) {
            Some(n) if is_plain_name(n) => names.push(n.to_owned()),
            Some(n) => {
                return generic(
                    "Cargo.toml",
                    format!("names a binary `{}`: not a cargo name", n.escape_debug()),
                );
            }
            None => return generic("Cargo.toml", "has a `[[bin]]` without a `name`"),
        }
    }
    let bin = match names.as_slice() {
        [one] => one.clone(),
        _ => name.to_owned(),
    };

    // Where cargo looks for the targets it must find to build the dependencies.
    let mut stand_ins: Vec<String> = Vec::new();
    let mut path_of = |table: &Value, default: String| match table.get("path") {
        None => {
            stand_ins.push(default);
            true
        }
        Some(Value::String(p)) => {
            stand_ins.push(p.clone());
            true
        }
        Some(_) => false,
    };
    let mut paths_ok = true;
    if let Some(lib) = doc.get("lib") {
        paths_ok &= path_of(lib, "src/lib.rs".into());
    }
    for (table, n) in bins.iter().zip(&names) {
        let default = if n == name {
            "src/main.rs".to_owned()
        } else {
            format!("src/bin/{n}.rs")
        };
        paths_ok &= path_of(table, default);
    }
    if bin == name && !names.contains(&bin) {
        stand_ins.push("src/main.rs".into());
    }
    match package.get("build") {
        Some(Value::String(p)) => stand_ins.push(p.clone()),
        Some(Value::Boolean(true)) => stand_ins.push("build.rs".into()),
        _ => {}
    }
    stand_ins.sort();
    stand_ins.dedup();

    let members = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty());
    let deps_layer = if members {
        Err("the workspace's members need their sources".to_owned())
    } else if has_path_dependency(&doc) {
        Err("path dependencies need their sources".to_owned())
    } else if !paths_ok || !stand_ins.iter().all(|p| is_plain_path(p)) {
        Err("a target's path in Cargo.toml is not a plain relative path".to_owned())
    } else {
        Ok(stand_ins)
    };
    Stack::Rust(RustApp {
        package: name.to_owned(),
        bin,
        several: if names.len() > 1 { names } else { Vec::new() },
        locked,
        deps_layer,
    })
}

/// Whether a dependency (of any kind, target, the workspace's, a patch) is a `path` one.
fn has_path_dependency(doc: &toml::Table) -> bool {
    use toml::Value;
    fn any_path(deps: Option<&Value>) -> bool {
        deps.and_then(Value::as_table)
            .is_some_and(|t| t.values().any(|d| d.get("path").is_some()))
    }
    const KINDS: [&str; 5] = [
        "dependencies",
        "dev-dependencies",
        "build-dependencies",
        "dev_dependencies",
        "build_dependencies",
    ];
    let in_table = |t: &toml::Table| KINDS.iter().any(|k| any_path(t.get(*k)));
    in_table(doc)
        || doc
            .get("target")
            .and_then(Value::as_table)
            .is_some_and(|targets| targets.values().filter_map(Value::as_table).any(in_table))
        || doc
            .get("workspace")
            .is_some_and(|w| any_path(w.get("dependencies")))
        || doc
            .get("patch")
            .and_then(Value::as_table)
            .is_some_and(|sources| sources.values().any(|s| any_path(Some(s))))
        || any_path(doc.get("replace"))
}

fn node(text: &str, locked: bool) -> Stack {
    use serde_json::Value;
    let json: Value = match serde_json::from_str(text) {
        Ok(json) => json,
        Err(e) => return generic("package.json", format!("is not valid JSON: {e}")),
    };
    let Some(object) = json.as_object() else {
        return generic("package.json", "is not a JSON object");
    };
    let script = |name: &str| {
        object
            .get("scripts")
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    let main = object
        .get("main")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty());
    let start = match main {
        _ if script("start") => NodeStart::Script,
        Some(main) => NodeStart::Main(main.to_owned()),
        None => NodeStart::Missing,
    };
    Stack::Node(NodeApp {
        start,
        locked,
        build: script("build"),
    })
}

fn python(pyproject: Option<&str>, requirements: bool) -> Stack {
    use toml::Value;
    let mut start = PythonStart::Module("app".into());
    if let Some(text) = pyproject {
        let doc: toml::Table = match text.parse() {
            Ok(doc) => doc,
            Err(e) => {
                return generic(
                    "pyproject.toml",
                    format!("is not valid TOML: {}", toml_error(text, &e)),
                );
            }
        };
        let project = doc
            .get("project")
            .or_else(|| doc.get("tool").and_then(|t| t.get("poetry")));
        let name = project
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(|n| n.to_lowercase().replace(['-', '.'], "_"))
            .filter(|n| {
                n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        let scripts: Vec<&String> = project
            .and_then(|p| p.get("scripts"))
            .and_then(Value::as_table)
            .map(|t| t.keys().collect())
            .unwrap_or_default();
        start = match (scripts.as_slice(), name) {
            ([one], _) if is_plain_path(one) && !one.contains('/') => {
                PythonStart::Script((*one).clone())
            }
            (_, Some(name)) => PythonStart::Module(name),
            _ => start,
        };
    }
    Stack::Python(PythonApp {
        requirements,
        pyproject: pyproject.is_some(),
        start,
    })
}

/// A JSON array of strings, for the exec form of CMD and HEALTHCHECK: escaped by construction.
fn exec_form(args: &[&str]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|a| serde_json::Value::from(*a).to_string())
        .collect();
    format!("[{}]", args.join(", "))
}

impl Stack {
    /// The port the app listens on in the container (`container.port`).
    pub fn port(&self) -> u16 {
        match self {
            Stack::Python(_) => 8000,
            Stack::Rust(_) | Stack::Node(_) | Stack::Generic { .. } => 3000,
        }
    }

    /// The default base images: (builder, runtime).
    fn bases(&self) -> (&'static str, &'static str) {
        match self {
            Stack::Rust(_) => ("rust:1-slim-bookworm", "debian:bookworm-slim"),
            Stack::Node(_) => ("node:22-bookworm-slim", "node:22-bookworm-slim"),
            Stack::Python(_) => ("python:3.12-slim-bookworm", "python:3.12-slim-bookworm"),
            Stack::Generic { .. } => ("debian:bookworm-slim", "debian:bookworm-slim"),
        }
    }

    /// The HEALTHCHECK's command, with a program the runtime image has (none has curl).
    fn health_command(&self) -> (&'static str, String) {
        let port = self.port();
        let url = format!("http://127.0.0.1:{port}{HEALTH_PATH}");
        match self {
            Stack::Node(_) => (
                "node's fetch",
                exec_form(&[
                    "node",
                    "-e",
                    &format!(
                        "fetch('{url}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
                    ),
                ]),
            ),
            Stack::Python(_) => (
                "python's urllib (an error status raises; no proxy)",
                exec_form(&[
                    "python",
                    "-c",
                    &format!(
                        "import urllib.request as u; u.build_opener(u.ProxyHandler({{}})).open('{url}', timeout=2)"
                    ),
                ]),
            ),
            Stack::Rust(_) | Stack::Generic { .. } => (
                "bash's /dev/tcp",
                exec_form(&[
                    "bash",
                    "-c",
                    &format!(
                        "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {HEALTH_PATH} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -Eq '^HTTP/[0-9.]+ 2[0-9][0-9]([^0-9]|$)'"
                    ),
                ]),
            ),
        }
    }

    /// What was found, for the `Detected` line.
    pub fn detected(&self) -> String {
        match self {
            Stack::Rust(app) => {
                let mut line = format!("a Rust app (Cargo.toml): the binary `{}`", app.bin);
                if !app.several.is_empty() {
                    line += &format!(
                        "; several binaries ({}): building the package's name, change `--bin` in {DOCKERFILE} to pick another",
                        app.several
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if !app.locked {
                    line += "; no Cargo.lock, so builds are not `--locked`";
                }
                if let Err(why) = &app.deps_layer {
                    line += &format!("; dependencies are built with the app, not cached: {why}");
                }
                line
            }
            Stack::Node(app) => {
                let start = match &app.start {
                    NodeStart::Script => "`npm start` (scripts.start)".to_owned(),
                    NodeStart::Main(main) => format!("`node {}` (main)", main.escape_debug()),
                    NodeStart::Missing => format!(
                        "no scripts.start or main, so `node index.js`: check CHANGE ME in {DOCKERFILE}"
                    ),
                };
                let install = if app.locked {
                    "`npm ci` (package-lock.json)"
                } else {
                    "`npm install` (no package-lock.json)"
                };
                let build = if app.build { ", `npm run build`" } else { "" };
                format!("a Node app (package.json): {install}{build}, {start}")
            }
            Stack::Python(app) => {
                let files = match (app.requirements, app.pyproject) {
                    (true, true) => "requirements.txt, pyproject.toml",
                    (true, false) => "requirements.txt",
                    _ => "pyproject.toml",
                };
                let start = match &app.start {
                    PythonStart::Script(s) => format!("`{s}` ([project.scripts])"),
                    PythonStart::Module(m) => format!(
                        "`python -m {m}` (a guess: say how the app starts at CHANGE ME in {DOCKERFILE})"
                    ),
                };
                format!("a Python app ({files}): {start}")
            }
            Stack::Generic { reason } => format!("no Rust, Node or Python app: {reason}"),
        }
    }

    /// What the Dockerfile does, for the `Created` line.
    pub fn summary(&self) -> String {
        let (_, runtime) = self.bases();
        let port = self.port();
        let what = match self {
            Stack::Rust(app) => format!("Rust: cargo build --release of `{}`", app.bin),
            Stack::Node(app) => {
                let mut steps = vec![if app.locked { "npm ci" } else { "npm install" }];
                if app.build {
                    steps.push("npm run build");
                }
                let start = match &app.start {
                    NodeStart::Script => "`npm start`".to_owned(),
                    NodeStart::Main(main) => format!("`node {}`", main.escape_debug()),
                    NodeStart::Missing => "`node index.js` (CHANGE ME: how it starts)".to_owned(),
                };
                format!("Node: {}, then {start}", steps.join(", "))
            }
            Stack::Python(app) => {
                let mut steps = Vec::new();
                if app.requirements {
                    steps.push("pip install -r requirements.txt");
                }
                if app.pyproject {
                    steps.push("pip install .");
                }
                let start = match &app.start {
                    PythonStart::Script(s) => format!("`{s}`"),
                    PythonStart::Module(m) => {
                        format!("`python -m {m}` (CHANGE ME: how it starts)")
                    }
                };
                format!("Python: {}, then {start}", steps.join(", "))
            }
            Stack::Generic { .. } => {
                "a template: fill in its build stage and start command at CHANGE ME".to_owned()
            }
        };
        format!(
            "{what}, runtime {runtime} as uid {UID}, HEALTHCHECK GET {HEALTH_PATH} on port {port}"
        )
    }

    /// `Dockerfile.production`: a build stage and a slim runtime stage, the bases as build
    /// arguments, the app as uid 10001, EXPOSE and a HEALTHCHECK on the configured port and path.
    pub fn dockerfile(&self) -> String {
        let (builder, runtime) = self.bases();
        let port = self.port();
        let for_what = match self {
            Stack::Rust(app) => format!("a Rust app (the binary `{}`)", app.bin),
            Stack::Node(_) => "a Node app".to_owned(),
            Stack::Python(_) => "a Python app".to_owned(),
            Stack::Generic { .. } => {
                "an app of a kind it does not know.\n# Fill in the lines marked CHANGE ME"
                    .to_owned()
            }
        };
        let mut out = format!(
            r#"# The image shipit builds and deploys, written by `shipit init` for {for_what}.
# The app must listen on 0.0.0.0:{port} (`container.port` in shipit.toml) and answer
# GET {HEALTH_PATH} with a 2xx (`health.path`): change them here and there together.
#
# The base images are build arguments, to pin or mirror them:
#   docker build -f {DOCKERFILE} --build-arg BUILDER_IMAGE=... --build-arg RUNTIME_IMAGE=... .
# Works with the legacy builder (no BuildKit needed).

ARG BUILDER_IMAGE={builder}
ARG RUNTIME_IMAGE={runtime}

# --- build ------------------------------------------------------------------------------------
FROM ${{BUILDER_IMAGE}} AS build
"#
        );
        out += &match self {
            Stack::Rust(app) => rust_build(app),
            Stack::Node(app) => node_build(app),
            Stack::Python(app) => python_build(app),
            Stack::Generic { .. } => GENERIC_BUILD.to_owned(),
        };
        let user = format!(
            "groupadd --gid {UID} app \\\n    && useradd --uid {UID} --gid {UID} --home-dir /home/app --create-home --no-log-init \\\n        --shell /usr/sbin/nologin app\n"
        );
        let just_user = format!("# The user the app runs as: uid {UID}, not root.\nRUN {user}");
        let runtime = match self {
            Stack::Rust(app) => Runtime {
                setup: format!(
                    r#"# CA certificates for outgoing HTTPS (installed only when the base lacks them), and the user
# the app runs as: uid {UID}, not root.
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && {user}"#
                ),
                copy: format!(
                    "COPY --from=build /out/{bin} /usr/local/bin/{bin}\n",
                    bin = app.bin
                ),
                env: format!("PORT={port}"),
                command: format!(
                    "CMD {}\n",
                    exec_form(&[&format!("/usr/local/bin/{}", app.bin)])
                ),
            },
            Stack::Node(app) => Runtime {
                setup: just_user,
                copy: "WORKDIR /app\nCOPY --from=build /app /app\n".to_owned(),
                env: format!("NODE_ENV=production PORT={port}"),
                command: match &app.start {
                    NodeStart::Script => format!(
                        "# package.json's scripts.start. When it only runs node, running node directly\n\
                         # (CMD [\"node\", \"server.js\"]) passes `docker stop` straight to the app.\n\
                         CMD {}\n",
                        exec_form(&["npm", "start"])
                    ),
                    NodeStart::Main(main) => format!(
                        "# package.json's main.\nCMD {}\n",
                        exec_form(&["node", main])
                    ),
                    NodeStart::Missing => format!(
                        "# CHANGE ME: how the app starts. package.json has no scripts.start or main; index.js\n\
                         # is npm's default.\n\
                         CMD {}\n",
                        exec_form(&["node", "index.js"])
                    ),
                },
            },
            Stack::Python(app) => Runtime {
                setup: just_user,
                copy: "WORKDIR /app\nCOPY --from=build /venv /venv\nCOPY --from=build /app /app\n"
                    .to_owned(),
                env: format!(
                    "PATH=/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT={port}"
                ),
                command: match &app.start {
                    PythonStart::Script(s) => format!(
                        "# The one entry of [project.scripts], installed in /venv/bin.\nCMD {}\n",
                        exec_form(&[s])
                    ),
                    PythonStart::Module(m) => format!(
                        r#"# CHANGE ME: how the app starts, listening on 0.0.0.0:{port}. `python -m {m}` is a guess;
# a WSGI or ASGI app is started by its server, such as
#   CMD ["gunicorn", "--bind", "0.0.0.0:{port}", "mypackage.wsgi"]
#   CMD ["uvicorn", "--host", "0.0.0.0", "--port", "{port}", "mypackage.main:app"]
CMD {}
"#,
                        exec_form(&["python", "-m", m])
                    ),
                },
            },
            Stack::Generic { .. } => Runtime {
                setup: just_user,
                copy: "WORKDIR /app\nCOPY --from=build /out/ /app/\n".to_owned(),
                env: format!("PORT={port}"),
                command: format!(
                    "# CHANGE ME: how the app starts, listening on 0.0.0.0:{port}.\nCMD {}\n",
                    exec_form(&["/app/app"])
                ),
            },
        };
        let Runtime {
            setup,
            copy,
            env,
            command,
        } = runtime;
        let (tool, health) = self.health_command();
        out += &format!(
            r#"
# --- runtime ----------------------------------------------------------------------------------
FROM ${{RUNTIME_IMAGE}}
{setup}{copy}ENV {env}
USER {UID}:{UID}
EXPOSE {port}
# Docker's own view of the app's health (`docker ps`, `docker inspect`): GET {HEALTH_PATH} on port
# {port}, with {tool}.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD {health}
{command}"#
        );
        out
    }

    /// `.dockerignore`: what never goes into the build context.
    pub fn dockerignore(&self) -> String {
        let own = match self {
            Stack::Rust(_) => "target\n",
            Stack::Node(_) => "**/node_modules\nnpm-debug.log*\n",
            Stack::Python(_) => "**/__pycache__\n**/*.py[cod]\n.venv\n.pytest_cache\n",
            Stack::Generic { .. } => "",
        };
        format!(
            "# Kept out of the build context (Docker's rules: anchored at the root, `**`, `!`).\n\
             .git\n.env\nenvironments\n{own}"
        )
    }
}

fn rust_build(app: &RustApp) -> String {
    let locked = if app.locked { " --locked" } else { "" };
    let bin = &app.bin;
    let mut out = "WORKDIR /build\n\n".to_owned();
    if !app.locked {
        out += "# No Cargo.lock: commit one (cargo generate-lockfile), copy it with Cargo.toml and build\n\
                # with --locked, so that every build resolves the same versions.\n";
    }
    let manifests = if app.locked {
        "COPY Cargo.toml Cargo.lock ./\n"
    } else {
        "COPY Cargo.toml ./\n"
    };
    match &app.deps_layer {
        Ok(stand_ins) => {
            let mut dirs: Vec<&str> = stand_ins
                .iter()
                .filter_map(|p| p.rsplit_once('/').map(|(dir, _)| dir))
                .collect();
            dirs.sort_unstable();
            dirs.dedup();
            let mkdir = if dirs.is_empty() {
                String::new()
            } else {
                format!("mkdir -p {} \\\n    && ", dirs.join(" "))
            };
            let files = stand_ins.join(" ");
            out += &format!(
                r#"# 1. The dependencies, from the manifests alone: this layer is reused until they change.
#    Stand-ins for the crate's own sources let cargo build them; then the stand-ins and the
#    crate's own build records are dropped.
{manifests}RUN {mkdir}printf 'fn main() {{}}\n' | tee {files} >/dev/null \
    && cargo build --release{locked} --bin {bin} \
    && rm -rf {files} target/release/.fingerprint/{package}-*

# 2. The app. COPY keeps the files' modification times, older than the stand-ins' build: touch
#    them so that cargo sees them as changed.
"#,
                package = app.package
            );
        }
        Err(why) => {
            out += &format!(
                "# The dependencies are built with the app, not in a layer of their own:\n# {why}.\n"
            );
        }
    }
    if !app.several.is_empty() {
        out += &format!(
            "# CHANGE ME if needed: Cargo.toml has several binaries ({}); this builds `{bin}`.\n",
            app.several.join(", ")
        );
    }
    out += "COPY . .\n";
    let touch = if app.deps_layer.is_ok() {
        "find . -path ./target -prune -o -type f -exec touch {} + \\\n    && "
    } else {
        ""
    };
    out += &format!(
        "RUN {touch}cargo build --release{locked} --bin {bin} \\\n    && install -D -m 0755 target/release/{bin} /out/{bin}\n"
    );
    out
}

fn node_build(app: &NodeApp) -> String {
    let (manifests, install) = if app.locked {
        ("package.json package-lock.json", "npm ci")
    } else {
        ("package.json", "npm install")
    };
    let mut out = "WORKDIR /app\n\n".to_owned();
    if !app.locked {
        out += "# No package-lock.json: commit one (npm install writes it) and use `npm ci`, so that\n\
                # every build installs the same versions.\n";
    }
    if app.build {
        out += &format!(
            r#"# 1. The dependencies, from the manifests alone: this layer is reused until they change.
COPY {manifests} ./
RUN {install}

# 2. The app, built with `npm run build`; then the development dependencies are dropped.
COPY . .
RUN npm run build \
    && npm prune --omit=dev
"#
        );
    } else {
        out += &format!(
            r#"# 1. The production dependencies, from the manifests alone: this layer is reused until they
#    change.
COPY {manifests} ./
RUN {install} --omit=dev

# 2. The app.
COPY . .
"#
        );
    }
    out
}

fn python_build(app: &PythonApp) -> String {
    let mut out = r#"WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The app's packages go into a virtual environment at /venv, copied whole into the runtime stage
# (the same Python at the same path).
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH
"#
    .to_owned();
    if app.requirements {
        out += r#"
# 1. The dependencies, from requirements.txt alone: this layer is reused until it changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# 2. The app.
COPY . .
"#;
    } else {
        out += "\n# The app and its dependencies, from pyproject.toml.\nCOPY . .\n";
    }
    if app.pyproject {
        out += "RUN pip install .\n";
    }
    out
}

/// The runtime stage of a stack's Dockerfile, around the lines every stack has.
struct Runtime {
    /// The RUN that creates the user (and installs what the base may lack).
    setup: String,
    /// The WORKDIR and the COPY of the build's output.
    copy: String,
    /// The variables of the ENV line.
    env: String,
    /// The CMD, with its comment.
    command: String,
}

const GENERIC_BUILD: &str = r#"WORKDIR /src
COPY . .
# CHANGE ME: build the app here, and put what it needs at run time in /out, its program at
# /out/app. Until then the build stops with this message.
RUN echo 'Dockerfile.production: shipit init found no stack it knows; fill in the lines marked CHANGE ME' >&2 \
    && exit 1
"#;

/// The files `init` writes for `stack`, by path relative to the app directory.
pub fn scaffold(app: &str, stack: &Stack) -> Vec<(&'static str, String)> {
    let port = stack.port();
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
port = {port}                            # the app's port in the container, as in Dockerfile.production
memory_max = "512M"
cpu_quota = "100%"

[health]
path = "{HEALTH_PATH}"                       # must answer 2xx before traffic moves
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
        (DOCKERFILE, stack.dockerfile()),
        (".dockerignore", stack.dockerignore()),
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

/// Write the scaffold into `dir`, with the Dockerfile of the stack found there; nothing is
/// written if any file exists (but a Dockerfile.production, which is kept).
pub fn init(dir: &Path, app: &str) -> Result<(), Error> {
    if !crate::config::is_name(app) || app.ends_with('-') {
        return Err(Error::InitName {
            name: app.to_owned(),
        });
    }
    let stack = detect(&AppFiles::read(dir)?);
    let files = scaffold(app, &stack);
    let existing: Vec<String> = files
        .iter()
        .map(|(rel, _)| *rel)
        .filter(|rel| dir.join(rel).exists() && *rel != DOCKERFILE)
        .map(str::to_owned)
        .collect();
    if !existing.is_empty() {
        return Err(Error::InitExists { files: existing });
    }
    let keep_dockerfile = dir.join(DOCKERFILE).exists();
    if keep_dockerfile {
        ui::status(
            "Detected",
            &format!(
                "{} (your {DOCKERFILE} is kept; shipit init would write: {})",
                stack.detected(),
                stack.summary()
            ),
        );
    } else {
        ui::status("Detected", &stack.detected());
    }
    for (rel, text) in files {
        let path = dir.join(rel);
        if rel == DOCKERFILE && keep_dockerfile {
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
        if rel == DOCKERFILE {
            ui::status("Created", &format!("{rel} ({})", stack.summary()));
        } else {
            ui::status("Created", rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cargo(text: &str) -> Stack {
        detect(&AppFiles {
            cargo_toml: Some(text.into()),
            cargo_lock: true,
            ..AppFiles::default()
        })
    }

    fn rust_app(text: &str) -> RustApp {
        match cargo(text) {
            Stack::Rust(app) => app,
            other => panic!("not Rust: {other:?}"),
        }
    }

    fn node(text: &str, locked: bool) -> Stack {
        detect(&AppFiles {
            package_json: Some(text.into()),
            package_lock: locked,
            ..AppFiles::default()
        })
    }

    fn python(pyproject: Option<&str>, requirements: bool) -> Stack {
        detect(&AppFiles {
            pyproject: pyproject.map(str::to_owned),
            requirements,
            ..AppFiles::default()
        })
    }

    /// The reason of a generic stack; a failure for any other.
    #[track_caller]
    fn reason(stack: Stack) -> String {
        match stack {
            Stack::Generic { reason } => reason,
            other => panic!("not generic: {other:?}"),
        }
    }

    const WEB: &str = "[package]\nname = \"web\"\nversion = \"0.1.0\"\nedition = \"2024\"\n";

    #[test]
    fn detects_rust_then_node_then_python_then_generic() {
        let all = AppFiles {
            cargo_toml: Some(WEB.into()),
            package_json: Some(r#"{"scripts": {"start": "node s.js"}}"#.into()),
            pyproject: Some("[project]\nname = \"x\"\n".into()),
            requirements: true,
            ..AppFiles::default()
        };
        assert!(matches!(detect(&all), Stack::Rust(_)));
        let no_rust = AppFiles {
            cargo_toml: None,
            ..all.clone()
        };
        assert!(matches!(detect(&no_rust), Stack::Node(_)));
        let python_only = AppFiles {
            package_json: None,
            ..no_rust
        };
        assert!(matches!(detect(&python_only), Stack::Python(_)));
        assert_eq!(
            reason(detect(&AppFiles::default())),
            "no Cargo.toml, package.json, pyproject.toml or requirements.txt"
        );
    }

    #[test]
    fn rust_builds_the_package_or_its_one_binary() {
        assert_eq!(
            rust_app(WEB),
            RustApp {
                package: "web".into(),
                bin: "web".into(),
                several: vec![],
                locked: true,
                deps_layer: Ok(vec!["src/main.rs".into()]),
            }
        );

        // One [[bin]]: its name, its stand-in where cargo looks for it.
        let app = rust_app(&format!("{WEB}[[bin]]\nname = \"server\"\n"));
        assert_eq!((app.bin.as_str(), app.several.len()), ("server", 0));
        assert_eq!(app.deps_layer, Ok(vec!["src/bin/server.rs".into()]));

        // Several: the package's name, and the others are said.
        let app = rust_app(&format!(
            "{WEB}[[bin]]\nname = \"api\"\n[[bin]]\nname = \"worker\"\npath = \"jobs/worker.rs\"\n"
        ));
        assert_eq!(app.bin, "web");
        assert_eq!(app.several, ["api", "worker"]);
        assert_eq!(
            app.deps_layer,
            Ok(vec![
                "jobs/worker.rs".into(),
                "src/bin/api.rs".into(),
                "src/main.rs".into()
            ])
        );
        assert!(cargo_detected(&app).contains("several binaries (`api`, `worker`)"));

        // A library, an explicit build script, a bin named like the package: every target cargo
        // must find while building the dependencies has a stand-in.
        let app = rust_app(&format!(
            "{WEB}build = \"build/main.rs\"\n[lib]\nname = \"core\"\n[[bin]]\nname = \"web\"\n"
        ));
        assert_eq!(
            app.deps_layer,
            Ok(vec![
                "build/main.rs".into(),
                "src/lib.rs".into(),
                "src/main.rs".into()
            ])
        );

        // No Cargo.lock: not --locked, and said so.
        let Stack::Rust(app) = detect(&AppFiles {
            cargo_toml: Some(WEB.into()),
            ..AppFiles::default()
        }) else {
            panic!("not Rust")
        };
        assert!(!app.locked);
        assert!(cargo_detected(&app).contains("no Cargo.lock"));
    }

    fn cargo_detected(app: &RustApp) -> String {
        Stack::Rust(app.clone()).detected()
    }

    #[test]
    fn rust_dependencies_are_cached_only_when_the_manifest_alone_can_build_them() {
        for (extra, why) in [
            (
                "[workspace]\nmembers = [\"crates/*\"]\n",
                "the workspace's members need their sources",
            ),
            (
                "[dependencies]\nshared = { path = \"../shared\" }\n",
                "path dependencies need their sources",
            ),
            (
                "[dev-dependencies]\nfixtures = { path = \"fixtures\" }\n",
                "path dependencies need their sources",
            ),
            (
                "[target.'cfg(unix)'.dependencies]\nsys = { path = \"sys\" }\n",
                "path dependencies need their sources",
            ),
            (
                "[patch.crates-io]\nserde = { path = \"vendor/serde\" }\n",
                "path dependencies need their sources",
            ),
            (
                "[[bin]]\nname = \"web\"\npath = \"src/$(reboot).rs\"\n",
                "a target's path in Cargo.toml is not a plain relative path",
            ),
            (
                "[lib]\npath = \"../outside/lib.rs\"\n",
                "a target's path in Cargo.toml is not a plain relative path",
            ),
        ] {
            let app = rust_app(&format!("{WEB}{extra}"));
            assert_eq!(app.deps_layer, Err(why.to_owned()), "{extra}");
            let dockerfile = Stack::Rust(app).dockerfile();
            assert!(!dockerfile.contains("stand-in"), "{extra}:\n{dockerfile}");
            assert!(!dockerfile.contains("reboot"), "{extra}:\n{dockerfile}");
        }
        // Registry and workspace-inherited dependencies, an empty workspace: cached.
        let app = rust_app(&format!(
            "{WEB}[dependencies]\nserde = {{ version = \"1\", features = [\"derive\"] }}\nlog = {{ workspace = true }}\n[workspace]\n[workspace.dependencies]\nlog = \"0.4\"\n"
        ));
        assert!(app.deps_layer.is_ok(), "{:?}", app.deps_layer);
    }

    #[test]
    fn unusable_manifests_give_generic_with_the_reason() {
        for (stack, want) in [
            (
                cargo("[workspace]\nmembers = [\"api\", \"web\"]\n"),
                "`Cargo.toml` is a workspace root without `[package]`: write the build stage for the member to deploy",
            ),
            (
                cargo("[package]\nname = \"web\"\nversion = 1.0\n[oops\n"),
                "`Cargo.toml` is not valid TOML: line 4: ",
            ),
            (cargo("[dependencies]\n"), "`Cargo.toml` has no `[package]`"),
            (
                cargo("[package]\nversion = \"1.0.0\"\n"),
                "`Cargo.toml` has no `package.name`",
            ),
            (
                cargo("[package]\nname = \"web; rm -rf /\"\n"),
                "`Cargo.toml` names the package `web; rm -rf /`: not a cargo name",
            ),
            (
                cargo(&format!("{WEB}[[bin]]\nname = \"a\\nRUN evil\"\n")),
                "`Cargo.toml` names a binary `a\\nRUN evil`: not a cargo name",
            ),
            (
                cargo(&format!("{WEB}[[bin]]\npath = \"src/main.rs\"\n")),
                "`Cargo.toml` has a `[[bin]]` without a `name`",
            ),
            (
                cargo(&format!("bin = \"web\"\n{WEB}")),
                "`Cargo.toml` has a `bin` that is not `[[bin]]` tables",
            ),
            (
                node("{\"scripts\": {\"start\": ", true),
                "`package.json` is not valid JSON: EOF while parsing a value at line 1 column 22",
            ),
            (node("[1, 2]", true), "`package.json` is not a JSON object"),
            (
                python(Some("[project\nname = \"x\"\n"), true),
                "`pyproject.toml` is not valid TOML: line 1: ",
            ),
        ] {
            let reason = reason(stack);
            assert!(reason.starts_with(want), "`{reason}` is not `{want}...`");
            assert!(!reason.contains('\n'), "one line: {reason}");
        }
    }

    #[test]
    fn node_starts_with_npm_start_else_main() {
        let full = r#"{"name": "web", "main": "lib/index.js",
            "scripts": {"start": "node server.js", "build": "tsc -p ."}}"#;
        assert_eq!(
            node(full, true),
            Stack::Node(NodeApp {
                start: NodeStart::Script,
                locked: true,
                build: true,
            })
        );
        assert_eq!(
            node(
                r#"{"main": "lib/index.js", "scripts": {"test": "jest"}}"#,
                false
            ),
            Stack::Node(NodeApp {
                start: NodeStart::Main("lib/index.js".into()),
                locked: false,
                build: false,
            })
        );
        // Neither start nor main (nor one that is a string): npm's default, to be checked.
        for text in [
            "{}",
            r#"{"scripts": {"start": ""}, "main": 3}"#,
            r#"{"scripts": "start"}"#,
        ] {
            let Stack::Node(app) = node(text, true) else {
                panic!("not Node: {text}")
            };
            assert_eq!(app.start, NodeStart::Missing, "{text}");
            let stack = Stack::Node(app);
            assert!(stack.detected().contains("CHANGE ME"), "{text}");
            assert!(
                stack
                    .dockerfile()
                    .contains("# CHANGE ME: how the app starts")
            );
        }
    }

    #[test]
    fn python_starts_a_module_it_must_guess_unless_there_is_one_script() {
        assert_eq!(
            python(None, true),
            Stack::Python(PythonApp {
                requirements: true,
                pyproject: false,
                start: PythonStart::Module("app".into()),
            })
        );
        for (pyproject, start) in [
            (
                "[project]\nname = \"My-Shop.api\"\n",
                PythonStart::Module("my_shop_api".into()),
            ),
            (
                "[tool.poetry]\nname = \"shop\"\n",
                PythonStart::Module("shop".into()),
            ),
            (
                "[project]\nname = \"shop\"\n[project.scripts]\nshop-serve = \"shop.main:run\"\n",
                PythonStart::Script("shop-serve".into()),
            ),
            (
                "[project]\nname = \"shop\"\n[project.scripts]\na = \"shop:a\"\nb = \"shop:b\"\n",
                PythonStart::Module("shop".into()),
            ),
            (
                "[project]\nname = \"9lives\"\n",
                PythonStart::Module("app".into()),
            ),
            ("[build-system]\n", PythonStart::Module("app".into())),
        ] {
            let Stack::Python(app) = python(Some(pyproject), false) else {
                panic!("not Python: {pyproject}")
            };
            assert_eq!(app.start, start, "{pyproject}");
            assert!(app.pyproject && !app.requirements);
        }
        let stack = python(None, true);
        assert!(stack.detected().contains("`python -m app` (a guess"));
        assert!(
            stack
                .dockerfile()
                .contains("# CHANGE ME: how the app starts")
        );
    }

    /// Every stack, and the variants that change the Dockerfile's shape.
    fn stacks() -> Vec<(&'static str, Stack)> {
        vec![
            ("rust", cargo(WEB)),
            (
                "rust_several_bins_no_lock",
                detect(&AppFiles {
                    cargo_toml: Some(format!(
                        "{WEB}[lib]\n[[bin]]\nname = \"api\"\n[[bin]]\nname = \"web\"\npath = \"src/web.rs\"\n"
                    )),
                    ..AppFiles::default()
                }),
            ),
            (
                "rust_workspace_members",
                cargo(&format!("{WEB}[workspace]\nmembers = [\"crates/*\"]\n")),
            ),
            (
                "node",
                node(
                    r#"{"scripts": {"start": "node dist/server.js", "build": "tsc"}}"#,
                    true,
                ),
            ),
            ("node_main_no_lock", node(r#"{"main": "server.js"}"#, false)),
            ("python_requirements", python(None, true)),
            (
                "python_pyproject",
                python(
                    Some("[project]\nname = \"shop\"\n[project.scripts]\nshop = \"shop:main\"\n"),
                    true,
                ),
            ),
            ("generic", detect(&AppFiles::default())),
        ]
    }

    /// The instructions of a Dockerfile: comments and blank lines dropped, continuations joined.
    fn instructions(dockerfile: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = String::new();
        for line in dockerfile.lines() {
            let trimmed = line.trim();
            if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(head) => current += head,
                None => {
                    current += line;
                    out.push(std::mem::take(&mut current));
                }
            }
        }
        assert!(current.is_empty(), "a continuation at the end: {current}");
        out
    }

    #[test]
    fn every_dockerfile_is_two_stages_a_numeric_user_and_a_healthcheck_on_the_port() {
        for (name, stack) in stacks() {
            let dockerfile = stack.dockerfile();
            let port = stack.port().to_string();
            let all = instructions(&dockerfile);
            let (keyword, rest): (Vec<&str>, Vec<&str>) = all
                .iter()
                .map(|i| i.split_once(' ').unwrap_or((i, "")))
                .unzip();
            let at = |k: &str| -> Vec<usize> {
                keyword
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| **w == k)
                    .map(|(n, _)| n)
                    .collect()
            };

            // The bases are arguments, declared before the first FROM.
            assert_eq!(&keyword[..2], ["ARG", "ARG"], "{name}");
            assert!(rest[0].starts_with("BUILDER_IMAGE="), "{name}");
            assert!(rest[1].starts_with("RUNTIME_IMAGE="), "{name}");
            // One build stage, one runtime stage.
            let froms = at("FROM");
            assert_eq!(froms.len(), 2, "{name}: {all:#?}");
            assert_eq!(rest[froms[0]], "${BUILDER_IMAGE} AS build", "{name}");
            assert_eq!(rest[froms[1]], "${RUNTIME_IMAGE}", "{name}");
            let runtime = froms[1];
            assert!(
                at("COPY")
                    .iter()
                    .any(|&n| n > runtime && rest[n].starts_with("--from=build ")),
                "{name}: the runtime takes the build's output"
            );
            // A numeric user that is not root, set in the runtime stage and created there.
            assert_eq!(at("USER").len(), 1, "{name}");
            let user = at("USER")[0];
            assert!(user > runtime, "{name}");
            assert_eq!(rest[user], "10001:10001", "{name}");
            assert!(
                all[runtime..user]
                    .iter()
                    .any(|i| i.contains("useradd --uid 10001 --gid 10001")),
                "{name}"
            );
            // EXPOSE and the HEALTHCHECK on the port and path of shipit.toml.
            assert_eq!(
                at("EXPOSE").iter().map(|&n| rest[n]).collect::<Vec<_>>(),
                [port.as_str()],
                "{name}"
            );
            let health = at("HEALTHCHECK");
            assert_eq!(health.len(), 1, "{name}");
            let health = rest[health[0]];
            for option in ["--interval=", "--timeout=", "--start-period=", "--retries="] {
                assert!(health.contains(option), "{name}: {health}");
            }
            let (_, command) = health
                .split_once(" CMD ")
                .unwrap_or_else(|| panic!("{health}"));
            let command: Vec<String> = serde_json::from_str(command.trim())
                .unwrap_or_else(|e| panic!("{name}: not the exec form ({e}): {command}"));
            let command = command.join(" ");
            assert!(command.contains(HEALTH_PATH), "{name}: {command}");
            assert!(
                command.contains(&format!("127.0.0.1:{port}/"))
                    || command.contains(&format!("127.0.0.1/{port} ")),
                "{name}: {command}"
            );
            // The start command, last, in the exec form.
            assert_eq!(keyword.last(), Some(&"CMD"), "{name}");
            let cmd: Result<Vec<String>, _> = serde_json::from_str(rest[rest.len() - 1]);
            assert!(cmd.is_ok(), "{name}: {}", rest[rest.len() - 1]);
            // Nothing BuildKit-only.
            assert!(!dockerfile.contains("--mount"), "{name}");
            assert!(!dockerfile.contains("# syntax"), "{name}");
        }
    }

    #[test]
    fn dockerfiles_are_snapshotted() {
        for (name, stack) in stacks() {
            insta::assert_snapshot!(format!("dockerfile_{name}"), stack.dockerfile());
        }
    }

    #[test]
    fn the_created_line_says_what_the_image_does() {
        assert_eq!(
            cargo(WEB).summary(),
            "Rust: cargo build --release of `web`, runtime debian:bookworm-slim as uid 10001, \
             HEALTHCHECK GET /health on port 3000"
        );
        assert_eq!(
            node(
                r#"{"scripts": {"start": "node s.js", "build": "tsc"}}"#,
                true
            )
            .summary(),
            "Node: npm ci, npm run build, then `npm start`, runtime node:22-bookworm-slim as uid \
             10001, HEALTHCHECK GET /health on port 3000"
        );
        assert_eq!(
            python(None, true).summary(),
            "Python: pip install -r requirements.txt, then `python -m app` (CHANGE ME: how it \
             starts), runtime python:3.12-slim-bookworm as uid 10001, HEALTHCHECK GET /health on \
             port 8000"
        );
        assert_eq!(
            detect(&AppFiles::default()).summary(),
            "a template: fill in its build stage and start command at CHANGE ME, runtime \
             debian:bookworm-slim as uid 10001, HEALTHCHECK GET /health on port 3000"
        );
    }

    #[test]
    fn dockerignore_keeps_out_each_stack_s_own_outputs() {
        for (name, stack) in stacks() {
            let ignore = stack.dockerignore();
            let lines: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
            for always in [".git", ".env", "environments"] {
                assert!(lines.contains(&always), "{name}: {ignore}");
            }
            let own: &[&str] = match stack {
                Stack::Rust(_) => &["target"],
                Stack::Node(_) => &["**/node_modules"],
                Stack::Python(_) => &["**/__pycache__", ".venv"],
                Stack::Generic { .. } => &[],
            };
            for line in own {
                assert!(lines.contains(line), "{name}: {ignore}");
            }
            // README.md stays: pyproject's `readme` and Rust's include_str! need it.
            assert!(!ignore.contains(".md"), "{name}");
        }
    }

    #[test]
    fn the_scaffold_is_a_valid_configuration_with_the_stack_s_port() {
        for (name, stack) in stacks() {
            let files = scaffold("my-app", &stack);
            let base = &files[0].1;
            for env in [&files[1].1, &files[2].1] {
                let c = crate::config::validate_for_tests(base, env).unwrap();
                assert_eq!(c.app, "my-app");
                assert_eq!(c.container.port, stack.port(), "{name}");
                assert_eq!(c.health.path, HEALTH_PATH, "{name}");
            }
            assert_eq!(files[3], (DOCKERFILE, stack.dockerfile()));
        }
        assert_eq!(python(None, true).port(), 8000);
    }

    #[test]
    fn init_writes_the_stack_s_dockerfile_and_never_fails_on_a_bad_manifest() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Cargo.toml"), WEB).unwrap();
        std::fs::write(d.path().join("Cargo.lock"), "version = 4\n").unwrap();
        init(d.path(), "web").unwrap();
        let dockerfile = std::fs::read_to_string(d.path().join(DOCKERFILE)).unwrap();
        assert_eq!(dockerfile, cargo(WEB).dockerfile());
        let ignore = std::fs::read_to_string(d.path().join(".dockerignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "target"), "{ignore}");

        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("package.json"), "{ not json").unwrap();
        init(d.path(), "web").unwrap();
        let dockerfile = std::fs::read_to_string(d.path().join(DOCKERFILE)).unwrap();
        assert_eq!(dockerfile, detect(&AppFiles::default()).dockerfile());

        // A manifest that cannot be read is an error naming it.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("Cargo.toml")).unwrap();
        let err = init(d.path(), "web").unwrap_err().to_string();
        assert!(err.starts_with("failed to read `"), "{err}");
        assert!(err.contains("Cargo.toml`"), "{err}");
        assert!(!d.path().join("shipit.toml").exists());
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
