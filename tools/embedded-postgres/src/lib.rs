//! The embedded PostgreSQL: with no database configured, the portal runs its own cluster from
//! the machine's PostgreSQL binaries, with its data under the data directory and a private Unix
//! socket (no TCP port), and stops it on exit.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster belongs to an unprivileged
//! user (`postgres` if the machine has one, else `nobody`). A server killed with SIGKILL leaves
//! its postmaster behind: the next start finds it through `postmaster.pid`, stops it cleanly and
//! starts afresh on the same data.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::process::{Child, Command};

/// The port only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;
const SUPERUSER: &str = "postgres";
pub const DATABASE: &str = "portal";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries found (looked on PATH, through pg_config and under \
         /usr/lib/postgresql/*/bin). Install them (Debian: `apt-get install postgresql`) or set \
         DB_URL to an existing database"
    )]
    NoBinaries,
    #[error(
        "running as root, and neither a `postgres` nor a `nobody` user exists to own the database"
    )]
    NoUnprivilegedUser,
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0} failed: {1}")]
    Tool(&'static str, String),
    #[error("PostgreSQL did not become ready: {0} (see {1})")]
    NotReady(String, PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// A running embedded cluster. Dropping it asks PostgreSQL to shut down; `stop` also waits.
pub struct EmbeddedPostgres {
    child: Option<Child>,
    /// A postmaster found running (left by a server that was killed) and taken over: stopped on
    /// exit like our own child when `owns_adopted`.
    adopted: Option<Pid>,
    owns_adopted: bool,
    pgdata: PathBuf,
    socket_dir: PathBuf,
}

/// Whether a postmaster found already running is ours to stop at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// The server: it takes the cluster over and stops it on exit.
    TakeOver,
    /// A command-line tool run beside a server: it uses the cluster and leaves it running.
    Share,
}

impl EmbeddedPostgres {
    /// Starts (initialising on first use) the cluster under `data_dir` and creates the portal's
    /// database in it.
    #[tracing::instrument(skip_all, fields(data_dir = %data_dir.display()), err)]
    pub async fn start(data_dir: &Path, leftover: Leftover) -> Result<Self, EmbeddedError> {
        Self::start_with(data_dir, leftover, &[]).await
    }

    /// Like [`Self::start`], with extra server settings (`-c name=value`) for a cluster this
    /// call starts (the benchmark loads `pg_stat_statements` to count statements per request).
    pub async fn start_with(
        data_dir: &Path,
        leftover: Leftover,
        settings: &[(&str, &str)],
    ) -> Result<Self, EmbeddedError> {
        let mut root = std::path::absolute(data_dir).map_err(io("resolving the data directory"))?;
        let bin_dir = find_bin_dir().ok_or(EmbeddedError::NoBinaries)?;
        let owner =
            if nix::unistd::geteuid().is_root() { Some(unprivileged_user()?) } else { None };
        std::fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
        if let Some(user) = &owner {
            if !reachable_by(&root, user) {
                // A checkout under a private directory (/root, say): the database's user cannot
                // get in, so its cluster lives beside the system's temporary files instead.
                let elsewhere =
                    std::env::temp_dir().join(format!("soho-portal-{:x}", path_hash(&root)));
                tracing::warn!(
                    data_dir = %root.display(),
                    instead = %elsewhere.display(),
                    "user {} cannot reach the data directory; keeping the database elsewhere",
                    user.name
                );
                root = elsewhere;
            }
        }
        let pgdata = root.join("pg");
        let socket_dir = socket_dir_for(&root);
        for dir in [&root, &pgdata, &socket_dir] {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(io("setting the data directory's permissions"))?;
        for dir in [&pgdata, &socket_dir] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(format!("setting the permissions of {}", dir.display())))?;
            if let Some(user) = &owner {
                chown_tree(dir, user)?;
            }
        }
        if !pgdata.join("PG_VERSION").exists() {
            init_cluster(&bin_dir, &pgdata, owner.as_ref()).await?;
        }
        if let Some(pid) = running_postmaster(&pgdata) {
            let mut cluster = Self {
                child: None,
                adopted: Some(pid),
                owns_adopted: leftover == Leftover::TakeOver,
                pgdata: pgdata.clone(),
                socket_dir: socket_dir.clone(),
            };
            if cluster.wait_ready(&root.join("postgres.log"), Duration::from_secs(5)).await.is_ok()
            {
                tracing::info!(pid = pid.as_raw(), "using the embedded PostgreSQL already running");
                cluster.create_database(DATABASE).await?;
                return Ok(cluster);
            }
            cluster.owns_adopted = true;
            cluster.stop().await;
        }
        remove_stale_pid_file(&pgdata);

        let log_path = root.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("opening postgres.log"))?;
        let mut command = Command::new(bin_dir.join("postgres"));
        command
            .arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(&socket_dir)
            .args(["-p", &PORT.to_string(), "-c", "listen_addresses=", "-c", "max_connections=200"])
            .args(
                settings
                    .iter()
                    .flat_map(|(name, value)| ["-c".to_string(), format!("{name}={value}")]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("opening postgres.log"))?)
            .stderr(log)
            // Its own process group: a Ctrl-C in the terminal reaches the portal, which then
            // stops PostgreSQL in order, after its own connections are closed.
            .process_group(0);
        if let Some(user) = &owner {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let child = command.spawn().map_err(io("starting postgres"))?;
        let mut cluster =
            Self { child: Some(child), adopted: None, owns_adopted: false, pgdata, socket_dir };
        cluster.wait_ready(&log_path, Duration::from_secs(60)).await?;
        cluster.create_database(DATABASE).await?;
        tracing::info!(socket = %cluster.socket_dir.display(), "embedded PostgreSQL is up");
        Ok(cluster)
    }

    /// How to connect to `database` in this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
    }

    /// A `postgres://` URL for tools (psql, pgbench) and child processes.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{PORT}/{database}?host={}",
            self.socket_dir.display()
        )
    }

    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Creates `database` unless it exists.
    pub async fn create_database(&self, database: &str) -> Result<(), EmbeddedError> {
        let mut conn = self
            .connect_options("postgres")
            .connect()
            .await
            .map_err(|e| EmbeddedError::Tool("connecting", e.to_string()))?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| EmbeddedError::Tool("looking up the database", e.to_string()))?;
        if !exists {
            let quoted = database.replace('"', "\"\"");
            let created =
                sqlx::query(&format!("CREATE DATABASE \"{quoted}\"")).execute(&mut conn).await;
            // Another process may have created it meanwhile: that is as good.
            if let Err(e) = created {
                if !e.to_string().contains("already exists") {
                    return Err(EmbeddedError::Tool("CREATE DATABASE", e.to_string()));
                }
            }
        }
        conn.close().await.ok();
        Ok(())
    }

    /// Leaves the cluster running after this value is gone (the test harness shares one).
    pub fn detach(mut self) {
        self.child = None;
        self.adopted = None;
    }

    /// Asks PostgreSQL for a fast shutdown and waits for it.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGINT);
            match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                Ok(_) => tracing::info!("embedded PostgreSQL stopped"),
                Err(_) => {
                    tracing::warn!("embedded PostgreSQL did not stop in 30 s; killing it");
                    child.kill().await.ok();
                }
            }
        }
        if let Some(pid) = self.adopted.take().filter(|_| self.owns_adopted) {
            kill(pid, Signal::SIGINT).ok();
            for _ in 0..600 {
                if !is_alive(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::info!("embedded PostgreSQL stopped");
        }
    }

    async fn wait_ready(
        &mut self,
        log_path: &Path,
        patience: Duration,
    ) -> Result<(), EmbeddedError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(EmbeddedError::NotReady(
                        format!("postgres exited with {status}"),
                        log_path.to_path_buf(),
                    ));
                }
            }
            match self.connect_options("postgres").connect().await {
                Ok(conn) => {
                    conn.close().await.ok();
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(EmbeddedError::NotReady(e.to_string(), log_path.to_path_buf()))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child, Signal::SIGINT);
        }
        if let Some(pid) = self.adopted.filter(|_| self.owns_adopted) {
            kill(pid, Signal::SIGINT).ok();
        }
    }
}

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id() {
        kill(Pid::from_raw(pid as i32), sig).ok();
    }
}

/// The directory holding `postgres` and `initdb`: on PATH, through `pg_config --bindir`, or the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    for dir in on_path {
        if has_both(&dir) {
            // Debian links postgres into /usr/local/bin or similar: follow to the real bin dir so
            // that the cluster's other tools match.
            let real = std::fs::canonicalize(dir.join("postgres")).ok();
            return real
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|d| has_both(d))
                .or(Some(dir));
        }
    }
    if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_both(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn unprivileged_user() -> Result<User, EmbeddedError> {
    ["postgres", "nobody"]
        .into_iter()
        .find_map(|name| User::from_name(name).ok().flatten())
        .ok_or(EmbeddedError::NoUnprivilegedUser)
}

/// Unix socket paths are limited to about 107 bytes; a deep checkout falls back to /tmp.
fn socket_dir_for(root: &Path) -> PathBuf {
    let preferred = root.join("run");
    if preferred.as_os_str().len() + "/.s.PGSQL.5432.lock".len() < 100 {
        return preferred;
    }
    std::env::temp_dir().join(format!("soho-portal-pg-{:x}", path_hash(root)))
}

fn path_hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

/// Whether `user` can enter `dir` (every parent must let it through).
fn reachable_by(dir: &Path, user: &User) -> bool {
    std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("cd \"$1\"")
        .arg("sh")
        .arg(dir)
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn chown_tree(dir: &Path, user: &User) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(io(format!("reading {}", dir.display())))?;
    if meta.uid() == user.uid.as_raw() {
        return Ok(());
    }
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(dir)
        .status()
        .map_err(io("running chown"))?;
    if status.success() {
        Ok(())
    } else {
        Err(EmbeddedError::Tool("chown", format!("{} ({status})", dir.display())))
    }
}

async fn init_cluster(
    bin_dir: &Path,
    pgdata: &Path,
    owner: Option<&User>,
) -> Result<(), EmbeddedError> {
    // A previous initdb that died half-way leaves files without PG_VERSION: nothing worth keeping.
    if let Ok(entries) = std::fs::read_dir(pgdata) {
        for entry in entries.flatten() {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io(format!("clearing {}", path.display())))?;
        }
    }
    tracing::info!(pgdata = %pgdata.display(), "initialising the embedded PostgreSQL cluster");
    let mut command = Command::new(bin_dir.join("initdb"));
    command
        .arg("-D")
        .arg(pgdata)
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-instructions"])
        .stdin(Stdio::null());
    if let Some(user) = owner {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let out = command.output().await.map_err(io("running initdb"))?;
    if !out.status.success() {
        return Err(EmbeddedError::Tool(
            "initdb",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(())
}

/// The postmaster named by `postmaster.pid`, if that process is alive and is PostgreSQL.
fn running_postmaster(pgdata: &Path) -> Option<Pid> {
    let pid = std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse::<i32>()
        .ok()
        .map(Pid::from_raw)?;
    let is_postgres = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"))
        .unwrap_or(false);
    (is_postgres && is_alive(pid)).then_some(pid)
}

/// A `postmaster.pid` whose process is gone (a crash, a reboot) would only confuse PostgreSQL.
fn remove_stale_pid_file(pgdata: &Path) {
    let pid_file = pgdata.join("postmaster.pid");
    if pid_file.exists() && running_postmaster(pgdata).is_none() {
        tracing::warn!("removing a stale postmaster.pid");
        std::fs::remove_file(&pid_file).ok();
    }
}

/// Alive and not a zombie.
fn is_alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}
