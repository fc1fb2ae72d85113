//! Private database servers for the app store's tests: PostgreSQL
//! (`initdb` + `pg_ctl`) and MariaDB (`mariadb-install-db` + `mariadbd`),
//! each in a temporary directory on a free port (never the machine's
//! shared ones), stoppable and startable again on the same port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MariaDb,
}

pub struct Database {
    pub kind: Kind,
    pub port: u16,
    dir: PathBuf,
    /// mariadbd (PostgreSQL runs detached under pg_ctl).
    child: Option<Child>,
}

/// Whether this process runs as root (PostgreSQL refuses to, so its
/// commands run as the `postgres` user then).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A PostgreSQL server program: on the PATH, or where Debian's packages
/// put it (`/usr/lib/postgresql/<version>/bin`, not on the PATH).
fn postgres_program(program: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    if on_path {
        return PathBuf::from(program);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path().join("bin").join(program))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(program))
}

/// A command, as the `postgres` user when we are root.
fn postgres_command(program: &str) -> Command {
    let program = postgres_program(program);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Database {
    pub fn start(kind: Kind) -> Database {
        let port = super::free_port();
        let dir = std::env::temp_dir().join(format!("herald-db-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("database dir");
        let mut db = Database {
            kind,
            port,
            dir,
            child: None,
        };
        match kind {
            Kind::Postgres => {
                if is_root() {
                    run(
                        {
                            let mut c = Command::new("chown");
                            c.args(["postgres"]).arg(&db.dir);
                            c
                        },
                        "chown",
                    );
                }
                let mut initdb = postgres_command("initdb");
                initdb.arg("-D").arg(db.dir.join("data")).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]);
                run(initdb, "initdb");
            }
            Kind::MariaDb => {
                let mut install = Command::new("mariadb-install-db");
                install
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", db.dir.join("data").display()))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
                if is_root() {
                    install.arg("--user=root");
                }
                run(install, "mariadb-install-db");
            }
        }
        db.launch();
        db.wait_up();
        match kind {
            Kind::Postgres => {
                db.sql_as_admin("CREATE DATABASE herald");
            }
            Kind::MariaDb => {
                db.sql_as_admin(
                    "CREATE DATABASE herald; CREATE USER 'herald'@'127.0.0.1' IDENTIFIED BY 'herald-pw'; GRANT ALL ON herald.* TO 'herald'@'127.0.0.1';",
                );
            }
        }
        db
    }

    fn socket_dir(&self) -> &Path {
        &self.dir
    }

    fn launch(&mut self) {
        match self.kind {
            Kind::Postgres => {
                let mut ctl = postgres_command("pg_ctl");
                ctl.arg("-D")
                    .arg(self.dir.join("data"))
                    .arg("-o")
                    .arg(format!(
                        "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                        self.port,
                        self.socket_dir().display()
                    ))
                    .arg("-l")
                    .arg(self.dir.join("log"))
                    .args(["-w", "start"]);
                run(ctl, "pg_ctl start");
            }
            Kind::MariaDb => {
                let mut cmd = Command::new("mariadbd");
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.dir.join("data").display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!("--socket={}", self.dir.join("sock").display()))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--innodb-buffer-pool-size=16M",
                        "--skip-log-bin",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if is_root() {
                    cmd.arg("--user=root");
                }
                self.child = Some(cmd.spawn().expect("spawn mariadbd"));
            }
        }
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "{:?} did not start", self.kind);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `[app_store] url` that reaches it.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/herald", self.port),
            Kind::MariaDb => format!("mysql://herald:herald-pw@127.0.0.1:{}/herald", self.port),
        }
    }

    /// Runs SQL in the `herald` database, as its owner; the output.
    pub fn sql(&self, statement: &str) -> String {
        match self.kind {
            Kind::Postgres => {
                let mut cmd = Command::new("psql");
                cmd.args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "herald",
                    "-tAq",
                    "-v",
                    "ON_ERROR_STOP=1",
                ])
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-c")
                .arg(statement);
                run(cmd, "psql")
            }
            Kind::MariaDb => {
                let mut cmd = Command::new("mariadb");
                cmd.args([
                    "--no-defaults",
                    "-h",
                    "127.0.0.1",
                    "-u",
                    "herald",
                    "-pherald-pw",
                    "-N",
                    "-B",
                    "herald",
                ])
                .arg(format!("--port={}", self.port))
                .arg("-e")
                .arg(statement);
                run(cmd, "mariadb")
            }
        }
    }

    fn sql_as_admin(&self, statement: &str) {
        match self.kind {
            Kind::Postgres => {
                let mut cmd = Command::new("psql");
                cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q"])
                    .arg("-p")
                    .arg(self.port.to_string())
                    .arg("-c")
                    .arg(statement);
                run(cmd, "psql");
            }
            Kind::MariaDb => {
                let mut cmd = Command::new("mariadb");
                cmd.args(["--no-defaults", "-u", "root"])
                    .arg(format!("--socket={}", self.dir.join("sock").display()))
                    .arg("-e")
                    .arg(statement);
                run(cmd, "mariadb");
            }
        }
    }

    /// Stops the server (clients see their connections end).
    pub fn stop(&mut self) {
        match self.kind {
            Kind::Postgres => {
                let mut ctl = postgres_command("pg_ctl");
                ctl.arg("-D")
                    .arg(self.dir.join("data"))
                    .args(["-m", "immediate", "-w", "stop"]);
                let _ = ctl.stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
            Kind::MariaDb => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Starts it again on the same port, with its data.
    pub fn start_again(&mut self) {
        self.launch();
        self.wait_up();
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
